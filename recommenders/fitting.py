"""Fitting the engine to the data it is trained on: `recsys train` chooses, on a validation split of
that data, what the defaults cannot know in advance (issue 18, item 3).

The validation split is the offline check's (``training._holdout_split``: the last stretch in time, or
each customer's last consumed events, or a random share of them in a log entered in one sitting), with its customers cut in two at random: the choices are made
on one half and the check is reported on the other, so the check does not grade its own choice.
Every candidate is scored through the serving pipeline (``recommend`` with no request filter), by
nDCG@k of what each customer consumed after their cut (``_criterion``). The search, one choice at a time
from the shipped defaults: every value of one choice is scored and the best kept when it gains at
least ``MIN_GAIN`` (relative) over what is chosen so far:

1. whether and how already-consumed items come back: the repurchase policy, then its timing (first:
   on a catalogue people consume once, the defaults' repurchases fill every answer);
2. the ALS factors, then its regularization (a refit on the past each);
3. the popularity half-life (``0``: plain counts, no decay), which is also what cold start gets;
4. the next-basket blend, one weight at a time (``FITTED_WEIGHTS``);
then 2-4 again while the blend changed in the last pass (at most ``PASSES`` in all).

The choice is recorded in the manifest (``fitted``: the values, the validation scores of the
defaults and of the choice, every candidate tried) and served by default: the shards rank with
``engine.config.fitted_ranking`` over the serve config, where a key the config file sets wins.
What it cannot choose here: anything read from a live session (a cart in progress, re-views,
session models), which this split has no live state for; those stay as `recsys evaluate` chose them.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from engine.config import REPURCHASE_TIMINGS, RankingConfig, fitted_ranking
from engine.queries import RecommendQuery
from recommenders.bundle import ModelBundle
from recommenders.index import ItemIndex
from recommenders.metrics import mean_metrics, ranking_metrics
from recommenders.recommend import recommend
from recommenders.runtime import ModelRuntime

FACTOR_CHOICES = (32, 64, 128)
REGULARIZATION_CHOICES = (0.01, 0.05, 0.5)
HALF_LIFE_CHOICES = (30.0, 120.0, 0.0)
POLICY_CHOICES = ("exclude_never", "exclude_within_window", "exclude_always")
FITTED_WEIGHTS = ("als", "history", "repurchase", "popular")
# A weight in use is tried at these multiples of itself; one at 0 at these fractions of the largest.
WEIGHT_MULTIPLES = (0.0, 0.25, 0.5, 2.0, 4.0)
WEIGHT_FRACTIONS = (0.125, 0.25, 0.5, 1.0, 2.0)
# A change is kept when it raises the criterion by at least this share (less is noise on a few
# hundred customers: the standard error of a hit rate near 0.5 over 500 customers is 0.022).
MIN_GAIN = 0.01
# The ALS settings and the blend are searched in passes, again while a pass changed something (a
# weight's best value, or the ALS factors', moves once another source is in: MovieLens's after
# item-item joins), at most this many passes.
PASSES = 3


def score(model: ModelRuntime, customers, truth: pd.Series, cuts: pd.Series, config: RankingConfig,
          k: int) -> dict[str, float]:
    """HR@k, Recall@k and nDCG@k of ``config`` over ``customers``, each asked at their own cut, no filter."""
    rows = []
    for customer in customers:
        query = RecommendQuery(customer_id=str(customer), channel="web", k=k)
        got = [item.item_id for item in recommend(model, None, query, config, int(cuts[customer])).items]
        rows.append(ranking_metrics(got, truth[customer], k))
    means = mean_metrics(rows)
    return {name: round(means.get(name, 0.0), 4) for name in (f"hr@{k}", f"recall@{k}", f"ndcg@{k}")}


def _criterion(scores: Mapping[str, float]) -> float:
    """nDCG@k: a hit near the top counts more than one at place k, and every hit counts, so it
    separates candidates a hit rate on a few hundred customers cannot (MovieLens: 32 against 64 ALS
    factors beside item-item, HR@10 + Recall@10 0.957 each on the fitting half, nDCG@10 0.188
    against 0.181, and the other half agrees)."""
    return float(next(value for name, value in scores.items() if name.startswith("ndcg@")))


def weight_candidates(current: float, largest: float) -> list[float]:
    if current > 0:
        return [round(current * m, 6) for m in WEIGHT_MULTIPLES]
    return [round(largest * f, 6) for f in WEIGHT_FRACTIONS]


class _Variants:
    """Runtimes of the past bundle with other ALS settings or popularity half-life (the rest shared)."""

    def __init__(self, bundle: ModelBundle, matrix, params, fit_als: Callable, popularity: Callable):
        self.bundle, self.matrix, self.params = bundle, matrix, params
        self._fit_als, self._popularity = fit_als, popularity
        self._als: dict[tuple, tuple] = {}

    def runtime(self, params) -> ModelRuntime:
        arrays = dict(self.bundle.arrays)
        base = self.params
        if (params.factors, params.regularization) != (base.factors, base.regularization):
            key = (params.factors, params.regularization)
            if key not in self._als:
                user_factors, item_factors = self._fit_als(self.matrix, params, False)
                self._als[key] = (user_factors, item_factors, ItemIndex.build(item_factors).to_bytes())
            arrays["user_factors"], arrays["item_factors"], arrays["faiss_index"] = self._als[key]
        if params.popularity_half_life_days != base.popularity_half_life_days:
            arrays["popularity"] = self._popularity(params)
        return ModelRuntime(arrays, {**self.bundle.manifest, "params": asdict(params)})


def fit(variants: _Variants, customers, truth: pd.Series, cuts: pd.Series, k: int, fixed: frozenset[str] = frozenset(),
        log: Callable[[str], None] | None = None) -> tuple[dict, ModelRuntime]:
    """The search of the module doc over ``customers``. ``fixed``: training parameters the caller set
    (not searched). Returns (the manifest's ``fitted`` record, the past runtime with the chosen settings)."""
    params = variants.params
    config = RankingConfig()
    model = variants.runtime(params)
    best = score(model, customers, truth, cuts, config, k)
    defaults = dict(best)
    tried: list[dict] = []

    def choose(line: list[tuple[dict, object, RankingConfig]]) -> bool:
        """Score every candidate of one line of the search (the values of one choice); take the best
        when it gains at least MIN_GAIN over what is chosen so far."""
        nonlocal params, config, model, best
        scored = []
        for change, candidate_params, candidate_config in line:
            candidate_model = model if candidate_params == params else variants.runtime(candidate_params)
            scores = score(candidate_model, customers, truth, cuts, candidate_config, k)
            tried.append({"change": change, **scores})
            if log:
                log(f"fit {change}: {scores}")
            scored.append((_criterion(scores), scores, candidate_params, candidate_config, candidate_model))
        if not scored:
            return False
        top = max(scored, key=lambda s: s[0])  # the first of equal ones
        if top[0] >= _criterion(best) * (1 + MIN_GAIN) + 1e-12:
            best, params, config, model = top[1], top[2], top[3], top[4]
            return True
        return False

    choose([({"repurchase_policy": policy}, params, replace(config, repurchase_policy=policy))
            for policy in POLICY_CHOICES if policy != config.repurchase_policy])
    if config.repurchase_policy != "exclude_always":
        choose([({"repurchase_timing": timing}, params, replace(config, repurchase_timing=timing))
                for timing in REPURCHASE_TIMINGS if timing != config.repurchase_timing])

    def settings_stage() -> bool:
        changed = False
        for name, choices in (("factors", FACTOR_CHOICES), ("regularization", REGULARIZATION_CHOICES),
                              ("popularity_half_life_days", HALF_LIFE_CHOICES)):
            if name not in fixed:
                changed |= choose([({name: value}, replace(params, **{name: value}), config)
                                   for value in choices if value != getattr(params, name)])
        return changed

    # the repurchase source proposes nothing a policy of exclude_always lets through
    keys = [key for key in FITTED_WEIGHTS if key != "repurchase" or config.repurchase_policy != "exclude_always"]

    def blend_stage() -> bool:
        changed = False
        for key in keys:
            start = getattr(config.weights, key)
            largest = max(getattr(config.weights, other) for other in keys)
            line = []
            for value in weight_candidates(start, largest):
                if value != start:
                    weights = replace(config.weights, **{key: value})
                    line.append(({f"weights.{key}": value}, params,
                                 fitted_ranking(config, {"ranking": {"weights": weights.as_dict()}})))
            changed |= choose(line)
        return changed

    passes, blend_changed = 0, False
    while passes < PASSES:
        passes += 1
        # the ALS settings again once the blend moved: what suits ALS alone may not suit it beside item-item
        changed = settings_stage() if passes == 1 or blend_changed else False
        blend_changed = blend_stage()
        if not (changed or blend_changed):
            break
    shipped = RankingConfig()
    ranking = {name: getattr(config, name) for name in ("repurchase_policy", "repurchase_timing")
               if getattr(config, name) != getattr(shipped, name)}
    weights = {key: getattr(config.weights, key) for key in FITTED_WEIGHTS
               if getattr(config.weights, key) != getattr(shipped.weights, key)}
    if weights:
        ranking["weights"] = weights
    base = variants.params
    chosen_params = {name: getattr(params, name) for name in ("factors", "regularization", "popularity_half_life_days")
                     if getattr(params, name) != getattr(base, name)}
    record = {"customers": int(len(customers)), "criterion": f"ndcg@{k}", "min_gain": MIN_GAIN,
              "params": chosen_params, "ranking": ranking, "validation_defaults": defaults,
              "validation_chosen": best, "passes": passes, "tried": tried}
    return record, model


def check_customers(customers: np.ndarray, seed: int, limit: int, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    """(customers to fit on, customers to check on): disjoint halves in a seeded random order, each at
    most ``limit``; no fitting (an empty first part) when the halves would be under ``minimum``."""
    order = np.random.default_rng(seed).permutation(np.asarray(customers))
    if len(order) < 2 * minimum:
        return order[:0], order[:limit]
    half = len(order) // 2
    return order[:half][:limit], order[half:][:limit]
