"""Memory per live customer, as a partition holds them.

    .venv/bin/python benchmarks/memory_per_customer.py [--customers 1000000] [--events 4] [--hot 50000]

Feeds N synthetic customers a few events each (a view, an add-to-cart, a purchase, another view:
validated by engine.events.parse_event and applied by a partition's own code path,
CustomerShardLogic._apply (one partition, as an owner holds each of its partitions), into its
CustomerTable with --hot customers kept unpacked), then reports the growth of this process's
resident memory divided by N, and the snapshot bytes per customer.
Run once with --hot equal to --customers to see the cost of a customer that is never packed.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def main() -> int:
    from actors.shard import CustomerShardLogic
    from actors.store import SqliteEventStore
    from engine.config import RankingConfig
    from engine.events import parse_event
    from engine.rules import DAY_MS
    from recommenders.loaders import synthetic_retail
    from recommenders.runtime import ModelRuntime
    from recommenders.training import TrainParams, train

    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--hot", type=int, default=50_000, help="customers kept unpacked (hot_customers_per_partition)")
    args = parser.parse_args()
    bundle = train(synthetic_retail(n_customers=200, n_items=4000, n_groups=20), TrainParams(factors=16), progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    shard = CustomerShardLogic(0, model, RankingConfig(), SqliteEventStore(Path(tempfile.mkdtemp()) / "m.db"),
                               hot_customers=args.hot)
    kinds = ("view", "add_to_cart", "purchase", "view", "view", "add_to_cart")
    now = int(time.time() * 1000)
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for c in range(args.customers):
        customer = f"cust-{c:08d}"
        for e in range(args.events):
            event = parse_event({"event_id": f"{customer}-{e}", "customer_id": customer,
                                 "event_type": kinds[e % len(kinds)], "item_id": f"i{(c * 7 + e * 13) % 4000:04d}",
                                 "channel": ("web", "app", "pos")[e % 3], "session_id": f"s-{c}-{e // 3}",
                                 "price": 2.95, "timestamp_ms": now - DAY_MS + e * 1000}, now)
            shard._apply(event)
    seconds = time.perf_counter() - started
    gc.collect()
    grown = rss_bytes() - before
    _, payload = shard.snapshot_payload()
    print(f"{args.customers:,} customers x {args.events} events, {shard.customers.hot_count:,} unpacked: "
          f"{grown / args.customers:,.0f} bytes of memory per customer ({grown / 2**30:.2f} GiB in all; fed in "
          f"{seconds:.1f} s); snapshot {len(payload) / args.customers:,.0f} bytes per customer (zlib level 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
