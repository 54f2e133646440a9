"""Prometheus metrics, defined once. Label values come from small fixed sets (RPC names,
protocols, status codes, owner names, model versions), never from customer or item ids.

Each ingress replica has its own registry and serves it at GET /metrics, with the counters of every
owner and of the gRPC front added in (they answer the gRPC calls that name a customer). So one
scrape through the proxy shows the whole service's gRPC traffic and that replica's HTTP traffic;
with several ingress replicas do not add their scrapes up (the owners' counts are in each).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from actors.metric_samples import registry_samples

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_requests", "Requests by RPC, protocol and status code",
                                ["rpc", "protocol", "code"], registry=self.registry)
        self.latency = Histogram("recsys_request_duration_seconds", "Request latency in the ingress",
                                 ["rpc", "protocol", "code"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = Counter("recsys_events_ingested", "Events acknowledged, new or duplicate", ["result"],
                              registry=self.registry)
        self.customers = Gauge("recsys_owner_customers", "Customers held in memory per partition owner", ["owner"],
                               registry=self.registry)
        self.owner_partitions = Gauge("recsys_owner_partitions", "Partitions each owner holds", ["owner"],
                                      registry=self.registry)
        # label: the offer id (from the catalogue: a small, operator-defined set) or
        # "none:<reason>" for a decision with no offer (reasons are a fixed set)
        self.decisions = Counter("recsys_offer_decisions", "Next-best-offer decisions by offer made",
                                 ["offer"], registry=self.registry)
        # how many requests each call to an owner carried (gateway/coalesce.py): 1 when idle.
        # label: recommend (Recommends from an ingress or an owner forwarding), track (TrackEvents
        # shares, likewise), front (the protocol fronts' calls that name a customer)
        self.shard_batch = Histogram("recsys_owner_call_batch_size", "Requests per call to an owner", ["call"],
                                     buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        # requests an owner answered for a partition it does not hold, sent on once to the one that
        # does (gateway/operations.py LocalFirst): stale routes, or a request without its routing key
        self.forwarded = Counter("recsys_forwarded_requests", "Requests forwarded once to their partition's owner",
                                 ["rpc"], registry=self.registry)
        self.model = Gauge("recsys_model_info", "The model version the owners serve (value 1)", ["version"],
                           registry=self.registry)
        # P: with recsys_owner_partitions, what shows partitions no owner holds (an owner down)
        self.partitions = Gauge("recsys_partitions", "Partitions customers hash to (P)", registry=self.registry)

    def observe(self, rpc: str, protocol: str, code: str, seconds: float) -> None:
        self.requests.labels(rpc, protocol, code).inc()
        self.latency.labels(rpc, protocol, code).observe(seconds)

    def owner_stats(self, stats: list[dict]) -> None:
        # owners come and go as the tier scales: only the ones running now are reported
        for gauge in (self.model, self.customers, self.owner_partitions):
            gauge.clear()
        for s in stats:
            self.customers.labels(s["owner"]).set(s["customers"])
            self.owner_partitions.labels(s["owner"]).set(len(s["partitions"]))
            self.model.labels(s["model_version"]).set(1)

    def samples(self) -> dict:
        """This process's counters and histograms as plain data (an owner sends them to the ingress,
        which adds every owner's to its own in one exposition)."""
        return registry_samples(self.registry)

    def exposition(self, others: list[dict] = ()) -> bytes:
        """This registry, with the counters and histograms of ``others`` (Metrics.samples of
        other processes) added in: one scrape shows the whole service's requests. The same series
        whether or not others are given (no _created samples)."""
        merged = self.samples()
        for other in others:
            for key, value in other.items():
                merged[key] = merged.get(key, 0.0) + value
        registry = CollectorRegistry()
        registry.register(_Merged(merged, [f for f in self.registry.collect() if f.type not in ("counter", "histogram")]))
        return generate_latest(registry)


def _order(item) -> tuple:
    (name, _kind, _doc, sample, labels), _ = item
    plain = tuple((k, v) for k, v in labels if k != "le")
    le = dict(labels).get("le")
    return name, sample, plain, float(le) if le is not None else 0.0


class _Merged:
    """A collector over merged samples (and this process's gauges as they are)."""

    def __init__(self, samples: dict, gauges: list):
        self._samples, self._gauges = samples, gauges

    def collect(self):
        from prometheus_client.metrics_core import Metric

        families: dict = {}
        # histogram buckets in increasing numeric le order, as the text format wants them
        for (name, kind, doc, sample, labels), value in sorted(self._samples.items(), key=_order):
            family = families.get(name)
            if family is None:
                family = families[name] = Metric(name, doc, kind)
            family.add_sample(sample, dict(labels), value)
        yield from families.values()
        yield from self._gauges
