"""Run as a script by test_autoscaling.py: the service in its own Ray with an autoscaling
ingress (1..2 replicas, short delays); open-loop load until a second replica runs, then quiet. Prints one JSON line with the
running replica counts seen during and after the load."""
from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.ports import free_port  # noqa: E402


def running_replicas() -> int:
    from ray import serve

    deployment = serve.status().applications["recsys"].deployments["Ingress"]
    return int(deployment.replica_states.get("RUNNING", 0))


async def http_load(base: str, rate: float, duration_s: float) -> dict:
    """Open-loop HTTP SimilarItems by item at ``rate`` for ``duration_s``: calls that name no
    customer are what the ingress replicas answer (the ones that do go from the front straight to
    the owners)."""
    import httpx

    codes: dict[str, int] = {}
    latencies: list[float] = []

    async def one(client, n: int) -> None:
        sent = time.perf_counter()
        try:
            code = str((await client.post("/v1/similar-items", json={"item_id": f"i{n % 60:04d}", "k": 5})).status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        latencies.append((time.perf_counter() - sent) * 1000)
        codes[code] = codes.get(code, 0) + 1

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        tasks, start = [], time.perf_counter()
        for n in range(int(rate * duration_s)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, n)))
        await asyncio.gather(*tasks)
    ok = codes.pop("200", 0)
    latencies.sort()
    return {"sent": ok + sum(codes.values()), "ok": ok, "errors_by_code": codes,
            "latency_ms": {"p99": latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0}}


def main() -> int:
    import ray

    from engine.auth import AuthConfig
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import start_service
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train

    tmp = Path(tempfile.mkdtemp())
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), partitions=8, owners=ScalingConfig(min_owners=1, max_owners=1), store_url=f"sqlite:///{tmp}/s.db",
                         model_dir=str(tmp / "models"), auth=AuthConfig(enabled=False), ingress_replicas=1,
                         ingress_max_replicas=2, target_ongoing_requests=0.25, upscale_delay_s=1.0,
                         downscale_delay_s=4.0)
    bundle = train(synthetic_retail(n_customers=100, n_items=30, n_groups=3),
                   TrainParams(factors=4, iterations=3, evaluate=False, threads=1), progress=False)
    ray.init(num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    service = start_service(config, bundle)
    seen_during, seen_after = [], []
    try:
        before = running_replicas()
        # Load in windows of 5 s until a second replica is RUNNING (at most 150 s): on a busy 2-core
        # machine the replica Serve decides to add can take longer to start than any fixed load window.
        summaries, failures = [], []
        load_until = time.monotonic() + 150
        while time.monotonic() < load_until:
            done = threading.Event()

            def load():
                try:
                    summaries.append(asyncio.run(http_load(f"http://127.0.0.1:{config.http_port}", 60, 5.0)))
                except Exception as exc:  # re-raised below: a broken load generator must fail the test
                    failures.append(exc)
                finally:
                    done.set()

            threading.Thread(target=load, daemon=True).start()
            while not done.is_set():
                seen_during.append(running_replicas())
                time.sleep(1)
            if failures:
                raise failures[0]
            if max(seen_during) > 1:
                break
        quiet_until = time.monotonic() + 120
        while time.monotonic() < quiet_until:
            seen_after.append(running_replicas())
            if seen_after[-1] == 1 and max(seen_during) > 1:
                break
            time.sleep(1)
        errors: dict = {}
        for summary in summaries:
            for code, count in summary["errors_by_code"].items():
                errors[code] = errors.get(code, 0) + count
        print(json.dumps({"before": before, "during": seen_during, "after": seen_after,
                          "sent": sum(s["sent"] for s in summaries), "ok": sum(s["ok"] for s in summaries),
                          "errors": errors, "p99_ms": max(s["latency_ms"]["p99"] for s in summaries)}))
    finally:
        service.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
