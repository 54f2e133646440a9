"""Run as a script by test_multinode.py: a 3-node ray.cluster_utils.Cluster in its own process.

Shards live on the two worker nodes and keep state in a shared PostgreSQL. The node that
holds shard 0 is removed; the shard must come back on the other node with its customers.
Prints one JSON line with what it saw.
"""
from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(store_url: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from actors.cluster import start_shards
    from engine.config import ServeConfig
    from engine.events import parse_event
    from engine.sharding import shard_for
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": free_port(),
                                                            "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, resources={"shard_host": 10}) for _ in range(2)]
    ray.init(address=cluster.address, namespace="recsys", log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        bundle = train(synthetic_retail(n_customers=200, n_items=60, n_groups=3),
                       TrainParams(factors=8, iterations=5, evaluate=False, threads=1), progress=False)
        config = ServeConfig(num_shards=2, store_url=store_url, snapshot_every_events=7)
        shards = start_shards(bundle, config, {"resources": {"shard_host": 1}})
        customers = [c for c in (f"m{n}" for n in range(200)) if shard_for(c, 2) == 0][:5]
        now = int(time.time() * 1000)
        for n in range(40):
            customer = customers[n % len(customers)]
            event = parse_event({"event_id": f"e{n}", "customer_id": customer, "event_type": "add_to_cart",
                                 "item_id": f"i{n % 60:04d}", "channel": "web"}, now)
            ray.get(shards[0].track.remote([event]))
        before = ray.get(shards[0].stats.remote())
        carts_before = {c: ray.get(shards[0].export.remote(c, "test"))["state"]["cart"] for c in customers}
        victim = next(w for w in workers if w.node_id == before["node_id"])
        cluster.remove_node(victim)
        removed_at = time.monotonic()
        after = None
        while time.monotonic() - removed_at < 120:
            try:
                after = ray.get(shards[0].stats.remote(), timeout=10)
                break
            except Exception:
                time.sleep(0.5)
        carts_after = {c: ray.get(shards[0].export.remote(c, "test"))["state"]["cart"] for c in customers}
        print(json.dumps({
            "nodes": 3, "node_before": before["node_id"], "node_after": after and after["node_id"],
            "pid_before": before["pid"], "pid_after": after and after["pid"],
            "recovery": after and after["recovery"], "seconds_to_answer": round(time.monotonic() - removed_at, 2),
            "state_equal": carts_before == carts_after, "customers": len(customers),
        }))
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
