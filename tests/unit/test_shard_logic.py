"""The shard's behaviour without Ray: the next answer reflects the last event."""
from engine.config import RankingConfig
from engine.events import parse_event
from engine.queries import RecommendQuery
from actors.shard import CustomerShardLogic

NOW = 1_800_000_000_000
PER_GROUP = 20  # synthetic shop: 60 items in 3 groups


def group(item_id: str) -> int:
    return int(item_id[1:]) // PER_GROUP


def event(n, customer, kind, item, ts=NOW - 1000):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": "web", "timestamp_ms": ts}, NOW)


def top(shard, customer, k=10):
    return shard.recommend(RecommendQuery(customer_id=customer, channel="web", k=k), NOW)


def test_unknown_customer_gets_popular_with_reason(synthetic_model):
    shard = CustomerShardLogic(0, synthetic_model, RankingConfig())
    result = top(shard, "never-seen")
    assert not result.personalized and result.reasons == ("unknown_customer",)
    assert len(result.items) == 10 and all("cold_start" in i.reasons for i in result.items)


def test_cart_and_purchase_are_excluded_next_time(synthetic_model):
    shard = CustomerShardLogic(0, synthetic_model, RankingConfig())
    first = [i.item_id for i in top(shard, "c0").items]
    shard.track([event(1, "c0", "add_to_cart", first[0])])
    after_cart = [i.item_id for i in top(shard, "c0").items]
    assert first[0] not in after_cart
    shard.track([event(2, "c0", "purchase", after_cart[0])])
    after_purchase = [i.item_id for i in top(shard, "c0").items]
    assert after_cart[0] not in after_purchase
    # the purchase took the cart item? no: it bought a different one, the cart item stays out
    assert first[0] not in after_purchase


def test_repurchase_policy_is_configurable(synthetic_model):
    never = CustomerShardLogic(0, synthetic_model, RankingConfig(repurchase_policy="exclude_never"))
    always = CustomerShardLogic(0, synthetic_model, RankingConfig(repurchase_policy="exclude_always"))
    bought = "i0001"
    for shard in (never, always):
        shard.track([event(n, "fresh", "purchase", bought, ts=NOW - n) for n in range(3)])
    assert bought in [i.item_id for i in top(never, "fresh", k=20).items]
    assert bought not in [i.item_id for i in top(always, "fresh", k=60).items]


def test_a_few_views_move_results_to_their_neighbourhood(synthetic_model):
    shard = CustomerShardLogic(0, synthetic_model, RankingConfig())
    before = [group(i.item_id) for i in top(shard, "browser").items]
    shard.track([event(n, "browser", "view", f"i{45 + n:04d}") for n in range(3)])  # group 2
    result = top(shard, "browser")
    after = [group(i.item_id) for i in result.items]
    assert result.personalized
    assert after.count(2) >= 8, after
    assert after.count(2) > before.count(2)
    assert "session" in result.items[0].reasons


def test_duplicate_delivery_applied_once(synthetic_model):
    shard = CustomerShardLogic(0, synthetic_model, RankingConfig())
    assert shard.track([event(1, "c3", "view", "i0002")]) == (1, 0)
    assert shard.track([event(1, "c3", "view", "i0002")]) == (0, 1)
    assert shard.customers["c3"].event_count == 1
