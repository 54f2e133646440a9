"""Each unary RPC is declared once (gateway/rpcs.py), and both protocols are served from that table."""
from gateway.grpc_registration import METHODS
from gateway.rpcs import BY_NAME, RPCS
from recsys.v1 import recsys_pb2 as pb


def test_every_unary_rpc_of_the_service_is_in_the_table_once():
    unary = {m.name for path, m in METHODS.items()
             if path.startswith("/recsys.v1.Personalization/") and not m.server_streaming}
    assert [r.name for r in RPCS].count("Recommend") == 1
    assert set(BY_NAME) == unary
    assert len({(r.http_method, r.http_path) for r in RPCS}) == len(RPCS)


def test_the_ingress_methods_for_the_table_are_made_from_it():
    from gateway.ingress import Ingress

    cls = Ingress.func_or_class
    for rpc in RPCS:
        # the gRPC method Serve's proxy calls and the HTTP route: generated, one body for all RPCs
        assert getattr(cls, rpc.name).__code__ is getattr(cls, "Recommend").__code__
        assert getattr(cls, f"http_{rpc.name}").__code__ is getattr(cls, "http_Recommend").__code__


def test_routing_keys_name_the_customer():
    assert BY_NAME["Recommend"].key_of(pb.RecommendRequest(customer_id="c1")) == "c1"
    assert BY_NAME["SimilarItems"].key_of(pb.SimilarItemsRequest(item_id="i1")) == ""
    events = pb.TrackEventsRequest(events=[pb.Event(customer_id="c2"), pb.Event(customer_id="c3")])
    assert BY_NAME["TrackEvents"].key_of(events) == "c2"
    assert BY_NAME["TrackEvents"].key_of(pb.TrackEventsRequest()) == ""
    assert BY_NAME["UpdateCatalog"].key_of(pb.UpdateCatalogRequest()) == ""
    assert BY_NAME["ForgetCustomer"].key_of(pb.ForgetCustomerRequest(customer_id="c4")) == "c4"


def test_the_front_takes_the_key_from_metadata_first():
    from gateway.grpc_front import routing_key

    body = pb.RecommendRequest(customer_id="c1").SerializeToString()
    assert routing_key("/recsys.v1.Personalization/Recommend", body, ()) == "c1"
    assert routing_key("/recsys.v1.Personalization/Recommend", body, (("x-session-id", "c9"),)) == "c9"
    assert routing_key("/recsys.v1.Personalization/Recommend", b"\xff\xff", ()) == ""   # malformed: the ingress
    assert routing_key("/grpc.health.v1.Health/Check", b"", ()) == ""
    # an RPC that names no customer goes to the ingress whatever the metadata says
    assert routing_key("/recsys.v1.Personalization/UpdateCatalog", b"", (("x-session-id", "c9"),)) == ""
    assert not BY_NAME["UpdateCatalog"].keyed and BY_NAME["SimilarItems"].keyed


def _shares_case():
    import time

    from engine.sharding import partition_for
    from gateway.operations import IngressSettings

    settings = IngressSettings(partitions=8, max_k=100, max_body_bytes=1 << 20, max_events_per_request=100)
    owner_of = ["a" if p % 2 == 0 else "b" for p in range(8)]
    of = {name: [f"s{n}" for n in range(200) if owner_of[partition_for(f"s{n}", 8)] == name][:3] for name in "ab"}
    now = int(time.time() * 1000)

    def event(customer, **extra):
        return {"event_id": f"e-{customer}-{len(extra)}", "customer_id": customer, "event_type": "view",
                "item_id": "i1", "channel": "web", **extra}
    return settings, owner_of, of, now, event


def test_a_batch_is_split_by_owner_after_it_is_validated_whole():
    import pytest

    from engine.errors import InvalidArgument
    from engine.sharding import partition_for
    from gateway.rpcs import event_shares

    settings, owner_of, of, now, event = _shares_case()
    a, b = of["a"], of["b"]
    # one owner's customers: one share, left to that owner to validate (even a bad event)
    one = {"events": [event(a[0]), event(a[1], event_type="nonsense")]}
    assert event_shares(one, settings, owner_of) == [(partition_for(a[0], 8), [0, 1])]
    # spanning owners: validated here, then each owner's positions in order
    mixed = {"events": [event(a[0]), event(b[0]), event(a[1]), event(b[1])]}
    shares = event_shares(mixed, settings, owner_of)
    assert [positions for _, positions in shares] == [[0, 2], [1, 3]]
    assert [owner_of[p] for p, _ in shares] == ["a", "b"]
    with pytest.raises(InvalidArgument, match=r"events\[3\]\.event_type"):
        event_shares({"events": mixed["events"][:3] + [event(b[1], event_type="nonsense")]}, settings, owner_of)
    # a partition without an owner (a move): the whole batch to the first event's owner
    moving = list(owner_of)
    moving[partition_for(b[0], 8)] = None
    assert event_shares(mixed, settings, moving) == [(partition_for(a[0], 8), [0, 1, 2, 3])]


def test_a_split_batch_is_held_to_a_clock_a_minute_behind_the_fronts():
    """So an owner whose clock is behind the front's (by under a minute) accepts every share the
    front let through: no share is refused after another was stored."""
    import pytest

    from engine.errors import InvalidArgument
    from engine.events import MAX_FUTURE_SKEW_MS
    from gateway.rpcs import SPLIT_CLOCK_MARGIN_MS, event_shares

    settings, owner_of, of, now, event = _shares_case()
    edge = now + MAX_FUTURE_SKEW_MS
    late = {"events": [event(of["a"][0]), event(of["b"][0], timestamp_ms=edge - SPLIT_CLOCK_MARGIN_MS // 2)]}
    with pytest.raises(InvalidArgument, match=r"events\[1\]\.timestamp_ms"):
        event_shares(late, settings, owner_of)
    fine = {"events": [event(of["a"][0]), event(of["b"][0], timestamp_ms=edge - 2 * SPLIT_CLOCK_MARGIN_MS)]}
    assert len(event_shares(fine, settings, owner_of)) == 2
