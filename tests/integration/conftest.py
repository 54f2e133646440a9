"""One real Ray, one real Serve (HTTP + gRPC) for every integration test in the session."""
from __future__ import annotations

import socket
from dataclasses import dataclass

import grpc
import pytest


@dataclass(frozen=True)
class Endpoints:
    http: str
    grpc_target: str
    config: object


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def service(ray_session, synthetic_bundle, tmp_path_factory):
    from engine.config import ServeConfig
    from gateway.server import start_service

    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), num_shards=3,
                         max_body_bytes=200_000, max_events_per_request=100,
                         store_url=f"sqlite:///{tmp_path_factory.mktemp('store')}/recsys.db")
    running = start_service(config, synthetic_bundle)
    yield Endpoints(f"http://127.0.0.1:{config.http_port}", f"127.0.0.1:{config.grpc_port}", config)
    running.stop()


@pytest.fixture(scope="session")
def channel(service):
    with grpc.insecure_channel(service.grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield ch


@pytest.fixture(scope="session")
def stub(channel):
    from recsys.v1 import recsys_pb2_grpc

    return recsys_pb2_grpc.PersonalizationStub(channel)


@pytest.fixture(scope="session")
def http(service):
    import httpx

    with httpx.Client(base_url=service.http, timeout=30) as client:
        yield client
