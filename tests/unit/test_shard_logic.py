"""The shard's behaviour without Ray: the next answer reflects the last event."""
import pytest

from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.errors import NotFound
from engine.events import parse_event
from engine.queries import RecommendQuery
from engine.state import state_to_dict

NOW = 1_800_000_000_000
PER_GROUP = 20  # synthetic shop: 60 items in 3 groups


def group(item_id: str) -> int:
    return int(item_id[1:]) // PER_GROUP


def event(n, customer, kind, item, ts=NOW - 1000):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": "web", "timestamp_ms": ts}, NOW)


def top(shard, customer, k=10):
    return shard.recommend(RecommendQuery(customer_id=customer, channel="web", k=k), NOW)


@pytest.fixture
def make_shard(tmp_path, synthetic_model):
    def make(ranking=RankingConfig(), name="store.db", snapshot_every=10_000, shard_id=0):
        return CustomerShardLogic(shard_id, synthetic_model, ranking, SqliteEventStore(tmp_path / name), snapshot_every)
    return make


def test_unknown_customer_gets_popular_with_reason(make_shard):
    shard = make_shard()
    result = top(shard, "never-seen")
    assert not result.personalized and result.reasons == ("unknown_customer",)
    assert len(result.items) == 10 and all("cold_start" in i.reasons for i in result.items)


def test_cart_and_purchase_are_excluded_next_time(make_shard):
    # the shipped default re-offers what was bought (Online Retail's customers re-buy); a shop that
    # hides recent purchases says so
    shard = make_shard(RankingConfig(repurchase_policy="exclude_within_window"))
    first = [i.item_id for i in top(shard, "c0").items]
    shard.track([event(1, "c0", "add_to_cart", first[0])])
    after_cart = [i.item_id for i in top(shard, "c0").items]
    assert first[0] not in after_cart
    shard.track([event(2, "c0", "purchase", after_cart[0])])
    after_purchase = [i.item_id for i in top(shard, "c0").items]
    assert after_cart[0] not in after_purchase
    # the purchase took the cart item? no: it bought a different one, the cart item stays out
    assert first[0] not in after_purchase


def test_repurchase_policy_is_configurable(make_shard):
    never = make_shard(RankingConfig(repurchase_policy="exclude_never"), name="never.db")
    always = make_shard(RankingConfig(repurchase_policy="exclude_always"), name="always.db")
    bought = "i0001"
    for shard in (never, always):
        shard.track([event(n, "fresh", "purchase", bought, ts=NOW - n) for n in range(3)])
    assert bought in [i.item_id for i in top(never, "fresh", k=20).items]
    assert bought not in [i.item_id for i in top(always, "fresh", k=60).items]


def test_a_few_views_move_results_to_their_neighbourhood(make_shard):
    shard = make_shard()
    before = [group(i.item_id) for i in top(shard, "browser").items]
    shard.track([event(n, "browser", "view", f"i{45 + n:04d}") for n in range(3)])  # group 2
    result = top(shard, "browser")
    after = [group(i.item_id) for i in result.items]
    assert result.personalized
    assert after.count(2) >= 8, after
    assert after.count(2) > before.count(2)
    assert "session" in result.items[0].reasons


def test_duplicate_delivery_applied_once(make_shard):
    shard = make_shard()
    assert shard.track([event(1, "c3", "view", "i0002")]) == (1, 0)
    assert shard.track([event(1, "c3", "view", "i0002")]) == (0, 1)
    assert shard.customers["c3"].event_count == 1


def test_recovery_from_snapshot_and_log(make_shard):
    shard = make_shard(snapshot_every=5)
    for n in range(12):
        shard.track([event(n, f"r{n % 3}", "add_to_cart" if n % 2 else "view", f"i{n:04d}")])
    assert shard.store.latest_snapshot(0) is not None  # written after 5 and 10 events
    before = {c: s.cart for c, s in shard.customers.items()}
    states = {c: state_to_dict(s) for c, s in shard.customers.items()}
    again = make_shard(snapshot_every=5)
    report = again.recover()
    assert report["from_snapshot"] and report["replayed"] == 2 and report["customers"] == 3
    assert {c: s.cart for c, s in again.customers.items()} == before
    assert {c: state_to_dict(s) for c, s in again.customers.items()} == states
    assert again.last_seq == shard.last_seq
    # a re-delivery after the restart is still recognised, from the store
    assert again.track([event(3, "r0", "add_to_cart", "i0003")]) == (0, 1)


def test_no_personalisation_consent(make_shard):
    shard = make_shard()
    shard.track([event(n, "private", "view", f"i{45 + n:04d}") for n in range(3)])
    assert top(shard, "private").personalized
    shard.track([parse_event({"event_id": "consent-1", "customer_id": "private", "event_type": "consent",
                              "channel": "web", "attributes": {"personalization": "denied"}}, NOW)])
    result = top(shard, "private")
    assert not result.personalized and result.reasons == ("no_personalization_consent",)
    assert all(i.reasons == ("popular",) for i in result.items)
    strict = make_shard(RankingConfig(default_personalization_consent=False), name="strict.db")
    assert top(strict, "c0").reasons == ("no_personalization_consent",)


def test_forget_erases_state_events_and_snapshots(make_shard):
    shard = make_shard(snapshot_every=2)
    shard.track([event(n, "leaving", "add_to_cart", f"i{n:04d}") for n in range(4)])
    shard.track([event(9, "staying", "view", "i0009")])
    assert shard.store.latest_snapshot(0) is not None
    report = shard.forget("leaving", principal="admin-key")
    assert report == {"customer_id": "leaving", "events_deleted": 4, "live_state_erased": True}
    assert "leaving" not in shard.customers
    assert shard.store.customer_events("leaving") == []
    again = make_shard(snapshot_every=2)
    again.recover()
    assert "leaving" not in again.customers and "staying" in again.customers
    assert "leaving" in shard.store.forgotten_customers()
    assert all(e.customer_id != "leaving" for e in shard.store.export_events())
    with pytest.raises(NotFound):
        shard.export("leaving", principal="admin-key")
    actions = [(a["action"], a["target"], a["principal"]) for a in shard.store.audit_log()]
    assert ("forget_customer", "leaving", "admin-key") in actions


def test_export_returns_everything_held(make_shard):
    shard = make_shard()
    shard.track([event(1, "curious", "add_to_cart", "i0001"), event(2, "curious", "view", "i0002")])
    exported = shard.export("curious", principal="admin-key")
    assert exported["state"]["cart"] == {"i0001": 1.0}
    assert [e["event_id"] for e in exported["events"]] == ["curious-1", "curious-2"]
    assert shard.store.audit_log()[-1]["action"] == "export_customer"
