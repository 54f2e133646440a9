"""One customer across channels, over the real service (Ray, Serve, the gRPC and HTTP ports): a
visitor browses anonymously on the web, adds to the cart, logs in on the app, and pays at the till
with the loyalty card. The three ids sit in partitions of different owners."""
import uuid

import grpc
import orjson
import pytest

from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import owner_name_of


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def on_another_owner(prefix, *others):
    """A new id whose partition is held by an owner none of ``others`` is on."""
    taken = {owner_name_of(o) for o in others}
    while True:
        candidate = uid(prefix)
        if owner_name_of(candidate) not in taken:
            return candidate


def event(customer, kind, item="", channel="web", **fields):
    return pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type=kind, item_id=item,
                    channel=channel, **fields)


def identify(customer, alias, kind, channel):
    return event(customer, "identify", channel=channel, attributes={"alias_id": alias, "alias_kind": kind})


def test_browse_on_the_web_log_in_on_the_app_pay_at_the_till_one_profile(service, stub, http):
    # a customer the model was trained on, whom no other test uses (erased at the end)
    trained = [c for c in service.bundle.arrays["user_ids"].tolist() if int(c[1:]) >= 250]
    customer = trained[0]
    cookie = on_another_owner("cookie", customer)
    card = on_another_owner("card", customer)
    assert owner_name_of(cookie) != owner_name_of(customer) != owner_name_of(card)

    # 1. anonymous on the web: consent, a view, an add to cart (HTTP, as the web shop sends them),
    #    and the web offer, twice: the coupon's cap is 2 per channel a week
    web = [{"event_id": uuid.uuid4().hex, "customer_id": cookie, "channel": "web", **e} for e in (
        {"event_type": "consent", "attributes": {"marketing": "granted"}},
        {"event_type": "view", "item_id": "i0021", "session_id": "web-1"},
        {"event_type": "add_to_cart", "item_id": "i0021", "session_id": "web-1"})]
    assert http.post("/v1/events", json={"events": web}).json()["accepted"] == 3
    shown = []
    for _ in range(2):
        reply = http.post("/v1/next-best-offer", json={"customer_id": cookie, "channel": "web", "n": 3}).json()
        shown += [o["offer_id"] for o in reply["offers"]]
    assert shown.count("capped-coupon") == 2

    # 2. logs in on the app (gRPC): the cookie's history, cart and offer history are the customer's
    answer = stub.TrackEvents(pb.TrackEventsRequest(events=[identify(customer, cookie, "cookie", "app")]))
    assert (answer.accepted, answer.duplicates) == (1, 0)
    reply = http.post("/v1/next-best-offer", json={"customer_id": customer, "channel": "web", "n": 3}).json()
    assert "capped-coupon" not in [o["offer_id"] for o in reply["offers"]]
    assert reply["rejected"]["capped-coupon"] == "cap_per_channel"  # the caps are shared

    # 3. at the till the card is scanned: the loyalty system links it, the till asks under the card
    stub.TrackEvents(pb.TrackEventsRequest(events=[identify(customer, card, "card", "pos")]))
    export = orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=card)).export_json)
    assert export["customer_id"] == customer
    assert export["state"]["cart"] == {"i0021": 1.0}  # the web cart, visible at the till
    assert export["state"]["linked"] == {cookie: "cookie", card: "card"}
    till = stub.NextBestOffer(pb.NextBestOfferRequest(customer_id=card, channel="pos", n=3,
                                                      basket=[pb.BasketLine(item_id="i0021")]))
    assert till.decision_id and "pos-only" in [o.offer_id for o in till.offers]
    for who in (cookie, card):  # a recommendation under any id is the customer's
        mine = stub.Recommend(pb.RecommendRequest(customer_id=who, channel="pos", k=5))
        assert [i.item_id for i in mine.items] == \
            [i.item_id for i in stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="pos", k=5)).items]
    paid = stub.TrackEvents(pb.TrackEventsRequest(events=[
        event(card, "purchase", "i0021", channel="pos", price=4.5, session_id="till-7")]))
    assert paid.accepted == 1
    state = http.get(f"/v1/customers/{cookie}/export").json()["state"]
    assert state["cart"] == {} and "i0021" in state["purchases"] and state["channels"]["pos"] >= 1

    # 4. another customer claiming the card is refused, with a message, over both protocols
    other = uid("c-other")
    with pytest.raises(grpc.RpcError) as refused:
        stub.TrackEvents(pb.TrackEventsRequest(events=[identify(other, card, "card", "pos")]))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "linked to another customer" in refused.value.details() and customer not in refused.value.details()
    body = {"events": [{"event_id": uuid.uuid4().hex, "customer_id": other, "event_type": "identify",
                        "channel": "pos", "attributes": {"alias_id": card}}]}
    response = http.post("/v1/events", json=body)
    assert response.status_code == 409 and response.json()["error"]["code"] == "failed_precondition"
    assert http.get(f"/v1/customers/{other}/export").status_code == 404

    # 5. erasing any of the ids erases all three, the trained customer's model rows included
    gone = http.delete(f"/v1/customers/{card}").json()
    assert gone["customer_id"] == customer and sorted(gone["linked_ids_erased"]) == sorted([cookie, card])
    for who in (customer, cookie, card):
        assert http.get(f"/v1/customers/{who}/export").status_code == 404
    with pytest.raises(grpc.RpcError) as missing:
        stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=cookie))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # nothing personal is left: the customer is recommended what a stranger is
    after = [i.item_id for i in stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="web", k=5)).items]
    stranger = [i.item_id for i in stub.Recommend(pb.RecommendRequest(customer_id=uid("new"), channel="web", k=5)).items]
    assert after and after == stranger
