"""What recommendation ids cost an owner: a Recommend that remembers its list (engine/attribution.py)
against one that does not, and TrackEvents batches of impressions and clicks naming lists against the
same batches without ids; and the memory a remembered list takes.

    .venv/bin/python benchmarks/attribution_overhead.py [--requests 5000] [--k 10]

In-process (OwnerCore over 8 partitions and SQLite, the code the owner actor runs, no Ray hop), on a
synthetic shop (recommenders/loaders.py synthetic_retail: 2,000 customers, 500 items). Prints one line
per case and a JSON summary.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.partition_move import _owner  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    from engine.events import parse_event
    from engine.queries import RecommendQuery
    from recommenders.loaders import synthetic_retail
    from recommenders.runtime import ModelRuntime
    from recommenders.training import TrainParams, train

    bundle = train(synthetic_retail(n_customers=2000, n_items=500, n_groups=10, seed=1),
                   TrainParams(factors=32, iterations=8, threads=1), progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    customers = [f"c{n % 2000}" for n in range(args.requests)]
    out: dict = {}

    async def run(tmp: str) -> None:
        core = _owner("recsys-owner-0", f"sqlite:///{tmp}/bench.db", model, 8, 1_000_000)
        for p in range(8):
            await core.acquire(p)
        queries = [(RecommendQuery(c, "web", args.k, placement="home"), 0) for c in customers]
        for remember in (False, True, False, True):  # twice each, the second figures kept (warm)
            started = time.perf_counter()
            for start in range(0, len(queries), 32):
                core.recommend_many(queries[start:start + 32], remember)
            out[f"recommend_us_{'remembered' if remember else 'plain'}"] = round(
                (time.perf_counter() - started) / len(queries) * 1e6, 1)
        # memory of the remembered lists: a fresh set, measured
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for n in range(0, 5000, 50):  # the answers are dropped: what stays is the remembered lists
            core.recommend_many([(RecommendQuery(f"m{n + i}", "web", args.k), 0) for i in range(50)])
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        out["bytes_per_remembered_list"] = round(grown / 5000)
        # TrackEvents: impressions of each list's items and one click, with the id and without
        now = int(time.time() * 1000)
        for named in (False, True):
            batches = []
            for n, customer in enumerate(customers[:2000]):
                answer = core.recommend_many([(RecommendQuery(customer, "web", args.k, placement="home"), 0)])[0]
                attributes = {"recommendation_id": answer.recommendation_id} if named else {}
                events = [parse_event({"event_id": f"{named}-{n}-{i}", "customer_id": customer, "channel": "web",
                                       "event_type": "impression" if i else "click", "item_id": item.item_id,
                                       "attributes": attributes}, now) for i, item in enumerate(answer.items)]
                batches.append({core.partition_of(customer): events})
            started = time.perf_counter()
            events_sent = 0
            for groups in batches:
                await core.track(groups)
                events_sent += sum(len(v) for v in groups.values())
            out[f"track_us_per_event_{'named' if named else 'plain'}"] = round(
                (time.perf_counter() - started) / events_sent * 1e6, 1)

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(tmp))
    print(f"Recommend (k={args.k}): {out['recommend_us_plain']} us plain, {out['recommend_us_remembered']} us "
          f"remembering its list; {out['bytes_per_remembered_list']} bytes per remembered list")
    print(f"TrackEvents, one list's impressions + a click per call: {out['track_us_per_event_plain']} us/event "
          f"without ids, {out['track_us_per_event_named']} us/event credited")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
