"""Marketing consent gates every marketing action and offer: cart-abandonment and cross-sell
actions (CustomerShardLogic.due_actions), and NextBestOffer (decide's marketing_consent rule,
which e-mail and push apply even to an offer declared consent_required = false)."""
import numpy as np
import pytest

from actors.shard import CustomerShardLogic
from actors.shard_offers import catalog_from_toml
from actors.store import SqliteEventStore
from engine.config import OffersConfig, RankingConfig
from engine.events import parse_event
from engine.queries import parse_offer_query

NOW = 1_800_000_000_000
MINUTE = 60_000
CATALOG = """
version = "c-1"
[[offers]]
id = "service-treat"
name = "A treat needing no consent (a service offer)"
value = 1.0
[offers.eligibility]
consent_required = false
[[offers]]
id = "coupon"
name = "Marketing coupon"
value = 1.0
"""


@pytest.fixture
def shard(tmp_path, synthetic_model):
    return CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "c.db"),
                              offer_catalog=catalog_from_toml(CATALOG, "test"))


def event(customer, kind, n, item="", ts=NOW, channel="web", **attributes):
    raw = {"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind, "channel": channel,
           "timestamp_ms": ts}
    if item:
        raw["item_id"] = item
    if attributes:
        raw["attributes"] = attributes
    return parse_event(raw, NOW + 60 * MINUTE)


def consent(customer, value, n=0, ts=NOW - 1):
    return event(customer, "consent", f"consent{n}", ts=ts, marketing=value)


def kinds_for(actions, customer):
    return sorted(a["kind"] for a in actions if a["customer_id"] == customer)


def test_cart_abandonment_only_for_customers_with_marketing_consent(shard):
    shard.track([consent("yes", "granted"), consent("no", "denied")])
    for customer in ("yes", "no", "never-said"):
        shard.track([event(customer, "add_to_cart", 1, item="i0003")])
    actions = shard.due_actions(NOW + 31 * MINUTE)
    assert kinds_for(actions, "yes") == ["cart_abandonment"]
    assert kinds_for(actions, "no") == [] and kinds_for(actions, "never-said") == []  # opt-in by default


def test_consent_withdrawn_before_the_action_is_due_stops_it(shard):
    shard.track([consent("changed", "granted"), event("changed", "add_to_cart", 1, item="i0003")])
    shard.track([consent("changed", "denied", n=1, ts=NOW + MINUTE)])
    assert kinds_for(shard.due_actions(NOW + 31 * MINUTE), "changed") == []


def test_cross_sell_only_for_customers_with_marketing_consent(shard):
    shard.track([consent("yes", "granted"), consent("no", "denied")])
    for customer in ("yes", "no", "never-said"):
        shard.track([event(customer, "purchase", 1, item="i0030", channel="pos")])
    actions = shard.due_actions(NOW + MINUTE)
    assert kinds_for(actions, "yes") == ["cross_sell"]
    assert kinds_for(actions, "no") == [] and kinds_for(actions, "never-said") == []


def test_a_shop_whose_customers_opted_in_by_default_gets_actions(tmp_path, synthetic_model):
    shard = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "d.db"),
                               offers_config=OffersConfig(default_marketing_consent=True))
    shard.track([event("a", "add_to_cart", 1, item="i0003"), consent("b", "denied"),
                 event("b", "add_to_cart", 1, item="i0003")])
    actions = shard.due_actions(NOW + 31 * MINUTE)
    assert kinds_for(actions, "a") == ["cart_abandonment"] and kinds_for(actions, "b") == []


@pytest.mark.parametrize("channel, marketing, offered", [
    ("pos", "denied", ["service-treat"]),  # a service offer at the till: the operator's declared choice
    ("web", "denied", ["service-treat"]),
    ("email", "denied", []),  # direct marketing: consent is needed whatever the catalogue says
    ("push", "denied", []),
    ("email", "granted", ["coupon", "service-treat"]),
    ("web", "granted", ["coupon", "service-treat"]),
])
def test_next_best_offer_needs_consent_for_marketing(shard, channel, marketing, offered):
    shard.track([consent("c", marketing)])
    reply, _ = shard.offer_decision(parse_offer_query({"customer_id": "c", "channel": channel, "n": 5}), NOW,
                                    np.random.default_rng(0))
    assert sorted(o["offer_id"] for o in reply["offers"]) == offered
    if not offered:
        assert reply["reason"] == "no_marketing_consent"
        assert reply["rejected"] == {"service-treat": "marketing_consent", "coupon": "marketing_consent"}
