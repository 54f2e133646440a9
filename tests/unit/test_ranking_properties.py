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


@settings(max_examples=200, deadline=None)
@given(candidate_lists, st.lists(st.tuples(st.integers(0, 50), st.floats(0, 10)), max_size=60))
def test_dense_and_sorted_unions_agree(raw, weighted):
    """The dense-array path (small catalogues) and the sorting path (huge ones) are one function:
    same indices, same scores to the bit, same reasons."""
    import engine.ranking as ranking

    candidates = {name: (np.array([i for i, _ in pairs], dtype=np.int64), np.array([s for _, s in pairs]))
                  for name, pairs in raw.items()}
    idx = np.array([i for i, _ in weighted], dtype=np.int64)
    w = np.array([x for _, x in weighted])
    limit = ranking.DENSE_INDEX_LIMIT
    try:
        dense = blend(candidates, {name: 1.0 for name in SOURCES})
        dense_sum = ranking.sum_by_index(idx, w, 51)
        ranking.DENSE_INDEX_LIMIT = 0
        sorted_ = blend(candidates, {name: 1.0 for name in SOURCES})
        sorted_sum = ranking.sum_by_index(idx, w, 10**9)   # so large that the dense path is not taken
    finally:
        ranking.DENSE_INDEX_LIMIT = limit
    assert np.array_equal(dense.idx, sorted_.idx)
    assert np.array_equal(dense.score, sorted_.score)
    assert np.array_equal(dense.contributions, sorted_.contributions)
    assert top_k(dense, np.ones(dense.idx.size, bool), 10) == top_k(sorted_, np.ones(sorted_.idx.size, bool), 10)
    assert np.array_equal(dense_sum[0], sorted_sum[0]) and np.array_equal(dense_sum[1], sorted_sum[1])
    assert dense_sum[0].tolist() == sorted(set(idx.tolist()))


def test_diversity_cap_takes_the_best_of_each_group_beyond_the_first_slice():
    # 300 items of group 0 outrank 5 of groups 1 and 2: with a cap of 2, the answer reaches past the
    # first slice of the ranking to find groups 1 and 2
    scores = np.concatenate([np.linspace(10, 5, 300), np.linspace(4, 3, 5)])
    idx = np.arange(305)
    blended = blend({"als": (idx, scores)}, {"als": 1.0})
    groups = np.array([0] * 300 + [1, 1, 1, 2, 2])
    ranked = top_k(blended, np.ones(305, bool), 5, groups, 2)
    assert [i for i, _, _ in ranked] == [0, 1, 300, 301, 303]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 6)), min_size=1, max_size=300),
       st.integers(1, 12), st.sampled_from([None, 1, 2, 3]), st.integers(0, 2**32 - 1))
def test_top_k_equals_a_full_sort(pairs, k, cap, seed):
    """top_k ranks only a prefix when it can; the answer must be that of sorting everything by
    (score descending, item index), then walking it with the per-group cap. Scores from a small
    set give many ties at the edge of the prefix."""
    idx = np.array([i for i, _ in pairs], dtype=np.int64)
    blended = blend({"als": (idx, np.array([float(s) for _, s in pairs]))}, {"als": 1.0})
    rng = np.random.default_rng(seed)
    allowed = rng.random(blended.idx.size) < 0.8
    groups = rng.integers(-1, 4, size=401)
    got = [i for i, _, _ in top_k(blended, allowed, k, groups if cap else None, cap)]
    rows = sorted(np.flatnonzero(allowed).tolist(), key=lambda r: (-blended.score[r], blended.idx[r]))
    expected, taken = [], {}
    for r in rows:
        item = int(blended.idx[r])
        group = int(groups[item])
        if cap and group >= 0 and taken.get(group, 0) >= cap:
            continue
        taken[group] = taken.get(group, 0) + 1
        expected.append(item)
        if len(expected) == k:
            break
    assert got == expected


def test_nan_scores_rank_last_as_a_full_sort_puts_them():
    from engine.ranking import Blended

    nan = float("nan")
    for scores, k, expected in (([nan, 1.0, 2.0, 3.0], 2, [3, 2]), ([nan, nan, 2.0, 3.0], 1, [3])):
        blended = Blended(np.arange(4), np.array(scores), np.ones((4, 1)), ("als",))
        assert [i for i, _, _ in top_k(blended, np.ones(4, bool), k)] == expected
    # an item proposed twice, once with NaN: its best real score counts
    blended = blend({"als": (np.array([3, 3, 5]), np.array([nan, 1.0, 2.0]))}, {"als": 1.0})
    assert blended.idx.tolist() == [3, 5] and blended.score.tolist() == [0.05, 1.0]
