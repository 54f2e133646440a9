"""One scrape shows the whole service: the ingress adds the owners' and the front's counters and
histograms (gateway/metrics.py Metrics.samples / exposition) to its own."""
import pickle

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics


def _families(text: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def _value(family, sample_name: str, **labels) -> float:
    return sum(s.value for s in family.samples if s.name == sample_name and s.labels == labels)


def test_counters_and_histograms_of_other_processes_are_added():
    ingress, owner_a, owner_b = Metrics(), Metrics(), Metrics()
    ingress.observe("Recommend", "http", "200", 0.004)
    owner_a.observe("Recommend", "grpc", "OK", 0.002)
    owner_a.observe("Recommend", "grpc", "OK", 0.2)
    owner_b.observe("Recommend", "grpc", "OK", 0.003)
    owner_b.forwarded.labels("Recommend").inc()
    ingress.customers.labels("owner-1").set(7)
    # what an owner sends crosses a process boundary: plain, picklable data
    others = [pickle.loads(pickle.dumps(owner_a.samples())), owner_b.samples()]
    families = _families(ingress.exposition(others))
    requests = families["recsys_requests"]
    assert _value(requests, "recsys_requests_total", rpc="Recommend", protocol="grpc", code="OK") == 3
    assert _value(requests, "recsys_requests_total", rpc="Recommend", protocol="http", code="200") == 1
    latency = families["recsys_request_duration_seconds"]
    labels = {"rpc": "Recommend", "protocol": "grpc", "code": "OK"}
    assert _value(latency, "recsys_request_duration_seconds_count", **labels) == 3
    assert _value(latency, "recsys_request_duration_seconds_bucket", le="0.005", **labels) == 2
    assert _value(latency, "recsys_request_duration_seconds_bucket", le="+Inf", **labels) == 3
    assert _value(families["recsys_forwarded_requests"], "recsys_forwarded_requests_total", rpc="Recommend") == 1
    # the ingress's own gauges are there as they are, not added up
    assert _value(families["recsys_owner_customers"], "recsys_owner_customers", owner="owner-1") == 7


def test_without_others_the_exposition_is_the_registry_itself():
    metrics = Metrics()
    metrics.observe("TrackEvents", "grpc", "OK", 0.01)
    assert metrics.exposition() == metrics.exposition([])
    families = _families(metrics.exposition())
    assert _value(families["recsys_requests"], "recsys_requests_total", rpc="TrackEvents", protocol="grpc",
                  code="OK") == 1
