"""Bring the service up on a running Ray: shard actors, then Serve with HTTP and gRPC."""
from __future__ import annotations

from dataclasses import dataclass

from ray import serve
from ray.serve.config import HTTPOptions, gRPCOptions

from actors.cluster import start_shards, stop_shards
from engine.config import ServeConfig
from gateway.ingress import Ingress, IngressSettings
from recommenders.bundle import ModelBundle

APP_NAME = "recsys"
GRPC_SERVICERS = [
    "gateway.grpc_registration.add_personalization_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]


@dataclass
class RunningService:
    """What start_service started. Hold on to it: the shard actors belong to this process and
    live as long as their handles do."""

    config: ServeConfig
    shards: list

    def stop(self) -> None:
        serve.shutdown()
        stop_shards(self.config.num_shards)
        self.shards.clear()


def start_service(config: ServeConfig, bundle: ModelBundle, shard_options: dict | None = None) -> RunningService:
    """Start shards and the ingress on the Ray this process is connected to."""
    shards = start_shards(bundle, config, shard_options)
    serve.start(
        http_options=HTTPOptions(host=config.http_host, port=config.http_port),
        grpc_options=gRPCOptions(port=config.grpc_port, grpc_servicer_functions=GRPC_SERVICERS),
    )
    settings = IngressSettings(num_shards=config.num_shards, max_k=config.ranking.max_k,
                               max_body_bytes=config.max_body_bytes,
                               max_events_per_request=config.max_events_per_request, auth=config.auth)
    serve.run(Ingress.options(num_replicas=config.ingress_replicas).bind(settings),
              name=APP_NAME, route_prefix="/", blocking=False)
    return RunningService(config, shards)
