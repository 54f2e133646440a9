"""Offline evaluation through the engine's own code path.

Every method is the serving pipeline (``recommenders.recommend.recommend`` over
``engine.state.CustomerState``) with a different blend configuration, so a figure here is a
figure of what the shards serve. Blend weights are chosen on a validation split carved out of
the training data, never on the test split.

The "engine" rows rank with the RankingConfig ``recsys serve`` builds by default
(``shipped_ranking()``), by construction: on Online Retail that very object, on MovieLens that
object with only the per-catalogue keys (``MOVIELENS_CATALOGUE_KEYS``) replaced; each result records
the configurations in full, and the request filters its protocol adds (``protocol_request_filters``).
The validation choice is recorded beside them, so a test can check that what ships is what
validation chose (tests/unit/test_shipped_is_evaluated.py).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from engine.config import (REPURCHASE_TIMINGS, BlendWeights, RankingConfig, cart_blend, fitted_ranking,
                           load_serve_config)
from engine.events import parse_event
from engine.queries import Filters, RecommendQuery
from engine.state import CustomerState, apply_event
from recommenders.loaders import Dataset
from recommenders.metrics import mean_metrics, ranking_metrics
from recommenders.recommend import recommend
from recommenders.runtime import ModelRuntime
from recommenders.training import TrainParams, build_bundle, train

# Published (Microsoft Recommenders benchmark, MovieLens 100K, 75/25 per-user random split, top-10)
PUBLISHED_MOVIELENS = {
    "BiVAE (published)": {"map": 0.146, "ndcg@10": 0.475, "precision@10": 0.412, "recall@10": 0.219},
    "BPR (published)": {"map": 0.132, "ndcg@10": 0.442, "precision@10": 0.388, "recall@10": 0.213},
    "LightGCN (published)": {"map": 0.089, "ndcg@10": 0.420, "precision@10": 0.380, "recall@10": 0.144},
    "SAR (published)": {"map": 0.111, "ndcg@10": 0.382, "precision@10": 0.331, "recall@10": 0.176},
}


# -- the configuration that ships --------------------------------------------------------------------

def shipped_ranking() -> RankingConfig:
    """The RankingConfig ``recsys serve`` ranks with when given no ``--config`` (its defaults)."""
    return load_serve_config().ranking


def trained_as_shipped(dataset: Dataset, params: TrainParams) -> tuple[ModelRuntime, RankingConfig, dict]:
    """What `recsys train` and then `recsys serve` (no --config) rank with, trained on ``dataset``: the
    bundle ``train`` makes with its default parameters (only ``params.threads`` is taken), fitted to the data on its own holdout (recommenders/fitting.py), and the
    serve defaults with its fitted choices over them (engine.config.fitted_ranking, as a shard does).
    Returns (the model, the configuration, the manifest's fitted record without its candidate list)."""
    # `recsys train` with no flags: the defaults, whatever the other rows were trained with
    bundle = train(dataset, TrainParams(threads=params.threads), progress=False)
    fitted = dict(bundle.manifest.get("fitted") or {})
    config = fitted_ranking(shipped_ranking(), fitted)
    fitted["tried"] = len(fitted.get("tried", []))
    return ModelRuntime(bundle.arrays, bundle.manifest), config, fitted


def ranking_record(config: RankingConfig) -> dict:
    """``config`` in full, as plain JSON values (the evaluation records the configurations it ran)."""
    record = asdict(config)
    record.pop("explicit")  # which keys a config file set: not how it ranks
    return record


def _run_stamp(started: float) -> dict:
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - started, 1)}


# -- splits --------------------------------------------------------------------------------------------

def split_per_user(events: pd.DataFrame, ratio: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split: each user's interactions, shuffled, ``ratio`` to train."""
    rng = np.random.default_rng(seed)
    keys = rng.random(len(events))
    frame = events.assign(_key=keys)
    frame["_rank"] = frame.groupby("customer_id")["_key"].rank(method="first")
    frame["_size"] = frame.groupby("customer_id")["_key"].transform("size")
    train_mask = frame["_rank"] <= np.round(ratio * frame["_size"])
    cols = list(events.columns)
    return frame.loc[train_mask, cols], frame.loc[~train_mask, cols]


# -- running a configuration over users -----------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """A named way to rank: a blend configuration of the serving pipeline."""

    name: str
    config: RankingConfig
    use_live_state: bool = True


def weights_only(**kwargs: float) -> BlendWeights:
    base = {name: 0.0 for name in BlendWeights().as_dict()}
    base.update(kwargs)
    return BlendWeights(**base)


# MovieLens protocol: top-k over items the user has not rated in training. A request filter the
# protocol adds, on top of the configuration ranked with (the serving default is exclude_never).
MOVIELENS_REQUEST_FILTERS = {"repurchase_policy": "exclude_always"}


def score_users(model: ModelRuntime, truth: Mapping[str, set[str]], method: Method, k: int, now_ms: int,
                filters: Mapping[str, object] = MOVIELENS_REQUEST_FILTERS) -> tuple[dict[str, float], float]:
    """Mean metrics of ``method`` over customers in ``truth`` (no live state), and seconds per request;
    each request carries ``filters`` (the protocol's)."""
    rows = []
    started = time.perf_counter()
    request_filters = Filters(**filters)
    for customer, relevant in truth.items():
        query = RecommendQuery(customer_id=customer, channel="web", k=k, filters=request_filters)
        got = [i.item_id for i in recommend(model, None, query, method.config, now_ms).items]
        rows.append(ranking_metrics(got, relevant, k))
    return mean_metrics(rows), (time.perf_counter() - started) / max(len(truth), 1)


def tune_weights(train_events: pd.DataFrame, dataset: Dataset, params: TrainParams, grid: Iterable[BlendWeights],
                 seed: int, k: int, metric: str, base: RankingConfig) -> tuple[BlendWeights, list[dict]]:
    """Pick blend weights on a validation split of the training data (the test split is not seen)."""
    fit, valid = split_per_user(train_events, 0.75, seed + 1000)
    bundle = build_bundle(Dataset(fit, dataset.items, dataset.source), params, progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    truth = valid.groupby("customer_id")["item_id"].agg(set).to_dict()
    truth = {c: items for c, items in truth.items() if c in model.user_index}
    results = []
    for weights in grid:
        metrics, _ = score_users(model, truth, Method("candidate", replace(base, weights=weights)), k,
                                 bundle.manifest["counts"]["data_end_ms"])
        results.append({"weights": weights.as_dict(), metric: metrics[metric]})
    best = max(results, key=lambda r: r[metric])
    return BlendWeights(**best["weights"]), results


def movielens_grid() -> list[BlendWeights]:
    return [weights_only(history=1.0, als=als, popular=pop)
            for als, pop in itertools.product((0.0, 0.25, 0.5, 0.75, 1.0), (0.0, 0.1))]


# What an operator sets per catalogue for MovieLens (``[ranking.weights]``, ``[ranking.cart_weights]``,
# ``[ranking] candidates_per_source``); every other key of the tuned row is the shipped default.
MOVIELENS_CATALOGUE_KEYS = ("weights", "cart_weights", "candidates_per_source")
MOVIELENS_CANDIDATES = 400


def movielens_tuned(weights: BlendWeights, shipped: RankingConfig | None = None) -> RankingConfig:
    """The shipped configuration with MovieLens's own blend (chosen on validation) and candidate pool."""
    return replace(shipped or shipped_ranking(), weights=weights, cart_weights=cart_blend(weights),
                   candidates_per_source=MOVIELENS_CANDIDATES)


# The row of what `recsys train` + `recsys serve` rank with: the shipped defaults fitted to the
# training part by `recsys train`, its own model, no request filter.
MOVIELENS_ENGINE_ROW = "engine (as shipped: fitted by recsys train, no filter)"


def movielens_methods(best: BlendWeights, shipped: RankingConfig | None = None) -> list[Method]:
    """The rows ranked on the plain bundle (``build_bundle``) with the protocol's request filter."""
    shipped = shipped or shipped_ranking()
    tuned = movielens_tuned(best, shipped)
    return [
        Method("engine (blend tuned for MovieLens)", tuned),
        Method("engine (shipped defaults, not fitted)", shipped),
        Method("item-item (EASE) alone", replace(tuned, weights=weights_only(history=1.0))),
        Method("plain ALS", replace(tuned, weights=weights_only(als=1.0))),
        Method("popularity", replace(tuned, weights=weights_only(popular=1.0))),
    ]


def evaluate_movielens(dataset: Dataset, seeds: Iterable[int], params: TrainParams, k: int = 10,
                       grid: list[BlendWeights] | None = None, log: Callable[[str], None] = print) -> dict:
    """Microsoft Recommenders protocol: every rating an interaction, per-user random 75/25 split,
    top-k over items the user has not rated in training (``MOVIELENS_REQUEST_FILTERS``, a request
    filter of the protocol). Rows: the shipped configuration with MovieLens's own blend and pool
    (``movielens_tuned``), the shipped configuration as is, and single-source baselines."""
    started = time.perf_counter()
    seeds = list(seeds)
    shipped = shipped_ranking()
    per_method: dict[str, list[dict[str, float]]] = {}
    timing: dict[str, list[float]] = {}
    chosen, tuned_configs, fitted_configs, fitted_records = [], [], [], []
    for seed in seeds:
        train_events, test_events = split_per_user(dataset.events, 0.75, seed)
        best, _ = tune_weights(train_events, dataset, params, grid or movielens_grid(), seed, k, f"ndcg@{k}",
                               movielens_tuned(BlendWeights(), shipped))
        chosen.append(best.as_dict())
        tuned_configs.append(ranking_record(movielens_tuned(best, shipped)))
        bundle = build_bundle(Dataset(train_events, dataset.items, dataset.source), params, progress=False)
        model = ModelRuntime(bundle.arrays, bundle.manifest)
        truth = test_events.groupby("customer_id")["item_id"].agg(set).to_dict()
        now = bundle.manifest["counts"]["data_end_ms"]
        fitted_model, fitted_config, fitted = trained_as_shipped(Dataset(train_events, dataset.items, dataset.source),
                                                                 params)
        fitted_configs.append(ranking_record(fitted_config))
        fitted_records.append(fitted)
        runs = [(Method(MOVIELENS_ENGINE_ROW, fitted_config), fitted_model, {})]
        runs += [(method, model, MOVIELENS_REQUEST_FILTERS) for method in movielens_methods(best, shipped)]
        for method, ranked_by, filters in runs:
            metrics, seconds = score_users(ranked_by, truth, method, k, now, filters)
            per_method.setdefault(method.name, []).append(metrics)
            timing.setdefault(method.name, []).append(seconds)
            log(f"movielens seed {seed} {method.name:<24} " + " ".join(f"{m} {v:.4f}" for m, v in metrics.items()))
    summary = {}
    for name, rows in per_method.items():
        keys = [key for key in rows[0] if key != f"hr@{k}"]
        summary[name] = {key: {"mean": float(np.mean([r[key] for r in rows])), "std": float(np.std([r[key] for r in rows]))}
                         for key in keys}
        summary[name]["ms_per_request"] = {"mean": 1000 * float(np.mean(timing[name])), "std": 1000 * float(np.std(timing[name]))}
    return {"protocol": "MovieLens 100K, every rating an interaction, per-user random 75/25 split, top-10. The "
                        "shipped engine: trained by `recsys train` on the training part (fitted to it on its own "
                        "holdout), no request filter. The other rows: training items excluded (a request filter "
                        "of the protocol: repurchase_policy exclude_always), blend weights chosen on a validation "
                        "split of the training part",
            "seeds": list(seeds), "methods": summary, "published": PUBLISHED_MOVIELENS, "chosen_weights": chosen,
            "protocol_request_filters": dict(MOVIELENS_REQUEST_FILTERS), "shipped_config": ranking_record(shipped),
            "tuned_configs": tuned_configs, "catalogue_keys": list(MOVIELENS_CATALOGUE_KEYS),
            "engine_row": MOVIELENS_ENGINE_ROW, "fitted_configs": fitted_configs, "fitted": fitted_records,
            "run": _run_stamp(started)}


# -- Online Retail: temporal split, next basket and live basket completion ---------------------------

RETAIL_CUT = "2011-10-01"


def _copy_state(state: CustomerState) -> CustomerState:
    from engine.state import state_from_dict, state_to_dict

    return state_from_dict(state_to_dict(state))


def _purchase_events(invoice: pd.DataFrame, kind: str = "purchase") -> list:
    return [parse_event({"event_id": f"{row.event_id}-{kind}", "customer_id": row.customer_id, "event_type": kind,
                         "item_id": row.item_id, "channel": "web", "quantity": float(row.quantity),
                         "timestamp_ms": int(row.timestamp_ms)}, int(row.timestamp_ms) + 1)
            for row in invoice.itertuples()]


def _knn_rank(model: ModelRuntime, items: Iterable[str], excluded: set[str], k: int) -> list[str]:
    """Item co-occurrence kNN baseline: summed co-visitation neighbours of ``items``."""
    from engine.ranking import blend, top_k
    from recommenders.recommend import neighbour_candidates

    seeds = {model.item_index[i]: 1.0 for i in items if i in model.item_index}
    idx, scores = neighbour_candidates(model.covis_idx, model.covis_w, seeds)
    popular = model.popular_order[:200]
    blended = blend({"session": (idx, scores), "popular": (popular, model.popularity[popular])},
                    {"session": 1.0, "popular": 0.01})
    allowed = ~np.isin(blended.idx, [model.item_index[i] for i in excluded if i in model.item_index])
    return [str(model.item_ids[i]) for i, _, _ in top_k(blended, allowed, k)]


# The replay's requests carry the customer, channel web, k and (for completion) the revealed cart:
# the Online Retail protocol adds no request filter, so the engine row ranks under the shipped
# repurchase policy too.
RETAIL_REQUEST_FILTERS: dict[str, object] = {}
ENGINE_ROW = "engine (as shipped, live state)"
CHOSEN_ROW = "engine (chosen on validation, NOT shipped)"


def one_blend(weights: BlendWeights, base: RankingConfig | None = None, **options) -> RankingConfig:
    """``base`` (the shipped configuration by default) ranking with ``weights`` with and without a cart."""
    return replace(base or shipped_ranking(), weights=weights, cart_weights=weights, **options)


def baseline(weights: BlendWeights, **options) -> RankingConfig:
    """A baseline's configuration: ``weights`` in both contexts, repurchases allowed (as the tasks count
    them); fixed, whatever the shipped defaults."""
    return RankingConfig(weights=weights, cart_weights=weights, repurchase_policy="exclude_never", **options)


def retail_methods(chosen: RankingConfig | None = None, shipped: RankingConfig | None = None) -> list[Method]:
    """The engine as ``recsys serve`` ships it, the configuration chosen on validation when it is not
    that one, and the baselines."""
    shipped = shipped or shipped_ranking()
    engine = [Method(ENGINE_ROW, shipped)]
    if chosen is not None and chosen != shipped:
        engine.append(Method(CHOSEN_ROW, chosen))
    return engine + [
        Method("popularity", baseline(weights_only(popular=1.0))),
        # the classic baseline: what the customer bought, most often and most recently first
        Method("own history + popularity", baseline(weights_only(repurchase=1.0, popular=0.05),
                                                    repurchase_timing="decay")),
        Method("plain ALS (no live state)", baseline(weights_only(als=1.0)), use_live_state=False),
        Method("item co-occurrence kNN", RankingConfig(weights=weights_only(session=1.0)), use_live_state=True),
    ]


def replay_retail(model: ModelRuntime, test: pd.DataFrame, methods: list[Method], k: int,
                  log: Callable[[str], None] = print) -> dict:
    """Replay test invoices in time order through live customer state; score next basket and
    basket completion for every method."""
    results = {m.name: {"next": [], "completion": [], "seconds": 0.0, "requests": 0, "items": set()} for m in methods}
    states: dict[str, CustomerState] = {}
    history = {c: set() for c in test["customer_id"].unique()}
    for customer, row in model.user_index.items():
        if customer in history:
            history[customer] = {str(model.item_ids[i]) for i in model.history(row)[0]}
    invoices = test.sort_values(["timestamp_ms", "event_id"]).groupby("session_id", sort=False)
    request_filters = Filters(**RETAIL_REQUEST_FILTERS)
    for _, invoice in invoices:
        customer = str(invoice["customer_id"].iloc[0])
        now = int(invoice["timestamp_ms"].iloc[0])
        distinct = list(dict.fromkeys(invoice["item_id"].astype(str)))
        state = states.setdefault(customer, CustomerState(customer))
        half = len(distinct) // 2
        revealed, hidden = distinct[:half], set(distinct[half:])
        reveal_state = None
        if half >= 1:
            reveal_state = _copy_state(state)
            first_rows = invoice.drop_duplicates("item_id").iloc[:half]
            for event in _purchase_events(first_rows, "add_to_cart"):
                apply_event(reveal_state, event)
        for method in methods:
            out = results[method.name]
            query = RecommendQuery(customer_id=customer, channel="web", k=k, filters=request_filters)
            started = time.perf_counter()
            if method.name == "item co-occurrence kNN":
                got = _knn_rank(model, history[customer] | {i for i in state.purchases}, set(), k)
            else:
                live = state if method.use_live_state else None
                got = [i.item_id for i in recommend(model, live, query, method.config, now).items]
            out["seconds"] += time.perf_counter() - started
            out["requests"] += 1
            out["items"].update(got)
            out["next"].append(ranking_metrics(got, set(distinct), k))
            if reveal_state is not None and hidden:
                if method.name == "item co-occurrence kNN":
                    got = _knn_rank(model, revealed, set(revealed), k)
                else:
                    live = reveal_state if method.use_live_state else None
                    cart_query = replace(query, cart_item_ids=tuple(revealed))
                    got = [i.item_id for i in recommend(model, live, cart_query, method.config, now).items]
                out["completion"].append(ranking_metrics(got, hidden, k))
        for event in _purchase_events(invoice.drop_duplicates("item_id")):
            apply_event(state, event)
        history[customer].update(distinct)
    summary = {}
    for name, out in results.items():
        nxt, comp = mean_metrics(out["next"]), mean_metrics(out["completion"])
        summary[name] = {
            "next_basket": {f"hr@{k}": nxt[f"hr@{k}"], f"recall@{k}": nxt[f"recall@{k}"]},
            "basket_completion": {f"hr@{k}": comp[f"hr@{k}"], f"recall@{k}": comp[f"recall@{k}"]},
            "catalogue_coverage": len(out["items"]) / model.n_items,
            "ms_per_request": 1000 * out["seconds"] / max(out["requests"], 1),
        }
        log(f"online-retail {name:<34} next HR {nxt[f'hr@{k}']:.3f} R {nxt[f'recall@{k}']:.3f}  "
            f"completion HR {comp[f'hr@{k}']:.3f} R {comp[f'recall@{k}']:.3f}  "
            f"coverage {summary[name]['catalogue_coverage']:.3f}  {summary[name]['ms_per_request']:.2f} ms")
    return {"methods": summary, "invoices": len(results[methods[0].name]["next"]),
            "completion_invoices": len(results[methods[0].name]["completion"])}


def retail_grid(base: BlendWeights | None = None) -> list[BlendWeights]:
    """Blends tried on the validation month, with each repurchase timing, for each context apart (no
    basket in progress / a cart): the live session's weight and a heavier repurchase are what the two
    tasks disagree on. The four keys vary over ``base`` (the shipped ``[ranking.weights]``); the others
    keep their shipped values (history and the repurchase policy are chosen after, by
    ``choose_retail_options``; trending, new_items and promoted are not measured by the replay)."""
    base = base or shipped_ranking().weights
    return [replace(base, als=als, session=session, repurchase=rep, popular=pop)
            for session, rep, als, pop in itertools.product((0.5, 1.0), (1.5, 3.0, 6.0), (0.5, 0.25, 1.0), (0.3, 0.05))]


# What the blend grid holds at the shipped value, then tried with the chosen blends on the same
# validation month, one stage after another (each stage every combination of its values, over the
# best of the stage before). A weight key sets both blends; "weights.K" only the blend without a
# basket in progress, "cart_weights.K" only the blend with a cart. The replay has known customers
# only, sends no country and promotes nothing, so trending, new_items and promoted (cold start,
# country, live catalogue, boosts) are not chosen here.
RETAIL_OPTIONS: tuple[dict[str, tuple], ...] = (
    {"history": (0.0, 1.0), "repurchase_policy": ("exclude_never", "exclude_within_window")},
    # the session models: what comes next, for a basket in progress above all
    {"cart_weights.transitions": (0.0, 2.0, 4.0, 8.0), "weights.transitions": (0.0, 1.0)},
    {"cart_weights.similar_sessions": (0.0, 0.5, 1.0), "weights.similar_sessions": (0.0, 0.5)},
)


def with_setting(config: RankingConfig, setting: Mapping[str, object]) -> RankingConfig:
    """``config`` with one option setting (keys as in RETAIL_OPTIONS)."""
    weights, cart, other = {}, {}, {}
    for key, value in setting.items():
        blend, _, name = key.rpartition(".")
        if blend in ("", "weights") and name in BlendWeights.__dataclass_fields__:
            weights[name] = value
        if blend in ("", "cart_weights") and name in BlendWeights.__dataclass_fields__:
            cart[name] = value
        if name not in BlendWeights.__dataclass_fields__:
            other[key] = value
    return replace(config, weights=replace(config.weights, **weights),
                   cart_weights=replace(config.cart_weights, **cart), **other)


def retail_split(dataset: Dataset, cut: str, max_customers: int | None, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from recommenders.training import usable_events

    events = usable_events(dataset)
    events = events[events["event_type"] == "purchase"]
    cut_ms = int(pd.Timestamp(cut).value // 1_000_000)
    train, test = events[events["timestamp_ms"] < cut_ms], events[events["timestamp_ms"] >= cut_ms]
    known = set(train["customer_id"]) - {c for c in train["customer_id"].unique() if c.startswith("guest-")}
    test = test[test["customer_id"].isin(known)]
    if max_customers is not None:
        rng = np.random.default_rng(seed)
        customers = np.sort(test["customer_id"].unique())
        chosen = set(rng.choice(customers, size=min(max_customers, len(customers)), replace=False))
        test = test[test["customer_id"].isin(chosen)]
    return train, test


def _task_score(metrics: Mapping, task: str, k: int) -> float:
    return metrics[task][f"hr@{k}"] + metrics[task][f"recall@{k}"]


def choose_retail_blends(model: ModelRuntime, valid: pd.DataFrame, grid: list[BlendWeights], k: int,
                         base: RankingConfig | None = None) -> dict:
    """On the validation month, every blend of ``grid`` with every repurchase timing (over ``base``,
    the shipped configuration by default): the timing whose best next-basket plus best completion
    HR@10 + Recall@10 is highest, and with it the blend without a basket in progress (best next
    basket) and the blend with a cart (best completion)."""
    base = base or shipped_ranking()
    scores: dict[str, list[tuple[BlendWeights, dict]]] = {}
    for timing in REPURCHASE_TIMINGS:
        for weights in grid:
            # one blend in both contexts: next basket scores it without a cart, completion with one
            config = one_blend(weights, base, repurchase_timing=timing)
            metrics = replay_retail(model, valid, [Method("candidate", config)], k, log=lambda _m: None)
            scores.setdefault(timing, []).append((weights, metrics["methods"]["candidate"]))

    def best(timing: str, task: str) -> tuple[float, BlendWeights]:
        return max(((_task_score(m, task, k), w) for w, m in scores[timing]), key=lambda s: s[0])

    by_timing = {t: best(t, "next_basket")[0] + best(t, "basket_completion")[0] for t in scores}
    timing = max(by_timing, key=by_timing.get)
    next_score, weights = best(timing, "next_basket")
    cart_score, cart = best(timing, "basket_completion")
    return {"timing": timing, "weights": weights, "cart_weights": cart, "criterion_by_timing": by_timing,
            "validation": {"next_basket": next_score, "basket_completion": cart_score},
            "blends_tried": sum(len(v) for v in scores.values())}


def _validation_scores(model: ModelRuntime, valid: pd.DataFrame, config: RankingConfig, k: int) -> dict:
    metrics = replay_retail(model, valid, [Method("candidate", config)], k, log=lambda _m: None)["methods"]["candidate"]
    return {task: _task_score(metrics, task, k) for task in ("next_basket", "basket_completion")}


def choose_retail_options(model: ModelRuntime, valid: pd.DataFrame, config: RankingConfig, k: int,
                          options: tuple[Mapping[str, tuple], ...] = RETAIL_OPTIONS) -> dict:
    """``config`` (the chosen blends) with the ``options`` stages on the validation month: in each
    stage, every combination of its values over the best so far; the best is the one whose
    next-basket plus completion HR@10 + Recall@10 is highest (on a tie, the first tried)."""
    tried = []
    best = {"config": config, "setting": {}, "validation": None}
    for stage in options:
        stage_tried = []
        for values in itertools.product(*stage.values()):
            setting = {**best["setting"], **dict(zip(stage, values))}
            candidate = with_setting(best["config"], dict(zip(stage, values)))
            scores = _validation_scores(model, valid, candidate, k)
            stage_tried.append({"setting": setting, "validation": scores, "config": candidate})
        tried.extend(stage_tried)
        best = max(stage_tried, key=lambda t: sum(t["validation"].values()))
    return {"config": best["config"], "setting": best["setting"], "validation": best["validation"],
            "tried": [{"setting": t["setting"], "validation": t["validation"]} for t in tried]}


def evaluate_online_retail(dataset: Dataset, params: TrainParams, k: int = 10, cut: str = RETAIL_CUT,
                           max_customers: int | None = None, grid: list[BlendWeights] | None = None,
                           seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Train before ``cut``; replay invoices after it of customers seen in training. The engine row
    ranks with the shipped configuration. On the month before the cut (trained on what came before
    that month) the blends and timing are chosen over the shipped configuration, then history and the
    repurchase policy; the result records both configurations and whether they are the same."""
    started = time.perf_counter()
    shipped = shipped_ranking()
    train, test = retail_split(dataset, cut, max_customers, seed)
    valid_cut = str((pd.Timestamp(cut) - pd.DateOffset(months=1)).date())
    fit, valid = retail_split(Dataset(train, dataset.items, dataset.source), valid_cut, max_customers, seed)
    bundle = build_bundle(Dataset(fit, dataset.items, dataset.source), params, progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    chosen = choose_retail_blends(model, valid, grid or retail_grid(shipped.weights), k, shipped)
    best, cart, timing = chosen["weights"], chosen["cart_weights"], chosen["timing"]
    blends = replace(shipped, weights=best, cart_weights=cart, repurchase_timing=timing)
    options = choose_retail_options(model, valid, blends, k)
    chosen_config = options["config"]
    shipped_validation = _validation_scores(model, valid, shipped, k)
    log(f"online-retail chosen on validation ({valid_cut}..{cut}), {chosen['blends_tried']} blends tried: "
        f"repurchase timing {timing}; no basket in progress {best.as_dict()}; with a cart {cart.as_dict()}; "
        f"then {options['setting']} ({len(options['tried'])} tried); validation {options['validation']}, "
        f"shipped {shipped_validation}; shipped is the choice: {chosen_config == shipped}")
    # what ships: trained by `recsys train` on everything before the cut (fitted to it), served defaults over it
    model, engine_config, fitted = trained_as_shipped(Dataset(train, dataset.items, dataset.source), params)
    log(f"online-retail fitted by recsys train: params {fitted.get('params')}, ranking {fitted.get('ranking')}")
    out = replay_retail(model, test, retail_methods(None if chosen_config == shipped else chosen_config,
                                                    engine_config), k, log)
    return {"protocol": f"UCI Online Retail, purchases; train before {cut}, test = invoices from {cut} of customers "
                        "seen in training, replayed in time order through live state. Next basket: distinct items "
                        "of the invoice (repurchases count). Completion: first half of the distinct items (line "
                        "order) revealed as add_to_cart, score the other half. No request filter is added: the "
                        "engine ranks with the shipped configuration, repurchase policy included.",
            "customers": int(test["customer_id"].nunique()), "chosen_weights": best.as_dict(),
            "chosen_cart_weights": cart.as_dict(), "chosen_repurchase_timing": timing,
            "validation_criterion_by_timing": chosen["criterion_by_timing"],
            "validation_best": chosen["validation"], "chosen_options": options["setting"],
            "validation_options_tried": options["tried"], "validation_chosen": options["validation"],
            "validation_shipped": shipped_validation,
            "engine_config": ranking_record(engine_config), "shipped_config": ranking_record(shipped),
            "fitted": fitted, "chosen_config": ranking_record(chosen_config),
            "shipped_is_chosen": chosen_config == shipped, "engine_row": ENGINE_ROW,
            "protocol_request_filters": dict(RETAIL_REQUEST_FILTERS), "run": _run_stamp(started), **out}
