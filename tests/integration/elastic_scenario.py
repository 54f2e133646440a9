"""Run as a script by test_elastic_tier.py: the elastic customer tier on a 4-node (head + 3 workers)
ray.cluster_utils.Cluster with the real PostgreSQL store, under a constant mixed load.

Phases, all while a constant open-loop load (Recommend, TrackEvents, NextBestOffer) runs:

0. an operator drains a node (`recsys owners drain`): its owners' partitions move elsewhere;
1. a burst of extra load: the scaling policy takes the tier from 2 owners to 4; meanwhile a
   catalogue update and a model promotion go out (owners start during both), and a customer is
   erased;
2. the burst ends: the policy takes the tier back to 2;
3. a worker node that holds owners is removed: its partitions are taken by the others;
4. an owner is SIGKILLed in the middle of a move: a partition's lease row is held locked (a slow
   store), so the owner's hand-over snapshot waits on it; the owner is killed there, and the
   partition's new owner rebuilds it from the older snapshot plus the log.

Then the load stops and everything is checked against the store. Prints one JSON line.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.ports import free_port  # noqa: E402

CUSTOMERS = [f"el-{n}" for n in range(48)]
BASE_RATE_PER_S = 12.0  # per base thread
BASE_THREADS = 2
BURST_THREADS = 4
PARTITIONS = 16


class Load(threading.Thread):
    """A client: open loop at ``rate`` per second (closed loop when rate is None), its own channel."""

    def __init__(self, index: int, target: str, rate: float | None, stop: threading.Event, customers: list[str]):
        super().__init__(daemon=True)
        self.index, self.target, self.rate, self.stop, self.customers = index, target, rate, stop, customers
        self.acked: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, str, float]] = []
        self.latencies: list[tuple[float, str, float]] = []
        self.random = random.Random(index)

    def run(self) -> None:
        import grpc

        from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

        stub = recsys_pb2_grpc.PersonalizationStub(grpc.insecure_channel(self.target))
        n, start = 0, time.perf_counter()
        while not self.stop.is_set():
            if self.rate:
                due = start + n / self.rate
                time.sleep(max(0.0, due - time.perf_counter()))
            n += 1
            customer = self.random.choice(self.customers)
            roll = self.random.random()
            began = time.perf_counter()
            try:
                if roll < 0.5:
                    op = "Recommend"
                    stub.Recommend(pb.RecommendRequest(customer_id=customer, k=5), timeout=30)
                elif roll < 0.85:
                    op = "TrackEvents"
                    # a batch spans customers, so partitions, so owners (one may be moving)
                    events = [pb.Event(event_id=f"{self.index}-{n}-{j}",
                                       customer_id=customer if j == 0 else self.random.choice(self.customers),
                                       event_type=self.random.choice(("view", "add_to_cart")),
                                       item_id=f"i{self.random.randrange(60):04d}", channel="web")
                              for j in range(self.random.randint(1, 3))]
                    reply = stub.TrackEvents(pb.TrackEventsRequest(events=events), timeout=30)
                    # a write sent again by the ingress (its owner died mid-call) may come back as duplicates
                    assert reply.accepted + reply.duplicates == len(events), reply
                    self.acked.extend((e.customer_id, e.event_id) for e in events)
                else:
                    op = "NextBestOffer"
                    stub.NextBestOffer(pb.NextBestOfferRequest(customer_id=customer, channel="pos"), timeout=30)
                self.latencies.append((time.monotonic(), op, time.perf_counter() - began))
            except grpc.RpcError as error:
                self.failures.append((op, error.code().name, error.details(), time.monotonic()))
            except AssertionError as error:
                self.failures.append((op, "WRONG_ANSWER", str(error), time.monotonic()))


def wait_for(predicate, timeout_s: float, step_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    return None


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(1000 * values[int(0.99 * (len(values) - 1))], 1)


def main(store_url: str) -> int:
    import grpc
    import orjson
    import psycopg
    import ray
    from ray.cluster_utils import Cluster

    from actors.names import NAMESPACE, OFFER_CATALOG_META, find, find_placement, find_registry
    from actors.shard_offers import catalog_from_toml
    from actors.placement import balanced_assignment
    from actors.shard import CustomerShardLogic
    from actors.store import open_store
    from engine.auth import AuthConfig
    from engine.config import OffersConfig, ServeConfig
    from engine.scaling import ScalingConfig
    from engine.sharding import partition_for
    from gateway.server import start_service
    from recommenders.bundle import save_bundle
    from recommenders.loaders import synthetic_retail
    from recommenders.runtime import ModelRuntime
    from recommenders.training import TrainParams, train
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

    # node failures noticed within about two seconds (the default is tens of seconds)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "gcs_server_port": free_port(), "include_dashboard": False, "resources": {"head_host": 10},
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                           "health_check_timeout_ms": 500}})
    workers = [cluster.add_node(num_cpus=1, resources={"owner_host": 100}) for _ in range(3)]
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    cluster.wait_for_nodes()
    service = None
    stop_base, stop_burst = threading.Event(), threading.Event()
    clients: list[Load] = []
    report: dict = {"phases": {}}
    try:
        data = synthetic_retail(n_customers=200, n_items=60, n_groups=3)
        bundle = train(data, TrainParams(factors=8, iterations=5, evaluate=False, threads=1), progress=False)
        second = train(data, TrainParams(factors=8, iterations=5, evaluate=False, threads=1, seed=7), progress=False)
        model_dir = tempfile.mkdtemp(prefix="recsys-elastic-models-")
        save_bundle(bundle, model_dir)
        save_bundle(second, model_dir, make_current=False)
        config = ServeConfig(
            partitions=PARTITIONS, store_url=store_url, snapshot_every_events=40, http_port=free_port(),
            grpc_port=free_port(), auth=AuthConfig(enabled=False), model_dir=model_dir,
            owners=ScalingConfig(min_owners=2, max_owners=4, target_load_per_owner=0.1, upscale_delay_s=1.5,
                                 downscale_delay_s=4.0),
            owner_control_interval_s=0.5,
            offers=OffersConfig(default_marketing_consent=True, cart_abandon_minutes=0.05, trigger_tick_seconds=0.2))
        # owners on the two worker nodes, the ingress with Serve on the head (removing a worker must
        # not take the ingress with it: that is Serve's own failure handling, tested elsewhere)
        service = start_service(config, bundle, {"resources": {"owner_host": 1}}, {"resources": {"head_host": 0.01}})
        target = f"127.0.0.1:{config.grpc_port}"
        channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = recsys_pb2_grpc.PersonalizationStub(channel)
        placement = find_placement()

        def status():
            return ray.get(placement.status.remote(), timeout=30)

        # a trained customer, with some events of its own, to be erased mid-scale
        erased = "c7"
        stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(
            event_id=f"gone-{n}", customer_id=erased, event_type="view", item_id="i0001", channel="web")
            for n in range(3)]), timeout=30)

        # the owners' load as the placement sees it, once a second (for the report)
        samples: list = []
        health: list = []

        def sample():
            import httpx

            while not stop_base.is_set():
                try:
                    s = status()
                    samples.append((round(time.monotonic(), 1), s["owners"], sorted(s["loads"].values())))
                    code = httpx.get(f"http://127.0.0.1:{config.http_port}/healthz", timeout=10).status_code
                    health.append((time.monotonic(), code))
                except Exception:  # noqa: BLE001 - a sample missed
                    pass
                time.sleep(0.5)
        threading.Thread(target=sample, daemon=True).start()
        report["load_samples"] = samples

        clients = [Load(i, target, BASE_RATE_PER_S, stop_base, CUSTOMERS) for i in range(BASE_THREADS)]
        for c in clients:
            c.start()
        time.sleep(3.0)

        # -- 0. an operator drains a node: its owners' partitions move to owners elsewhere ------------------
        now = status()
        drained_node = next(n for n in now["nodes"].values() if n)
        td = time.monotonic()
        ray.get(placement.drain_node.remote(drained_node), timeout=120)
        drained = wait_for(lambda: (s := status())["owners"] == 2 and not s["unassigned"]
                           and drained_node not in s["nodes"].values() and s, 60)
        report["phases"]["drained"] = {"seconds": round(time.monotonic() - td, 2), "reached": bool(drained)}
        time.sleep(1.0)

        # -- 1. a burst: 2 -> 4 owners, by the policy ------------------------------------------------
        t0 = time.monotonic()
        burst = [Load(100 + i, target, None, stop_burst, CUSTOMERS) for i in range(BURST_THREADS)]
        for c in burst:
            c.start()
        clients.extend(burst)
        wait_for(lambda: status()["target"] > 2, 60)
        # while owners are starting: a catalogue update, a model promotion and an erasure
        stub.UpdateCatalog(pb.UpdateCatalogRequest(updates=[pb.CatalogUpdate(item_id="i0003", in_stock=False)]),
                           timeout=30)
        promotion = ray.get(find_registry().promote.remote(second.version, force=True), timeout=120)
        forgot = stub.ForgetCustomer(pb.ForgetCustomerRequest(customer_id=erased), timeout=30)
        up = wait_for(lambda: status()["owners"] == 4 and not status()["unassigned"] and status(), 90)
        report["phases"]["up"] = {"seconds": round(time.monotonic() - t0, 2), "reached": bool(up),
                                  "promotion_s": promotion["seconds"], "events_erased": forgot.events_deleted}
        time.sleep(2.0)
        stop_burst.set()
        for c in burst:
            c.join(timeout=60)

        # -- 2. back to 2 owners ---------------------------------------------------------------------
        t1 = time.monotonic()
        down = wait_for(lambda: status()["owners"] == 2 and not status()["unassigned"] and status(), 90)
        report["phases"]["down"] = {"seconds": round(time.monotonic() - t1, 2), "reached": bool(down)}

        # -- 3. a node that holds owners is removed ----------------------------------------------------
        now = status()
        nodes = [n for n in now["nodes"].values() if n]
        victim_node = max(set(nodes), key=nodes.count)
        victim = next(w for w in workers if w.node_id == victim_node)
        t2 = time.monotonic()
        cluster.remove_node(victim, allow_graceful=False)
        healed = wait_for(lambda: (s := status())["owners"] >= 2 and not s["unassigned"]
                          and victim_node not in s["nodes"].values() and s, 90)
        report["phases"]["node_removed"] = {"seconds": round(time.monotonic() - t2, 2), "reached": bool(healed),
                                            "owners_lost": nodes.count(victim_node)}
        time.sleep(2.0)

        # -- 4. an owner SIGKILLed in the middle of a move -------------------------------------------------
        now = status()
        owners_now = sorted(now["per_owner"])
        plan = balanced_assignment(PARTITIONS, owners_now + [now["next_owner"]], now["assignment"])
        moving = sorted(p for p, o in plan.items() if o == now["next_owner"])
        busy = {partition_for(c, PARTITIONS) for c in CUSTOMERS}
        partition = next((p for p in moving if p in busy), moving[0])
        source = now["assignment"][partition]
        source_pid = ray.get(find(source).stats.remote(), timeout=30)["pid"]
        lock = psycopg.connect(store_url)
        lock.execute("SELECT 1 FROM partition_leases WHERE partition_id = %s FOR UPDATE", (partition,))
        t3 = time.monotonic()
        scaling = placement.scale_to.remote(3, "test: a move to kill")

        def source_waits_on_the_lease():
            with psycopg.connect(store_url, autocommit=True) as conn:
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND query ILIKE '%partition_leases%'").fetchone()[0] > 0
        blocked = wait_for(source_waits_on_the_lease, 30, 0.05)
        os.kill(source_pid, signal.SIGKILL)
        time.sleep(0.5)
        lock.rollback()
        lock.close()
        ray.get(scaling, timeout=120)
        settled = wait_for(lambda: (s := status())["owners"] >= 2 and not s["unassigned"]
                           and source not in s["per_owner"] and s, 90)
        report["phases"]["killed_mid_move"] = {"seconds": round(time.monotonic() - t3, 2), "blocked": bool(blocked),
                                               "reached": bool(settled), "partition": partition, "owner": source}
        time.sleep(2.0)

        # -- the end: stop, let the cart timers fire, check everything against the store --------------
        stop_base.set()
        for c in clients:
            c.join(timeout=60)
        time.sleep(4.0)
        final = status()
        running = [find(o) for o in final["per_owner"]]
        stats = ray.get([o.stats.remote() for o in running], timeout=60)
        # the placement's routes and what each owner really holds agree
        held = {p: s["owner"] for s in stats for p in s["partitions"]}
        report["routes_agree"] = {int(p): o for p, o in final["assignment"].items()} == held
        if not report["routes_agree"]:
            report["routes"], report["held"] = final["assignment"], held
            report["history_tail"] = final["history"][-30:]
            print(json.dumps(report, default=str))
            return 1
        exports = {}
        for c in CUSTOMERS:
            exports[c] = orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=c),
                                                          timeout=30).export_json)
        try:
            stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=erased), timeout=30)
            erased_export = "FOUND"
        except grpc.RpcError as error:
            erased_export = error.code().name
        with psycopg.connect(store_url) as conn:
            stored = conn.execute("SELECT customer_id, event_id, payload FROM events ORDER BY seq").fetchall()
            actions = conn.execute("SELECT action_id, customer_id, kind FROM actions").fetchall()
            erased_rows = conn.execute("SELECT count(*) FROM events WHERE customer_id = %s", (erased,)).fetchone()[0]
        # what one owner alone would hold: every partition rebuilt from the store by one process
        store = open_store(store_url)
        model = ModelRuntime(second.arrays, second.manifest)
        alone = {}
        for p in sorted({partition_for(c, PARTITIONS) for c in CUSTOMERS}):
            logic = CustomerShardLogic(p, model, config.ranking, store, partitions=PARTITIONS, offers_config=config.offers,
                                       offer_catalog=catalog_from_toml(store.get_meta(OFFER_CATALOG_META), "in force"))
            logic.recover()
            for c in CUSTOMERS:
                if partition_for(c, PARTITIONS) == p:
                    alone[c] = logic.live_state(c)
        store.close()
        # the lists recommended lately are kept in memory and snapshots, not in the log (engine/attribution.py):
        # what the log rebuilds is the rest of the state
        for states in (alone, {c: exports[c]["state"] for c in CUSTOMERS}):
            for state in states.values():
                if state is not None:
                    state.pop("recommendations", None)
        last_add = {}
        for customer_id, event_id, payload in stored:
            if orjson.loads(bytes(payload)).get("event_type") == "add_to_cart":
                last_add[customer_id] = event_id
        action_ids = [a for a, _, kind in actions if kind == "cart_abandonment"]
        acked = [a for c in clients for a in c.acked]
        report.update({
            "history": [h for h in final["scalings"] if h["event"] in ("scale", "owner_lost", "drain")],
            "failures": [f for c in clients for f in c.failures][:20],
            "failed": sum(len(c.failures) for c in clients),
            "requests": sum(len(c.latencies) for c in clients),
            "acked": len(acked), "acked_unique": len(set(acked)), "acked_ids": sorted(set(acked)),
            "stored_ids": [[c, e] for c, e, _ in stored if c in set(CUSTOMERS)],
            "event_counts": {c: exports[c]["state"]["event_count"] for c in CUSTOMERS if exports[c]["state"]},
            "export_event_ids": {c: [e["event_id"] for e in exports[c]["events"]] for c in CUSTOMERS},
            "state_equal_alone": all(exports[c]["state"] == alone[c] for c in CUSTOMERS),
            "state_differs": [c for c in CUSTOMERS if exports[c]["state"] != alone[c]][:5],
            "state_diff": next(({k: [exports[c]["state"].get(k), alone[c].get(k)] for k in exports[c]["state"]
                                 if exports[c]["state"].get(k) != alone[c].get(k)}
                                for c in CUSTOMERS if exports[c]["state"] != alone[c]), None),
            "last_add": last_add, "carts": {c: bool(exports[c]["state"]["cart"]) for c in CUSTOMERS
                                            if exports[c]["state"]},
            "cart_actions": action_ids,
            "erased_export": erased_export, "erased_rows": erased_rows,
            "owner_models": sorted({s["model_version"] for s in stats}), "second_version": second.version,
            "owner_catalog_items": sorted({s["catalog_items"] for s in stats}),
            "owners_final": final["owners"], "nodes_final": sorted(set(final["nodes"].values())),
            "fenced": sum(s["fenced"] for s in stats),
            "p99_ms": {op: p99([lat for c in clients if c.rate for _, o, lat in c.latencies if o == op])
                       for op in ("Recommend", "TrackEvents", "NextBestOffer")},
            "p99_ms_by_phase": {},
            # health while the tier scaled up and down (moves, no failure): it must not flap
            "health_while_scaling": sorted({code for at, code in health if t0 <= at < t2})})
        # p99 while each phase was under way
        edges = {"steady_and_drain": (None, t0), "up_and_down": (t0, t2), "node_removed": (t2, t3), "killed_mid_move": (t3, None)}
        for phase, (lo, hi) in edges.items():
            # the constant load's clients only (the burst's closed-loop clients queue by design)
            lat = [x for c in clients if c.rate for at, _, x in c.latencies
                   if (lo is None or at >= lo) and (hi is None or at < hi)]
            report["p99_ms_by_phase"][phase] = {"p99_ms": p99(lat), "requests": len(lat)}
    finally:
        stop_base.set()
        stop_burst.set()
        if service is not None:
            try:
                service.stop()
            except Exception as exc:  # noqa: BLE001 - reported, the cluster goes anyway
                report["stop_error"] = repr(exc)
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
