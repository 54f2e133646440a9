"""Re-ranking a caller's list (include_item_ids): every listed item comes back, scored and ordered
for the customer, unknown and ruled-out items last with a reason, through the serving pipeline."""
from engine.config import RankingConfig
from engine.events import parse_event
from engine.queries import parse_recommend
from engine.state import CustomerState, apply_event
from recommenders.recommend import recommend

NOW = 1_800_000_000_000


def shopper(customer, *events):
    state = CustomerState(customer)
    for n, (kind, item) in enumerate(events):
        apply_event(state, parse_event({"event_id": f"e{n}", "customer_id": customer, "event_type": kind,
                                        "item_id": item, "channel": "web", "timestamp_ms": NOW - 86_400_000}, NOW))
    return state


def rerank(model, state, items, customer="c-rerank", **extra):
    query = parse_recommend({"customer_id": customer, "filters": {"include_item_ids": items, **extra.pop("filters", {})},
                             **extra}, 100)
    return recommend(model, state, query, RankingConfig(), NOW, model.plain_view())


def long_tail(model, n):
    """The n least popular trained items: no candidate source proposes them to a new shopper."""
    return [model.item_ids[i] for i in model.popular_order[-n:].tolist()]


def test_every_listed_item_comes_back_once_unknown_last(synthetic_model):
    listed = long_tail(synthetic_model, 10) + ["no-such-item", "another-unknown"]
    state = shopper("c-rerank", ("view", "i0021"), ("purchase", "i0022"))
    got = rerank(synthetic_model, state, listed).items
    assert sorted(i.item_id for i in got) == sorted(listed)
    assert [i.item_id for i in got[-2:]] == ["no-such-item", "another-unknown"]
    assert all(i.reasons == ("unknown_item",) and i.score == 0 for i in got[-2:])
    scores = [i.score for i in got[:10]]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert all(i.reasons and i.reasons[0] != "unknown_item" for i in got[:10])


def test_the_order_is_the_customers(synthetic_model):
    """A shopper of group 1 gets the group-1 items of a mixed list first; a shopper of group 2 the
    group-2 ones (the synthetic shop has three groups of 20 items)."""
    mixed = [f"i{j:04d}" for j in range(30, 40)] + [f"i{j:04d}" for j in range(10, 20)]
    for group, seen in ((0, ("i0001", "i0002", "i0005")), (1, ("i0021", "i0022", "i0025"))):
        state = shopper(f"c-g{group}", *[("purchase", i) for i in seen])
        top = [i.item_id for i in rerank(synthetic_model, state, mixed, customer=f"c-g{group}").items[:10]]
        assert sum(int(i[1:]) // 20 == group for i in top) >= 8, (group, top)


def test_k_takes_the_top_of_the_list(synthetic_model):
    listed = [f"i{j:04d}" for j in range(40, 60)]
    whole = rerank(synthetic_model, None, listed).items
    top3 = rerank(synthetic_model, None, listed, k=3).items
    assert len(whole) == 20 and [i.item_id for i in top3] == [i.item_id for i in whole[:3]]


def test_ruled_out_items_come_back_after_the_ranked_ones(synthetic_model):
    listed = [f"i{j:04d}" for j in range(20, 30)]
    state = shopper("c-cart", ("add_to_cart", "i0023"))
    got = rerank(synthetic_model, state, listed, customer="c-cart", filters={"exclude_item_ids": ["i0027"]}).items
    assert len(got) == 10
    assert {i.item_id for i in got[-2:]} == {"i0023", "i0027"}
    assert all(i.reasons == ("excluded_by_rules",) for i in got[-2:])


def test_without_personalisation_consent_the_list_still_comes_back_whole(synthetic_model):
    state = shopper("c-no", ("view", "i0021"))
    apply_event(state, parse_event({"event_id": "consent", "customer_id": "c-no", "event_type": "consent",
                                    "item_id": "", "channel": "web",
                                    "attributes": {"personalization": "denied"}}, NOW))
    listed = long_tail(synthetic_model, 6) + ["no-such-item"]
    got = rerank(synthetic_model, state, listed, customer="c-no")
    assert got.reasons == ("no_personalization_consent",)
    assert [i.item_id for i in got.items][-1] == "no-such-item" and len(got.items) == 7
    assert all(i.reasons == ("popular",) for i in got.items[:6])


def test_listed_items_keep_the_order_and_scores_of_the_customers_own_recommendations(synthetic_model):
    """Re-ranking a customer's own top 10 (given in reverse) gives back the same scores and order:
    the blend is scaled over the candidates and the list together, not over the list alone."""
    state = shopper("c103", ("view", "i0034"), ("add_to_cart", "i0038"), ("purchase", "i0021"))
    own = recommend(synthetic_model, state, parse_recommend({"customer_id": "c103", "k": 10}, 100),
                    RankingConfig(), NOW, synthetic_model.plain_view()).items
    again = rerank(synthetic_model, state, [i.item_id for i in reversed(own)], customer="c103").items
    assert {i.item_id: i.score for i in again} == {i.item_id: i.score for i in own}
    assert [i.score for i in again] == [i.score for i in own]


def test_als_scores_listed_items_it_would_not_have_proposed(synthetic_model):
    """With 5 candidates per source, most of a 20-item list is outside what ALS proposes; each
    still gets its ALS score (reason "als"), so the customer's taste orders the whole list."""
    state = shopper("c-als", *[("purchase", f"i{j:04d}") for j in (1, 2, 5)])
    listed = [f"i{j:04d}" for j in range(0, 60, 3)]
    query = parse_recommend({"customer_id": "c-als", "filters": {"include_item_ids": listed}}, 100)
    got = recommend(synthetic_model, state, query, RankingConfig(candidates_per_source=5), NOW,
                    synthetic_model.plain_view()).items
    assert len(got) == 20 and sum("als" in i.reasons for i in got) >= 15


def test_a_repeated_item_comes_back_once_and_an_unknown_customer_gets_the_list_too(synthetic_model):
    listed = ["i0050", "i0051", "i0050", "nope", "i0052", "nope"]
    got = rerank(synthetic_model, None, listed, customer="never-seen")
    assert [i.item_id for i in got.items][-1] == "nope" and len(got.items) == 4
    assert got.reasons == ("unknown_customer",)
    assert all("cold_start" in i.reasons for i in got.items[:3]) and got.items[3].reasons == ("unknown_item",)


def test_items_no_source_scores_come_before_ruled_out_and_unknown_ones(synthetic_model):
    """With every source weighted 0 nothing scores: the list comes back in the caller's order,
    no_signal first, then excluded_by_rules, then unknown_item."""
    from engine.config import BlendWeights

    silent = BlendWeights(**{name: 0.0 for name in BlendWeights.__dataclass_fields__})
    config = RankingConfig(weights=silent, cart_weights=silent)
    query = parse_recommend({"customer_id": "c-none", "filters": {
        "include_item_ids": ["nope", "i0003", "i0001", "i0002"], "exclude_item_ids": ["i0001"]}}, 100)
    got = recommend(synthetic_model, None, query, config, NOW, synthetic_model.plain_view()).items
    assert [(i.item_id, i.reasons[-1]) for i in got] == [
        ("i0003", "no_signal"), ("i0002", "no_signal"), ("i0001", "excluded_by_rules"), ("nope", "unknown_item")]
