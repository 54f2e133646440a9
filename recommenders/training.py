"""Training: events -> a model bundle (ALS + FAISS, co-visitation, popularity, histories).

    bundle = train(dataset, TrainParams())
    save_bundle(bundle, "models")

The bundle's manifest records an offline check made here: the same pipeline is trained on all
but the last ``holdout_fraction`` of the time range and scored (HR@10, Recall@10) on what
known customers bought in that last stretch, next to a popularity baseline.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from engine.config import RankingConfig, fitted_ranking
from engine.events import EVENT_WEIGHTS
from engine.rules import DAY_MS
from recommenders.bundle import ModelBundle
from recommenders.index import ItemIndex
from recommenders.item_item import empty_neighbours, fit_ease, top_neighbours, top_per_row
from recommenders.loaders import Dataset
from recommenders.runtime import ModelRuntime, confidence
from recommenders.sessions import session_arrays

_CONSUMED = ("purchase", "rate")


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters; every one is recorded in the bundle's manifest."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    seed: int = 42
    covis_neighbours: int = 50
    # EASE item-item model (skipped above ease_max_items: it is dense in the catalogue size)
    ease_regularization: float = 500.0
    # 0: all of a catalogue of up to 2,000 items (EASE_LIST_ENTRIES: MovieLens's 1,681), else 200
    ease_neighbours: int = 0
    ease_max_items: int = 20_000
    max_basket_items: int = 100
    popularity_half_life_days: float = 30.0
    # Session models (recommenders/sessions.py): next-item transitions within this many places,
    # kept for the top `transition_neighbours` per item; similar-sessions lookups over the latest
    # `session_knn_max_sessions` sessions, each item's `sessions_per_item` most recent ones.
    transition_window: int = 3
    transition_neighbours: int = 50
    sessions_per_item: int = 500
    session_knn_max_sessions: int = 500_000
    holdout_fraction: float = 0.1
    eval_customers: int = 2000
    evaluate: bool = True
    # fit the engine to the data on the holdout (recommenders/fitting.py); needs `evaluate`
    fit: bool = True
    # parameters the caller set (`recsys train --factors ...`): fitting leaves them as given
    fixed: tuple[str, ...] = ()
    threads: int = 0


@dataclass(frozen=True)
class Interactions:
    """Aggregated (customer, item) interactions in index space."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    matrix: sp.csr_matrix            # summed event weights
    last_purchase_ms: sp.csr_matrix  # same pattern, ms of last purchase (0 = never bought)
    last_ms: sp.csr_matrix           # same pattern, ms of last interaction


def fingerprint(events: pd.DataFrame) -> str:
    """Order-independent hash of the events a model was trained on."""
    hashed = pd.util.hash_pandas_object(
        events[["customer_id", "item_id", "event_type", "timestamp_ms"]], index=False).to_numpy()
    return hashlib.sha256(np.sort(hashed).tobytes()).hexdigest()


def usable_events(dataset: Dataset) -> pd.DataFrame:
    """Events that say something positive about taste, on recommendable items only."""
    events = dataset.events
    recommendable = set(dataset.items.loc[dataset.items["recommendable"], "item_id"])
    weight = events["event_type"].map(EVENT_WEIGHTS).fillna(0.0)
    keep = (weight > 0) & events["item_id"].isin(recommendable)
    return events[keep].assign(weight=weight[keep])


def aggregate(events: pd.DataFrame, item_ids: np.ndarray | None = None) -> Interactions:
    if item_ids is None:
        item_ids = np.sort(events["item_id"].unique()).astype(str)
    user_ids = np.sort(events["customer_id"].unique()).astype(str)
    bought = events["event_type"].isin(_CONSUMED)
    frame = pd.DataFrame({
        "u": np.searchsorted(user_ids, events["customer_id"].to_numpy().astype(str)),
        "i": np.searchsorted(item_ids, events["item_id"].to_numpy().astype(str)),
        "w": events["weight"].to_numpy(),
        "t": events["timestamp_ms"].to_numpy(),
        "p": np.where(bought, events["timestamp_ms"].to_numpy(), 0),
    })
    grouped = frame.groupby(["u", "i"], sort=True).agg(w=("w", "sum"), t=("t", "max"), p=("p", "max")).reset_index()
    shape = (len(user_ids), len(item_ids))
    rows, cols = grouped["u"].to_numpy(), grouped["i"].to_numpy()

    def csr(values) -> sp.csr_matrix:
        return sp.csr_matrix((values, (rows, cols)), shape=shape)

    return Interactions(user_ids, item_ids, csr(grouped["w"].to_numpy(np.float32)),
                        csr(grouped["p"].to_numpy(np.int64)), csr(grouped["t"].to_numpy(np.int64)))


# A catalogue whose whole item x item model fits in this many entries (8 bytes each: 32 MB) keeps
# every item's neighbours; a larger one the EASE_MIN_NEIGHBOURS strongest. The weights past the first
# 200 of an item still order its neighbours on a small catalogue: MovieLens's EASE alone, nDCG@10 on
# one seed of `recsys evaluate`, 0.479 with 200 per film and 0.482 with all.
EASE_LIST_ENTRIES = 4_000_000
EASE_MIN_NEIGHBOURS = 200


def ease_neighbours(params: TrainParams, n_items: int) -> int:
    """Neighbours kept per item: ``params.ease_neighbours``, or with 0 all of a small catalogue."""
    if params.ease_neighbours:
        return params.ease_neighbours
    return max(n_items - 1, 1) if n_items * n_items <= EASE_LIST_ENTRIES else EASE_MIN_NEIGHBOURS


def fit_als(matrix: sp.csr_matrix, params: TrainParams, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    weighted = matrix.copy()
    weighted.data = confidence(weighted.data, params.alpha).astype(np.float32)
    # implicit runs its own threads; BLAS threads on top of them only fight for the cores
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=params.factors, regularization=params.regularization,
                                        alpha=1.0, iterations=params.iterations, random_state=params.seed,
                                        num_threads=params.threads)
        model.fit(weighted, show_progress=progress)
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32))


def covisitation(events: pd.DataFrame, item_ids: np.ndarray, params: TrainParams,
                 progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-M co-occurring items per item over baskets/sessions, cosine-normalised."""
    session = events["session_id"].astype(str)
    day = (events["timestamp_ms"] // DAY_MS).astype(str)
    session = session.where(session != "", events["customer_id"].astype(str) + "@" + day)
    basket_codes, basket_index = np.unique(session.to_numpy(), return_inverse=True)
    items = np.searchsorted(item_ids, events["item_id"].to_numpy().astype(str))
    b = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (basket_index, items)),
                      shape=(len(basket_codes), len(item_ids)))
    b.data[:] = 1.0
    b.sum_duplicates()
    b.data[:] = 1.0
    size = np.asarray(b.sum(axis=1)).ravel()
    # one-item baskets say nothing about pairs; huge baskets (wholesale restocks) say little
    usable = (size >= 2) & (size <= params.max_basket_items)
    row_weight = np.where(usable, 1.0 / np.log2(1.0 + size), 0.0).astype(np.float32)
    c = (b.T @ sp.diags(row_weight) @ b).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    counts = np.asarray((b.T @ sp.diags(row_weight)).sum(axis=1)).ravel()
    norm = np.sqrt(np.maximum(counts, 1e-9))
    c = sp.diags(1.0 / norm) @ c @ sp.diags(1.0 / norm)
    return top_per_row(c.tocsr(), params.covis_neighbours, progress, "co-visitation")


def recency_decay(age_ms, half_life_days: float):
    """0.5 per ``half_life_days`` of age; a half-life of 0 is no decay (plain counts)."""
    if half_life_days <= 0:
        return np.ones_like(np.asarray(age_ms, dtype=np.float64))
    return 0.5 ** (np.asarray(age_ms, dtype=np.float64) / DAY_MS / half_life_days)


def popularity(inter: Interactions, params: TrainParams, now_ms: int) -> np.ndarray:
    """Customers per item, each weighted by how recently they touched it (half-life decay)."""
    last = inter.last_ms.tocoo()
    decay = recency_decay(now_ms - last.data, params.popularity_half_life_days)
    return np.bincount(last.col, weights=decay, minlength=len(inter.item_ids)).astype(np.float32)


# Trending lists are kept for the countries and channels with at least this many events, at most
# MAX_TREND_GROUPS of them, and only for catalogues up to MAX_TREND_ITEMS (a dense row each).
MIN_TREND_EVENTS = 1_000
MAX_TREND_GROUPS = 40
MAX_TREND_ITEMS = 200_000


def trending(events: pd.DataFrame, item_ids: np.ndarray, params: TrainParams, now_ms: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per country and per channel: customers per item, each weighted by how recently (half-life
    decay, as ``popularity``) they touched it there. Returns (keys "country:X" / "channel:Y",
    float32 [groups, items])."""
    empty = (np.zeros(0, dtype=str), np.zeros((0, len(item_ids)), dtype=np.float32))
    if len(item_ids) > MAX_TREND_ITEMS:
        return empty
    index = pd.Series(np.arange(len(item_ids)), index=item_ids)
    keys, rows = [], []
    for column in ("country", "channel"):
        if column not in events.columns:
            continue
        counts = events[column].value_counts()
        for group in counts.index[counts >= MIN_TREND_EVENTS][:MAX_TREND_GROUPS]:
            if not group:
                continue
            mine = events.loc[events[column] == group]
            last = mine.groupby(["customer_id", "item_id"])["timestamp_ms"].max().reset_index()
            col = index.reindex(last["item_id"]).to_numpy()
            keep = ~np.isnan(col)
            decay = recency_decay(now_ms - last["timestamp_ms"].to_numpy()[keep], params.popularity_half_life_days)
            rows.append(np.bincount(col[keep].astype(np.int64), weights=decay, minlength=len(item_ids)))
            keys.append(f"{column}:{group}")
    if not keys:
        return empty
    return np.asarray(keys).astype(str), np.vstack(rows).astype(np.float32)


# An item needs this many observed repurchase intervals for a cycle of its own.
MIN_CYCLE_OBSERVATIONS = 5


def repurchase_cycles(events: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """Per item, the median days between one customer's purchases of it (on distinct days), learnt
    from everyone who bought it more than once; items with too few repeats get the median over all
    items, and NaN only when the data has no repeat purchase at all."""
    bought = events.loc[events["event_type"] == "purchase", ["customer_id", "item_id", "timestamp_ms"]].copy()
    bought["day"] = bought["timestamp_ms"] // DAY_MS
    days = bought.drop_duplicates(["customer_id", "item_id", "day"]).sort_values(["customer_id", "item_id", "day"])
    gaps = days.groupby(["customer_id", "item_id"])["day"].diff().dropna()
    if gaps.empty:
        return np.full(len(item_ids), np.nan, dtype=np.float32)
    per_item = gaps.groupby(days.loc[gaps.index, "item_id"]).agg(["median", "size"])
    per_item = per_item.loc[per_item["size"] >= MIN_CYCLE_OBSERVATIONS, "median"]
    overall = float(gaps.median())
    return pd.Series(item_ids).map(per_item).fillna(overall).to_numpy(dtype=np.float32)


def customer_summaries(events: pd.DataFrame, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per trained customer: orders (distinct purchase sessions), spend, last purchase (ms, 0 = none):
    what the offer segments need for customers whose history is in the model, not in live state."""
    bought = events.loc[events["event_type"] == "purchase"].copy()
    bought["spend"] = (bought["quantity"] * bought["price"]).fillna(0.0)
    order = bought["session_id"].where(bought["session_id"].astype(str) != "", bought["event_id"])
    per = bought.assign(order=order).groupby("customer_id").agg(
        orders=("order", "nunique"), spend=("spend", "sum"), last=("timestamp_ms", "max"))
    per = per.reindex(user_ids)
    return (per["orders"].fillna(0).to_numpy(dtype=np.int32), per["spend"].fillna(0.0).to_numpy(dtype=np.float32),
            per["last"].fillna(0).to_numpy(dtype=np.int64))


def item_prices(events: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    priced = events[events["price"].notna() & (events["price"] > 0)]
    median = priced.groupby("item_id")["price"].median()
    return pd.Series(item_ids).map(median).to_numpy(dtype=np.float32, na_value=np.nan)


def item_categories(items: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """Category per trained item ("" where the data has none)."""
    if "category" not in items.columns:
        return np.full(len(item_ids), "", dtype=str).astype(str)
    lookup = items.set_index("item_id")["category"]
    return pd.Series(item_ids).map(lookup).fillna("").to_numpy().astype(str)


def _version(fp: str) -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + fp[:8]


def build_bundle(dataset: Dataset, params: TrainParams, progress: bool = True) -> ModelBundle:
    """Train every model on ``dataset`` (no offline evaluation) and assemble the bundle."""
    started = time.perf_counter()
    events = usable_events(dataset)
    if events.empty:
        from engine.errors import InvalidArgument
        raise InvalidArgument("no usable events to train on (need purchases, carts, views or ratings)")
    inter = aggregate(events)
    now_ms = int(events["timestamp_ms"].max())
    user_factors, item_factors = fit_als(inter.matrix, params, progress)
    covis_idx, covis_w = covisitation(events, inter.item_ids, params, progress)
    if len(inter.item_ids) <= params.ease_max_items:
        ii_idx, ii_w = top_neighbours(fit_ease(inter.matrix, params.ease_regularization),
                                      ease_neighbours(params, len(inter.item_ids)))
    else:
        ii_idx, ii_w = empty_neighbours(len(inter.item_ids))
    names = dataset.items.set_index("item_id")["name"]
    hist = inter.matrix
    hist_last = inter.last_purchase_ms
    fp = fingerprint(events)
    trend_keys, trend_pop = trending(events, inter.item_ids, params, now_ms)
    user_orders, user_spend, user_last_purchase = customer_summaries(events, inter.user_ids)
    arrays = {
        "user_orders": user_orders,
        "user_spend": user_spend,
        "user_last_purchase_ms": user_last_purchase,
        "trend_keys": trend_keys,
        "trend_pop": trend_pop,
        "item_ids": inter.item_ids.astype(str),
        "item_names": pd.Series(inter.item_ids).map(names).fillna("").to_numpy().astype(str),
        "item_category": item_categories(dataset.items, inter.item_ids),
        "item_factors": item_factors,
        "item_price": item_prices(events, inter.item_ids),
        "repurchase_cycle_days": repurchase_cycles(events, inter.item_ids),
        "recommendable": np.ones(len(inter.item_ids), dtype=bool),
        "popularity": popularity(inter, params, now_ms),
        "covis_idx": covis_idx,
        "covis_w": covis_w,
        "ii_idx": ii_idx,
        "ii_w": ii_w,
        "user_ids": inter.user_ids.astype(str),
        "user_factors": user_factors,
        "hist_indptr": hist.indptr.astype(np.int64),
        "hist_items": hist.indices.astype(np.int32),
        "hist_weight": hist.data.astype(np.float32),
        "hist_last_purchase_ms": hist_last.data.astype(np.int64),
        "faiss_index": ItemIndex.build(item_factors).to_bytes(),
        **session_arrays(events, inter.item_ids, inter.user_ids, params.transition_window,
                         params.transition_neighbours, params.sessions_per_item, params.session_knn_max_sessions,
                         params.max_basket_items),
    }
    if not np.array_equal(hist.indices, hist_last.indices):
        raise AssertionError("interaction matrices lost alignment")
    manifest = {
        "version": _version(fp),
        "created_at": datetime.now(timezone.utc).isoformat(),
        "source": dataset.source,
        "data_fingerprint": fp,
        "params": asdict(params),
        "counts": {"events": int(len(events)), "customers": int(len(inter.user_ids)),
                   "items": int(len(inter.item_ids)), "interactions": int(hist.nnz),
                   "data_end_ms": now_ms},
        "training_seconds": round(time.perf_counter() - started, 3),
    }
    return ModelBundle(manifest, arrays)


# The offline check means something only over this many customers; below it the manifest says so
# and the promotion guard refuses the bundle unless forced (recommenders/promotion.py).
MIN_CHECK_CUSTOMERS = 200


def _truth(future: pd.DataFrame, model: ModelRuntime) -> pd.Series:
    future = future[future["event_type"].isin(_CONSUMED) & future["customer_id"].isin(model.user_index)
                    & future["item_id"].isin(model.item_index)]
    return future.groupby("customer_id")["item_id"].agg(lambda s: set(s))


# A log whose median customer's consumed events span less than this was entered in one sitting (a
# ratings log: 68 % of MovieLens-100K's users rated everything within a day, half the ratings share
# their second with another of the same user): the order of a customer's events is the order the
# site showed them (MovieLens's first ratings are of films twice as popular as its last), not what the
# customer went on to do, so a leave-last-out split grades the presentation order.
ONE_SITTING_MS = DAY_MS


def _holdout_split(dataset: Dataset, params: TrainParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, str]:
    """(past events, future events, each customer's cut in ms, protocol). A cut in time over the
    whole data first: the last ``holdout_fraction`` of the events. When that leaves fewer than
    MIN_CHECK_CUSTOMERS customers with a past and a future (a log where each customer came for a
    few days), each customer's own ``holdout_fraction`` of consumed events instead (at least one, for
    customers with two or more; other customers' later events stay in the past: the check asks
    whether the model knows each customer): their last ones when customers' events are spread in
    time, a seeded random share when the log was entered in one sitting (``ONE_SITTING_MS``), where
    the order says nothing about what came next. A customer is asked at the time of their last
    event before the held-out ones (random: their last event)."""
    if not dataset.events.index.is_unique:  # the held-out rows are picked by label
        dataset = Dataset(dataset.events.reset_index(drop=True), dataset.items, dataset.source)
    events = dataset.events
    cut = int(np.quantile(events["timestamp_ms"], 1.0 - params.holdout_fraction))
    past, future = events[events["timestamp_ms"] < cut], events[events["timestamp_ms"] >= cut]
    consumed = usable_events(Dataset(future, dataset.items, dataset.source))
    consumed = consumed[consumed["event_type"].isin(_CONSUMED)]
    with_both = set(consumed["customer_id"]) & set(past["customer_id"])
    if len(with_both) >= MIN_CHECK_CUSTOMERS:
        cuts = pd.Series(cut, index=sorted(with_both))
        return past, future, cuts, (f"temporal holdout: the last {params.holdout_fraction:.0%} of the events in time, "
                                    "customers with events before it, consumed items")
    bought = usable_events(dataset)
    bought = bought[bought["event_type"].isin(_CONSUMED)].sort_values(["customer_id", "timestamp_ms"], kind="stable")
    by_customer = bought.groupby("customer_id")["timestamp_ms"]
    size = by_customer.transform("size")
    held = np.maximum(1, np.ceil(size * params.holdout_fraction)).astype(int)
    spans = (by_customer.max() - by_customer.min())[by_customer.size() >= 2]
    median_span = float(spans.median()) if len(spans) else 0.0
    why = f"the cut in time over all customers left fewer than {MIN_CHECK_CUSTOMERS}"
    if median_span < ONE_SITTING_MS:
        order = pd.Series(np.random.default_rng(params.seed).random(len(bought)), index=bought.index)
        rank = order.groupby(bought["customer_id"]).rank(method="first")
        held_out = bought[(size >= 2) & (rank <= held)]
        later = events.index.isin(held_out.index)
        cuts = events[~later].groupby("customer_id")["timestamp_ms"].max().reindex(held_out["customer_id"].unique())
        return events[~later], events[later], cuts.astype(np.int64), (
            f"per-customer random holdout: a random {params.holdout_fraction:.0%} of each customer's consumed events "
            f"(at least one; {why}, and the median customer's events span {median_span / 3_600_000:.1f} h, "
            "a log entered in one sitting whose order is not what came next), consumed items")
    rank_from_end = bought.groupby("customer_id").cumcount(ascending=False)
    held_out = bought[(size >= 2) & (rank_from_end < held)]
    cuts = held_out.groupby("customer_id")["timestamp_ms"].min()
    customer_cut = events["customer_id"].map(cuts)
    later = customer_cut.notna() & (events["timestamp_ms"] >= customer_cut)
    return events[~later], events[later], cuts, (
        f"per-customer temporal holdout: each customer's last {params.holdout_fraction:.0%} of consumed events "
        f"(at least one; {why}), consumed items")


def holdout_metrics(dataset: Dataset, params: TrainParams, progress: bool = True, k: int = 10) -> tuple[dict, dict]:
    """Train on the past, fit the engine to the data on half of the held-out customers
    (recommenders/fitting.py) and score the future of the other half (see module doc and
    ``_holdout_split``) with the fitted configuration, no request filter. Returns (the check, the
    ``fitted`` record)."""
    from recommenders import fitting

    past, future, cuts, protocol = _holdout_split(dataset, params)
    past_data = Dataset(past, dataset.items, dataset.source)
    bundle = build_bundle(past_data, replace(params, evaluate=False), progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    truth = _truth(usable_events(Dataset(future, dataset.items, dataset.source)), model)
    truth = truth[truth.index.isin(cuts.index)]
    seen = {c: {str(model.item_ids[i]) for i in model.history(model.user_index[c])[0]} for c in truth.index}
    pairs = sum(len(v) for v in truth)
    repeat_share = sum(len(truth[c] & seen[c]) for c in truth.index) / max(pairs, 1)
    to_fit, customers = fitting.check_customers(truth.index.to_numpy(), params.seed, params.eval_customers,
                                                MIN_CHECK_CUSTOMERS)
    fitted: dict = {"skipped": (f"fewer than {2 * MIN_CHECK_CUSTOMERS} held-out customers: too few to choose on "
                                "one half and check on the other; the shipped defaults serve")}
    if params.fit and len(to_fit):
        events = usable_events(past_data)
        inter = aggregate(events)
        if not np.array_equal(inter.item_ids.astype(str), bundle.arrays["item_ids"]):
            raise AssertionError("the past's interactions lost alignment with its bundle")
        now_ms = int(events["timestamp_ms"].max())
        variants = fitting._Variants(bundle, inter.matrix, params, fit_als, lambda p: popularity(inter, p, now_ms))
        log = (lambda line: tqdm.write(line)) if progress else None
        # what the caller set (the CLI's flags, or a value other than the default) is not searched
        defaults = TrainParams()
        fixed = frozenset(params.fixed) | {name for name in ("factors", "regularization", "popularity_half_life_days")
                                           if getattr(params, name) != getattr(defaults, name)}
        fitted, model = fitting.fit(variants, to_fit, truth, cuts, k, fixed, log)
        fitted["protocol"] = protocol + ", half of its customers (the check is on the other half)"
    elif not params.fit:
        fitted = {"skipped": "not asked for (--no-fit): the shipped defaults serve"}
    config = fitted_ranking(RankingConfig(), fitted)
    popular_order = [str(model.item_ids[i]) for i in model.popular_order[:k + 200]]
    pop_hits = pop_recall = 0.0
    for customer in tqdm(customers, desc="offline check", disable=not progress, mininterval=1.0):
        relevant = truth[customer]
        # the popularity baseline under the same rule (what each customer had, left out or not)
        excluded = seen[customer] if config.repurchase_policy != "exclude_never" else set()
        popular = set([i for i in popular_order if i not in excluded][:k])
        pop_hits += bool(popular & relevant)
        pop_recall += len(popular & relevant) / len(relevant)
    scores = fitting.score(model, customers, truth, cuts, config, k)
    n = max(len(customers), 1)
    sufficient = len(customers) >= MIN_CHECK_CUSTOMERS
    check = {
        "protocol": protocol + (", repurchases count" if config.repurchase_policy == "exclude_never" else
                                f", ranked with repurchase policy {config.repurchase_policy}")
                    + ("" if "skipped" in fitted else ", customers the fitting did not see"),
        "customers": int(len(customers)), "sufficient": sufficient,
        "minimum_customers": MIN_CHECK_CUSTOMERS, "repeat_share": round(repeat_share, 4),
        "repurchase_policy": config.repurchase_policy, **scores,
        f"popularity_hr@{k}": round(pop_hits / n, 4), f"popularity_recall@{k}": round(pop_recall / n, 4),
    }
    return check, fitted


def train(dataset: Dataset, params: TrainParams = TrainParams(), progress: bool = True) -> ModelBundle:
    """Train on all of ``dataset``; when ``params.evaluate``, fit the engine to the data on its
    holdout and add the check to the manifest; the bundle is then trained with the fitted settings."""
    started = time.perf_counter()
    metrics, fitted = holdout_metrics(dataset, params, progress) if params.evaluate else ({}, {})
    chosen = replace(params, **fitted.get("params", {}))
    bundle = build_bundle(dataset, chosen, progress)
    manifest = dict(bundle.manifest)
    manifest["offline_metrics"] = metrics
    if fitted:
        manifest["fitted"] = fitted
    manifest["training_seconds"] = round(time.perf_counter() - started, 3)
    manifest["threads"] = params.threads or os.cpu_count()
    return ModelBundle(manifest, bundle.arrays)
