"""Anonymous sessions: the next item of a guest basket, revealed one item at a time.

Online Retail's guest checkouts (lines without a CustomerID; recommenders/loaders.py makes each
invoice its own guest) are the sessions: a basket's distinct items, in line order, are revealed one
by one as add_to_cart events of a new anonymous id (the live state a storefront builds), and after
each the top k is asked for; the next item of the basket is the target (HR@k, MRR@k, averaged over
every reveal). Everything before the cut (customers and guests) trains the engine and the
baselines:

- popularity: the trained model's popularity order;
- last-item co-occurrence: the co-visitation neighbours of the last revealed item (the model's own
  item-item table);
- next-item transitions: how often item b came right after item a in a training basket (counted
  here, independently of the engine's table);
- session-kNN (V-SKNN-like): the 100 training baskets most like the last 10 revealed items (cosine,
  the most recent item weighing most, each item's 500 most recent baskets looked at), their items
  scored by that similarity.

Items already revealed are never a target (a basket's items are distinct) and are left out of every
method's list. `recsys evaluate` chooses the engine's blend for visitors it has no history of
(``RankingConfig.anonymous_weights``) on the month before the cut and records the test figures;
``benchmarks/session_next_item.py`` prints them for any cut.
"""
from __future__ import annotations

import itertools
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from engine.config import BlendWeights, RankingConfig, anonymous_blend_of
from engine.events import parse_event
from engine.queries import RecommendQuery
from engine.state import CustomerState, apply_event
from recommenders.loaders import Dataset
from recommenders.recommend import neighbour_candidates, recommend
from recommenders.runtime import ModelRuntime

NEIGHBOURS = 100
RECENT_PER_ITEM = 500
WINDOW = 10
ENGINE_ROW = "engine (as shipped, live state)"


def guest_baskets(events: pd.DataFrame) -> list[tuple[str, int, list[str]]]:
    """(invoice, time, distinct items in line order) per invoice, in time order."""
    ordered = events.assign(line=events["event_id"].str.rsplit("-", n=1).str[1].astype(int))
    ordered = ordered.sort_values(["timestamp_ms", "line"])
    out = []
    for invoice, lines in ordered.groupby("session_id", sort=False):
        out.append((str(invoice), int(lines["timestamp_ms"].iloc[0]),
                    list(dict.fromkeys(lines["item_id"].astype(str)))))
    return out


@dataclass
class SessionSplit:
    train: pd.DataFrame
    sessions: list[tuple[str, int, list[str]]]  # the scored guest baskets
    every: int                                  # guest baskets of 2+ items in the window


def session_split(dataset: Dataset, cut: str, until: str | None, baskets: int, seed: int) -> SessionSplit:
    """Purchases before ``cut`` train; guest baskets of two items or more from ``cut`` (up to
    ``until``) are the sessions, ``baskets`` of them sampled (0: all)."""
    from recommenders.training import usable_events

    events = usable_events(dataset)
    events = events[events["event_type"] == "purchase"]
    cut_ms = int(pd.Timestamp(cut).value // 1_000_000)
    train, test = events[events["timestamp_ms"] < cut_ms], events[events["timestamp_ms"] >= cut_ms]
    test = test[test["customer_id"].str.startswith("guest-")]
    if until:
        test = test[test["timestamp_ms"] < int(pd.Timestamp(until).value // 1_000_000)]
    sessions = [b for b in guest_baskets(test) if len(b[2]) >= 2]
    every = len(sessions)
    if baskets and len(sessions) > baskets:
        rng = np.random.default_rng(seed)
        sessions = [sessions[i] for i in sorted(rng.choice(len(sessions), baskets, replace=False))]
    return SessionSplit(train, sessions, every)


class SessionKnn:
    """The session-kNN baseline (kept apart from the engine's own source on purpose: a reference)."""

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


def baselines(model: ModelRuntime, train: pd.DataFrame) -> dict[str, Callable[[list[str], int], list[str]]]:
    training = [items for _, _, items in guest_baskets(train)]
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

    return {
        "popularity": lambda revealed, k: _top(Counter(), set(revealed), popular, k),
        "last-item co-occurrence": last_item,
        "next-item transitions": lambda revealed, k: _top(following.get(revealed[-1], Counter()), set(revealed),
                                                          popular, k),
        "session-kNN": lambda revealed, k: _top(Counter({i: 1.0 / (n + 1) for n, i in enumerate(knn.rank(revealed, k))}),
                                                set(revealed), popular, k),
    }


def replay_sessions(model: ModelRuntime, sessions, methods: dict[str, RankingConfig | Callable], k: int,
                    max_reveals: int) -> dict:
    """HR@k and MRR@k of each method over every reveal. A method is a RankingConfig (the engine's
    pipeline over the anonymous id's live state) or a baseline function (revealed, k) -> items."""
    hits = {name: [] for name in methods}
    ranks = {name: [] for name in methods}
    seconds = {name: 0.0 for name in methods}
    for invoice, when, items in sessions:
        anonymous = f"anon-{invoice}"
        state = CustomerState(anonymous)
        for step in range(min(len(items) - 1, max_reveals)):
            apply_event(state, parse_event({"event_id": f"s{invoice}-{step}", "customer_id": anonymous,
                                            "event_type": "add_to_cart", "item_id": items[step], "channel": "web",
                                            "timestamp_ms": when + step}, when + step + 1))
            revealed, target = items[:step + 1], items[step + 1]
            for name, method in methods.items():
                t = time.perf_counter()
                if isinstance(method, RankingConfig):
                    query = RecommendQuery(customer_id=anonymous, channel="web", k=k)
                    got = [i.item_id for i in recommend(model, state, query, method, when + step + 1).items
                           if i.item_id not in revealed][:k]
                else:
                    got = method(revealed, k)
                seconds[name] += time.perf_counter() - t
                position = got.index(target) + 1 if target in got else 0
                hits[name].append(1.0 if position else 0.0)
                ranks[name].append(1.0 / position if position else 0.0)
    n = len(next(iter(hits.values()))) if hits else 0
    return {"reveals": n, "methods": {name: {f"hr@{k}": float(np.mean(hits[name])) if n else 0.0,
                                             f"mrr@{k}": float(np.mean(ranks[name])) if n else 0.0,
                                             "ms_per_request": 1000 * seconds[name] / max(n, 1)}
                                      for name in methods}}


# The blends tried for visitors unknown to the model (engine.config.anonymous_blend_of over the
# shipped next-basket blend): how much the other sources count against transitions, and among them
# the live co-visitation, the similar sessions and ALS (folded in from the session).
ANONYMOUS_GRID = {"transitions_ratio": (8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0), "session": (0.25, 0.5, 1.0),
                  "similar_sessions": (0.0, 0.5), "als": (0.0, 0.25)}


def anonymous_grid(base: BlendWeights) -> list[tuple[dict, BlendWeights]]:
    return [(choice, anonymous_blend_of(base, **choice))
            for choice in (dict(zip(ANONYMOUS_GRID, values)) for values in itertools.product(*ANONYMOUS_GRID.values()))]


def _score(metrics: dict, k: int) -> float:
    return metrics[f"hr@{k}"] + metrics[f"mrr@{k}"]


def evaluate_sessions(dataset: Dataset, params, shipped: RankingConfig, cut: str = "2011-10-01",
                      baskets: int = 300, max_reveals: int = 30, k: int = 20, seed: int = 7,
                      grid: Iterable[tuple[dict, BlendWeights]] | None = None, log: Callable[[str], None] = print) -> dict:
    """On the month before ``cut`` (trained on what came before it), the anonymous blend with the best
    HR@k + MRR@k over ``grid``; then, trained on everything before ``cut``, the shipped engine and
    the baselines on the guest baskets after it."""
    from recommenders.evaluation import trained_as_shipped
    from recommenders.training import build_bundle

    started = time.perf_counter()
    valid_cut = str((pd.Timestamp(cut) - pd.DateOffset(months=1)).date())
    valid = session_split(dataset, valid_cut, cut, 0, seed)
    bundle = build_bundle(Dataset(valid.train, dataset.items, dataset.source), params, progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    tried = []
    for choice, weights in (list(grid) if grid is not None else anonymous_grid(shipped.weights)):
        config = replace(shipped, anonymous_weights=weights)
        metrics = replay_sessions(model, valid.sessions, {"candidate": config}, k, max_reveals)["methods"]["candidate"]
        tried.append((choice, weights, metrics))
    # a tie keeps the shipped blend (at large ratios transitions outrank everything else alike)
    choice, chosen, chosen_metrics = max(tried, key=lambda t: (_score(t[2], k), t[1] == shipped.anonymous_weights))
    shipped_metrics = replay_sessions(model, valid.sessions, {"shipped": shipped}, k, max_reveals)["methods"]["shipped"]
    log(f"sessions chosen on validation ({valid_cut}..{cut}, {valid.every} guest baskets), {len(tried)} blends: "
        f"{choice} HR+MRR {_score(chosen_metrics, k):.4f}; shipped {_score(shipped_metrics, k):.4f}")
    test = session_split(dataset, cut, None, baskets, seed)
    # what ships: trained by `recsys train` on everything before the cut (fitted to it), defaults over it
    model, engine, fitted = trained_as_shipped(Dataset(test.train, dataset.items, dataset.source), params)
    out = replay_sessions(model, test.sessions, {ENGINE_ROW: engine, **baselines(model, test.train)}, k, max_reveals)
    for name, m in out["methods"].items():
        log(f"sessions {name:<34} HR@{k} {m[f'hr@{k}']:.3f}  MRR@{k} {m[f'mrr@{k}']:.3f}  {m['ms_per_request']:.2f} ms")
    return {"protocol": f"UCI Online Retail guest baskets (no CustomerID) from {cut}, {len(test.sessions)} of "
                        f"{test.every} baskets of 2+ items sampled (seed {seed}); each basket's distinct items "
                        f"revealed one by one in line order as add_to_cart events of a new anonymous id, at most "
                        f"{max_reveals} per basket; after each the top {k} (revealed items left out) is scored "
                        f"against the next item. Trained on every purchase before {cut}.",
            "k": k, "reveals": out["reveals"], "baskets": len(test.sessions), "methods": out["methods"],
            "engine_row": ENGINE_ROW, "engine_anonymous_weights": engine.anonymous_weights.as_dict(),
            "shipped_anonymous_weights": shipped.anonymous_weights.as_dict(), "fitted": fitted,
            "chosen_anonymous_weights": chosen.as_dict(), "chosen_anonymous_choice": choice,
            "validation_tried": [{"choice": c, "validation": _score(m, k)} for c, _w, m in tried],
            "validation_chosen": _score(chosen_metrics, k),
            "validation_shipped": _score(shipped_metrics, k), "validation_baskets": valid.every,
            "blends_tried": len(tried), "shipped_is_chosen": chosen == shipped.anonymous_weights,
            "run": {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - started)}}
