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
