"""Keys and scopes over both protocols; consent, erasure and export through the real API."""
import uuid

import grpc
import httpx
import orjson
import pytest

from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc
from tests.integration.conftest import KEYS, authed_stub


def uid():
    return f"p-{uuid.uuid4().hex[:10]}"


def ev(customer, kind, item="", **extra):
    return pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type=kind, item_id=item,
                    channel=extra.pop("channel", "web"), **extra)


def code_of(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_grpc_needs_a_known_key_with_the_scope(channel):
    bare = recsys_pb2_grpc.PersonalizationStub(channel)
    request = pb.RecommendRequest(customer_id="c0", k=3)
    assert code_of(lambda: bare.Recommend(request))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: authed_stub(channel, "rk_not-a-key").Recommend(request))[0] == grpc.StatusCode.UNAUTHENTICATED
    reader = authed_stub(channel, KEYS["reader"])
    assert len(reader.Recommend(request).items) == 3
    code, details = code_of(lambda: reader.TrackEvents(pb.TrackEventsRequest(events=[ev("c0", "view", "i0001")])))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "events" in details
    assert code_of(lambda: reader.ForgetCustomer(pb.ForgetCustomerRequest(customer_id="c0")))[0] == \
        grpc.StatusCode.PERMISSION_DENIED


def test_http_needs_a_known_key_with_the_scope(service):
    body = {"customer_id": "c0", "k": 2}
    with httpx.Client(base_url=service.http) as client:
        response = client.post("/v1/recommend", json=body)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert client.post("/v1/recommend", json=body, headers={"authorization": "Basic abc"}).status_code == 401
        assert client.post("/v1/recommend", json=body, headers={"authorization": "Bearer nope"}).status_code == 401
        reader = {"authorization": f"Bearer {KEYS['reader']}"}
        assert client.post("/v1/recommend", json=body, headers=reader).status_code == 200
        denied = client.post("/v1/events", json={"events": []}, headers=reader)
        assert denied.status_code == 403 and "events" in denied.json()["error"]["message"]
        assert client.delete("/v1/customers/c0", headers=reader).status_code == 403
        # health needs no key: probes have none
        assert client.get("/healthz").status_code == 200


def test_rate_limit_per_key(service, channel):
    limited = {"authorization": f"Bearer {KEYS['limited']}"}
    with httpx.Client(base_url=service.http) as client:
        codes = [client.post("/v1/recommend", json={"customer_id": "c0", "k": 1}, headers=limited).status_code
                 for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    # gRPC calls that name a customer are admitted by the gRPC front (its own bucket for the key),
    # whichever owner answers them: the same limit holds across owners
    stub = authed_stub(channel, KEYS["limited"])
    grpc_codes = []
    for n in range(6):
        try:
            stub.Recommend(pb.RecommendRequest(customer_id=f"c{n}"))
            grpc_codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            grpc_codes.append(error.code())
    assert grpc_codes[:3] == [grpc.StatusCode.OK] * 3, grpc_codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in grpc_codes[3:], grpc_codes
    # the admin key is not slowed down by another key's limit
    assert authed_stub(channel, KEYS["admin"]).Recommend(pb.RecommendRequest(customer_id="c0", k=1)).items


def test_request_size_limit_per_key(service, channel):
    small = {"authorization": f"Bearer {KEYS['small']}"}
    body = {"customer_id": "c0", "context": {"cart_item_ids": [f"x{i:05d}" for i in range(400)]}}
    with httpx.Client(base_url=service.http) as client:
        assert client.post("/v1/recommend", json=body, headers=small).status_code == 413
        assert client.post("/v1/recommend", json=body,
                           headers={"authorization": f"Bearer {KEYS['admin']}"}).status_code == 200
    request = pb.RecommendRequest(customer_id="c0", context=pb.Context(cart_item_ids=body["context"]["cart_item_ids"]))
    code, details = code_of(lambda: authed_stub(channel, KEYS["small"]).Recommend(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "limit" in details


def test_consent_withdrawn_means_no_personalisation(stub):
    customer = uid()
    stub.TrackEvents(pb.TrackEventsRequest(events=[ev(customer, "view", f"i{41 + n:04d}") for n in range(3)]))
    assert stub.Recommend(pb.RecommendRequest(customer_id=customer, k=5)).personalized
    stub.TrackEvents(pb.TrackEventsRequest(events=[ev(customer, "consent", attributes={"personalization": "denied"})]))
    reply = stub.Recommend(pb.RecommendRequest(customer_id=customer, k=5))
    assert not reply.personalized and list(reply.reasons) == ["no_personalization_consent"]
    stub.TrackEvents(pb.TrackEventsRequest(events=[ev(customer, "consent", attributes={"personalization": "granted"})]))
    assert stub.Recommend(pb.RecommendRequest(customer_id=customer, k=5)).personalized


def test_bad_consent_event(stub):
    for attributes in ({}, {"personalization": "maybe"}, {"cookies": "granted"}):
        code, details = code_of(lambda: stub.TrackEvents(pb.TrackEventsRequest(
            events=[ev(uid(), "consent", attributes=attributes)])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "attributes" in details


def test_forget_and_export_over_grpc(stub):
    customer = "c11"  # in the training data of the serving bundle
    events = [ev(customer, "add_to_cart", "i0003"), ev(customer, "view", "i0004", channel="app")]
    stub.TrackEvents(pb.TrackEventsRequest(events=events))
    exported = orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=customer)).export_json)
    assert exported["state"]["cart"] == {"i0003": 1.0}
    assert {e["event_id"] for e in exported["events"]} == {e.event_id for e in events}
    assert exported["model"]["history"] and exported["model"]["factors"]  # what the bundle holds, too
    reply = stub.ForgetCustomer(pb.ForgetCustomerRequest(customer_id=customer))
    assert reply.events_deleted == 2 and reply.live_state_erased
    code, _ = code_of(lambda: stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=customer)))
    assert code == grpc.StatusCode.NOT_FOUND
    after = stub.Recommend(pb.RecommendRequest(customer_id=customer, k=3))
    assert list(after.reasons) == ["unknown_customer"] and not after.personalized


def test_forget_and_export_over_http(http):
    customer = "c12"  # in the training data of the serving bundle
    http.post("/v1/events", json={"events": [{"event_id": "x1", "customer_id": customer, "event_type": "purchase",
                                              "item_id": "i0009", "channel": "pos", "price": 2.0}]})
    exported = http.get(f"/v1/customers/{customer}/export")
    assert exported.status_code == 200 and exported.json()["events"][0]["event_id"] == "x1"
    forgotten = http.delete(f"/v1/customers/{customer}")
    assert forgotten.status_code == 200 and forgotten.json()["events_deleted"] == 1
    assert http.get(f"/v1/customers/{customer}/export").status_code == 404
    assert http.delete("/v1/customers/" + "x" * 300).status_code == 400


def test_admin_actions_are_audited(http, service):
    from actors.store import open_store

    customer = uid()
    http.post("/v1/events", json={"events": [{"event_id": "a1", "customer_id": customer, "event_type": "view",
                                              "item_id": "i0001", "channel": "web"}]})
    http.get(f"/v1/customers/{customer}/export")
    http.delete(f"/v1/customers/{customer}")
    store = open_store(service.config.store_url)
    try:
        entries = [(a["principal"], a["action"]) for a in store.audit_log() if a["target"] == customer]
    finally:
        store.close()
    assert entries == [("admin", "export_customer"), ("admin", "forget_customer")]
