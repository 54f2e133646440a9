"""Catalogue changes over the real gRPC and HTTP ports reach every owner before the reply."""
import uuid

import grpc
import pytest

from engine.sharding import partition_for
from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import KEYS, authed_stub


def customers_on_every_shard(service, per_shard=2):
    """Fresh customer ids, ``per_shard`` of them on each partition (so on every owner)."""
    n = service.config.partitions
    found: dict[int, list[str]] = {s: [] for s in range(n)}
    while any(len(v) < per_shard for v in found.values()):
        c = f"cat-{uuid.uuid4().hex[:8]}"
        if len(found[partition_for(c, n)]) < per_shard:
            found[partition_for(c, n)].append(c)
    return [c for v in found.values() for c in v]


def views(customer, *items):
    return [pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type="view", item_id=i, channel="web")
            for i in items]


def top(stub, customer, k=10, **filters):
    request = pb.RecommendRequest(customer_id=customer, k=k)
    if filters:
        request.filters.CopyFrom(pb.Filters(**filters))
    return [i.item_id for i in stub.Recommend(request).items]


def test_out_of_stock_leaves_every_owner_at_once_and_comes_back(stub, service):
    customers = customers_on_every_shard(service)
    for c in customers:
        stub.TrackEvents(pb.TrackEventsRequest(events=views(c, "i0001", "i0002")))
    before = {c: top(stub, c) for c in customers}
    gone = before[customers[0]][0]
    try:
        reply = stub.UpdateCatalog(pb.UpdateCatalogRequest(updates=[pb.CatalogUpdate(item_id=gone, in_stock=False)]))
        assert reply.applied == 1 and reply.request_id
        for c in customers:
            assert gone not in top(stub, c, k=20)
        assert gone not in [i.item_id for i in stub.SimilarItems(pb.SimilarItemsRequest(item_id="i0001", k=20)).items]
    finally:
        stub.UpdateCatalog(pb.UpdateCatalogRequest(updates=[pb.CatalogUpdate(item_id=gone, in_stock=True)]))
    assert top(stub, customers[0]) == before[customers[0]]


def test_price_update_over_http_moves_an_item_out_of_a_price_filter(http, stub):
    customer = f"cat-{uuid.uuid4().hex[:8]}"
    stub.TrackEvents(pb.TrackEventsRequest(events=views(customer, "i0001")))
    cheap = top(stub, customer, max_price=3.0)
    target = cheap[0]
    original = float(1 + int(target[1:]) % 17)  # the synthetic shop's price rule
    try:
        reply = http.post("/v1/catalog", json={"updates": [{"item_id": target, "price": 99.0}]})
        assert reply.status_code == 200 and reply.json()["applied"] == 1
        assert target not in top(stub, customer, max_price=3.0)
    finally:
        http.post("/v1/catalog", json={"updates": [{"item_id": target, "price": original}]})


def test_a_new_item_is_recommended_before_any_retrain(http, stub, service):
    new_item = f"new-{uuid.uuid4().hex[:6]}"
    reply = http.post("/v1/catalog", json={"updates": [
        {"item_id": new_item, "name": "Brand new", "category": "group-1", "price": 2.5, "in_stock": True}]})
    assert reply.status_code == 200
    try:
        # customers who shop group 1 (i0020..i0039) see it, on every owner
        for c in customers_on_every_shard(service, per_shard=1):
            stub.TrackEvents(pb.TrackEventsRequest(events=[
                pb.Event(event_id=uuid.uuid4().hex, customer_id=c, event_type="purchase", item_id=i, channel="web")
                for i in ("i0021", "i0023", "i0027")]))
            items = stub.Recommend(pb.RecommendRequest(customer_id=c, k=25)).items
            hit = [i for i in items if i.item_id == new_item]
            assert hit and "new_items" in hit[0].reasons and hit[0].name == "Brand new"
    finally:
        # the service is shared by the session: other tests expect the synthetic shop's items only
        http.post("/v1/catalog", json={"updates": [{"item_id": new_item, "in_stock": False}]})


def test_bad_catalogue_updates_are_rejected_whole(http, stub, channel):
    bad = http.post("/v1/catalog", json={"updates": [{"item_id": "i0003", "in_stock": False},
                                                      {"item_id": "i0004", "price": -2}]})
    assert bad.status_code == 400 and "updates[1].price" in bad.json()["error"]["message"]
    assert "i0003" in top(stub, "cat-any", k=60)  # the good half was not applied either
    with pytest.raises(grpc.RpcError) as err:
        stub.UpdateCatalog(pb.UpdateCatalogRequest(updates=[pb.CatalogUpdate(item_id="")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        authed_stub(channel, KEYS["reader"]).UpdateCatalog(
            pb.UpdateCatalogRequest(updates=[pb.CatalogUpdate(item_id="i0003", in_stock=False)]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
