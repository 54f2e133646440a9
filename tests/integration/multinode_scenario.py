"""Run as a script by test_multinode.py: a 3-node ray.cluster_utils.Cluster in its own process.

The whole service runs on it: Serve's proxies and the ingress, and shard actors on the two
worker nodes keeping state in a shared PostgreSQL. Events and recommendations go through the
real gRPC port. Then the node that holds shard 0 is removed: the shard must come back on the
other node with its customers, and the API must answer again. Prints one JSON line.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.ports import free_port  # noqa: E402




def main(store_url: str) -> int:
    import grpc
    import orjson
    import ray
    from ray.cluster_utils import Cluster

    from actors.cluster import NAMESPACE, shard_name
    from engine.auth import AuthConfig
    from engine.config import ServeConfig
    from engine.sharding import shard_for
    from gateway.server import start_service
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "gcs_server_port": free_port(),
                                                            "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, resources={"shard_host": 10}) for _ in range(2)]
    ray.init(address=cluster.address, namespace="recsys", log_to_driver=False)
    cluster.wait_for_nodes()
    service = None
    try:
        bundle = train(synthetic_retail(n_customers=200, n_items=60, n_groups=3),
                       TrainParams(factors=8, iterations=5, evaluate=False, threads=1), progress=False)
        config = ServeConfig(num_shards=2, store_url=store_url, snapshot_every_events=7, http_port=free_port(),
                             grpc_port=free_port(), auth=AuthConfig(enabled=False))
        service = start_service(config, bundle, {"resources": {"shard_host": 1}})
        stub = recsys_pb2_grpc.PersonalizationStub(grpc.insecure_channel(f"127.0.0.1:{config.grpc_port}"))
        customers = [c for c in (f"m{n}" for n in range(200)) if shard_for(c, 2) == 0][:5]
        for n in range(40):
            stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(
                event_id=f"e{n}", customer_id=customers[n % 5], event_type="add_to_cart",
                item_id=f"i{n % 60:04d}", channel="web")]), timeout=30)
        served_before = [len(stub.Recommend(pb.RecommendRequest(customer_id=c, k=5), timeout=30).items)
                         for c in ("c0", "c1", customers[0])]
        shard0 = ray.get_actor(shard_name(0), namespace=NAMESPACE)
        shard1 = ray.get_actor(shard_name(1), namespace=NAMESPACE)
        before = ray.get(shard0.stats.remote())
        other_before = ray.get(shard1.stats.remote())

        def carts():
            return {c: orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=c),
                                                        timeout=30).export_json)["state"]["cart"] for c in customers}

        carts_before = carts()
        victim = next(w for w in workers if w.node_id == before["node_id"])
        cluster.remove_node(victim)
        removed_at = time.monotonic()
        answered = None
        while time.monotonic() - removed_at < 120:
            try:
                stub.Recommend(pb.RecommendRequest(customer_id=customers[0], k=5), timeout=10)
                answered = time.monotonic() - removed_at
                break
            except grpc.RpcError:
                time.sleep(0.5)
        after = ray.get(shard0.stats.remote(), timeout=30)
        print(json.dumps({
            "nodes": 3, "served_before": served_before,
            "shard_nodes_before": sorted({before["node_id"], other_before["node_id"]}),
            "node_before": before["node_id"], "node_after": after["node_id"],
            "recovery": after["recovery"], "seconds_to_answer": answered and round(answered, 2),
            "state_equal": carts_before == carts(), "customers": len(customers),
        }))
    finally:
        if service is not None:
            service.stop()
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
