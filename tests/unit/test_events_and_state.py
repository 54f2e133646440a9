import math

import pytest

from engine.errors import InvalidArgument, PayloadTooLarge
from engine.events import MAX_FUTURE_SKEW_MS, parse_batch, parse_event
from engine.state import CustomerState, apply_event

NOW = 1_800_000_000_000


def raw(**overrides):
    event = {"event_id": "e1", "customer_id": "c1", "event_type": "view", "item_id": "i1", "channel": "web"}
    event.update(overrides)
    return event


def ev(**overrides):
    return parse_event(raw(**overrides), NOW)


def test_defaults():
    event = ev()
    assert event.quantity == 1.0 and event.timestamp_ms == NOW and event.price is None


@pytest.mark.parametrize("overrides,field", [
    ({"event_type": "teleport"}, "event_type"),
    ({"channel": "fax"}, "channel"),
    ({"customer_id": ""}, "customer_id"),
    ({"customer_id": 12}, "customer_id"),
    ({"item_id": "x" * 500}, "item_id"),
    ({"event_id": "bad\x00id"}, "event_id"),
    ({"quantity": 0}, "quantity"),
    ({"quantity": -2}, "quantity"),
    ({"quantity": math.nan}, "quantity"),
    ({"quantity": "3"}, "quantity"),
    ({"quantity": True}, "quantity"),
    ({"price": -1.0}, "price"),
    ({"price": math.inf}, "price"),
    ({"timestamp_ms": NOW + MAX_FUTURE_SKEW_MS + 1}, "timestamp_ms"),
    ({"timestamp_ms": 5}, "timestamp_ms"),
    ({"attributes": {"a": 1}}, "attributes"),
    ({"colour": "red"}, "unknown field"),
])
def test_bad_fields_are_named(overrides, field):
    with pytest.raises(InvalidArgument, match=field):
        ev(**overrides)


def test_batch_is_all_or_nothing():
    with pytest.raises(InvalidArgument, match=r"events\[1\]\.quantity"):
        parse_batch([raw(), raw(event_id="e2", quantity=-1)], NOW, 10)
    with pytest.raises(PayloadTooLarge):
        parse_batch([raw(event_id=str(i)) for i in range(11)], NOW, 10)
    with pytest.raises(InvalidArgument, match="must not be empty"):
        parse_batch([], NOW, 10)
    with pytest.raises(InvalidArgument, match="must be a list"):
        parse_batch({"a": 1}, NOW, 10)


def test_cart_transitions():
    state = CustomerState("c1")
    apply_event(state, ev(event_id="1", event_type="add_to_cart", item_id="a", quantity=2))
    assert state.cart == {"a": 2.0}
    apply_event(state, ev(event_id="2", event_type="remove_from_cart", item_id="a", quantity=1))
    assert state.cart == {"a": 1.0}
    apply_event(state, ev(event_id="3", event_type="remove_from_cart", item_id="a", quantity=5))
    assert state.cart == {}


def test_purchase_leaves_cart_and_is_remembered():
    state = CustomerState("c1")
    apply_event(state, ev(event_id="1", event_type="add_to_cart", item_id="a", channel="app"))
    apply_event(state, ev(event_id="2", event_type="purchase", item_id="a", quantity=3, channel="pos",
                          timestamp_ms=NOW - 1000))
    assert state.cart == {}
    # a purchase counts once whatever its quantity (as a purchase line does in the trained history)
    assert state.purchases["a"].count == 1 and state.purchases["a"].last_ms == NOW - 1000
    apply_event(state, ev(event_id="2b", event_type="purchase", item_id="a", quantity=144, channel="pos",
                          timestamp_ms=NOW - 500))
    assert state.purchases["a"].count == 2 and state.purchases["a"].last_ms == NOW - 500
    assert state.channels == {"app": 1, "pos": 2}
    apply_event(state, ev(event_id="3", event_type="return", item_id="a"))
    assert "a" in state.returned and "a" not in state.interactions


def test_recent_is_bounded():
    state = CustomerState("c1")
    for i in range(100):
        apply_event(state, ev(event_id=str(i), item_id=f"i{i}"))
    assert len(state.recent) == 30 and state.recent[-1][0] == "i99"


def test_an_event_crosses_processes_whole():
    """Events are pickled when an owner forwards a batch's share: every field comes back."""
    import dataclasses
    import pickle

    event = parse_event({"event_id": "e1", "customer_id": "c1", "event_type": "purchase", "item_id": "i1",
                         "channel": "pos", "timestamp_ms": 1_700_000_000_000, "session_id": "s", "store_id": "st",
                         "quantity": 2, "price": 3.5, "attributes": {"k": "v"}}, 1_700_000_000_000)
    back = pickle.loads(pickle.dumps(event, 5))
    assert back == event
    assert all(getattr(back, f.name) == getattr(event, f.name) for f in dataclasses.fields(event))
    assert all(getattr(event, f.name) != f.default for f in dataclasses.fields(event) if f.name != "event_type")
