"""Latency of one Recommend, end to end, on this machine.

    .venv/bin/python benchmarks/recommend_latency.py [--model-dir models] [--requests 2000] [--owners 2]

Starts a local Ray (2 CPUs) and the service with the model in --model-dir (training one on
Online Retail if there is none), --owners partition owner processes (fixed) and a throwaway
SQLite store, then, from one client, sends sequential requests for known customers: the scoring
function in-process, the owner of the customer's partition called directly (no Serve, the routes
read once from the placement) and its bare ping (the actor call alone), gRPC Recommend, HTTP POST
/v1/recommend (both through the service's front, straight to the customer's owner), and, for
scale, a no-op Serve HTTP deployment reached through Serve's own HTTP proxy. Prints p50/p90/p99 in
milliseconds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))




def _summary(name: str, seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return (f"{name:<28} n={len(ms):>5}  p50 {np.percentile(ms, 50):6.2f} ms  p90 {np.percentile(ms, 90):6.2f} ms"
            f"  p99 {np.percentile(ms, 99):6.2f} ms  mean {ms.mean():6.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--owners", type=int, default=2, help="partition owner processes (fixed)")
    args = parser.parse_args()

    import grpc
    import httpx
    import ray
    from ray import serve

    from actors.names import find, find_placement
    from engine.config import ServeConfig
    from engine.queries import RecommendQuery
    from engine.scaling import ScalingConfig
    from engine.sharding import partition_for
    from gateway.server import free_loopback_port, start_service
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc
    from benchmarks.bench_auth import bench_auth
    from scripts.cli import _ensure_bundle

    key, auth = bench_auth()
    metadata = (("authorization", f"Bearer {key}"),)
    config = ServeConfig(http_port=free_loopback_port(), grpc_port=free_loopback_port(),
                         owners=ScalingConfig(min_owners=args.owners, max_owners=args.owners),
                         model_dir=args.model_dir, data_dir=args.data_dir, auth=auth,
                         # a throwaway store: never var/recsys.db, which may hold another P or an older schema
                         store_url=f"sqlite:///{tempfile.mkdtemp(prefix='recsys-latency-')}/recsys.db")
    bundle = _ensure_bundle(config, None)
    customers = [c for c in bundle.arrays["user_ids"].tolist() if not c.startswith("guest-")]
    rng = np.random.default_rng(0)
    sample = rng.choice(customers, size=args.requests).tolist()
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    service = start_service(config, bundle)
    try:
        print(f"model {bundle.version}: {len(bundle.arrays['item_ids'])} items, {len(customers)} customers; "
              f"{args.requests} sequential requests per line, one client, 2-CPU Ray, {args.owners} owners")
        from engine.config import RankingConfig
        from recommenders.recommend import recommend
        from recommenders.runtime import ModelRuntime

        model = ModelRuntime(bundle.arrays, bundle.manifest)
        now_ms = bundle.manifest["counts"]["data_end_ms"]
        timings = []
        for customer in sample:
            started = time.perf_counter()
            recommend(model, None, RecommendQuery(customer_id=customer, channel="web", k=10), RankingConfig(), now_ms)
            timings.append(time.perf_counter() - started)
        print(_summary("scoring in-process (no Ray)", timings[50:]))
        # the owner of each partition, as the ingress routes (autoscaling cannot move them: min = max)
        _, route = ray.get(find_placement().routes.remote())
        handles = {name: find(name) for name in set(route)}
        owners = [handles[name] for name in route]
        timings = []
        for customer in sample:
            owner = owners[partition_for(customer, len(owners))]
            started = time.perf_counter()
            ray.get(owner.recommend_many.remote([(RecommendQuery(customer_id=customer, channel="web", k=10), 0)]))
            timings.append(time.perf_counter() - started)
        print(_summary("owner actor call (no Serve)", timings[50:]))
        timings = []
        for customer in sample:
            owner = owners[partition_for(customer, len(owners))]
            started = time.perf_counter()
            ray.get(owner.ping.remote())
            timings.append(time.perf_counter() - started)
        print(_summary("owner actor ping (no work)", timings[50:]))

        with grpc.insecure_channel(f"127.0.0.1:{config.grpc_port}") as channel:
            stub = recsys_pb2_grpc.PersonalizationStub(channel)
            timings = []
            for customer in sample:
                started = time.perf_counter()
                stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="web", k=10), metadata=metadata)
                timings.append(time.perf_counter() - started)
        print(_summary("gRPC Recommend", timings[50:]))

        with httpx.Client(base_url=f"http://127.0.0.1:{config.http_port}",
                          headers={"authorization": f"Bearer {key}"}) as client:
            timings = []
            for customer in sample:
                started = time.perf_counter()
                response = client.post("/v1/recommend", json={"customer_id": customer, "k": 10})
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200
        print(_summary("HTTP POST /v1/recommend", timings[50:]))

        @serve.deployment(ray_actor_options={"num_cpus": 0})
        class Noop:
            async def __call__(self, request):
                return {}

        serve.run(Noop.bind(), name="noop", route_prefix="/noop")
        # through Serve's own HTTP proxy (on loopback behind the front), as a bare Serve app is reached
        with httpx.Client(base_url=service.serve_http) as client:
            timings = []
            for _ in sample:
                started = time.perf_counter()
                client.post("/noop", json={})
                timings.append(time.perf_counter() - started)
        print(_summary("HTTP no-op Serve deployment", timings[50:]))
    finally:
        service.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
