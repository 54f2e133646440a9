"""One hop: a gRPC call that names a customer goes from the gRPC front straight to the owner of the
customer's partition, which answers it from the RPC table (gateway/rpcs.py); a call that reaches an
owner not holding the partition is forwarded once, counted, and answered."""
import uuid

import grpc
import pytest
import ray

from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import KEYS, owner_name_of, owner_of, owners


def _by_name() -> dict:
    return {ray.get(o.stats.remote())["owner"]: o for o in owners()}

SERVICE = "/recsys.v1.Personalization/"


def _front():
    from gateway.server import GRPC_FRONT_NAME

    return ray.get_actor(GRPC_FRONT_NAME, namespace="recsys")


def _forwarded(owner) -> dict[str, float]:
    """The owner's recsys_forwarded_requests by RPC."""
    out: dict[str, float] = {}
    for (family, _kind, _doc, sample, labels), value in ray.get(owner.metrics_samples.remote()).items():
        if family == "recsys_forwarded_requests" and sample.endswith("_total"):
            rpc = dict(labels)["rpc"]
            out[rpc] = out.get(rpc, 0) + value
    return out


def _requests(owner) -> int:
    return ray.get(owner.stats.remote())["requests"]


def _ev(customer: str, kind: str = "view", item: str = "i0001") -> pb.Event:
    return pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type=kind, item_id=item, channel="web")


CALLS = [
    ("Recommend", lambda stub, c: stub.Recommend(pb.RecommendRequest(customer_id=c, k=3))),
    ("SimilarItems", lambda stub, c: stub.SimilarItems(pb.SimilarItemsRequest(item_id="i0002", customer_id=c, k=3))),
    ("TrackEvents", lambda stub, c: stub.TrackEvents(pb.TrackEventsRequest(events=[_ev(c), _ev(c, item="i0003")]))),
    ("NextBestOffer", lambda stub, c: stub.NextBestOffer(pb.NextBestOfferRequest(customer_id=c, channel="pos"))),
    ("ExportCustomer", lambda stub, c: stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=c))),
    ("ForgetCustomer", lambda stub, c: stub.ForgetCustomer(pb.ForgetCustomerRequest(customer_id=c))),
]


def _customer_for(rpc: str) -> str:
    return f"c{hash(rpc) % 50}" if rpc != "ForgetCustomer" else f"hop-{uuid.uuid4().hex[:8]}"


def _answered_straight_by_its_owner(customer: str, call, protocol: str = "") -> None:
    """``call()`` went from the front to the customer's owner (counted as direct for ``protocol``:
    "" gRPC, "http_" HTTP) and that owner answered it, with nothing forwarded and no other owner
    involved."""
    handles = _by_name()
    owner = handles[owner_name_of(customer)]
    others = [o for name, o in handles.items() if name != owner_name_of(customer)]
    before_front = ray.get(_front().counts.remote())
    before = (_requests(owner), _forwarded(owner), [_requests(o) for o in others], [_forwarded(o) for o in others])
    call()
    after_front = ray.get(_front().counts.remote())
    assert after_front[f"{protocol}direct"] == before_front[f"{protocol}direct"] + 1
    assert after_front[f"{protocol}via_ingress"] == before_front[f"{protocol}via_ingress"]
    assert _requests(owner) > before[0]
    assert _forwarded(owner) == before[1]
    assert [_requests(o) for o in others] == before[2]
    assert [_forwarded(o) for o in others] == before[3]  # no other owner got it and passed it on


@pytest.mark.parametrize("rpc,call", CALLS, ids=[name for name, _ in CALLS])
def test_a_call_naming_a_customer_goes_straight_to_its_owner(stub, service, rpc, call):
    customer = _customer_for(rpc)
    _answered_straight_by_its_owner(customer, lambda: call(stub, customer))


def test_the_routing_key_in_metadata_is_used_without_parsing(stub, service):
    """x-session-id names the owner; a wrong one costs a forward, not a failure."""
    customer = "c7"
    owner = owner_of(customer)
    wrong = next(f"c{n}" for n in range(100) if owner_name_of(f"c{n}") != owner_name_of(customer))
    before_wrong, before_right = _forwarded(owner_of(wrong)).get("Recommend", 0), _forwarded(owner).get("Recommend", 0)
    reply = stub.Recommend(pb.RecommendRequest(customer_id=customer, k=3), metadata=(("x-session-id", wrong),))
    assert reply.items
    assert _forwarded(owner_of(wrong)).get("Recommend", 0) == before_wrong + 1
    assert _forwarded(owner).get("Recommend", 0) == before_right


def test_a_call_to_an_owner_that_does_not_hold_the_partition_is_forwarded_once(service):
    """What stale routes do after a move: the owner forwards once (counted) to the holder, which
    answers from its own partitions and does not forward again."""
    customer = "c3"
    handles = _by_name()
    holder = handles[owner_name_of(customer)]
    stranger = next(o for name, o in handles.items() if name != owner_name_of(customer))
    before_stranger, before_holder = _forwarded(stranger), _forwarded(holder)
    data = pb.RecommendRequest(customer_id=customer, k=4).SerializeToString()
    ((code, details, body),) = ray.get(stranger.rpc_many.remote(
        [("grpc", SERVICE + "Recommend", data, (("authorization", f"Bearer {KEYS['admin']}"),), "admin")]))
    assert code == "OK", details
    assert len(pb.RecommendResponse.FromString(body).items) == 4
    assert _forwarded(stranger).get("Recommend", 0) == before_stranger.get("Recommend", 0) + 1
    assert _forwarded(holder) == before_holder  # forwarded at most once: the holder answered itself

    # a batch spanning both owners' partitions: the local part answered here, the rest forwarded once
    mine = next(f"c{n}" for n in range(100) if owner_name_of(f"c{n}") != owner_name_of(customer))
    batch = pb.TrackEventsRequest(events=[_ev(customer), _ev(mine)]).SerializeToString()
    ((code, details, body),) = ray.get(stranger.rpc_many.remote([("grpc", SERVICE + "TrackEvents", batch, (), "admin")]))
    assert code == "OK", details
    assert pb.TrackEventsResponse.FromString(body).accepted == 2
    assert _forwarded(stranger).get("TrackEvents", 0) == before_stranger.get("TrackEvents", 0) + 1


def test_calls_without_a_customer_and_bad_calls_go_through_the_ingress(stub, channel, service):
    before = ray.get(_front().counts.remote())
    stub.SimilarItems(pb.SimilarItemsRequest(item_id="i0002", k=3))     # no customer
    bad = channel.unary_unary(SERVICE + "Recommend", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        bad(b"\xff\xff\xff", metadata=(("authorization", f"Bearer {KEYS['admin']}"),))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = ray.get(_front().counts.remote())
    assert after["via_ingress"] == before["via_ingress"] + 2 and after["direct"] == before["direct"]


def test_forwards_and_owner_answers_appear_in_the_ingress_metrics(stub, http, service):
    from prometheus_client.parser import text_string_to_metric_families

    stub.Recommend(pb.RecommendRequest(customer_id="c1", k=2))
    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    grpc_ok = sum(s.value for s in families["recsys_requests"].samples
                  if s.name.endswith("_total") and s.labels == {"rpc": "Recommend", "protocol": "grpc", "code": "OK"})
    assert grpc_ok >= 1   # answered by an owner, counted in the one scrape
    assert "recsys_forwarded_requests" in families


def test_the_reply_id_of_a_direct_call_is_the_one_its_owner_logged(stub, service):
    """A call without request_id metadata gets one id, in its reply and in its owner's access line."""
    from tests.integration.test_observability import _find

    reply = stub.Recommend(pb.RecommendRequest(customer_id="c2", k=2))
    assert reply.request_id
    lines = _find(reply.request_id)
    assert any(line.get("rpc") == "Recommend" and line.get("code") == "OK" for line in lines), lines


# -- HTTP: the same walk through the front's HTTP port ------------------------------------------------

def _http_ev(customer: str, item: str = "i0001") -> dict:
    return {"event_id": uuid.uuid4().hex, "customer_id": customer, "event_type": "view", "item_id": item,
            "channel": "web"}


HTTP_CALLS = [
    ("Recommend", lambda http, c, h: http.post("/v1/recommend", json={"customer_id": c, "k": 3}, headers=h)),
    ("SimilarItems", lambda http, c, h: http.post("/v1/similar-items", json={"item_id": "i0002", "customer_id": c,
                                                                            "k": 3}, headers=h)),
    ("TrackEvents", lambda http, c, h: http.post("/v1/events", json={"events": [_http_ev(c), _http_ev(c, "i0003")]},
                                                 headers=h)),
    ("NextBestOffer", lambda http, c, h: http.post("/v1/next-best-offer", json={"customer_id": c, "channel": "pos"},
                                                   headers=h)),
    ("ExportCustomer", lambda http, c, h: http.get(f"/v1/customers/{c}/export", headers=h)),
    ("ForgetCustomer", lambda http, c, h: http.delete(f"/v1/customers/{c}", headers=h)),
]


@pytest.mark.parametrize("with_key", [False, True], ids=["key-from-body", "x-session-id"])
@pytest.mark.parametrize("rpc,call", HTTP_CALLS, ids=[name for name, _ in HTTP_CALLS])
def test_an_http_request_naming_a_customer_goes_straight_to_its_owner(http, service, rpc, call, with_key):
    customer = _customer_for(rpc)

    def request():
        response = call(http, customer, {"x-session-id": customer} if with_key else {})
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"]
    _answered_straight_by_its_owner(customer, request, "http_")


def test_http_requests_without_a_customer_and_bad_ones_go_through_the_ingress(http, service):
    """No customer to route by (an item-only SimilarItems, a body that does not parse, a route
    outside the table): the ingress answers, with its usual errors."""
    before = ray.get(_front().counts.remote())
    assert http.post("/v1/similar-items", json={"item_id": "i0002", "k": 3}).status_code == 200
    bad = http.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]["message"]
    bad_batch = http.post("/v1/events", content=b"[1, 2", headers={"content-type": "application/json"})
    assert bad_batch.status_code == 400 and "malformed JSON" in bad_batch.json()["error"]["message"]
    assert http.get("/healthz").status_code == 200
    after = ray.get(_front().counts.remote())
    assert after["http_via_ingress"] == before["http_via_ingress"] + 4
    assert after["http_direct"] == before["http_direct"]


def test_http_admission_at_the_front_answers_as_the_ingress_does(http, service):
    """A refused request is answered by the front with the API's error shape: no key, wrong scope,
    a body over the key's limit, a bad field (the owner's validation)."""
    import httpx

    with httpx.Client(base_url=service.http, timeout=30) as anonymous:
        no_key = anonymous.post("/v1/recommend", json={"customer_id": "c1"})
        assert no_key.status_code == 401 and no_key.headers["www-authenticate"] == "Bearer"
        assert no_key.json()["error"]["code"] == "unauthenticated"
        wrong_scope = anonymous.post("/v1/next-best-offer", json={"customer_id": "c1"},
                                     headers={"authorization": f"Bearer {KEYS['reader']}"})
        assert wrong_scope.status_code == 403
    bad_k = http.post("/v1/recommend", json={"customer_id": "c1", "k": -1})
    assert bad_k.status_code == 400 and "k" in bad_k.json()["error"]["message"]
    huge = http.post("/v1/recommend", content=b'{"customer_id": "c1", "pad": "' + b"x" * 300_000 + b'"}',
                     headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
    assert http.post("/v1/recommend", json={"customer_id": "c1", "k": 2}).status_code == 200


def test_hostile_http_requests_get_clear_answers_from_the_front(http, service):
    """What a hostile client may send the front: a declared body over every limit on a route outside
    the table (refused unread, no key needed to be refused), a non-ASCII header, a customer id that
    is not a string, a path that starts with "//": each a 4xx in the API's error shape, and the
    service answers afterwards."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(service.http)
    def exchange(request: bytes) -> str:
        """One request on a raw connection: the whole answer (head and its content-length of body)."""
        with socket.create_connection((where.hostname, where.port), timeout=30) as raw:
            raw.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                    next(line.split(b":")[1] for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                         if line.lower().startswith(b"content-length:"))):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode("latin-1")

    # a client that declares a gigabyte and sends nothing more: refused at once, nothing read
    head = exchange(b"POST /no-such-route HTTP/1.1\r\nhost: x\r\ncontent-length: 1073741824\r\n\r\n")
    assert head.startswith("HTTP/1.1 413") and "payload_too_large" in head
    odd_header = http.post("/v1/similar-items", json={"item_id": "i0002", "k": 2},
                           headers={"x-note": "caf\u00e9".encode()})
    assert odd_header.status_code == 200
    not_a_string = http.post("/v1/events", json={"events": [{"event_id": "e", "customer_id": ["a"],
                                                             "event_type": "view", "item_id": "i1", "channel": "web"}]})
    assert not_a_string.status_code == 400 and "customer_id" in not_a_string.json()["error"]["message"]
    assert not_a_string.headers["x-request-id"]
    body = b'{"customer_id": "c1", "k": 2}'
    # a path that starts with "//" stays that path on its way to the ingress (no route there)
    doubled = exchange(b"POST //x/v1/recommend HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + KEYS["admin"].encode()
                       + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert doubled.startswith("HTTP/1.1 404"), doubled[:200]
    assert http.post("/v1/recommend", json={"customer_id": "c1", "k": 2}).status_code == 200


def test_a_non_ascii_customer_in_x_session_id_reaches_its_owner_over_http(http, service):
    """x-session-id carries the customer's id as UTF-8, the same id as in the JSON body: no forward."""
    # one whose id read as latin-1 would belong to another owner, so a misread costs a forward
    customer = next(c for c in (f"caf\u00e9-\u00fcber-{n}" for n in range(100))
                    if owner_name_of(c) != owner_name_of(c.encode().decode("latin-1")))
    _answered_straight_by_its_owner(customer, lambda: http.post(
        "/v1/recommend", json={"customer_id": customer, "k": 2}, headers={"x-session-id": customer.encode()}),
        "http_")


def test_concurrent_calls_to_an_owner_travel_together_and_each_is_answered_once(service, http):
    """Calls queued for one owner go in one actor call (gateway/coalesce.py). Each call still gets
    its own answer: every event of 40 concurrent batches spanning both owners is stored once (sent
    again, all are duplicates)."""
    import asyncio

    from prometheus_client.parser import text_string_to_metric_families
    from recsys.v1 import recsys_pb2_grpc

    names = sorted(_by_name())
    of = {name: [f"co{n}" for n in range(400) if owner_name_of(f"co{n}") == name][:40] for name in names}
    batches = [[_ev(of[names[0]][i]), _ev(of[names[1]][i]), _ev(of[names[0]][(i + 1) % 40])] for i in range(40)]
    auth = ("authorization", f"Bearer {KEYS['admin']}")

    async def send_all() -> list:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = recsys_pb2_grpc.PersonalizationStub(channel)
            return await asyncio.gather(*[
                stub.TrackEvents(pb.TrackEventsRequest(events=b), metadata=(auth, ("x-session-id", b[0].customer_id)))
                for b in batches])
    assert [(r.accepted, r.duplicates) for r in asyncio.run(send_all())] == [(3, 0)] * 40
    assert [(r.accepted, r.duplicates) for r in asyncio.run(send_all())] == [(0, 3)] * 40

    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    for call in ("front",):
        buckets = {s.labels["le"]: s.value for s in families["recsys_owner_call_batch_size"].samples
                   if s.name.endswith("_bucket") and s.labels["call"] == call}
        assert buckets["+Inf"] > buckets["1.0"], (call, buckets)


def _split_batch_case():
    """Two customers of each owner, interleaved: every batch below spans both owners."""
    names = sorted(_by_name())
    of = {name: [f"sp{n}" for n in range(400) if owner_name_of(f"sp{n}") == name][:2] for name in names}
    return names, [of[names[0]][0], of[names[1]][0], of[names[0]][1], of[names[1]][1]]


def _grpc_batch(customers, ids, bad_at=None):
    return pb.TrackEventsRequest(events=[
        pb.Event(event_id=i, customer_id=c, event_type="nonsense" if n == bad_at else "view", item_id="i0001",
                 channel="web") for n, (c, i) in enumerate(zip(customers, ids))])


def _http_batch(customers, ids, bad_at=None):
    return {"events": [{"event_id": i, "customer_id": c, "event_type": "nonsense" if n == bad_at else "view",
                        "item_id": "i0001", "channel": "web"} for n, (c, i) in enumerate(zip(customers, ids))]}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_batch_spanning_owners_reaches_each_owner_in_one_hop_and_a_bad_event_rejects_all(stub, http, service,
                                                                                           protocol):
    """The front validates the whole batch, then sends each owner its own events: both owners
    answer, neither forwards, the ingress is not involved, and the reply adds the shares up. A
    bad event anywhere (here in the second owner's share) rejects the whole batch before any
    owner sees it: the same event ids sent again, valid, are all accepted, not duplicates."""
    names, customers = _split_batch_case()
    handles = _by_name()
    ids = [uuid.uuid4().hex for _ in customers]

    def send(bad_at=None):
        if protocol == "grpc":
            try:
                reply = stub.TrackEvents(_grpc_batch(customers, ids, bad_at))
            except grpc.RpcError as error:
                return error.code().name, error.details()
            return "OK", (reply.accepted, reply.duplicates, reply.ignored, reply.request_id)
        response = http.post("/v1/events", json=_http_batch(customers, ids, bad_at))
        if response.status_code != 200:
            return response.status_code, response.json()["error"]["message"]
        body = response.json()
        return "OK", (body["accepted"], body["duplicates"], body["ignored"], body["request_id"])

    prefix = "" if protocol == "grpc" else "http_"
    before_front = ray.get(_front().counts.remote())
    before = {n: (_requests(handles[n]), _forwarded(handles[n])) for n in names}
    code, message = send(bad_at=3)
    assert code in ("INVALID_ARGUMENT", 400) and "events[3].event_type" in message, message
    assert {n: _requests(handles[n]) for n in names} == {n: before[n][0] for n in names}  # no owner saw it
    code, answer = send()
    assert code == "OK" and answer[:3] == (4, 0, 0) and answer[3], answer
    code, answer = send()
    assert code == "OK" and answer[:3] == (0, 4, 0), answer  # each event stored once
    after_front = ray.get(_front().counts.remote())
    # the two valid batches were answered by the owners (the refused one, by the front itself)
    assert after_front[f"{prefix}direct"] - before_front[f"{prefix}direct"] in (2, 3)
    assert after_front[f"{prefix}via_ingress"] == before_front[f"{prefix}via_ingress"]
    for n in names:
        assert _requests(handles[n]) == before[n][0] + 2   # its share of each of the two valid batches
        assert _forwarded(handles[n]) == before[n][1]      # nothing forwarded
