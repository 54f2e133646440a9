"""Operators' view: Prometheus metrics scraped over real HTTP, gRPC reflection, JSON logs that
carry the request id a client sent."""
import json
import time
import uuid
from pathlib import Path

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import KEYS


def scrape(service) -> dict:
    text = httpx.get(f"{service.http}/metrics", timeout=30).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_metrics_scraped_and_parsed(service, stub, synthetic_bundle):
    stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3))
    stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(
        event_id=uuid.uuid4().hex, customer_id="metrics-customer", event_type="view", item_id="i0001", channel="web")]))
    try:
        stub.Recommend(pb.RecommendRequest(customer_id="c0", k=-1))
    except grpc.RpcError:
        pass
    samples = scrape(service)
    requests = {(s.labels["rpc"], s.labels["protocol"], s.labels["code"]): s.value
                for s in samples["recsys_requests_total"]}
    assert requests[("Recommend", "grpc", "OK")] >= 1
    assert requests[("Recommend", "grpc", "INVALID_ARGUMENT")] >= 1
    assert requests[("TrackEvents", "grpc", "OK")] >= 1
    buckets = [s for s in samples["recsys_request_duration_seconds_bucket"] if s.labels["rpc"] == "Recommend"]
    assert buckets and any(s.labels["le"] == "+Inf" and s.value >= 1 for s in buckets)
    accepted = [s.value for s in samples["recsys_events_ingested_total"] if s.labels["result"] == "accepted"]
    assert accepted and accepted[0] >= 1
    held = {s.labels["owner"]: s.value for s in samples["recsys_owner_customers"]}
    assert len(held) == 2 and sum(held.values()) >= 1
    partitions = {s.labels["owner"]: s.value for s in samples["recsys_owner_partitions"]}
    assert set(partitions) == set(held) and sum(partitions.values()) == 16
    versions = [s.labels["version"] for s in samples["recsys_model_info"]]
    assert versions == [synthetic_bundle.version]


def test_grpc_reflection_lists_the_service(channel):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "recsys.v1.Personalization" in services


def _serve_logs() -> list[Path]:
    """Serve's logs (the ingress replicas) and the workers' (the owners' access lines)."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    return sorted((logs / "serve").glob("*.log")) + sorted(logs.glob("worker-*.err"))


def _find(needle: str, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for path in _serve_logs():
            for line in path.read_text(errors="replace").splitlines():
                # the app's replicas log JSON (gateway/server.py); the proxies keep Serve's own format
                if needle in line and line.startswith("{"):
                    found.append(json.loads(line))
        if found:
            return found
        time.sleep(0.5)
    return []


def test_request_id_from_the_client_is_echoed_and_logged(service, channel):
    http_id = f"http-{uuid.uuid4().hex}"
    response = httpx.post(f"{service.http}/v1/recommend", json={"customer_id": "c0", "k": 2},
                          headers={"authorization": f"Bearer {KEYS['admin']}", "x-request-id": http_id}, timeout=30)
    assert response.json()["request_id"] == http_id
    lines = _find(http_id)
    assert lines and all(line["request_id"] == http_id for line in lines)

    grpc_id = f"grpc-{uuid.uuid4().hex}"
    from tests.integration.conftest import authed_stub

    reply = authed_stub(channel, KEYS["admin"]).Recommend(pb.RecommendRequest(customer_id="c0", k=2),
                                                          metadata=(("request_id", grpc_id),))
    assert reply.request_id == grpc_id
    assert _find(grpc_id)
