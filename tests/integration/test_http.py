"""The real app over HTTP/JSON with a real client."""
import uuid
from urllib.parse import quote

import grpc
import orjson
import pytest

from engine.validation import MAX_ID_LENGTH
from tests.integration.conftest import KEYS


def uid():
    return f"h-{uuid.uuid4().hex[:10]}"


def event(customer, kind, item, **extra):
    return {"event_id": uuid.uuid4().hex, "customer_id": customer, "event_type": kind, "item_id": item,
            "channel": "web", **extra}


def test_healthz(http, synthetic_bundle, service):
    body = http.get("/healthz").json()
    assert body == {"status": "ok", "model_version": synthetic_bundle.version,
                    "partitions": service.config.partitions, "owners": 2}


def test_recommend_events_round_trip(http):
    customer = uid()
    first = http.post("/v1/recommend", json={"customer_id": customer, "k": 5})
    assert first.status_code == 200
    body = first.json()
    assert body["personalized"] is False and body["reasons"] == ["unknown_customer"]
    assert set(body["items"][0]) == {"item_id", "score", "reasons", "name"}
    top = body["items"][0]["item_id"]
    ack = http.post("/v1/events", json={"events": [event(customer, "add_to_cart", top, quantity=2, price=4.0)]})
    assert ack.status_code == 200 and ack.json()["accepted"] == 1
    after = http.post("/v1/recommend", json={"customer_id": customer, "k": 5}).json()
    assert after["personalized"] is True
    assert top not in [i["item_id"] for i in after["items"]]


def test_similar_items(http):
    response = http.post("/v1/similar-items", json={"item_id": "i0050", "k": 3})
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 3 and all(int(i["item_id"][1:]) // 20 == 2 for i in items)


@pytest.mark.parametrize("path,body,status,needle", [
    ("/v1/recommend", b"{not json", 400, "malformed JSON"),
    ("/v1/recommend", b"", 400, "required"),
    ("/v1/recommend", b"[1,2]", 400, "request"),
    ("/v1/recommend", b'{"customer_id": 7}', 400, "customer_id"),
    ("/v1/recommend", b'{"customer_id": "c", "k": 0}', 400, "k"),
    ("/v1/recommend", b'{"customer_id": "c", "k": -5}', 400, "k"),
    ("/v1/recommend", b'{"customer_id": "c", "k": 99999999}', 400, "k"),
    ("/v1/recommend", b'{"customer_id": "c", "k": "ten"}', 400, "k"),
    ("/v1/recommend", b'{"customer_id": "c", "channel": "smoke-signal"}', 400, "channel"),
    ("/v1/recommend", b'{"k": 3}', 400, "customer_id"),
    ("/v1/recommend", b'{"customer_id": "c", "filters": {"min_price": "cheap"}}', 400, "min_price"),
    ("/v1/recommend", b'\xff\xfe{"customer_id": "c"}', 400, "malformed JSON"),
    ("/v1/recommend", b"[" * 5000 + b"]" * 5000, 400, "malformed JSON"),
    ("/v1/similar-items", b'{"k": 3}', 400, "item_id"),
    ("/v1/events", b'{"events": "lots"}', 400, "events"),
    ("/v1/events", b'{"events": [{"event_id": "a", "customer_id": "c", "event_type": "levitate", '
                   b'"item_id": "i0001", "channel": "web"}]}', 400, "event_type"),
    ("/v1/events", b'{"events": [], "colour": "red"}', 400, "unknown field"),
])
def test_bad_input_is_4xx_with_message(http, path, body, status, needle):
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["code"]


def test_oversized_body_is_413(http, service):
    big = orjson.dumps({"customer_id": "c", "context": {"cart_item_ids": ["x" * 100] * 3000}})
    assert len(big) > service.config.max_body_bytes
    response = http.post("/v1/recommend", content=big)
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]


def test_bad_batch_applies_nothing(http):
    customer = uid()
    good = event(customer, "view", "i0002")
    bad = event(customer, "purchase", "i0003", quantity=float("inf"))
    response = http.post("/v1/events", content=orjson.dumps({"events": [good]})[:-2] + b',{"x":1}]}')
    assert response.status_code == 400
    response = http.post("/v1/events", json={"events": [good, {**bad, "quantity": -1}]})
    assert response.status_code == 400 and "events[1].quantity" in response.json()["error"]["message"]
    assert http.post("/v1/events", json={"events": [good]}).json()["accepted"] == 1


def _error_shape(response):
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/v1/nothing-here", 404, "not_found"),
    ("GET", "/", 404, "not_found"),
    ("POST", "/v1/customers", 404, "not_found"),
    ("GET", "/v1/recommend", 405, "method_not_allowed"),
    ("DELETE", "/v1/events", 405, "method_not_allowed"),
    ("PUT", "/v1/customers/c1/export", 405, "method_not_allowed"),
    ("POST", "/healthz", 405, "method_not_allowed"),
])
def test_unknown_route_and_method_are_json_errors(http, method, path, status, code):
    response = http.request(method, path)
    assert response.status_code == status
    assert _error_shape(response)["code"] == code


def test_every_4xx_of_the_api_has_the_error_shape(http, service):
    import httpx

    cases = [http.post("/v1/recommend", content=b"{"), http.get("/v1/actions", params={"after": "x"}),
             http.delete("/v1/customers/"), http.get("/v1/customers//export"),
             http.post("/v1/events", content=b"x" * (service.config.max_body_bytes + 1)),
             httpx.post(f"{service.http}/v1/recommend", json={"customer_id": "c0"}),  # no key
             httpx.delete(f"{service.http}/v1/customers/c0", headers={"authorization": f"Bearer {KEYS['reader']}"})]
    assert [r.status_code for r in cases] == [400, 400, 400, 400, 413, 401, 403]
    for response in cases:
        _error_shape(response)


def path_segment(customer_id: str) -> str:
    """A customer id as one path segment: everything percent-encoded, "/" and "." included (a client
    would otherwise drop an id of "." or ".." as a dot segment)."""
    return quote(customer_id, safe="").replace(".", "%2E")


# Every kind of id the ingest accepts (engine/validation.py::require_id: printable, bounded length)
ODD_IDS = ["a/b", "/lead", "trail/", "a//b", "x/export", "x/export/export", "50%off", "%2F", "%", "two  spaces", " ",
           "üñí/cødé 顧客", "a?b#c&d=e;f", "..", ".", "a/../b", "+plus+", "tab\\not", "é/" * (MAX_ID_LENGTH // 2)]


@pytest.mark.parametrize("customer", ODD_IDS)
def test_any_accepted_customer_id_can_be_exported_and_erased_over_both_protocols(http, stub, customer):
    from recsys.v1 import recsys_pb2 as pb

    event_id = uuid.uuid4().hex
    ack = http.post("/v1/events", json={"events": [event(customer, "view", "i0002", event_id=event_id)]})
    assert ack.status_code == 200 and ack.json()["accepted"] == 1, ack.text
    exported = http.get(f"/v1/customers/{path_segment(customer)}/export")
    assert exported.status_code == 200, exported.text
    assert exported.json()["customer_id"] == customer
    assert event_id in {e["event_id"] for e in exported.json()["events"]}
    over_grpc = orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=customer)).export_json)
    assert over_grpc["customer_id"] == customer and event_id in {e["event_id"] for e in over_grpc["events"]}
    # erase over one protocol (alternating), check over both
    if ODD_IDS.index(customer) % 2:
        forgotten = http.delete(f"/v1/customers/{path_segment(customer)}")
        assert forgotten.status_code == 200 and forgotten.json()["events_deleted"] == 1, forgotten.text
    else:
        assert stub.ForgetCustomer(pb.ForgetCustomerRequest(customer_id=customer)).events_deleted == 1
    assert http.get(f"/v1/customers/{path_segment(customer)}/export").status_code == 404
    with pytest.raises(grpc.RpcError) as info:
        stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=customer))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_still_serving_after_bad_input(http):
    for _ in range(5):
        http.post("/v1/recommend", content=b"garbage")
    assert http.get("/healthz").status_code == 200
    assert http.post("/v1/recommend", json={"customer_id": "c2", "k": 3}).status_code == 200


def test_a_supplied_list_is_reranked_whole_for_a_trained_customer(http, stub):
    """A category page of long-tail items and two the catalogue does not know, re-ranked for a
    customer the model was trained on: every item comes back once, over both protocols alike,
    the unknown ones last with their reason."""
    listed = [f"i{j:04d}" for j in range(50, 60)] + ["no-such-item", "gone-item"]
    body = {"customer_id": "c7", "filters": {"include_item_ids": listed}}
    over_http = http.post("/v1/recommend", json=body)
    assert over_http.status_code == 200
    items = over_http.json()["items"]
    assert sorted(i["item_id"] for i in items) == sorted(listed)
    assert [(i["item_id"], i["reasons"]) for i in items[-2:]] == [("no-such-item", ["unknown_item"]),
                                                                  ("gone-item", ["unknown_item"])]
    scores = [i["score"] for i in items[:10]]
    assert scores == sorted(scores, reverse=True)
    from recsys.v1 import recsys_pb2 as pb

    over_grpc = stub.Recommend(pb.RecommendRequest(customer_id="c7", filters=pb.Filters(include_item_ids=listed)))
    assert [i.item_id for i in over_grpc.items] == [i["item_id"] for i in items]
