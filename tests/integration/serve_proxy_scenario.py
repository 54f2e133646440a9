"""Run as a script by test_serve_proxy.py: the ingress behind Serve's own gRPC proxy, registered
with GRPC_SERVICERS as the application builder's Serve config (deploy/rayservice.yaml) registers
it, in a Ray of its own. Prints one JSON line."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.ports import free_port  # noqa: E402


def main() -> int:
    import grpc
    import ray
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from actors.cluster import start_backend, stop_backend
    from engine.auth import AuthConfig
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.ingress import Ingress, IngressSettings
    from gateway.server import GRPC_SERVICERS
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train
    from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

    tmp = Path(tempfile.mkdtemp())
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), partitions=8, owners=ScalingConfig(min_owners=1, max_owners=1),
                         store_url=f"sqlite:///{tmp}/store.db", auth=AuthConfig(enabled=False))
    bundle = train(synthetic_retail(n_customers=100, n_items=30, n_groups=3),
                   TrainParams(factors=4, iterations=3, evaluate=False, threads=1), progress=False)
    ray.init(num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    keep = start_backend(bundle, config)
    report: dict = {}
    try:
        serve.start(http_options=HTTPOptions(host="127.0.0.1", port=config.http_port),
                    grpc_options=gRPCOptions(port=config.grpc_port, grpc_servicer_functions=GRPC_SERVICERS))
        serve.run(Ingress.bind(IngressSettings.from_config(config, 8)), name="recsys", route_prefix="/")
        with grpc.insecure_channel(f"127.0.0.1:{config.grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = recsys_pb2_grpc.PersonalizationStub(channel)
            report["recommend_items"] = len(stub.Recommend(pb.RecommendRequest(customer_id="c1", k=3), timeout=30).items)
            health = health_pb2_grpc.HealthStub(channel)
            report["check"] = health_pb2.HealthCheckResponse.ServingStatus.Name(
                health.Check(health_pb2.HealthCheckRequest(), timeout=30).status)
            watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
            report["watch"] = health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status)
            watch.cancel()
            for method in ("/grpc.health.v1.Health/Check", "/recsys.v1.Personalization/Recommend"):
                try:
                    channel.unary_unary(method)(b"\xff\xff\xff", timeout=30)
                    report[f"garbage {method}"] = "OK"
                except grpc.RpcError as error:
                    report[f"garbage {method}"] = error.code().name
                    report.setdefault("details", []).append(error.details())
            try:
                list(stub.SubscribeActions(pb.SubscribeActionsRequest(kinds=["spam"]), timeout=30))
            except grpc.RpcError as error:
                report["stream_bad_input"] = error.code().name
    finally:
        serve.shutdown()
        stop_backend()
        del keep
        ray.shutdown()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
