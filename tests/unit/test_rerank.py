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
