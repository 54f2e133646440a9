"""Triggers -> durable outbox -> channels, over the real ports (cart timer: 2.4 s in the tests)."""
import time
import uuid

import grpc
import pytest

from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import CART_ABANDON_MINUTES, KEYS, authed_stub


def uid():
    return f"t-{uuid.uuid4().hex[:10]}"


def event(customer, kind, item, channel="web"):
    return pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type=kind, item_id=item, channel=channel)


def marketing(customer, value="granted"):
    """Actions are marketing: only for customers who consented (opt-in by default)."""
    return pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type="consent", channel="web",
                    attributes={"marketing": value})


def all_actions(http, kind):
    actions, after = [], 0
    while True:
        page = http.get("/v1/actions", params={"after": after, "limit": 500, "kind": kind}).json()
        actions.extend(page["actions"])
        if page["next_after"] == after:
            return actions
        after = page["next_after"]


def test_an_abandoned_cart_becomes_an_action_and_a_bought_one_does_not(stub, http):
    left, bought, denied = uid(), uid(), uid()
    stub.TrackEvents(pb.TrackEventsRequest(events=[marketing(left), marketing(bought), marketing(denied, "denied")]))
    stub.TrackEvents(pb.TrackEventsRequest(events=[event(left, "add_to_cart", "i0007"),
                                                   event(bought, "add_to_cart", "i0008"),
                                                   event(denied, "add_to_cart", "i0009")]))
    stub.TrackEvents(pb.TrackEventsRequest(events=[event(bought, "purchase", "i0008")]))
    deadline = time.monotonic() + CART_ABANDON_MINUTES * 60 + 20
    mine = []
    while time.monotonic() < deadline and not mine:
        time.sleep(0.5)
        mine = [a for a in all_actions(http, "cart_abandonment") if a["customer_id"] == left]
    assert len(mine) == 1 and mine[0]["item_ids"] == ["i0007"]
    assert mine[0]["action_id"].startswith(f"cart_abandonment:{left}:")
    assert not [a for a in all_actions(http, "cart_abandonment") if a["customer_id"] in (bought, denied)]


def test_a_till_purchase_streams_a_cross_sell_to_subscribers(stub, channel):
    customer = uid()
    stub.TrackEvents(pb.TrackEventsRequest(events=[marketing(customer),
                                                   event(customer, "purchase", "i0030", channel="pos")]))
    stream = stub.SubscribeActions(pb.SubscribeActionsRequest(kinds=["cross_sell"]), timeout=30)
    found = None
    for action in stream:
        if action.customer_id == customer:
            found = action
            break
    stream.cancel()
    assert found is not None and found.trigger_item_id == "i0030" and found.channel == "pos"
    assert len(found.item_ids) == 3 and "i0030" not in found.item_ids and found.seq > 0


def test_subscribe_needs_the_offers_scope_and_valid_kinds(channel, stub):
    with pytest.raises(grpc.RpcError) as err:
        list(authed_stub(channel, KEYS["reader"]).SubscribeActions(pb.SubscribeActionsRequest(max_actions=1),
                                                                    timeout=10))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        list(stub.SubscribeActions(pb.SubscribeActionsRequest(kinds=["spam"], max_actions=1), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_http_actions_rejects_bad_parameters(http):
    assert http.get("/v1/actions", params={"after": "x"}).status_code == 400
    assert http.get("/v1/actions", params={"kind": "spam"}).status_code == 400
    assert http.get("/v1/actions", params={"limit": 0}).status_code == 400
