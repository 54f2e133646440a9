"""Category filters, promoted-item boosts and the diversity cap, through the serving pipeline."""
from collections import Counter

from hypothesis import given, settings, strategies as st

from engine.config import RankingConfig
from engine.queries import parse_recommend
from engine.state import CustomerState, apply_event
from engine.events import parse_event
from recommenders.recommend import recommend

NOW = 1_800_000_000_000


def shopper(*items, customer="c-rules"):
    state = CustomerState(customer)
    for n, item in enumerate(items):
        apply_event(state, parse_event({"event_id": f"e{n}", "customer_id": customer, "event_type": "purchase",
                                        "item_id": item, "channel": "web", "timestamp_ms": NOW - 10 * 86_400_000},
                                       NOW))
    return state


def ask(model, state, **filters):
    query = parse_recommend({"customer_id": "c-rules", "k": 10, "filters": filters}, 100)
    return recommend(model, state, query, RankingConfig(), NOW).items


def category(model, item_id):
    return model.plain_view().category[model.item_index[item_id]]


def test_category_include_and_exclude(synthetic_model):
    state = shopper("i0021", "i0022", "i0025")  # a group-1 shopper
    only = ask(synthetic_model, state, include_categories=["group-2"])
    assert only and {category(synthetic_model, i.item_id) for i in only} == {"group-2"}
    without = ask(synthetic_model, state, exclude_categories=["group-1"])
    assert without and "group-1" not in {category(synthetic_model, i.item_id) for i in without}
    assert ask(synthetic_model, state, include_categories=["no-such-category"]) == ()


def test_promoted_items_are_boosted_with_their_reason(synthetic_model):
    state = shopper("i0021", "i0022", "i0025")
    query = parse_recommend({"customer_id": "c-rules", "k": 40}, 100)
    ranked = [i.item_id for i in recommend(synthetic_model, state, query, RankingConfig(), NOW).items]
    target = ranked[14]  # a candidate well outside the top 10
    boosted = ask(synthetic_model, state, boost_item_ids=[target])
    hit = [n for n, i in enumerate(boosted) if i.item_id == target]
    assert hit and "promoted" in boosted[hit[0]].reasons


@settings(max_examples=25, deadline=None)
@given(cap=st.integers(1, 4), seed_group=st.integers(0, 2))
def test_diversity_cap_holds_and_k_is_still_filled(synthetic_model, cap, seed_group):
    items = [f"i{seed_group * 20 + j:04d}" for j in (1, 2, 5)]
    got = ask(synthetic_model, shopper(*items), max_per_category=cap)
    per_category = Counter(category(synthetic_model, i.item_id) for i in got)
    assert max(per_category.values()) <= cap
    assert len(got) == min(10, 3 * cap)  # three categories in the shop


def test_diversity_cap_holds_on_every_ranking_path(synthetic_model):
    """Similar items and the no-consent answer honour the request's max_per_category too."""
    from engine.queries import parse_similar
    from recommenders.recommend import similar_items

    similar = similar_items(synthetic_model, parse_similar({"item_id": "i0001", "k": 10,
                                                             "filters": {"max_per_category": 1}}, 100), None)
    assert similar.items and max(Counter(category(synthetic_model, i.item_id) for i in similar.items).values()) == 1
    state = shopper("i0001")
    apply_event(state, parse_event({"event_id": "consent", "customer_id": "c-rules", "event_type": "consent",
                                    "channel": "web", "attributes": {"personalization": "denied"},
                                    "timestamp_ms": NOW - 1000}, NOW))
    got = ask(synthetic_model, state, max_per_category=2)
    assert got and max(Counter(category(synthetic_model, i.item_id) for i in got).values()) <= 2
    assert len(got) == 6  # three categories in the shop, two each


def test_a_basket_in_progress_switches_to_the_cart_blend(synthetic_model):
    """For a customer the model knows, `weights` rank without a cart, `cart_weights` with one, whether
    the cart comes in the request or from the customer's live state; a visitor the model does not
    know and who has bought nothing ranks with `anonymous_weights` once their session has items."""
    from engine.config import BlendWeights

    only = {name: 0.0 for name in BlendWeights().as_dict()}
    config = RankingConfig(weights=BlendWeights(**{**only, "popular": 1.0}),
                           cart_weights=BlendWeights(**{**only, "session": 1.0}),
                           anonymous_weights=BlendWeights(**{**only, "transitions": 1.0}))
    assert "c21" in synthetic_model.user_index

    def reasons(query_cart=(), live_cart=(), added_hours_ago=0.0, customer="c21", bought=("i0021", "i0022")):
        live = shopper(*bought, customer=customer)
        added = NOW - int(added_hours_ago * 3_600_000)
        for n, item in enumerate(live_cart):
            apply_event(live, parse_event({"event_id": f"c{n}", "customer_id": customer, "event_type": "add_to_cart",
                                           "item_id": item, "channel": "web", "timestamp_ms": added}, NOW))
        query = parse_recommend({"customer_id": customer, "k": 10, "context": {"cart_item_ids": list(query_cart)}},
                                 100)
        items = recommend(synthetic_model, live, query, config, NOW).items
        assert items
        return {r for item in items for r in item.reasons}

    for cart in ({"live_cart": ["i0025"]}, {"query_cart": ["i0025"]}):
        assert reasons(customer="c-unknown", bought=(), **cart) == {"transitions"}, cart
        # once they have bought, their own history counts: the blends of a known customer
        assert "transitions" not in reasons(customer="c-unknown", **cart), cart
    without = reasons()
    assert "popular" in without and "session" not in without
    assert "session" in reasons(query_cart=["i0025"]) and "popular" not in reasons(query_cart=["i0025"])
    assert "session" in reasons(live_cart=["i0025"]) and "popular" not in reasons(live_cart=["i0025"])
    assert "session" in reasons(live_cart=["i0025"], added_hours_ago=23)
    # a cart left alone longer than cart_active_hours (24) is not a basket in progress any more
    stale = reasons(live_cart=["i0025"], added_hours_ago=25)
    assert "popular" in stale and "session" not in stale
