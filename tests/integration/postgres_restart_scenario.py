"""Run as a script by test_store_postgres.py: the whole service on a real PostgreSQL, writers
streaming events over gRPC, and the PostgreSQL server restarted under them, twice.

Its own Ray (the session's may hold the service on SQLite under the same actor names). Eight
client threads send TrackEvents (single events and batches of three, customers of both owners)
and, as a client should, retry a failed request with the same event ids until it is
acknowledged. The server is stopped with ``pg_ctl -m fast`` (an operator's restart) and held
down for 3 s, then with ``-m immediate`` (a crash: crash recovery on start) for 1 s, then started
again on the same data directory. Prints one JSON line: what was acknowledged, what each
customer's rebuilt state and the store hold, the failed calls and the times to recovery.
"""
from __future__ import annotations

import bisect
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WRITERS = 8
CUSTOMERS = 12
# (stop mode, seconds the server stays down)
RESTARTS = (("fast", 3.0), ("immediate", 1.0))
CALL_TIMEOUT_S = 20.0
WAIT_FOR_WRITERS_S = 60.0


@dataclass(frozen=True)
class PostgresProcess:
    """Stops and starts the pgserver-made server on its data directory with its bundled pg_ctl,
    on the same Unix socket (so every client's URL still works)."""

    pgdata: str
    socket_dir: str
    log: str
    system_user: str | None

    @classmethod
    def of(cls, server) -> "PostgresProcess":
        return cls(str(server.pgdata), str(server.get_postmaster_info().socket_dir), str(server.log),
                   server.system_user)

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", self.pgdata, *args], check=True,
                       user=self.system_user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", self.log, "start")

    def running(self) -> bool:
        from pgserver._commands import POSTGRES_BIN_PATH

        return subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", self.pgdata, "status"], user=self.system_user,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class Writer(threading.Thread):
    def __init__(self, index: int, stub, customers: list[str], stop: threading.Event):
        super().__init__(daemon=True)
        self.index, self.stub, self.customers, self.stop = index, stub, customers, stop
        self.acked: list[tuple[str, str]] = []
        self.ack_times: list[float] = []
        self.failures: list[dict] = []
        self.pending: list[tuple[str, str]] = []  # sent, never acknowledged before the stop
        self.duplicates = 0  # retried events the store already had (a commit whose answer was lost)

    def run(self) -> None:
        from recsys.v1 import recsys_pb2 as pb

        n = 0
        while not self.stop.is_set():
            size = 3 if n % 4 == 0 else 1
            events = [pb.Event(event_id=f"w{self.index}-{n + j}",
                               customer_id=self.customers[(self.index + n + j) % len(self.customers)],
                               event_type="add_to_cart" if (n + j) % 2 else "view",
                               item_id=f"i{(n + j) % 60:04d}", channel="pos") for j in range(size)]
            ids = [(e.customer_id, e.event_id) for e in events]
            n += size
            while True:  # the same request until it is acknowledged, as a client retries
                started = time.monotonic()
                try:
                    reply = self.stub.TrackEvents(pb.TrackEventsRequest(events=events), timeout=CALL_TIMEOUT_S)
                except Exception as error:  # noqa: BLE001 - grpc.RpcError, recorded for the test
                    code = error.code().name if hasattr(error, "code") else type(error).__name__
                    details = error.details() if hasattr(error, "details") else str(error)
                    self.failures.append({"at": started, "seconds": time.monotonic() - started, "code": code,
                                          "details": (details or "")[:300]})
                    if self.stop.is_set():
                        self.pending.extend(ids)
                        break
                    time.sleep(0.05)
                    continue
                self.acked.extend(ids)
                self.ack_times.append(time.monotonic())
                self.duplicates += reply.duplicates
                break


def healthz(http: str) -> tuple[int, str]:
    import httpx

    try:
        reply = httpx.get(f"{http}/healthz", timeout=10)
        return reply.status_code, reply.text[:300]
    except Exception as exc:  # noqa: BLE001
        return 0, f"{type(exc).__name__}: {exc}"[:300]


def main(spec: dict) -> int:
    import grpc
    import orjson
    import ray

    from engine.auth import AuthConfig
    from engine.config import ServeConfig
    from engine.sharding import partition_for
    from gateway.server import start_service
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc
    from tests.ports import free_port

    pg = PostgresProcess(**spec["postgres"])
    ray.init(num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    service = None
    stop = threading.Event()
    writers: list[Writer] = []
    try:
        bundle = train(synthetic_retail(n_customers=200, n_items=60, n_groups=3),
                       TrainParams(factors=8, iterations=5, evaluate=False, threads=1), progress=False)
        config = ServeConfig(partitions=8, store_url=spec["url"], http_port=free_port(), grpc_port=free_port(),
                             auth=AuthConfig(enabled=False))
        service = start_service(config, bundle)
        http = f"http://127.0.0.1:{config.http_port}"
        channel = grpc.insecure_channel(f"127.0.0.1:{config.grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = recsys_pb2_grpc.PersonalizationStub(channel)
        customers = [f"pg-{n}" for n in range(CUSTOMERS)]
        _, routes = ray.get(ray.get_actor("recsys-placement", namespace="recsys").routes.remote())
        owners_used = len({routes[partition_for(c, 8)] for c in customers})
        writers = [Writer(i, stub, customers, stop) for i in range(WRITERS)]
        for w in writers:
            w.start()
        time.sleep(3.0)
        restarts = []
        for mode, down_s in RESTARTS:
            stopped_at = time.monotonic()
            pg.stop(mode)
            time.sleep(down_s)
            health_down = healthz(http)
            pg.start()
            up_at = time.monotonic()
            # ingest is back when every writer has been acknowledged again
            firsts: dict[int, float] = {}
            while time.monotonic() - up_at < WAIT_FOR_WRITERS_S and len(firsts) < len(writers):
                for w in writers:
                    times = list(w.ack_times)  # appended in order by its one thread
                    after = bisect.bisect_right(times, up_at)
                    if after < len(times) and w.index not in firsts:
                        firsts[w.index] = times[after]
                time.sleep(0.02)
            failed = [f for w in writers for f in w.failures if f["at"] >= stopped_at]
            restarts.append({
                "mode": mode, "down_s": down_s,
                "stop_and_start_s": round(up_at - stopped_at, 2),
                "writers_back": len(firsts),
                "up_to_first_ack_s": round(min(firsts.values()) - up_at, 3) if firsts else None,
                "up_to_every_writer_s": round(max(firsts.values()) - up_at, 3) if len(firsts) == len(writers) else None,
                "failed_calls": len(failed),
                "slowest_failed_call_s": round(max((f["seconds"] for f in failed), default=0.0), 3),
                "health_while_down": health_down,
            })
            time.sleep(3.0)
        stop.set()
        for w in writers:
            w.join(timeout=CALL_TIMEOUT_S + 10)
        # health recovers by itself (the owners probe the store after a failed write)
        deadline = time.monotonic() + 15
        health_after = healthz(http)
        while health_after[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            health_after = healthz(http)
        exports = {}
        for c in customers:
            data = orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=c),
                                                    timeout=30).export_json)
            exports[c] = {"event_ids": [e["event_id"] for e in data["events"]],
                          "event_count": data["state"]["event_count"] if data.get("state") else 0}
        failures = [f for w in writers for f in w.failures]
        print(json.dumps({
            "owners_used": owners_used,
            "acked": [list(a) for w in writers for a in w.acked],
            "pending": [list(a) for w in writers for a in w.pending],
            "calls_acked": sum(len(w.ack_times) for w in writers),
            "duplicates": sum(w.duplicates for w in writers),
            "failure_codes": sorted({f["code"] for f in failures}),
            "failure_samples": sorted({f["details"] for f in failures})[:6],
            "restarts": restarts,
            "health_after": health_after,
            "exports": exports,
        }))
    finally:
        stop.set()
        if service is not None:
            service.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
