"""Properties every ranking must have, whatever the candidates: sorted, at most k, excluded
items absent, no duplicates."""
import numpy as np
from hypothesis import given, settings, strategies as st

from engine.config import RankingConfig
from engine.events import parse_event
from engine.queries import Filters, RecommendQuery
from engine.ranking import SOURCES, blend, top_k
from engine.state import CustomerState, apply_event
from recommenders.recommend import recommend

NOW = 1_800_000_000_000

candidate_lists = st.dictionaries(
    st.sampled_from(SOURCES),
    st.lists(st.tuples(st.integers(0, 50), st.floats(-1e6, 1e6, allow_nan=False)), max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(candidate_lists, st.integers(1, 30), st.sets(st.integers(0, 50)))
def test_blend_top_k_properties(raw, k, excluded):
    candidates = {name: (np.array([i for i, _ in pairs], dtype=np.int64), np.array([s for _, s in pairs]))
                  for name, pairs in raw.items()}
    blended = blend(candidates, {name: 1.0 for name in SOURCES})
    allowed = ~np.isin(blended.idx, np.array(sorted(excluded), dtype=np.int64))
    ranked = top_k(blended, allowed, k)
    ids = [i for i, _, _ in ranked]
    scores = [s for _, s, _ in ranked]
    assert len(ranked) <= k
    assert len(ids) == len(set(ids))
    assert not set(ids) & excluded
    assert scores == sorted(scores, reverse=True)
    proposed = {int(i) for name in candidates for i in candidates[name][0]}
    assert set(ids) <= proposed
    # everything allowed that was proposed is returned, up to k
    assert len(ranked) == min(k, len(proposed - excluded))
    for _, _, reasons in ranked:
        assert reasons and set(reasons) <= set(SOURCES)


event_types = st.sampled_from(["view", "add_to_cart", "remove_from_cart", "purchase", "return"])


@settings(max_examples=60, deadline=None)
@given(
    customer=st.sampled_from(["c0", "c1", "c7", "stranger"]),
    history=st.lists(st.tuples(event_types, st.integers(0, 65)), max_size=25),
    k=st.integers(1, 40),
    exclude=st.lists(st.integers(0, 65), max_size=10),
    policy=st.sampled_from(["exclude_always", "exclude_never", "exclude_within_window"]),
    cart=st.lists(st.integers(0, 65), max_size=5),
)
def test_recommend_properties(synthetic_model, customer, history, k, exclude, policy, cart):
    state = CustomerState(customer)
    for n, (kind, item) in enumerate(history):
        apply_event(state, parse_event({"event_id": str(n), "customer_id": customer, "event_type": kind,
                                        "item_id": f"i{item:04d}", "channel": "web"}, NOW - 1000 + n))
    exclude_ids = tuple(f"i{i:04d}" for i in exclude)
    cart_ids = tuple(f"i{i:04d}" for i in cart)
    query = RecommendQuery(customer_id=customer, channel="web", k=k, cart_item_ids=cart_ids,
                           filters=Filters(exclude_item_ids=exclude_ids, repurchase_policy=policy))
    result = recommend(synthetic_model, state, query, RankingConfig(), NOW)
    ids = [i.item_id for i in result.items]
    scores = [i.score for i in result.items]
    assert len(ids) <= k and len(ids) == len(set(ids))
    assert scores == sorted(scores, reverse=True)
    assert not set(ids) & set(exclude_ids)
    assert not set(ids) & set(cart_ids) and not set(ids) & set(state.cart)
    assert not set(ids) & (state.returned or set())
    if policy == "exclude_always":
        assert not set(ids) & set(state.purchases)
    assert all(i.reasons for i in result.items)
