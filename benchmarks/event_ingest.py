"""Durable event ingest: what group commit buys.

    .venv/bin/python benchmarks/event_ingest.py [--events 20000] [--store sqlite:///var/bench.db]

1. The store alone: one transaction per event vs one per 100 events (SQLite WAL, synchronous=FULL).
2. One shard actor (Ray, 2 CPUs): events sent one per call, sequentially (one commit each) and
   from 64 concurrent callers (the actor's group commit puts what is queued into one transaction).
3. The whole service (2 shards, auth on): gRPC TrackEvents with batches of 100 events from 8
   concurrent clients, customers spread over both shards.
Every event is committed before it is acknowledged in all cases. Prints events/s.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _events(n: int, prefix: str):
    from engine.events import parse_event

    now = int(time.time() * 1000)
    return [parse_event({"event_id": f"{prefix}{i}", "customer_id": f"c{i % 5000}", "event_type": "view",
                         "item_id": f"i{i % 60:04d}", "channel": "web"}, now) for i in range(n)]


def _through_grpc(bundle, tmp: Path, n_events: int) -> float:
    import grpc

    from benchmarks.bench_auth import bench_auth
    from engine.config import ServeConfig
    from gateway.server import free_loopback_port as free_port, start_service
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

    key, auth = bench_auth()
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), num_shards=2, auth=auth,
                         store_url=f"sqlite:///{tmp}/service.db", model_dir=str(tmp / "models"))
    service = start_service(config, bundle)
    metadata = (("authorization", f"Bearer {key}"),)
    batches = [[pb.Event(event_id=f"g{b}-{i}", customer_id=f"c{(b * 100 + i) % 5000}", event_type="view",
                         item_id=f"i{i % 60:04d}", channel="web") for i in range(100)]
               for b in range(n_events // 100)]
    try:
        async def run() -> float:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{config.grpc_port}") as channel:
                stub = recsys_pb2_grpc.PersonalizationStub(channel)
                await stub.TrackEvents(pb.TrackEventsRequest(events=batches[0]), metadata=metadata)  # warm-up
                queue = batches[1:]
                started = time.perf_counter()

                async def client():
                    while queue:
                        reply = await stub.TrackEvents(pb.TrackEventsRequest(events=queue.pop()), metadata=metadata)
                        assert reply.accepted == 100
                await asyncio.gather(*[client() for _ in range(8)])
                return (len(batches) - 1) * 100 / (time.perf_counter() - started)
        return asyncio.run(run())
    finally:
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file in a temp dir)")
    args = parser.parse_args()

    import ray

    from actors.cluster import start_shards
    from actors.store import open_store
    from engine.config import ServeConfig
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train

    tmp = Path(tempfile.mkdtemp())
    url = args.store or f"sqlite:///{tmp}/bench.db"
    store = open_store(url)
    n = min(args.events, 5_000)
    events = _events(n, "a")
    started = time.perf_counter()
    for event in events:
        store.append(0, [event])
    print(f"store, 1 event per commit        {n / (time.perf_counter() - started):10,.0f} events/s  ({url.split(':')[0]})")
    events = _events(args.events, "b")
    started = time.perf_counter()
    for i in range(0, len(events), 100):
        store.append(0, events[i:i + 100])
    print(f"store, 100 events per commit     {len(events) / (time.perf_counter() - started):10,.0f} events/s")
    store.close()

    bundle = train(synthetic_retail(n_customers=200, n_items=60, n_groups=3),
                   TrainParams(factors=8, iterations=3, evaluate=False, threads=1), progress=False)
    ray.init(num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    try:
        config = ServeConfig(num_shards=1, store_url=url, snapshot_every_events=1_000_000)
        shard = start_shards(bundle, config)[0][0]
        events = _events(n, "c")
        started = time.perf_counter()
        for event in events:
            ray.get(shard.track.remote([event]))
        print(f"shard actor, sequential calls    {n / (time.perf_counter() - started):10,.0f} events/s")

        events = _events(args.events, "d")

        async def concurrent(callers: int) -> float:
            queue = list(events)
            started = time.perf_counter()

            async def caller():
                while queue:
                    await shard.track.remote([queue.pop()])
            await asyncio.gather(*[caller() for _ in range(callers)])
            return time.perf_counter() - started

        seconds = asyncio.run(concurrent(64))
        print(f"shard actor, 64 concurrent calls {len(events) / seconds:10,.0f} events/s  (group commit)")
        events = _events(args.events, "e")
        started = time.perf_counter()
        ray.get([shard.track.remote(events[i:i + 100]) for i in range(0, len(events), 100)])
        print(f"shard actor, batches of 100      {len(events) / (time.perf_counter() - started):10,.0f} events/s")
        from actors.cluster import stop_shards

        stop_shards(1)
        print(f"gRPC TrackEvents, batches of 100 {_through_grpc(bundle, tmp, args.events):10,.0f} events/s  "
              "(8 concurrent clients, 2 shards, whole service)")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
