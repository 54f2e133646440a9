"""The recommendation pipeline the shard actors run (and evaluation replays).

    candidates (ALS via FAISS, live-session co-visitation, repurchase, popularity, new items)
      -> blend (engine.ranking) -> business rules (engine.rules) -> top k with reasons

Pure: the customer's state, the model, the live catalogue view, the clock and the config come in
as arguments.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from engine.config import RankingConfig
from engine.queries import Filters, RecommendQuery, SimilarQuery
from engine.ranking import ScoredItem, blend, sum_by_index, top_k
from engine.rules import DAY_MS, allowed_mask, purchased_to_exclude
from engine.state import CustomerState, consents
from recommenders.catalog_view import CatalogView
from recommenders.runtime import ModelRuntime
from recommenders.sessions import similar_session_candidates

REPURCHASE_HALF_LIFE_DAYS = 60.0
# Transitions are read from the live session's latest items, each older one counting half as much.
# The last item alone did best on Online Retail's guest baskets of the month before the session
# benchmark's test (September 2011, 1,713 reveals): HR@20 0.609 MRR@20 0.304 against 0.600 / 0.298
# for the last three. Those figures came from a one-off variant of benchmarks/session_next_item.py
# (seeds and window set by environment, an earlier cart blend), not from a command in the project;
# chosen once, by hand; `recsys evaluate` does not re-choose it, nor the session models' sizes in
# TrainParams and recommenders/sessions.py.
TRANSITION_SEEDS = 1
# Width of the repurchase bump around an item's cycle, in log-days (1.0: half the peak at ~0.3x and ~3.2x the cycle).
CYCLE_SPREAD = 1.0


@dataclass(frozen=True, slots=True)
class Recommendations:
    items: tuple[ScoredItem, ...]
    personalized: bool
    reasons: tuple[str, ...]
    model_version: str
    # how the list was made: "blend" (the served ranking, or an experiment arm's), "popularity"
    # (a holdout arm), "similar_items"; and the experiment and arm (engine/config.py RecExperiment)
    strategy: str = "blend"
    experiment_id: str = ""
    arm: str = ""
    # what impressions, clicks and purchases name to be credited to this list (engine/attribution.py)
    recommendation_id: str = ""


@dataclass(slots=True)
class _Profile:
    """What the customer's history says, in item-index space."""

    vector: np.ndarray | None
    weights: dict[int, float]
    last_purchase_ms: dict[int, int]
    purchase_weight: dict[int, float]
    known: bool


def _profile(model: ModelRuntime, customer_id: str, state: CustomerState | None) -> _Profile:
    weights: dict[int, float] = {}
    last_purchase: dict[int, int] = {}
    purchase_weight: dict[int, float] = {}
    row = model.user_index.get(customer_id)
    if row is not None:
        items, w, last = model.history(row)
        for i, wi, li in zip(items.tolist(), w.tolist(), last.tolist()):
            weights[i] = wi
            if li > 0:
                last_purchase[i] = li
                purchase_weight[i] = wi
    live = state is not None and state.event_count > 0
    if live:
        for item_id, w in state.interactions.items():
            i = model.item_index.get(item_id)
            if i is not None:
                weights[i] = weights.get(i, 0.0) + w
        for item_id, bought in state.purchases.items():
            i = model.item_index.get(item_id)
            if i is not None:
                last_purchase[i] = max(last_purchase.get(i, 0), bought.last_ms)
                purchase_weight[i] = purchase_weight.get(i, 0.0) + bought.count
        for item_id in state.returned or ():
            i = model.item_index.get(item_id)
            if i is not None:
                weights.pop(i, None)
    if row is not None and not live:
        vector = model.user_factors[row]
    elif weights:
        idx = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        vector = model.fold_in(idx, np.fromiter(weights.values(), dtype=np.float64, count=len(weights)))
    else:
        vector = None
    return _Profile(vector, weights, last_purchase, purchase_weight, known=row is not None or live)


def customer_vector(model: ModelRuntime, customer_id: str, state: CustomerState | None) -> np.ndarray | None:
    """The customer's ALS vector now: trained, or folded in from what they did live."""
    return _profile(model, customer_id, state).vector


def session_seeds(view: CatalogView, state: CustomerState | None, query: RecommendQuery,
                  half_life: float) -> dict[int, float]:
    """Live signals as item index -> weight; the newest counts most."""
    ordered: list[str] = []
    if state is not None:
        ordered.extend(item for item, _kind, _ts in state.recent)
        ordered.extend(state.cart)
    ordered.extend(query.cart_item_ids)
    if query.current_item_id:
        ordered.append(query.current_item_id)
    seeds: dict[int, float] = {}
    for age, item_id in enumerate(reversed(ordered)):
        i = view.index_of(item_id)
        if i is not None:
            seeds[i] = max(seeds.get(i, 0.0), 0.5 ** (age / half_life))
    return seeds


def latest_items(view: CatalogView, state: CustomerState | None, query: RecommendQuery) -> list[int]:
    """The live session's distinct items, newest first, in the order things happened: the recent
    events, then the request's cart and the item on screen; cart items older than the recent
    events come last."""
    ordered: list[str] = [item for item, _kind, _ts in state.recent] if state is not None else []
    ordered.extend(query.cart_item_ids)
    if query.current_item_id:
        ordered.append(query.current_item_id)
    newest_first = list(dict.fromkeys(reversed(ordered)))
    if state is not None:
        seen = set(newest_first)
        newest_first.extend(item for item in state.cart if item not in seen)
    found = (view.index_of(item) for item in newest_first)
    return [i for i in found if i is not None]


def neighbour_candidates(neighbour_idx: np.ndarray, neighbour_w: np.ndarray,
                         seeds: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the seeds' neighbour weights (co-visitation or item-item lists), seed-weighted."""
    if not seeds:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    seed_idx = np.fromiter(seeds.keys(), dtype=np.int64)
    seed_w = np.fromiter(seeds.values(), dtype=np.float64)
    neighbours = neighbour_idx[seed_idx]                     # [s, m]
    weights = neighbour_w[seed_idx].astype(np.float64) * seed_w[:, None]
    valid = neighbours >= 0
    flat_idx, flat_w = neighbours[valid].astype(np.int64), weights[valid]
    if flat_idx.size == 0:
        return flat_idx, flat_w
    return sum_by_index(flat_idx, flat_w, neighbour_idx.shape[0])


def repurchase_candidates(profile: _Profile, now_ms: int, cycles: np.ndarray | None = None,
                          timing_kind: str = "cycle") -> tuple[np.ndarray, np.ndarray]:
    """The customer's own purchases, by how often they bought each. Timing: ``"frequency"`` none
    (how often alone: the other sources, popularity first, order items bought equally often);
    ``"cycle"`` an item scores highest when its learnt repurchase cycle (``cycles``, days) has come
    round (a log-normal bump around the cycle; items without one decay); ``"decay"`` recent purchases
    score highest (half-life decay)."""
    if not profile.last_purchase_ms:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    idx = np.fromiter(profile.last_purchase_ms.keys(), dtype=np.int64)
    count = np.array([profile.purchase_weight.get(i, 1.0) for i in idx.tolist()])
    if timing_kind == "frequency":
        return idx, np.log1p(count)
    last = np.fromiter(profile.last_purchase_ms.values(), dtype=np.float64)
    age_days = np.maximum(now_ms - last, 0) / DAY_MS
    timing = 0.5 ** (age_days / REPURCHASE_HALF_LIFE_DAYS)
    if timing_kind == "cycle" and cycles is not None:
        cycle = cycles[idx].astype(np.float64)
        known = ~np.isnan(cycle)
        due = np.exp(-0.5 * (np.log((age_days + 1.0) / (np.where(known, cycle, 1.0) + 1.0)) / CYCLE_SPREAD) ** 2)
        timing = np.where(known, due, timing)
    return idx, np.log1p(count) * timing


def _resolve(view: CatalogView, ids) -> set[int]:
    found = (view.index_of(i) for i in ids)
    return {i for i in found if i is not None}


def _rules_mask(view: CatalogView, candidate_idx: np.ndarray, filters: Filters, excluded: set[int]) -> np.ndarray:
    include = _resolve(view, filters.include_item_ids) if filters.include_item_ids else None
    mask = allowed_mask(candidate_idx, excluded=excluded | _resolve(view, filters.exclude_item_ids),
                        include_only=include, prices=view.price, min_price=filters.min_price,
                        max_price=filters.max_price, recommendable=view.recommendable)
    if filters.include_categories or filters.exclude_categories:
        codes = view.category_code[candidate_idx]
        if filters.include_categories:
            mask &= np.isin(codes, view.known_codes(filters.include_categories))
        if filters.exclude_categories:
            mask &= ~np.isin(codes, view.known_codes(filters.exclude_categories))
    return mask


def _top(view: CatalogView, blended, mask: np.ndarray, query, config: RankingConfig | None = None):
    """Top k with the diversity cap: the request's, else the configured one (every ranking path)."""
    cap = query.filters.max_per_category or (config.max_per_category if config is not None else None)
    return top_k(blended, mask, query.k, view.category_code if cap else None, cap)


def _to_items(view: CatalogView, ranked) -> tuple[ScoredItem, ...]:
    """ScoredItems of (index, score, reasons) rows; a row (-1, score, reasons, item_id) is an item
    the catalogue does not know (re-ranking returns it as given)."""
    return tuple(ScoredItem(view.ids[row[0]], round(row[1], 6), row[2], view.names[row[0]]) if row[0] >= 0
                 else ScoredItem(row[3], round(row[1], 6), row[2], "") for row in ranked)


def _known(seeds: dict[int, float], n_known: int) -> dict[int, float]:
    """Seeds the trained neighbour lists cover (items added live have no row there)."""
    return {i: w for i, w in seeds.items() if i < n_known}


def basket_in_progress(state: CustomerState | None, now_ms: int, active_hours: float) -> bool:
    """A live cart the customer added to within ``active_hours`` (among their recent events)."""
    if state is None or not state.cart:
        return False
    horizon = now_ms - active_hours * DAY_MS / 24
    return any(kind == "add_to_cart" and ts >= horizon for _, kind, ts in reversed(state.recent))


def recommend(model: ModelRuntime, state: CustomerState | None, query: RecommendQuery,
              config: RankingConfig, now_ms: int, view: CatalogView | None = None) -> Recommendations:
    """Top-k for one customer now. ``view`` is the shard's live catalogue over ``model``."""
    view = view if view is not None else model.plain_view()
    if not consents(state, "personalization", config.default_personalization_consent):
        return popular_answer(view, state, query, config, "no_personalization_consent")
    profile = _profile(model, query.customer_id, state)
    # a list to re-rank brings its own items: the sources need no more candidates for it
    n = config.candidates_per_source if query.filters.include_item_ids else max(config.candidates_per_source, query.k * 3)
    policy = query.filters.repurchase_policy or config.repurchase_policy
    window = query.filters.repurchase_window_days
    window = config.repurchase_window_days if window is None else window

    cart = set(query.cart_item_ids) | (set(state.cart) if state is not None else set())
    seeds = session_seeds(view, state, query, config.session_half_life)
    if seeds and query.customer_id not in model.user_index and not (state is not None and state.purchases):
        blend_used = config.anonymous_weights  # a live session, no trained history, nothing bought yet
    elif bool(query.cart_item_ids) or basket_in_progress(state, now_ms, config.cart_active_hours):
        blend_used = config.cart_weights
    else:
        blend_used = config.weights
    weights = blend_used.as_dict()
    sources: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    # a source with weight 0 cannot change the ranking: do not compute it
    if profile.vector is not None and weights["als"] > 0:
        sources["als"] = model.index.search(profile.vector, n)
    if weights["history"] > 0:
        # everything the customer ever touched, through the item-item model (binary, as it was fitted)
        sources["history"] = neighbour_candidates(model.ii_idx, model.ii_w, dict.fromkeys(profile.weights, 1.0))
    if weights["session"] > 0:
        sources["session"] = neighbour_candidates(model.covis_idx, model.covis_w, _known(seeds, view.n_known))
    if weights["transitions"] > 0 or weights["similar_sessions"] > 0:
        latest = [i for i in latest_items(view, state, query) if i < view.n_known]
        if weights["transitions"] > 0:
            following = {i: 0.5 ** age for age, i in enumerate(latest[:TRANSITION_SEEDS])}
            sources["transitions"] = neighbour_candidates(model.trans_idx, model.trans_w, following)
        if weights["similar_sessions"] > 0:
            sources["similar_sessions"] = similar_session_candidates(
                model.sess_indptr, model.sess_items, model.item_sess_indptr, model.item_sess, latest,
                model.session_alive)
    if weights["seen_again"] > 0:
        # the session's own items by recency, not the one on screen (the cart is left out by the rules)
        again = {i: w for i, w in seeds.items() if view.ids[i] != query.current_item_id}
        sources["seen_again"] = (np.fromiter(again, dtype=np.int64, count=len(again)),
                                 np.fromiter(again.values(), dtype=np.float64, count=len(again)))
    if weights["new_items"] > 0:
        sources["new_items"] = view.new_item_candidates(seeds, profile.weights)
    if policy != "exclude_always" and weights["repurchase"] > 0:
        sources["repurchase"] = repurchase_candidates(profile, now_ms, model.repurchase_cycle_days,
                                                      config.repurchase_timing)
    # Enough popular items that k survive any exclusion.
    sources["popular"] = _popular(view, n + len(profile.last_purchase_ms) + len(seeds))
    if weights.get("trending", 0) > 0:
        sources["trending"] = trending_candidates(model, query, n)
    if query.filters.boost_item_ids and weights.get("promoted", 0) > 0:
        promoted = np.fromiter(_resolve(view, query.filters.boost_item_ids), dtype=np.int64)
        sources["promoted"] = (promoted, np.ones(promoted.size))

    excluded = purchased_to_exclude(policy, profile.last_purchase_ms, now_ms, window)
    excluded |= _resolve(view, cart)
    if state is not None:
        excluded |= _resolve(view, state.returned or ())

    if query.filters.include_item_ids:
        ranked = _rerank(view, profile, sources, weights, query, excluded)
    else:
        blended = blend(sources, weights)
        ranked = _top(view, blended, _rules_mask(view, blended.idx, query.filters, excluded), query, config)
    personal = any(len(sources.get(s, ((),))[0]) for s in PERSONAL_SOURCES)
    reasons: tuple[str, ...] = ()
    if not personal:
        reasons = ("unknown_customer",) if not profile.known else ("no_personal_signal",)
        ranked = [row if row[2] and row[2][0] in RERANK_TAIL else
                  (row[0], row[1], tuple(r for r in row[2] if r in ("trending", "popular")) + ("cold_start",))
                  for row in ranked]
    return Recommendations(_to_items(view, ranked), personal, reasons, model.version)


# sources that read the customer (their history or live session): one of them proposing makes an
# answer personalised
PERSONAL_SOURCES = ("als", "history", "session", "repurchase", "new_items", "transitions", "similar_sessions",
                    "seen_again")
# why a listed item comes after the ranked ones, in this order
RERANK_TAIL = ("no_signal", "excluded_by_rules", "unknown_item")


def _rerank(view: CatalogView, profile: _Profile, sources: dict[str, tuple[np.ndarray, np.ndarray]],
            weights: dict[str, float], query: RecommendQuery, excluded: set[int]) -> list:
    """The caller's list (``include_item_ids``: a category page, search results), ranked for the
    customer, every item in it. The listed items join the candidates with their ALS and popularity
    scores (every trained item has both), the blend runs over candidates and list together (so the
    listed items keep the order they have in the customer's own recommendations), and the listed
    ones are taken out ranked. Then, in the caller's order: listed items no source scores
    ("no_signal"), items a rule keeps out ("excluded_by_rules"), items the catalogue does not know
    ("unknown_item", index -1). The top ``k`` of that order; the diversity cap does not apply."""
    model = view.model
    supplied = list(dict.fromkeys(query.filters.include_item_ids))
    found = {item: view.index_of(item) for item in supplied}
    listed = np.array(sorted({i for i in found.values() if i is not None}), dtype=np.int64)
    trained = listed[listed < view.n_known]
    extended = dict(sources)
    if profile.vector is not None and "als" in sources:
        extended["als"] = _with(sources["als"], trained,
                                lambda idx: model.item_factors[idx].astype(np.float64) @ profile.vector)
    extended["popular"] = _with(sources["popular"], trained, lambda idx: model.popularity[idx].astype(np.float64))
    extended = {name: pair for name, pair in extended.items() if pair[0].size}
    scored: dict[int, tuple[float, tuple[str, ...]]] = {}
    if extended and listed.size:
        blended = blend(extended, weights)
        rows = np.flatnonzero(np.isin(blended.idx, listed))
        for i, score, reasons in top_k(blended, np.isin(np.arange(blended.idx.size), rows), rows.size):
            if reasons:  # a source with weight 0 proposes nothing
                scored[int(i)] = (float(score), reasons)
    allowed = set(listed[_rules_mask(view, listed, dataclasses.replace(query.filters, include_item_ids=()), excluded)]
                  .tolist()) if listed.size else set()
    order = {item: n for n, item in enumerate(supplied)}
    first = sorted((i for i in scored if i in allowed), key=lambda i: (-scored[i][0], order[view.ids[i]]))
    rest: dict[str, list] = {reason: [] for reason in RERANK_TAIL}
    for item in supplied:
        i = found[item]
        if i is None:
            rest["unknown_item"].append((-1, 0.0, ("unknown_item",), item))
        elif i not in allowed:
            rest["excluded_by_rules"].append((i, 0.0, ("excluded_by_rules",)))
        elif i not in scored:
            rest["no_signal"].append((i, 0.0, ("no_signal",)))
    ranked = [(i, *scored[i]) for i in first] + [row for reason in RERANK_TAIL for row in rest[reason]]
    return ranked[:query.k]


def _with(source: tuple[np.ndarray, np.ndarray], idx: np.ndarray, score_of) -> tuple[np.ndarray, np.ndarray]:
    """A source's candidates and the items ``idx`` it did not propose, scored by ``score_of``."""
    missing = idx[~np.isin(idx, source[0])]
    if missing.size == 0:
        return source
    return np.concatenate([source[0], missing]), np.concatenate([source[1], score_of(missing)])


def trending_candidates(model: ModelRuntime, query: RecommendQuery, n: int) -> tuple[np.ndarray, np.ndarray]:
    """What is trending where the customer is: their country's list, else their channel's."""
    for key in (f"country:{query.country}" if query.country else "", f"channel:{query.channel}"):
        found = model.trend.get(key)
        if found is not None:
            row, order = found
            top = order[:n]
            return top, model.trend_pop[row][top].astype(np.float64)
    return np.zeros(0, dtype=np.int64), np.zeros(0)


def _popular(view: CatalogView, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n most popular trained items, plus items added live with their category's popularity
    (out-of-stock ones are dropped later by the rules; asking for more keeps k after that)."""
    model = view.model
    popular = model.popular_order[:n]
    new_idx, new_pop = view.new_items_by_category_popularity()
    if new_idx.size == 0:
        return popular, model.popularity[popular]
    return np.concatenate([popular, new_idx]), np.concatenate([model.popularity[popular], new_pop])


def popular_answer(view: CatalogView, state: CustomerState | None, query: RecommendQuery,
                   config: RankingConfig, reason: str) -> Recommendations:
    """Popular items, nothing learnt about the customer: what a customer who said no to
    personalisation gets ("no_personalization_consent"), and a holdout arm ("holdout").

    The cart is still excluded (showing what is in the basket helps no one); nothing from the
    customer's history, live session or the trained model's view of them is used.
    """
    n = query.k + len(query.cart_item_ids) + (len(state.cart) if state is not None else 0)
    popular = _popular(view, n + 50)
    cart = set(query.cart_item_ids) | (set(state.cart) if state is not None else set())
    if query.filters.include_item_ids:
        nobody = _Profile(None, {}, {}, {}, known=False)
        ranked = _rerank(view, nobody, {"popular": popular}, {"popular": 1.0}, query, _resolve(view, cart))
        return Recommendations(_to_items(view, ranked), False, (reason,), view.model.version)
    blended = blend({"popular": popular}, {"popular": 1.0})
    ranked = _top(view, blended, _rules_mask(view, blended.idx, query.filters, _resolve(view, cart)), query, config)
    ranked = [(i, s, ("popular",)) for i, s, _r in ranked]
    return Recommendations(_to_items(view, ranked), False, (reason,), view.model.version)


def similar_items(model: ModelRuntime, query: SimilarQuery, state: CustomerState | None,
                  weights: dict[str, float] | None = None, n: int = 200,
                  view: CatalogView | None = None) -> Recommendations:
    """Items like ``query.item_id``: co-visitation neighbours blended with factor cosine."""
    view = view if view is not None else model.plain_view()
    i = model.item_index.get(query.item_id)
    if i is None:
        return Recommendations((), False, ("unknown_item",), model.version, strategy="similar_items")
    neighbours = model.covis_idx[i]
    valid = neighbours >= 0
    vector = model.item_factors[i] / model.item_norms[i]
    cos_idx, cos_scores = model.index.search(vector, n)
    cosine = cos_scores / model.item_norms[cos_idx]
    sources = {"co_visitation": (neighbours[valid].astype(np.int64), model.covis_w[i][valid]),
               "similar": (cos_idx, cosine)}
    blended = blend(sources, weights or {"co_visitation": 1.0, "similar": 0.7})
    excluded = {i}
    if state is not None:
        excluded |= _resolve(view, state.cart)
    ranked = _top(view, blended, _rules_mask(view, blended.idx, query.filters, excluded), query)
    return Recommendations(_to_items(view, ranked), False, (), model.version, strategy="similar_items")
