"""How long a partition takes to move between owners, as a function of its customers and of the
events logged since its last snapshot.

    .venv/bin/python benchmarks/partition_move.py [--customers 100,1000,10000] [--since 0,1000,10000] [--store URL]

Two owners (actors/owner.py: OwnerCore, the code the owner actor runs, here without Ray, so the
figures are the move itself and not actor-call overhead, about a millisecond) share one store:

- a move (graceful): the old owner drains the partition, writes its snapshot and releases the
  lease; the new owner takes the lease (epoch + 1) and rebuilds from the snapshot. Measured for
  partitions of C customers (five events each).
- a take-over (the old owner died): the new owner takes the lease and rebuilds from the last
  snapshot plus the E events logged after it. Measured for E events since the snapshot.

Also, for the capacity model (docs/capacity.md): what one owner process does per second of CPU,
Recommend and durable TrackEvents, in-process (OwnerCore over 8 partitions, no Ray hop).

Prints one line per case (milliseconds, the release and acquire parts) and a JSON summary.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _owner(name: str, url: str, model, partitions: int, snapshot_every: int):
    from actors.owner import OwnerCore, OwnerSettings
    from actors.store import open_store

    store = open_store(url, partitions)
    pool = ThreadPoolExecutor(max_workers=1)

    async def io(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    return OwnerCore(name, OwnerSettings(store_url=url, partitions=partitions, snapshot_every=snapshot_every),
                     model, io, store)


def _events(customers: list[str], per_customer: int, tag: str):
    from engine.events import parse_event

    now = int(time.time() * 1000)
    return [parse_event({"event_id": f"{tag}-{c}-{k}", "customer_id": c, "event_type": ("view", "add_to_cart")[k % 2],
                         "item_id": f"i{(hash(c) + k) % 60:04d}", "channel": "web"}, now)
            for c in customers for k in range(per_customer)]


async def _fill(owner, partition: int, events, batch: int = 500) -> None:
    for start in range(0, len(events), batch):
        await owner.track({partition: events[start:start + batch]})


async def _case(url: str, model, customers: int, since: int, tag: str) -> dict:
    """One partition (P = 1) with ``customers`` customers in its snapshot and ``since`` events
    after it: a graceful move, then a take-over."""
    a = _owner("bench-owner-a", url, model, 1, snapshot_every=10**9)
    b = _owner("bench-owner-b", url, model, 1, snapshot_every=10**9)
    ids = [f"{tag}-c{n}" for n in range(customers)]
    await a.acquire(0)
    await _fill(a, 0, _events(ids, 5, f"{tag}s"))
    started = time.perf_counter()
    released = await a.release(0)
    mid = time.perf_counter()
    taken = await b.acquire(0)
    done = time.perf_counter()
    move = {"release_ms": round(1000 * (mid - started), 1), "acquire_ms": round(1000 * (done - mid), 1),
            "move_ms": round(1000 * (done - started), 1), "replayed": taken["replayed"]}
    # b now logs ``since`` events and "dies" (no release); a takes the partition back over
    per_customer = -(-since // customers)  # ceil: ``since`` events spread over the customers
    await _fill(b, 0, _events(ids, per_customer, f"{tag}t")[:since])
    started = time.perf_counter()
    again = await a.acquire(0)
    takeover = {"takeover_ms": round(1000 * (time.perf_counter() - started), 1), "replayed": again["replayed"]}
    for owner in (a, b):
        owner.store.close()
    return {"customers": customers, "since": since, "snapshot_customers": released["customers"], **move,
            "takeover": takeover}


async def _throughput(url: str, model, seconds: float = 5.0) -> dict:
    """Recommends and single-event TrackEvents calls one owner answers per second of CPU."""
    from engine.queries import RecommendQuery
    from engine.sharding import partition_for

    owner = _owner("bench-owner-t", url, model, 8, snapshot_every=10_000)
    for p in range(8):
        await owner.acquire(p)
    ids = [f"t-c{n}" for n in range(2000)]
    await asyncio.gather(*[owner.track({p: [e for e in _events(ids, 2, "tw") if partition_for(e.customer_id, 8) == p]})
                           for p in range(8)])
    out = {}
    started, cpu, n = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - started < seconds:
        batch = [(RecommendQuery(customer_id=ids[(n + i) % len(ids)], channel="web", k=10), 0) for i in range(16)]
        owner.recommend_many(batch)
        n += len(batch)
    out["recommend_per_cpu_s"] = round(n / (time.process_time() - cpu))
    started, cpu, n = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - started < seconds:
        # 64 concurrent single-event calls, as many clients would send them (group commit per partition)
        events = _events([ids[(n + i) % len(ids)] for i in range(64)], 1, f"tt{n}")
        await asyncio.gather(*[owner.track({partition_for(e.customer_id, 8): [e]}) for e in events])
        n += len(events)
    wall = time.perf_counter() - started
    out["track_events_per_s"] = round(n / wall)
    out["track_events_per_cpu_s"] = round(n / (time.process_time() - cpu))
    owner.store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", default="100,1000,10000")
    parser.add_argument("--since", default="0,1000,10000")
    parser.add_argument("--store", help="a store URL (default: a fresh SQLite file per case)")
    args = parser.parse_args()

    from recommenders.loaders import synthetic_retail
    from recommenders.runtime import ModelRuntime
    from recommenders.training import TrainParams, train

    bundle = train(synthetic_retail(n_customers=500, n_items=60, n_groups=3),
                   TrainParams(factors=8, iterations=5, evaluate=False, threads=1), progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    rows = []
    cases = [(c, 0) for c in map(int, args.customers.split(","))]
    cases += [(1000, s) for s in map(int, args.since.split(",")) if s]
    for n, (customers, since) in enumerate(cases):
        url = args.store or f"sqlite:///{tempfile.mkdtemp(prefix='recsys-move-')}/move.db"
        row = asyncio.run(_case(url, model, customers, since, f"k{n}"))
        rows.append(row)
        print(f"{customers:>6} customers, {since:>6} events since snapshot: move {row['move_ms']:>7.1f} ms "
              f"(release {row['release_ms']:.1f}, acquire {row['acquire_ms']:.1f}); take-over after a crash "
              f"{row['takeover']['takeover_ms']:>7.1f} ms replaying {row['takeover']['replayed']} events", flush=True)
    url = args.store or f"sqlite:///{tempfile.mkdtemp(prefix='recsys-move-')}/throughput.db"
    throughput = asyncio.run(_throughput(url, model))
    print(f"one owner, in-process: {throughput['recommend_per_cpu_s']} Recommends per CPU second; "
          f"{throughput['track_events_per_s']} single-event TrackEvents/s from 64 concurrent callers "
          f"({throughput['track_events_per_cpu_s']} per CPU second; fsync at every commit)")
    print(json.dumps({"store": (args.store or "sqlite (fresh file per case)").split("@")[-1], "cases": rows,
                      "owner_throughput": throughput}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
