"""Property-based fuzzing of the real HTTP and gRPC endpoints.

Whatever arrives (wrong types, huge strings, huge k, deep nesting, invalid UTF-8, oversized
bodies, NaN or negative numbers, timestamps far in the future, garbage bytes), the answer is
a 2xx or a 4xx / INVALID_ARGUMENT-family status with a message: never a 5xx, never a crashed
actor, never part of a rejected batch applied.
"""
import math
import time
import uuid

import grpc
import orjson
import ray
from hypothesis import HealthCheck, given, settings, strategies as st

from actors.cluster import NAMESPACE, shard_name
from recsys.v1 import recsys_pb2 as pb

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
ALLOWED_GRPC = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50), st.text(min_size=1000, max_size=3000), st.just(""), st.just("\x00"),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)), max_leaves=20)
field_names = st.sampled_from(["customer_id", "channel", "k", "context", "filters", "item_id", "events",
                               "store_id", "request_id", "event_type", "quantity", "price", "timestamp_ms",
                               "event_id", "cart_item_ids", "exclude_item_ids", "min_price", "attributes"])
bodies = st.one_of(
    json_values.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS) if _dumpable(v) else b"{}"),
    st.dictionaries(field_names, json_values, max_size=8).map(lambda v: orjson.dumps(v) if _dumpable(v) else b"{}"),
    st.binary(max_size=300),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3000).map(lambda depth: b'{"context":' * depth + b"1" + b"}" * depth),
    st.sampled_from([b'{"customer_id": "c", "k": NaN}', b'{"customer_id": "c", "k": 1e999}',
                     b'{"customer_id": "\xff\xfe"}', b'{"events": [{"quantity": -Infinity}]}',
                     b'{"customer_id": "c", "k": 99999999999999999999999999}']),
)


def _dumpable(value) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        return True
    except (TypeError, orjson.JSONEncodeError):
        return False


def shard_pids():
    return [ray.get(ray.get_actor(shard_name(i), namespace=NAMESPACE).stats.remote())["pid"] for i in range(3)]


@FUZZ
@given(path=st.sampled_from(["/v1/recommend", "/v1/similar-items", "/v1/events"]), body=bodies)
def test_http_bodies_never_5xx(http, path, body):
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, (path, body[:200], response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["code"]


@FUZZ
@given(customer=st.text(max_size=200), path_kind=st.sampled_from(["export", "forget"]))
def test_http_customer_paths_never_5xx(http, customer, path_kind):
    from urllib.parse import quote

    path = f"/v1/customers/{quote(customer, safe='')}"
    response = http.get(path + "/export") if path_kind == "export" else http.delete(path)
    assert response.status_code < 500, (customer, response.text[:300])


def test_oversized_and_lying_bodies(http, service):
    limit = service.config.max_body_bytes
    assert http.post("/v1/events", content=b"x" * (limit + 1)).status_code == 413
    # a chunked body declares no length: it is cut off once it passes the limit
    chunks = iter([b'{"customer_id": "'] + [b"a" * 10_000] * (2 * limit // 10_000) + [b'"}'])
    response = http.post("/v1/recommend", content=chunks)
    assert response.status_code == 413


event_values = {
    "quantity": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
    "price": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
    "timestamp_ms": st.one_of(st.integers(-(2**63), 2**63 - 1), st.just(32_503_680_000_000)),
    "event_type": st.one_of(st.sampled_from(["view", "purchase", "teleport", "", "consent"]), st.text(max_size=20)),
    "channel": st.one_of(st.sampled_from(["web", "pos", "fax"]), st.text(max_size=20)),
    "item_id": st.one_of(st.just("i0001"), st.text(max_size=300)),
    "customer_id": st.one_of(st.just("fuzz"), st.text(max_size=300)),
}


@st.composite
def proto_events(draw):
    fields = {"event_id": draw(st.text(max_size=200)) or "e", "customer_id": "fuzz", "event_type": "view",
              "item_id": "i0001", "channel": "web"}
    for name in draw(st.sets(st.sampled_from(sorted(event_values)), max_size=4)):
        fields[name] = draw(event_values[name])
    return pb.Event(**fields)


@FUZZ
@given(events=st.lists(proto_events(), min_size=1, max_size=5))
def test_grpc_events_never_internal(stub, events):
    try:
        stub.TrackEvents(pb.TrackEventsRequest(events=events), timeout=30)
    except grpc.RpcError as error:
        assert error.code() in ALLOWED_GRPC, (error.code(), error.details())
        assert error.details()


@FUZZ
@given(customer=st.text(max_size=300), k=st.integers(-(2**31), 2**31 - 1), channel=st.text(max_size=30),
       cart=st.lists(st.text(max_size=200), max_size=20),
       min_price=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
       policy=st.text(max_size=30), window=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)))
def test_grpc_recommend_never_internal(stub, customer, k, channel, cart, min_price, policy, window):
    filters = pb.Filters(repurchase_policy=policy)
    if min_price is not None:
        filters.min_price = min_price
    if window is not None:
        filters.repurchase_window_days = window
    request = pb.RecommendRequest(customer_id=customer, k=k, channel=channel, filters=filters,
                                  context=pb.Context(cart_item_ids=cart))
    try:
        reply = stub.Recommend(request, timeout=30)
        assert len(reply.items) <= max(k, 10)
    except grpc.RpcError as error:
        assert error.code() in ALLOWED_GRPC, (error.code(), error.details())
        assert error.details()


@FUZZ
@given(method=st.sampled_from(["Recommend", "SimilarItems", "TrackEvents", "ForgetCustomer", "ExportCustomer"]),
       payload=st.one_of(st.binary(max_size=200), st.just(b"\x0a\x03\xff\xfe\xfd"), st.just(b"\x28" + b"\x80" * 11)))
def test_grpc_garbage_bytes_are_invalid_argument(channel, method, payload):
    from tests.integration.conftest import KEYS

    call = channel.unary_unary(f"/recsys.v1.Personalization/{method}")
    try:
        call(payload, metadata=(("authorization", f"Bearer {KEYS['admin']}"),), timeout=30)
    except grpc.RpcError as error:
        assert error.code() in ALLOWED_GRPC, (error.code(), error.details())


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(n_good=st.integers(1, 5), bad=st.sampled_from([
    {"quantity": -1}, {"price": math.nan}, {"event_type": "teleport"}, {"channel": "fax"},
    {"timestamp_ms": 32_503_680_000_000}, {"item_id": ""}, {"customer_id": "x" * 500}]))
def test_rejected_batch_applies_nothing(http, n_good, bad):
    customer = f"batch-{uuid.uuid4().hex[:8]}"
    good = [{"event_id": f"g{n}", "customer_id": customer, "event_type": "add_to_cart", "item_id": f"i{n:04d}",
             "channel": "web"} for n in range(n_good)]
    poisoned = {**good[0], "event_id": "bad", **bad}
    body = orjson.dumps({"events": [*good, poisoned]}, option=orjson.OPT_SERIALIZE_NUMPY) \
        if not (isinstance(bad.get("price"), float) and math.isnan(bad["price"])) \
        else orjson.dumps({"events": good})[:-2] + b',{"event_id":"bad","customer_id":"' + customer.encode() + \
        b'","event_type":"view","item_id":"i1","channel":"web","price":NaN}]}'
    assert http.post("/v1/events", content=body).status_code == 400
    assert http.post("/v1/events", json={"events": good}).json()["accepted"] == n_good


def test_no_actor_crashed_and_still_serving(http, stub):
    before = shard_pids()
    for body in (b"\xff" * 100, b"[" * 100_000, b'{"k": -1}', b"null"):
        http.post("/v1/recommend", content=body)
    time.sleep(0.5)
    assert shard_pids() == before
    assert http.get("/healthz").status_code == 200
    assert stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3)).items
