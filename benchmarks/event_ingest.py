"""Durable event ingest: what group commit buys.

    .venv/bin/python benchmarks/event_ingest.py [--events 20000] [--clients 32] [--partitions 64] [--store sqlite:///var/bench.db]

1. The store alone: one transaction per event vs one per 100 events (SQLite WAL, synchronous=FULL),
   all in one partition.
2. One owner process (a PartitionOwner actor holding all P partitions; Ray, 2 CPUs): events sent
   one per call (owner.track({partition: [event]})), sequentially (one commit each) and from 64
   concurrent callers (each partition's group commit puts what is queued for it into one
   transaction), then batches of 100 grouped by partition as the ingress sends them (one
   transaction per partition in the batch: with P = 64 and 5,000 customers, most of the 100 events
   are in a partition of their own).
3. The whole service (2 owners, fixed; auth on): gRPC TrackEvents with batches of 100 events,
   customers spread over every partition (the gRPC front validates the batch and sends each owner
   its own events; calls queued for one owner travel together, gateway/coalesce.py). From --clients
   concurrent clients (enough to keep both cores busy), then from 8; then batches each of one
   owner's customers (sent whole, unparsed at the front). The first rate over the
   store's own batched rate (1.) is printed, all from the same run; so is the CPU each process
   spent per 100 events.
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


def _events(n: int, prefix: str, customers: list[str] | None = None):
    from engine.events import parse_event

    now = int(time.time() * 1000)
    customers = customers or [f"c{i}" for i in range(5000)]
    return [parse_event({"event_id": f"{prefix}{i}", "customer_id": customers[i % len(customers)], "event_type": "view",
                         "item_id": f"i{i % 60:04d}", "channel": "web"}, now) for i in range(n)]


def _by_partition(events, partitions: int) -> dict[int, list]:
    """Events grouped by their customer's partition: an owner's track() argument."""
    from engine.sharding import partition_for

    groups: dict[int, list] = {}
    for event in events:
        groups.setdefault(partition_for(event.customer_id, partitions), []).append(event)
    return groups


def _check(reply: dict) -> None:
    """Every partition of an owner.track() answer took its events (no PartitionMoved, no error)."""
    for partition, result in reply.items():
        if isinstance(result, BaseException):
            raise RuntimeError(f"partition {partition}: {result!r}")


def _through_grpc(bundle, tmp: Path, n_events: int, partitions: int, cases: list[tuple[int, bool]]) -> list[float]:
    """The whole service's rate for each (concurrent clients, batches of one owner's customers)."""
    import grpc

    from actors.store import open_store
    from benchmarks.bench_auth import bench_auth
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from engine.sharding import partition_for
    from gateway.server import free_loopback_port as free_port, start_service
    from benchmarks.cpu_split import cpu_by_process, split
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

    key, auth = bench_auth()
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), partitions=partitions,
                         owners=ScalingConfig(min_owners=2, max_owners=2), auth=auth,
                         store_url=f"sqlite:///{tmp}/service.db", model_dir=str(tmp / "models"))
    service = start_service(config, bundle)
    metadata = (("authorization", f"Bearer {key}"),)
    customers = [f"c{i}" for i in range(5000)]
    # the customers of each owner (the store's leases), for batches that need no forward
    leases = open_store(config.store_url).leases()
    by_owner: dict[str, list[str]] = {}
    for customer in customers:
        by_owner.setdefault(leases[partition_for(customer, partitions)][0], []).append(customer)
    owners_customers = list(by_owner.values())

    def batches(tag: str, aligned: bool):
        def customer(b: int, i: int) -> str:
            pool = owners_customers[b % len(owners_customers)] if aligned else customers
            return pool[(b * 100 + i) % len(pool)]
        return [[pb.Event(event_id=f"{tag}{b}-{i}", customer_id=customer(b, i), event_type="view",
                          item_id=f"i{i % 60:04d}", channel="web") for i in range(100)]
                for b in range(n_events // 100)]

    async def run(stub, tag: str, clients: int, aligned: bool) -> float:
        queue = batches(tag, aligned)
        count = len(queue)
        cpu_before = cpu_by_process()
        started = time.perf_counter()

        async def client():
            while queue:
                batch = queue.pop()
                # x-session-id as the project's clients send it (TrackEvents is routed by its events)
                reply = await stub.TrackEvents(pb.TrackEventsRequest(events=batch),
                                               metadata=(*metadata, ("x-session-id", batch[0].customer_id)))
                assert reply.accepted == 100
        await asyncio.gather(*[client() for _ in range(clients)])
        rate = count * 100 / (time.perf_counter() - started)
        # CPU ms per 100 events, by process (benchmarks/cpu_split.py's groups; this client counts as "other")
        per_batch = split(cpu_before, cpu_by_process(), count)
        what = "each batch one owner's customers" if aligned else "customers of every partition"
        print(f"gRPC TrackEvents, batches of 100 {rate:10,.0f} events/s  ({clients} concurrent clients, {what}, "
              "2 owners, whole service)", flush=True)
        print("  CPU ms per 100 events by process: "
              + ", ".join(f"{group} {ms}" for group, ms in per_batch.items()), flush=True)
        return rate

    try:
        async def all_cases() -> list[float]:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{config.grpc_port}") as channel:
                stub = recsys_pb2_grpc.PersonalizationStub(channel)
                await stub.TrackEvents(pb.TrackEventsRequest(events=batches("w", False)[0]), metadata=metadata)
                return [await run(stub, f"g{n}-", clients, aligned) for n, (clients, aligned) in enumerate(cases)]
        return asyncio.run(all_cases())
    finally:
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=None,
                        help="P of a new store (default: the store's own, 64 for a new one); the whole service uses the same P")
    parser.add_argument("--clients", type=int, default=32, help="concurrent gRPC clients of the whole service")
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file in a temp dir)")
    args = parser.parse_args()

    import ray

    from actors.cluster import find_owners, start_backend, stop_backend
    from actors.store import open_store
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from engine.sharding import partition_for
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train

    tmp = Path(tempfile.mkdtemp())
    url = args.store or f"sqlite:///{tmp}/bench.db"
    store = open_store(url, args.partitions)
    partitions = store.partitions()
    # the store alone writes partition 0, with customers of partition 0 (the owner rebuilds it later)
    own = [c for c in (f"s{i}" for i in range(200 * partitions)) if partition_for(c, partitions) == 0][:1000]
    n = min(args.events, 5_000)
    events = _events(n, "a", own)
    started = time.perf_counter()
    for event in events:
        store.append(0, [event])
    print(f"store, 1 event per commit        {n / (time.perf_counter() - started):10,.0f} events/s  ({url.split(':')[0]})")
    events = _events(args.events, "b", own)
    started = time.perf_counter()
    for i in range(0, len(events), 100):
        store.append(0, events[i:i + 100])
    store_batched = len(events) / (time.perf_counter() - started)
    print(f"store, 100 events per commit     {store_batched:10,.0f} events/s")
    store.close()

    bundle = train(synthetic_retail(n_customers=200, n_items=60, n_groups=3),
                   TrainParams(factors=8, iterations=3, evaluate=False, threads=1), progress=False)
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    try:
        # one owner process, fixed, holding all P partitions
        config = ServeConfig(partitions=partitions, owners=ScalingConfig(min_owners=1, max_owners=1),
                             store_url=url, snapshot_every_events=1_000_000)
        backend = start_backend(bundle, config)  # (placement, registry, keep-alive): held until stop_backend
        (owner,) = find_owners()
        events = _events(n, "c")
        started = time.perf_counter()
        for event in events:
            _check(ray.get(owner.track.remote({partition_for(event.customer_id, partitions): [event]})))
        print(f"owner, sequential calls          {n / (time.perf_counter() - started):10,.0f} events/s  "
              f"(1 owner, {partitions} partition{'s' if partitions != 1 else ''})")

        events = _events(args.events, "d")

        async def concurrent(callers: int) -> float:
            queue = list(events)
            started = time.perf_counter()

            async def caller():
                while queue:
                    event = queue.pop()
                    _check(await owner.track.remote({partition_for(event.customer_id, partitions): [event]}))
            await asyncio.gather(*[caller() for _ in range(callers)])
            return time.perf_counter() - started

        seconds = asyncio.run(concurrent(64))
        print(f"owner, 64 concurrent calls       {len(events) / seconds:10,.0f} events/s  (group commit, one transaction across partitions)")
        events = _events(args.events, "e")
        started = time.perf_counter()
        for reply in ray.get([owner.track.remote(_by_partition(events[i:i + 100], partitions))
                              for i in range(0, len(events), 100)]):
            _check(reply)
        print(f"owner, batches of 100            {len(events) / (time.perf_counter() - started):10,.0f} events/s  "
              "(grouped by partition)")
        stop_backend()
        del backend
        # the most clients first: the ratio is taken there (a throughput with cores left idle is
        # not the service's maximum); 8 clients as before; then batches that need no forward
        rates = _through_grpc(bundle, tmp, args.events, partitions,
                              [(args.clients, False), (8, False), (args.clients, True)])
        print(f"whole service / store's own batched commit rate: {rates[0] / store_batched:.3f}  "
              f"({args.clients} clients; 8 clients: {rates[1] / store_batched:.3f}; "
              f"batches of one owner's customers: {rates[2] / store_batched:.3f})")
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
