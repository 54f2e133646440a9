"""Anonymous sessions: the next item of a guest basket, revealed one item at a time.

    .venv/bin/python benchmarks/session_next_item.py [--data-dir ../shared/data] [--cut 2011-10-01]
        [--baskets 300] [--max-reveals 30] [--k 20] [--seed 7]

Online Retail's guest checkouts (lines without a CustomerID; recommenders/loaders.py makes each
invoice its own guest) from --cut on are the test sessions: a basket's distinct items, in line
order, are revealed one by one as add_to_cart events of a new anonymous id (the live state a
storefront builds), and after each the top k is asked for; the next item of the basket is the
target (HR@k, MRR@k, averaged over every reveal). Everything before --cut (customers and guests)
trains the engine with its shipped parameters and the baselines, in the same run:

- popularity: the trained model's popularity order;
- last-item co-occurrence: the co-visitation neighbours of the last revealed item (the model's own
  item-item table);
- next-item transitions: how often item b came right after item a in a training basket;
- session-kNN (V-SKNN-like): the 100 training baskets most like the last 10 revealed items (cosine,
  the most recent item weighing most, each item's 500 most recent baskets looked at), their items
  scored by that similarity.

Items already revealed are never a target (a basket's items are distinct) and are left out of every
method's list. Prints one line per method and the number of reveals scored.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NEIGHBOURS = 100
RECENT_PER_ITEM = 500
WINDOW = 10


def _baskets(events) -> list[tuple[str, int, list[str]]]:
    """(invoice, time, distinct items in line order) per invoice."""
    ordered = events.assign(line=events["event_id"].str.rsplit("-", n=1).str[1].astype(int))
    ordered = ordered.sort_values(["timestamp_ms", "line"])
    out = []
    for invoice, lines in ordered.groupby("session_id", sort=False):
        out.append((str(invoice), int(lines["timestamp_ms"].iloc[0]), list(dict.fromkeys(lines["item_id"].astype(str)))))
    return out


class SessionKnn:
    def __init__(self, baskets: list[list[str]]):
        self.baskets = [set(b) for b in baskets]
        by_item: dict[str, list[int]] = defaultdict(list)
        for n, basket in enumerate(baskets):  # in time order: the last ones are the most recent
            for item in basket:
                by_item[item].append(n)
        self.by_item = {item: sessions[-RECENT_PER_ITEM:] for item, sessions in by_item.items()}

    def rank(self, revealed: list[str], k: int) -> list[str]:
        seen = set(revealed)
        # the last WINDOW items, the most recent weighing most (V-SKNN's linear decay)
        window = list(dict.fromkeys(reversed(revealed)))[:WINDOW]
        overlap: Counter = Counter()
        for position, item in enumerate(window):
            weight = 1.0 - position / len(window)
            for s in self.by_item.get(item, ()):
                overlap[s] += weight
        sims = sorted(((w / math.sqrt(len(self.baskets[s]) * len(window)), s) for s, w in overlap.items()),
                      reverse=True)[:NEIGHBOURS]
        scores: Counter = Counter()
        for sim, s in sims:
            for item in self.baskets[s]:
                if item not in seen:
                    scores[item] += sim
        return [item for item, _ in scores.most_common(k)]


def _top(scores: Counter, seen: set[str], fill: list[str], k: int) -> list[str]:
    out = [item for item, _ in scores.most_common(k + len(seen)) if item not in seen][:k]
    for item in fill:
        if len(out) >= k:
            break
        if item not in seen and item not in out:
            out.append(item)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    parser.add_argument("--cut", default="2011-10-01")
    parser.add_argument("--baskets", type=int, default=300, help="test guest baskets (sampled), 0: all")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-reveals", type=int, default=30,
                        help="score at most this many reveals per basket (guest baskets run to hundreds of lines)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import pandas as pd

    from engine.events import parse_event
    from engine.queries import RecommendQuery
    from engine.state import CustomerState, apply_event
    from recommenders.evaluation import shipped_ranking
    from recommenders.loaders import Dataset, load_online_retail
    from recommenders.recommend import neighbour_candidates, recommend
    from recommenders.runtime import ModelRuntime
    from recommenders.training import TrainParams, build_bundle, usable_events

    started = time.perf_counter()
    dataset = load_online_retail(Path(args.data_dir) / "online-retail" / "online_retail.csv.gz")
    events = usable_events(dataset)
    events = events[events["event_type"] == "purchase"]
    cut_ms = int(pd.Timestamp(args.cut).value // 1_000_000)
    train, test = events[events["timestamp_ms"] < cut_ms], events[events["timestamp_ms"] >= cut_ms]
    test = test[test["customer_id"].str.startswith("guest-")]
    sessions = [b for b in _baskets(test) if len(b[2]) >= 2]
    every = len(sessions)
    if args.baskets and len(sessions) > args.baskets:
        rng = np.random.default_rng(args.seed)
        sessions = [sessions[i] for i in sorted(rng.choice(len(sessions), args.baskets, replace=False))]
    bundle = build_bundle(Dataset(train, dataset.items, dataset.source), TrainParams(evaluate=False), progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    config = shipped_ranking()
    print(f"trained on {len(train):,} lines before {args.cut} in {time.perf_counter() - started:.0f} s; "
          f"{every} guest baskets of 2 items or more after it, {len(sessions)} scored", flush=True)

    training = [items for _, _, items in _baskets(train)]
    knn = SessionKnn(training)
    following: dict[str, Counter] = defaultdict(Counter)
    for items in training:
        for a, b in zip(items, items[1:]):
            following[a][b] += 1
    popular = [str(model.item_ids[i]) for i in model.popular_order[:200]]

    def last_item(revealed: list[str], k: int) -> list[str]:
        seeds = {model.item_index[revealed[-1]]: 1.0} if revealed[-1] in model.item_index else {}
        idx, scores = neighbour_candidates(model.covis_idx, model.covis_w, seeds) if seeds else ([], [])
        return _top(Counter({str(model.item_ids[i]): float(s) for i, s in zip(idx, scores)}), set(revealed), popular, k)

    methods = {
        "engine (as shipped, live state)": None,
        "popularity": lambda revealed, k: _top(Counter(), set(revealed), popular, k),
        "last-item co-occurrence": last_item,
        "next-item transitions": lambda revealed, k: _top(following.get(revealed[-1], Counter()), set(revealed),
                                                          popular, k),
        "session-kNN": lambda revealed, k: _top(Counter({i: 1.0 / (n + 1) for n, i in enumerate(knn.rank(revealed, k))}),
                                                set(revealed), popular, k),
    }
    hits = {name: [] for name in methods}
    ranks = {name: [] for name in methods}
    seconds = {name: 0.0 for name in methods}
    k = args.k
    for n, (invoice, when, items) in enumerate(sessions):
        anonymous = f"anon-{invoice}"
        state = CustomerState(anonymous)
        for step in range(min(len(items) - 1, args.max_reveals)):
            apply_event(state, parse_event({"event_id": f"s{invoice}-{step}", "customer_id": anonymous,
                                            "event_type": "add_to_cart", "item_id": items[step], "channel": "web",
                                            "timestamp_ms": when + step}, when + step + 1))
            revealed, target = items[:step + 1], items[step + 1]
            for name, method in methods.items():
                t = time.perf_counter()
                if method is None:
                    query = RecommendQuery(customer_id=anonymous, channel="web", k=k)
                    got = [i.item_id for i in recommend(model, state, query, config, when + step + 1).items
                           if i.item_id not in revealed][:k]
                else:
                    got = method(revealed, k)
                seconds[name] += time.perf_counter() - t
                position = got.index(target) + 1 if target in got else 0
                hits[name].append(1.0 if position else 0.0)
                ranks[name].append(1.0 / position if position else 0.0)
    reveals = len(hits["popularity"])
    for name in methods:
        print(f"{name:<34} HR@{k} {np.mean(hits[name]):.3f}  MRR@{k} {np.mean(ranks[name]):.3f}  "
              f"{1000 * seconds[name] / max(reveals, 1):.2f} ms per request")
    print(f"{reveals} reveals scored, {len(sessions)} baskets; {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
