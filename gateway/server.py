"""Bring the service up on a running Ray: shard actors, then Serve with HTTP and gRPC."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve
from ray.serve.config import HTTPOptions, gRPCOptions
from ray.serve.schema import LoggingConfig

from actors.cluster import start_shards, stop_shards
from engine.config import ServeConfig, ingress_scaling
from engine.errors import InvalidArgument
from gateway.tls import GrpcTlsFront
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
    registry: object = None
    tls_front: object = None
    # the start-up model's arrays and the offer learner, owned here (see actors.cluster.start_shards)
    keep_alive: object = None

    def stop(self) -> None:
        if self.tls_front is not None:
            ray.get(self.tls_front.stop.remote())
            ray.kill(self.tls_front, no_restart=True)
            self.tls_front = None
        serve.shutdown()
        stop_shards(self.config.num_shards)
        self.shards.clear()
        self.registry = None
        self.keep_alive = None


def free_loopback_port() -> int:
    """A TCP port free on loopback now (for Serve's proxy behind the TLS front; tests, benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(config: ServeConfig, bundle: ModelBundle, shard_options: dict | None = None) -> RunningService:
    """Start shards and the ingress on the Ray this process is connected to."""
    shards, registry, keep_alive = start_shards(bundle, config, shard_options)
    tls = config.tls_certfile is not None
    if tls != (config.tls_keyfile is not None):
        raise InvalidArgument("tls_certfile and tls_keyfile go together")
    http_options = HTTPOptions(host=config.http_host, port=config.http_port)
    if tls:
        http_options = HTTPOptions(host=config.http_host, port=config.http_port,
                                   ssl_certfile=config.tls_certfile, ssl_keyfile=config.tls_keyfile)
    # With TLS, Serve's plaintext gRPC proxy moves to a loopback port behind the TLS front.
    serve_grpc_port = free_loopback_port() if tls else config.grpc_port
    serve.start(http_options=http_options,
                grpc_options=gRPCOptions(port=serve_grpc_port, grpc_servicer_functions=GRPC_SERVICERS,
                                         enable_reflection=True))
    settings = IngressSettings.from_config(config)
    serve.run(Ingress.options(**ingress_scaling(config)).bind(settings),
              name=APP_NAME, route_prefix="/", blocking=False,
              logging_config=LoggingConfig(encoding="JSON", log_level="INFO", enable_access_log=True))
    front = None
    if tls:
        front = GrpcTlsFront.options(name="recsys-grpc-tls-front", namespace="recsys").remote(
            f"{config.http_host}:{config.grpc_port}", f"127.0.0.1:{serve_grpc_port}",
            Path(config.tls_certfile).read_bytes(), Path(config.tls_keyfile).read_bytes())
        ray.get(front.start.remote())
    return RunningService(config, shards, registry, front, keep_alive)
