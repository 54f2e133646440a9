"""Run as a script by test_tls.py: the service with TLS on, in its own Ray, checked with real
clients that trust a self-signed certificate. Prints one JSON line."""
from __future__ import annotations

import json
import ssl
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.ports import free_port  # noqa: E402




def main() -> int:
    import grpc
    import httpx
    import ray
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from engine.auth import ApiKey, AuthConfig, generate_key, hash_key, SCOPES
    from engine.config import OffersConfig, ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import start_service
    from gateway.tls import write_self_signed
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

    tmp = Path(tempfile.mkdtemp())
    cert, key = write_self_signed(tmp / "tls")
    api_key = generate_key()
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), partitions=8, owners=ScalingConfig(min_owners=1, max_owners=1),
                         store_url=f"sqlite:///{tmp}/store.db", tls_certfile=str(cert), tls_keyfile=str(key),
                         # a 1.2 s cart-abandonment timer, so an action comes down the TLS stream soon
                         offers=OffersConfig(cart_abandon_minutes=0.02, trigger_tick_seconds=0.2),
                         auth=AuthConfig(keys=(ApiKey("t", hash_key(api_key), SCOPES),)))
    bundle = train(synthetic_retail(n_customers=100, n_items=30, n_groups=3),
                   TrainParams(factors=4, iterations=3, evaluate=False, threads=1), progress=False)
    ray.init(num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    service = start_service(config, bundle)
    report = {}
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{config.http_port}", verify=ssl.create_default_context(
                cafile=str(cert)), headers={"authorization": f"Bearer {api_key}"}) as client:
            response = client.post("/v1/recommend", json={"customer_id": "c1", "k": 3})
            report["https_status"] = response.status_code
            report["https_items"] = len(response.json()["items"])
        try:
            httpx.get(f"http://127.0.0.1:{config.http_port}/healthz", timeout=5)
            report["plain_http_refused"] = False
        except httpx.HTTPError:
            report["plain_http_refused"] = True
        try:
            httpx.get(f"https://127.0.0.1:{config.http_port}/healthz", timeout=5)  # default CAs: untrusted
            report["untrusted_cert_refused"] = False
        except httpx.HTTPError:
            report["untrusted_cert_refused"] = True

        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{config.grpc_port}", credentials) as channel:
            stub = recsys_pb2_grpc.PersonalizationStub(channel)
            metadata = (("authorization", f"Bearer {api_key}"),)
            reply = stub.Recommend(pb.RecommendRequest(customer_id="c1", k=3), metadata=metadata, timeout=30)
            report["grpc_tls_items"] = len(reply.items)
            try:
                stub.Recommend(pb.RecommendRequest(customer_id="c1", k=-1), metadata=metadata, timeout=30)
            except grpc.RpcError as error:
                report["grpc_tls_bad_input"] = error.code().name
            try:
                stub.Recommend(pb.RecommendRequest(customer_id="c1", k=3), timeout=30)
            except grpc.RpcError as error:
                report["grpc_tls_no_key"] = error.code().name
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            report["grpc_tls_health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
            # server streams over TLS: Health/Watch, and SubscribeActions delivering a new action
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            report["grpc_tls_watch"] = health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status)
            watch.cancel()
            stream = stub.SubscribeActions(pb.SubscribeActionsRequest(kinds=["cart_abandonment"], max_actions=1),
                                           metadata=metadata, timeout=60)
            stub.TrackEvents(pb.TrackEventsRequest(events=[
                pb.Event(event_id="tls-0", customer_id="tls-cart", event_type="consent", channel="web",
                         attributes={"marketing": "granted"}),
                pb.Event(event_id="tls-1", customer_id="tls-cart", event_type="add_to_cart", item_id="i0003",
                         channel="web")]), metadata=metadata, timeout=30)
            actions = [(a.kind, a.customer_id, list(a.item_ids)) for a in stream]
            report["grpc_tls_stream"] = actions
            try:
                list(stub.SubscribeActions(pb.SubscribeActionsRequest(kinds=["spam"]), metadata=metadata, timeout=30))
            except grpc.RpcError as error:
                report["grpc_tls_stream_bad_input"] = error.code().name
        with grpc.insecure_channel(f"127.0.0.1:{config.grpc_port}") as channel:
            try:
                recsys_pb2_grpc.PersonalizationStub(channel).Recommend(
                    pb.RecommendRequest(customer_id="c1", k=3), timeout=5)
                report["plaintext_grpc_refused"] = False
            except grpc.RpcError:
                report["plaintext_grpc_refused"] = True
    finally:
        service.stop()
        ray.shutdown()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
