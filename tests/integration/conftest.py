"""One real Ray, one real Serve (HTTP + gRPC) for every integration test in the session."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from engine.auth import ApiKey, AuthConfig, generate_key, hash_key
from tests.ports import free_port

OFFERS_TEST_CATALOG = Path(__file__).with_name("offers_test.toml")
# the placement the shared service's recommendation experiment runs on (test_experiments_live.py)
EXPERIMENT_PLACEMENT = "exp_home"
# a short cart-abandonment timer (2.4 s), so a test can wait for it
CART_ABANDON_MINUTES = 0.04
KEYS = {name: generate_key() for name in ("admin", "reader", "limited", "small")}
AUTH = AuthConfig(enabled=True, keys=(
    ApiKey("admin", hash_key(KEYS["admin"]), frozenset({"recommend", "events", "offers", "admin"})),
    ApiKey("reader", hash_key(KEYS["reader"]), frozenset({"recommend"})),
    ApiKey("limited", hash_key(KEYS["limited"]), frozenset({"recommend"}), rate_per_second=0.5, burst=3),
    ApiKey("small", hash_key(KEYS["small"]), frozenset({"recommend", "events"}), max_body_bytes=2_000),
))


@dataclass
class Endpoints:
    http: str
    grpc_target: str
    config: object
    bundle: object
    running: object = None

    def restart(self) -> float:
        """Stop the whole service (Serve and every owner) and start it again; returns seconds."""
        import time

        from gateway.server import start_service

        started = time.perf_counter()
        self.running.stop()
        self.running = start_service(self.config, self.bundle)
        return time.perf_counter() - started


class _AddMetadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends `authorization: Bearer <key>` with every call, as a client application would."""

    def __init__(self, key: str):
        self._metadata = (("authorization", f"Bearer {key}"),)

    def intercept_unary_unary(self, continuation, details, request):
        details = details._replace(metadata=tuple(details.metadata or ()) + self._metadata)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        return self.intercept_unary_unary(continuation, details, request)


def authed_stub(channel, key: str):
    from recsys.v1 import recsys_pb2_grpc

    return recsys_pb2_grpc.PersonalizationStub(grpc.intercept_channel(channel, _AddMetadata(key)))




def owner_name_of(customer_id: str) -> str:
    """The name of the owner holding the customer's partition now (asks the placement)."""
    import ray

    from actors.names import find_placement
    from engine.sharding import partition_for

    _, routes = ray.get(find_placement().routes.remote())
    return routes[partition_for(customer_id, len(routes))]


def owner_of(customer_id: str):
    """The handle of the owner holding the customer's partition now."""
    from actors.names import find

    return find(owner_name_of(customer_id))


def owners():
    """Handles of every owner running now."""
    from actors.cluster import find_owners

    return find_owners()


@pytest.fixture(scope="session")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def service(ray_session, synthetic_bundle, tmp_path_factory):
    from engine.config import OffersConfig, RecArm, RecExperiment, ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import start_service

    offers = OffersConfig(catalog_path=str(OFFERS_TEST_CATALOG), bandit_sync_seconds=0.5,
                          cart_abandon_minutes=CART_ABANDON_MINUTES, trigger_tick_seconds=0.2)
    # two owners over 16 partitions, not autoscaled: the tests that move partitions or scale do it
    # on purpose (test_elastic_tier.py, elastic_scenario.py)
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), partitions=16, offers=offers,
                         owners=ScalingConfig(min_owners=2, max_owners=4), autoscale_owners=False,
                         model_dir=str(tmp_path_factory.mktemp("models")),
                         max_body_bytes=200_000, max_events_per_request=100,
                         store_url=f"sqlite:///{tmp_path_factory.mktemp('store')}/recsys.db", auth=AUTH,
                         # only on its own placement: the other tests' lists are the served ranking's
                         recommend_experiment=RecExperiment(
                             "it-arms", (RecArm("control", 0.5, strategy="popularity"), RecArm("personal", 0.5)),
                             placements=(EXPERIMENT_PLACEMENT,)))
    endpoints = Endpoints(f"http://127.0.0.1:{config.http_port}", f"127.0.0.1:{config.grpc_port}", config,
                          synthetic_bundle, start_service(config, synthetic_bundle))
    yield endpoints
    endpoints.running.stop()


@pytest.fixture(scope="session")
def channel(service):
    with grpc.insecure_channel(service.grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield ch


@pytest.fixture(scope="session")
def stub(channel):
    """A client with the admin key (every scope)."""
    return authed_stub(channel, KEYS["admin"])


@pytest.fixture(scope="session")
def http(service):
    import httpx

    with httpx.Client(base_url=service.http, timeout=30,
                      headers={"authorization": f"Bearer {KEYS['admin']}"}) as client:
        yield client
