"""Promote a new model while the service answers a constant-rate load: failures and latency.

    .venv/bin/python benchmarks/promotion_under_load.py [--rate 40] [--seconds 24] [--promote-at 10] [--owners 2] [--force]

Starts a local Ray (2 CPUs) and the service on the Online Retail model in --model-dir (training
one if there is none), with --owners partition owner processes (fixed) and a throwaway SQLite
store, trains a second version (another ALS seed, saved beside it), then sends
gRPC Recommend requests open-loop at --rate (latency measured from each request's scheduled
start) and, at --promote-at seconds, promotes the second version through the model registry.
Prints requests, failures by code, p50/p99 before, during (the promotion +-1 s) and after, the
promotion time, and when responses switched version. The registry's offline check applies as in
production: a candidate that scores worse than the serving model is refused (the benchmark stops
with that message) unless --force, which measures the swap anyway.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



async def _load(target: str, key: str, rate: float, seconds: float, customers: list[str], results: list) -> None:
    import grpc

    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = recsys_pb2_grpc.PersonalizationStub(channel)

        async def one(i: int, due: float) -> None:
            request = pb.RecommendRequest(customer_id=customers[i % len(customers)], k=10)
            try:
                reply = await stub.Recommend(request, timeout=10, metadata=(("authorization", f"Bearer {key}"),))
                results.append((due, time.perf_counter() - due, reply.model_version, "OK"))
            except grpc.aio.AioRpcError as error:
                results.append((due, time.perf_counter() - due, "", error.code().name))

        start = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)


def _percentiles(rows: list) -> str:
    if not rows:
        return "no requests"
    ms = np.array([r[1] for r in rows]) * 1000
    return f"n={len(ms):>5}  p50 {np.percentile(ms, 50):6.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms  max {ms.max():7.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=24.0)
    parser.add_argument("--promote-at", type=float, default=10.0)
    parser.add_argument("--force", action="store_true", help="promote even if the candidate scores worse offline")
    parser.add_argument("--owners", type=int, default=2, help="partition owner processes (fixed)")
    args = parser.parse_args()

    import ray

    from actors.names import find_registry
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import free_loopback_port as free_port, start_service
    from recommenders.bundle import list_versions, save_bundle
    from recommenders.loaders import default_data_path, load
    from recommenders.training import TrainParams, train
    from benchmarks.bench_auth import bench_auth
    from scripts.cli import _ensure_bundle

    key, auth = bench_auth()
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(),
                         owners=ScalingConfig(min_owners=args.owners, max_owners=args.owners),
                         model_dir=args.model_dir, data_dir=args.data_dir, auth=auth,
                         # a throwaway store: never var/recsys.db, which may hold another P or an older schema
                         store_url=f"sqlite:///{tempfile.mkdtemp(prefix='recsys-promotion-')}/recsys.db")
    bundle = _ensure_bundle(config, None)
    data_path = default_data_path(args.data_dir)
    started = time.perf_counter()
    second = train(load(data_path), TrainParams(seed=int(time.time()) % 1000 + 1), progress=False)
    if second.version not in list_versions(args.model_dir):
        save_bundle(second, args.model_dir, make_current=False)
    print(f"serving {bundle.version}; candidate {second.version} trained in {time.perf_counter() - started:.1f} s")
    customers = [c for c in bundle.arrays["user_ids"].tolist() if not c.startswith("guest-")]
    customers = np.random.default_rng(0).choice(customers, size=5000).tolist()

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    service = start_service(config, bundle)
    results: list = []
    promotion: dict = {}
    try:
        load_thread = threading.Thread(target=lambda: asyncio.run(
            _load(f"127.0.0.1:{config.grpc_port}", key, args.rate, args.seconds, customers, results)))
        t0 = time.perf_counter()
        load_thread.start()
        time.sleep(args.promote_at)
        promotion["start"] = time.perf_counter()
        promotion.update(ray.get(find_registry().promote.remote(second.version, force=args.force)))
        promotion["end"] = time.perf_counter()
        load_thread.join()
        # put the original back so `make run` serves what it served before
        ray.get(find_registry().rollback.remote())
    finally:
        service.stop()
        ray.shutdown()

    window = (promotion["start"] - 1.0, promotion["end"] + 1.0)
    before = [r for r in results if r[0] < window[0]]
    during = [r for r in results if window[0] <= r[0] <= window[1]]
    after = [r for r in results if r[0] > window[1]]
    failed = Counter(r[3] for r in results if r[3] != "OK")
    first_new = min((r[0] for r in results if r[2] == second.version), default=None)
    last_old = max((r[0] for r in results if r[2] == bundle.version), default=None)
    print(f"{len(results)} gRPC Recommend requests at {args.rate:g}/s over {args.seconds:g} s; "
          f"failed: {sum(failed.values())} {dict(failed) or ''}")
    print(f"promotion took {promotion['seconds']:.3f} s (registry: validate, prepare on every owner, commit)")
    if first_new is not None and last_old is not None:
        print(f"responses switched version {first_new - t0:.2f} s into the run; last old-version answer "
              f"{last_old - t0:.2f} s in (requests scheduled before the commit)")
    print(f"before     {_percentiles(before)}")
    print(f"during     {_percentiles(during)}   (promotion +- 1 s)")
    print(f"after      {_percentiles(after)}")
    slowest = sorted(results, key=lambda r: -r[1])[:8]
    print("slowest requests (s into the run: ms): "
          + ", ".join(f"{r[0] - t0:.2f}: {r[1] * 1000:.0f}" for r in sorted(slowest)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
