"""The real app over gRPC with the generated stubs."""
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import KEYS

PER_GROUP = 20


def group(item_id):
    return int(item_id[1:]) // PER_GROUP


def uid(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ev(customer, kind, item, **extra):
    return pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type=kind, item_id=item,
                    channel=extra.pop("channel", "web"), **extra)


def ids(response):
    return [i.item_id for i in response.items]


def test_recommend_round_trip(stub, synthetic_bundle):
    response = stub.Recommend(pb.RecommendRequest(customer_id="c0", channel="web", k=5, request_id="r-1"))
    assert len(response.items) == 5
    assert response.model_version == synthetic_bundle.version
    assert response.personalized and response.request_id == "r-1"
    scores = [i.score for i in response.items]
    assert scores == sorted(scores, reverse=True)
    assert all(i.reasons for i in response.items)
    assert sum(group(i) == 0 for i in ids(response)) >= 4


def test_k_zero_means_default(stub):
    assert len(stub.Recommend(pb.RecommendRequest(customer_id="c0")).items) == 10


def test_unknown_customer_is_not_an_error(stub):
    response = stub.Recommend(pb.RecommendRequest(customer_id=uid("stranger"), channel="app", k=4))
    assert not response.personalized and list(response.reasons) == ["unknown_customer"]
    assert len(response.items) == 4 and all("cold_start" in i.reasons for i in response.items)


def test_read_your_writes_across_channels(stub):
    customer = uid()
    first = ids(stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="web", k=10)))
    # views on the app pull the next answer (at the till) toward group 2
    views = [ev(customer, "view", f"i{41 + n:04d}", channel="app") for n in range(3)]
    ack = stub.TrackEvents(pb.TrackEventsRequest(events=views))
    assert ack.accepted == 3 and ack.duplicates == 0
    after_views = stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="pos", k=10))
    assert after_views.personalized
    assert sum(group(i) == 2 for i in ids(after_views)) >= 8, ids(after_views)
    assert sum(group(i) == 2 for i in ids(after_views)) > sum(group(i) == 2 for i in first)
    # a cart add from the POS is gone from the very next web answer
    top = ids(after_views)[0]
    stub.TrackEvents(pb.TrackEventsRequest(events=[ev(customer, "add_to_cart", top, channel="pos")]))
    assert top not in ids(stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="web", k=10)))
    # a purchase is excluded too, under a policy that excludes bought items (the shipped default,
    # exclude_never, lets a repurchase through)
    window = pb.Filters(repurchase_policy="exclude_within_window")
    second = ids(stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="web", k=10, filters=window)))[0]
    stub.TrackEvents(pb.TrackEventsRequest(events=[ev(customer, "purchase", second, quantity=2, price=3.5)]))
    assert second not in ids(stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="web", k=10,
                                                                 filters=window)))


def test_context_cart_and_filters(stub):
    request = pb.RecommendRequest(customer_id="c1", channel="web", k=10,
                                  context=pb.Context(cart_item_ids=["i0021", "i0022"]),
                                  filters=pb.Filters(exclude_item_ids=["i0023"], max_price=5.0))
    got = ids(stub.Recommend(request))
    assert got and not {"i0021", "i0022", "i0023"} & set(got)
    # synthetic prices are 1 + item % 17
    assert all(1 + int(i[1:]) % 17 <= 5 for i in got)


def test_similar_items(stub):
    response = stub.SimilarItems(pb.SimilarItemsRequest(item_id="i0003", k=5))
    assert len(response.items) == 5 and "i0003" not in ids(response)
    assert sum(group(i) == 0 for i in ids(response)) >= 4
    assert stub.SimilarItems(pb.SimilarItemsRequest(item_id="no-such-item", k=5)).items == []


def test_duplicate_delivery_is_acknowledged_once(stub):
    event = ev(uid(), "view", "i0005")
    assert stub.TrackEvents(pb.TrackEventsRequest(events=[event])).accepted == 1
    again = stub.TrackEvents(pb.TrackEventsRequest(events=[event]))
    assert again.accepted == 0 and again.duplicates == 1


@pytest.mark.parametrize("request_, message", [
    (pb.RecommendRequest(customer_id="c0", k=-1), "k"),
    (pb.RecommendRequest(customer_id="c0", k=1_000_000), "k"),
    (pb.RecommendRequest(k=3), "customer_id"),
    (pb.RecommendRequest(customer_id="c0", channel="telegraph"), "channel"),
    (pb.RecommendRequest(customer_id="c0", filters=pb.Filters(repurchase_policy="maybe")), "repurchase_policy"),
    (pb.RecommendRequest(customer_id="x" * 1000), "customer_id"),
])
def test_bad_recommend_is_invalid_argument(stub, request_, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.Recommend(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_bad_batch_is_rejected_whole(stub):
    customer = uid()
    good = ev(customer, "add_to_cart", "i0007")
    for bad in (ev(customer, "teleport", "i0001"), ev(customer, "view", "i0001", quantity=-1),
                ev(customer, "view", "i0001", channel="fax"), ev(customer, "view", "i0001", price=float("nan")),
                ev(customer, "view", "i0001", timestamp_ms=32_503_680_000_000)):
        with pytest.raises(grpc.RpcError) as info:
            stub.TrackEvents(pb.TrackEventsRequest(events=[good, bad]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "events[1]" in info.value.details()
    # nothing of those batches was applied: the good event is new now
    assert stub.TrackEvents(pb.TrackEventsRequest(events=[good])).accepted == 1


def test_oversized_batch(stub, service):
    customer = uid()
    too_many = [ev(customer, "view", "i0001") for _ in range(service.config.max_events_per_request + 1)]
    with pytest.raises(grpc.RpcError) as info:
        stub.TrackEvents(pb.TrackEventsRequest(events=too_many))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    huge = pb.TrackEventsRequest(events=[ev(customer, "view", "i0001", attributes={"k": "v" * 200})] * 90,
                                 request_id="x" * 250_000)
    with pytest.raises(grpc.RpcError) as info:
        stub.TrackEvents(huge)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in info.value.details()


def test_bad_request_id(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.TrackEvents(pb.TrackEventsRequest(events=[ev(uid(), "view", "i0001")], request_id="r" * 500))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in info.value.details()


def test_still_serving_after_bad_input_and_health(stub, channel):
    with pytest.raises(grpc.RpcError):
        stub.Recommend(pb.RecommendRequest(customer_id=""))
    assert len(stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3)).items) == 3
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(
        service="recsys.v1.Personalization")).status == health_pb2.HealthCheckResponse.SERVING


def test_concurrent_recommends_each_get_their_own_answer(stub, service):
    """Many requests at once, straight from the front to each customer's owner over gRPC, and
    over HTTP with an x-session-id naming the other owner: that owner forwards them, coalesced into
    fewer calls (gateway/coalesce.py). Every caller still gets the answer for its own customer and
    k, the same as when asked alone."""
    asks = [(f"c{n}", 3 + n % 5) for n in range(60)]
    alone = {ask: ids(stub.Recommend(pb.RecommendRequest(customer_id=ask[0], channel="web", k=ask[1])))
             for ask in asks}
    futures = [(ask, stub.Recommend.future(pb.RecommendRequest(customer_id=ask[0], channel="web", k=ask[1])))
               for ask in asks * 3]
    for ask, future in futures:
        assert ids(future.result(timeout=30)) == alone[ask], ask
    assert len({tuple(v) for v in alone.values()}) > 5   # the customers do differ
    import asyncio

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from tests.integration.conftest import owner_name_of

    def elsewhere(customer: str) -> str:
        """A customer of another owner than ``customer``'s."""
        return next(f"c{n}" for n in range(100) if owner_name_of(f"c{n}") != owner_name_of(customer))

    async def over_http():
        async with httpx.AsyncClient(base_url=service.http, timeout=30,
                                     headers={"authorization": f"Bearer {KEYS['admin']}"}) as client:
            replies = await asyncio.gather(*[client.post("/v1/recommend", json={"customer_id": c, "k": k},
                                                         headers={"x-session-id": elsewhere(c)})
                                             for c, k in asks * 3])
        return [(ask, [i["item_id"] for i in r.json()["items"]]) for ask, r in zip(asks * 3, replies)]
    for ask, got in asyncio.run(over_http()):
        assert got == alone[ask], ask
    # and they were coalesced: some owner -> owner call carried more than one request
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{service.http}/metrics", timeout=30).text)}
    buckets = {s.labels["le"]: s.value for s in families["recsys_owner_call_batch_size"].samples
               if s.name.endswith("_bucket") and s.labels["call"] == "recommend"}
    assert buckets["+Inf"] > buckets["1.0"], buckets
