"""Bring the service up on a running Ray: the customer tier (placement, owners), then Serve (HTTP)
and the gRPC front.

HTTP and gRPC are the project's own front (gateway/grpc_front.py, gateway/http_front.py) on
``http_host:http_port`` and ``http_host:grpc_port``, with TLS when configured: it sends a request
that names a customer straight to the customer's owner, and the rest to the ingress (gRPC through
a Serve handle, HTTP through Serve's HTTP proxy, which listens on loopback only). Serve's gRPC proxy
would listen on every interface whatever the host, so it is not started here. (The application
builder, gateway/app.py, is the other way in: there Serve's gRPC proxy with GRPC_SERVICERS
answers, bound as Serve binds it.)
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve
from ray.serve.config import HTTPOptions, gRPCOptions
from ray.serve.schema import LoggingConfig

from actors.cluster import start_backend, stop_backend
from engine.config import ServeConfig, ingress_scaling
from engine.errors import InvalidArgument
from gateway.grpc_front import GrpcFront
from gateway.ingress import Ingress, IngressSettings
from gateway.rpcs import OwnerEdge
from recommenders.bundle import ModelBundle

APP_NAME = "recsys"
GRPC_FRONT_NAME = "recsys-grpc-front"
# For Serve's gRPC proxy (the application builder's Serve config, deploy/rayservice.yaml)
GRPC_SERVICERS = [
    "gateway.grpc_registration.add_personalization_to_server",
    "gateway.grpc_registration.add_health_to_server",
]


@dataclass
class RunningService:
    """What start_service started. Hold on to it: the back end's actors belong to this process and
    live as long as their handles do."""

    config: ServeConfig
    placement: object
    registry: object = None
    grpc_front: object = None
    # the start-up model's arrays and the offer learner, owned here (see actors.cluster.start_backend)
    keep_alive: object = None
    # Serve's own HTTP proxy, on loopback behind the front (benchmarks compare against it)
    serve_http: str = ""

    def stop(self) -> None:
        if self.grpc_front is not None:
            ray.get(self.grpc_front.stop.remote())
            ray.kill(self.grpc_front, no_restart=True)
            self.grpc_front = None
        serve.shutdown()
        stop_backend()
        self.placement = None
        self.registry = None
        self.keep_alive = None


def free_loopback_port() -> int:
    """A TCP port free on loopback now (tests, benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(config: ServeConfig, bundle: ModelBundle, owner_options: dict | None = None,
                  ingress_actor_options: dict | None = None) -> RunningService:
    """Start the customer tier and the ingress on the Ray this process is connected to.
    ``owner_options``, ``ingress_actor_options``: Ray actor options for the owners and the
    ingress replicas (custom resources that keep them on the nodes meant for them)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # each owner answers the gRPC calls that name one of its customers (the front sends them there)
    placement, registry, keep_alive = start_backend(bundle, config, owner_options,
                                                    edge=OwnerEdge(IngressSettings.from_config(config, 0)))
    partitions = ray.get(placement.status.remote())["partitions"]
    tls = config.tls_certfile is not None
    if tls != (config.tls_keyfile is not None):
        raise InvalidArgument("tls_certfile and tls_keyfile go together")
    # Serve's HTTP proxy listens on loopback only: the front (on the service's HTTP port) sends it
    # what no owner answers directly. No grpc_servicer_functions: Serve starts no gRPC proxy (it
    # would bind every interface).
    serve_port = free_loopback_port()
    serve.start(http_options=HTTPOptions(host="127.0.0.1", port=serve_port),
                grpc_options=gRPCOptions(grpc_servicer_functions=[]))
    settings = IngressSettings.from_config(config, partitions)
    ingress = Ingress.options(**ingress_scaling(config))
    if ingress_actor_options:
        ingress = ingress.options(ray_actor_options={"num_cpus": 0, **ingress_actor_options})
    serve.run(ingress.bind(settings),
              name=APP_NAME, route_prefix="/", blocking=False,
              logging_config=LoggingConfig(encoding="JSON", log_level="INFO", enable_access_log=True))
    credentials = (Path(config.tls_certfile).read_bytes(), Path(config.tls_keyfile).read_bytes()) if tls else ()
    # the gRPC front listens on this machine's address (http_host): it runs on this node, and goes
    # with it, never restarted on another node where the address means something else
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    front = GrpcFront.options(name=GRPC_FRONT_NAME, namespace="recsys", scheduling_strategy=here).remote(
        config.http_host, config.grpc_port, APP_NAME, Ingress.name, *(credentials or (None, None)),
        settings=settings, http=(config.http_port, f"http://127.0.0.1:{serve_port}",
                                 config.tls_certfile, config.tls_keyfile))
    try:
        ray.get(front.start.remote())
    except Exception:
        ray.kill(front, no_restart=True)
        raise
    return RunningService(config, placement, registry, front, keep_alive, f"http://127.0.0.1:{serve_port}")
