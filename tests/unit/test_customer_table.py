"""Packed (idle) customers behave exactly like unpacked ones."""
import orjson

from actors.customer_table import CustomerTable
from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.events import parse_event
from engine.queries import RecommendQuery
from engine.state import CustomerState, apply_event, state_to_dict

NOW = 1_800_000_000_000


def event(n, customer, kind, item):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind, "item_id": item,
                        "channel": "pos" if n % 2 else "web", "timestamp_ms": NOW - 10_000 + n, "price": 2.5}, NOW)


def test_least_recently_used_are_packed_and_come_back_equal():
    table = CustomerTable(max_hot=10)
    originals = {}
    for c in range(30):
        state = CustomerState(f"c{c}")
        for n, kind in enumerate(("view", "add_to_cart", "purchase", "return")):
            apply_event(state, event(n, f"c{c}", kind, f"i{c % 7:04d}"))
        table[f"c{c}"] = state
        originals[f"c{c}"] = state_to_dict(state)
    assert len(table) == 30 and table.hot_count <= 10
    assert "c0" in table and table.get("c0") is not None and table.hot_count <= 10
    assert {c: state_to_dict(s) for c, s in table.items()} == originals
    snapshot = orjson.loads(orjson.dumps(table.snapshot_entries()))
    assert sorted(snapshot, key=lambda d: d["customer_id"]) == sorted(originals.values(), key=lambda d: d["customer_id"])
    assert table.pop("c5") is not None and "c5" not in table and len(table) == 29


def test_a_shard_with_a_tiny_hot_set_answers_as_one_with_everyone_unpacked(tmp_path, synthetic_model):
    roomy = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "a.db"))
    tight = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "b.db"),
                               hot_customers=3)
    for c in range(20):
        for n, kind in enumerate(("view", "add_to_cart", "view", "purchase")):
            e = event(n, f"c{c}", kind, f"i{(c * 3 + n) % 60:04d}")
            roomy.track([e])
            tight.track([e])
    assert tight.customers.hot_count <= 3 and len(tight.customers) == 20
    for c in range(20):
        query = RecommendQuery(customer_id=f"c{c}", channel="web", k=10)
        assert tight.recommend(query, NOW) == roomy.recommend(query, NOW)
    tight.write_snapshot()
    again = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "b.db"),
                               hot_customers=3)
    again.recover()
    assert {c: state_to_dict(s) for c, s in again.customers.items()} == \
        {c: state_to_dict(s) for c, s in roomy.customers.items()}


def test_packing_is_one_at_a_time_and_a_restart_keeps_the_active_customers_unpacked():
    table = CustomerTable(max_hot=5)
    for c in range(12):
        table[f"c{c}"] = CustomerState(f"c{c}")
        # never more than one customer over: no insertion packs a batch
        assert table.hot_count == min(c + 1, 5)
    for c in (0, 1, 2):  # active again: unpacked, most recently used
        table.get(f"c{c}")
    hot_before = list(table._hot)
    restarted = CustomerTable(max_hot=5)
    for data in orjson.loads(orjson.dumps(table.snapshot_entries())):   # recovery inserts in this order
        restarted[data["customer_id"]] = CustomerState(data["customer_id"])
    assert list(restarted._hot) == hot_before and set(hot_before) >= {"c0", "c1", "c2"}
