"""Property-based fuzzing of the real HTTP and gRPC endpoints.

Whatever arrives (wrong types, huge strings, huge k, deep nesting, invalid UTF-8, oversized
bodies, NaN or negative numbers, timestamps far in the future, garbage bytes), the answer is
a 2xx or a 4xx / INVALID_ARGUMENT-family status with a message: never a 5xx, never INTERNAL or
UNKNOWN, never a traceback, process or address in the answer, never a crashed actor, never part of
a rejected batch applied.

The gRPC messages are generated from the .proto's own descriptors: every field of every request
of every RPC (Personalization and Health) gets random values of its type (sometimes set, sometimes
not; strings from the whole of Unicode, numbers at and past their limits, NaN and infinities),
mixed with plausible values (real channels, event types and item ids) so that generated messages
also get past the first check and reach the shards. Ids that could write (customers, catalogue
items) always carry a ``fuzz-`` prefix, so the fuzzing never touches what other tests use.
"""
import math
import time
import uuid

import grpc
import orjson
import pytest
import ray
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.events import CHANNELS, ITEM_EVENT_TYPES
from gateway.grpc_registration import METHODS
from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import KEYS
from tests.integration.leaks import assert_no_internals


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


ALLOWED_GRPC = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
AUTH = (("authorization", f"Bearer {KEYS['admin']}"),)


def shard_pids():
    from tests.integration.conftest import owners

    return sorted(ray.get(o.stats.remote())["pid"] for o in owners())


@pytest.fixture(scope="module", autouse=True)
def shards_at_start(service):
    """The owner processes before any fuzzing: the last test checks that none of them died."""
    return shard_pids()


# -- HTTP -----------------------------------------------------------------------------------------

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


def _http_error_shape(response) -> None:
    error = response.json()["error"]
    assert error["message"] and error["code"]
    assert_no_internals(error["message"])


@_settings(60)
@given(path=st.sampled_from(["/v1/recommend", "/v1/similar-items", "/v1/events", "/v1/next-best-offer"]),
       body=bodies)
def test_http_bodies_never_5xx(http, path, body):
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, (path, body[:200], response.text[:300])
    if response.status_code >= 400:
        _http_error_shape(response)


@_settings(40)
@given(customer=st.text(max_size=200), path_kind=st.sampled_from(["export", "forget"]))
def test_http_customer_paths_never_5xx(http, customer, path_kind):
    from urllib.parse import quote

    # a prefix, so that erasing never hits a customer another test uses
    path = f"/v1/customers/{quote('fuzz-' + customer, safe='')}"
    response = http.get(path + "/export") if path_kind == "export" else http.delete(path)
    assert response.status_code < 500, (customer, response.text[:300])
    if response.status_code >= 400:
        _http_error_shape(response)


@_settings(30)
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
       path=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_http_any_method_and_path_is_a_json_answer(http, method, path):
    from urllib.parse import quote

    response = http.request(method, "/" + quote(path, safe="/"), content=b"{}")
    assert response.status_code < 500, (method, path, response.text[:300])
    if response.status_code >= 400:
        _http_error_shape(response)


def test_oversized_and_lying_bodies(http, service):
    limit = service.config.max_body_bytes
    assert http.post("/v1/events", content=b"x" * (limit + 1)).status_code == 413
    # a chunked body declares no length: it is cut off once it passes the limit
    chunks = iter([b'{"customer_id": "'] + [b"a" * 10_000] * (2 * limit // 10_000) + [b'"}'])
    response = http.post("/v1/recommend", content=chunks)
    assert response.status_code == 413


@_settings(15)
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


# -- gRPC: messages generated from the .proto ----------------------------------------------------

F = FieldDescriptor
_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1), F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1), F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1), F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
any_text = st.one_of(st.text(max_size=30), st.text(min_size=100, max_size=400), st.just(""),
                     st.text(alphabet=st.characters(whitelist_categories=("Cc",)), min_size=1, max_size=5))
short_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", max_size=12)
fuzz_id = short_text.map(lambda t: "fuzz-" + t)
item_ids = st.sampled_from(["i0001", "i0005", "i0030", "i0059", "no-such-item", ""])
item_lists = st.lists(item_ids, max_size=5)
categories = st.lists(st.sampled_from(["group-0", "group-1", "group-2", "nope"]), max_size=3)
prices = st.floats(0, 20)
# Plausible values by field name. A generated message is either plausible (every field with a hint
# takes a hinted value, so the message often gets past validation and reaches the shards) or mixed
# (each field takes a hinted value or a random one of its type). Ids that name something a call
# could write carry the fuzz- prefix, in both kinds (a random id is never a customer's).
HINTS = {
    "customer_id": fuzz_id, "event_id": short_text.map(lambda t: "e-" + t), "request_id": st.one_of(st.just(""), short_text),
    "channel": st.sampled_from(sorted(CHANNELS)),
    "event_type": st.sampled_from(sorted(ITEM_EVENT_TYPES | {"consent"})),
    "item_id": item_ids, "current_item_id": item_ids, "cart_item_ids": item_lists,
    "exclude_item_ids": item_lists, "include_item_ids": item_lists, "boost_item_ids": item_lists,
    "include_categories": categories, "exclude_categories": categories, "category": st.sampled_from(["group-1", ""]),
    "repurchase_policy": st.sampled_from(["", "exclude_never", "exclude_always", "exclude_within_window"]),
    "repurchase_window_days": st.integers(1, 60), "max_per_category": st.integers(0, 5),
    "k": st.integers(0, 20), "n": st.integers(0, 5), "quantity": st.floats(0.5, 5), "price": prices,
    "unit_price": prices, "min_price": prices, "max_price": prices,
    "store_id": short_text, "session_id": short_text, "country": st.sampled_from(["", "United Kingdom", "France"]),
    "name": short_text,
    "kinds": st.lists(st.sampled_from(["cart_abandonment", "cross_sell"]), max_size=2, unique=True),
    "after_seq": st.integers(0, 2**40), "max_actions": st.integers(0, 3),
    "timestamp_ms": st.sampled_from([0, int(time.time() * 1000) - 60_000]),
    "service": st.sampled_from(["", "recsys.v1.Personalization", "no.such.Service"]),
    "attributes": st.dictionaries(st.sampled_from(["personalization", "marketing"]),
                                  st.sampled_from(["granted", "denied"]), min_size=1, max_size=2),
}
# Ids that must be prefixed even when the rest of a message is random
ALWAYS_HINTED = {"customer_id"}
# Item ids that UpdateCatalog may add to the live catalogue: fuzz- only (and out of stock at the end)
CATALOG_HINTS = {**HINTS, "item_id": fuzz_id}
CATALOG_ALWAYS_HINTED = ALWAYS_HINTED | {"item_id"}
# Random values that could write under a real id: kept, but behind the fuzz- prefix
prefixed_random = st.one_of(st.just(""), st.text(max_size=200).map(lambda t: "fuzz-" + t),
                            st.text(alphabet=st.characters(whitelist_categories=("Cc",)), min_size=1, max_size=3))


def _scalar(field):
    t = field.type
    if t in _INT_RANGES:
        low, high = _INT_RANGES[t]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, 1, -1 if low < 0 else 2]))
    if t == F.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if t == F.TYPE_FLOAT:
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return any_text
    if t == F.TYPE_BYTES:
        return st.binary(max_size=50)
    if t == F.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise AssertionError(f"no strategy for {field.full_name}")


def _field(field, hints, always, depth, plausible):
    """Values for one field: its hint in a plausible message; in a mixed one, the hint or a random
    value of the field's type (ids in ``always`` only ever random behind the fuzz- prefix)."""
    hint = hints.get(field.name)

    def pick(random):
        if field.name in always:
            return st.one_of(hint, prefixed_random) if not plausible else hint
        if hint is None:
            return random
        return hint if plausible else st.one_of(hint, random)

    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return pick(st.dictionaries(_scalar(key), _scalar(value), max_size=4))
    if field.type == F.TYPE_MESSAGE:
        one = messages(field.message_type, hints, always, depth + 1, plausible)
        # a list of messages (events, updates, basket lines) mostly has some
        return st.lists(one, min_size=1 if plausible else 0, max_size=4) if field.is_repeated else one
    if field.is_repeated:
        return pick(st.lists(_scalar(field), max_size=4))
    return pick(_scalar(field))


def messages(descriptor, hints=HINTS, always=ALWAYS_HINTED, depth: int = 0, plausible: bool = False):
    """Random messages of ``descriptor``: each field set or not, with plausible or random values."""
    cls = GetMessageClass(descriptor)
    fields = [f for f in descriptor.fields if depth < 3 or f.type != F.TYPE_MESSAGE]

    @st.composite
    def build(draw):
        # a plausible message has every field that has a hint; any field may be missing from a mixed one
        chosen = [f for f in fields if (plausible and f.name in hints) or draw(st.booleans())]
        return cls(**{f.name: draw(_field(f, hints, always, depth, plausible)) for f in chosen})
    return build()


def requests_for(descriptor, hints=HINTS, always=ALWAYS_HINTED):
    return st.one_of(messages(descriptor, hints, always, plausible=True),
                     messages(descriptor, hints, always, plausible=False))


def _check_status(error: grpc.RpcError, allowed=ALLOWED_GRPC) -> None:
    assert error.code() in allowed, (error.code(), error.details())
    assert error.details(), error.code()
    assert_no_internals(error.details())


UNARY = [path for path, rpc in METHODS.items() if not rpc.server_streaming]
STREAMS = [path for path, rpc in METHODS.items() if rpc.server_streaming]
GENERATED = {path: requests_for(rpc.request_cls.DESCRIPTOR, *((CATALOG_HINTS, CATALOG_ALWAYS_HINTED)
                                                               if rpc.name == "UpdateCatalog" else ()))
             for path, rpc in METHODS.items()}
_catalogue_items_added: set[str] = set()
# per unary RPC, how many generated requests were answered (OK, or NOT_FOUND for a customer
# nobody knows): the generated messages get past validation and reach the shards
ANSWERED_OK: dict[str, int] = {}


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.rsplit("/", 1)[1])
@_settings(40)
@given(data=st.data())
def test_grpc_generated_requests_to_every_unary_rpc(channel, method, data):
    request = data.draw(GENERATED[method])
    call = channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                               response_deserializer=METHODS[method].response_cls.FromString)
    ANSWERED_OK.setdefault(method, 0)
    try:
        call(request, metadata=AUTH, timeout=30)
        ANSWERED_OK[method] += 1
        if method.endswith("/UpdateCatalog"):
            _catalogue_items_added.update(u.item_id for u in request.updates)
    except grpc.RpcError as error:
        _check_status(error)
        ANSWERED_OK[method] += error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("method", STREAMS, ids=lambda m: m.rsplit("/", 1)[1])
@_settings(10)
@given(data=st.data())
def test_grpc_generated_requests_to_every_streaming_rpc(channel, method, data):
    request = data.draw(GENERATED[method])
    call = channel.unary_stream(method, request_serializer=type(request).SerializeToString,
                                response_deserializer=METHODS[method].response_cls.FromString)
    stream = call(request, metadata=AUTH, timeout=1.0)
    try:
        next(stream, None)  # the first answer (or the status), then the client goes
    except grpc.RpcError as error:
        # waiting for news past the client's own deadline is not an error of the service
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            _check_status(error)
    finally:
        stream.cancel()


@_settings(40)
@given(method=st.sampled_from(sorted(METHODS)),
       payload=st.one_of(st.binary(max_size=200), st.just(b"\x0a\x03\xff\xfe\xfd"), st.just(b"\x28" + b"\x80" * 11),
                         st.just(b"\xff\xff\xff")))
def test_grpc_garbage_bytes_to_every_rpc(channel, method, payload):
    try:
        if METHODS[method].server_streaming:
            stream = channel.unary_stream(method)(payload, metadata=AUTH, timeout=1.0)
            try:
                next(iter(stream), None)
            finally:
                stream.cancel()
        else:
            channel.unary_unary(method)(payload, metadata=AUTH, timeout=30)
    except grpc.RpcError as error:
        if not (METHODS[method].server_streaming and error.code() in {grpc.StatusCode.DEADLINE_EXCEEDED,
                                                                       grpc.StatusCode.CANCELLED}):
            _check_status(error)


def test_service_still_answers_after_the_fuzzing(http, stub, channel, shards_at_start):
    # the generated requests were not all turned away at the door: each RPC answered some of them
    print("generated requests answered OK, per RPC:", {m.rsplit("/", 1)[1]: n for m, n in ANSWERED_OK.items()})
    assert all(ANSWERED_OK.values()), ANSWERED_OK
    # what the catalogue fuzzing added is never recommended to anyone after this file
    added = sorted(i for i in _catalogue_items_added if i.startswith("fuzz-") and i.isprintable() and len(i) <= 128)
    for start in range(0, len(added), 50):
        stub.UpdateCatalog(pb.UpdateCatalogRequest(updates=[pb.CatalogUpdate(item_id=i, in_stock=False)
                                                            for i in added[start:start + 50]]))
    for body in (b"\xff" * 100, b"[" * 100_000, b'{"k": -1}', b"null"):
        http.post("/v1/recommend", content=body)
    time.sleep(0.5)
    assert shard_pids() == shards_at_start
    assert http.get("/healthz").status_code == 200
    assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status == \
        health_pb2.HealthCheckResponse.SERVING
    reply = stub.Recommend(pb.RecommendRequest(customer_id="c0", k=5))
    assert len(reply.items) == 5 and not any(i.item_id.startswith("fuzz-") for i in reply.items)
    assert stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(
        event_id=uuid.uuid4().hex, customer_id="fuzz-after", event_type="view", item_id="i0001",
        channel="web")])).accepted == 1
