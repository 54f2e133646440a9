"""A process's Prometheus counters and histograms as plain data, so that one exposition (the
ingress's GET /metrics, gateway/metrics.py) can add up the samples of every process: owners, the
gRPC front, the model registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry


def registry_samples(registry: CollectorRegistry) -> dict:
    """{(family, type, help, sample name, sorted labels): value} of the counters and histograms
    (``_created`` samples left out: they would differ between processes)."""
    out: dict = {}
    for family in registry.collect():
        if family.type in ("counter", "histogram"):
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    key = (family.name, family.type, family.documentation, sample.name,
                           tuple(sorted(sample.labels.items())))
                    out[key] = out.get(key, 0.0) + sample.value
    return out


class OutcomeMetrics:
    """What recommendations earn, as Prometheus counters (an owner's partitions share one; the
    ingress's /metrics adds every owner's up). Labels come from small fixed sets: the list kind,
    channel (the configured set), placement (AttributionConfig.placements, else "other"), strategy
    (blend, popularity, similar_items, the offers' bandit / static_priority / control) and arm
    ("experiment/arm", "none" outside an experiment). Click-through rate is
    rate(recsys_recommendation_outcomes_total{outcome="click"}) / rate(...{outcome="impression"}),
    revenue per impression recsys_recommendation_revenue_total over the impressions."""

    SURFACE = ["list", "channel", "placement", "strategy", "arm"]

    def __init__(self, placements=()):
        from prometheus_client import Counter

        self.placements = frozenset(placements)
        self.registry = CollectorRegistry()
        self._served = Counter("recsys_recommendations_served", "Lists answered (Recommend, SimilarItems for a "
                               "customer, NextBestOffer with offers)", self.SURFACE, registry=self.registry)
        self._outcomes = Counter("recsys_recommendation_outcomes", "Impressions, clicks, add-to-carts and purchases "
                                 "credited to a list (once per list, item and outcome)", ["outcome", *self.SURFACE],
                                 registry=self.registry)
        self._revenue = Counter("recsys_recommendation_revenue", "Revenue (price x quantity) of purchases credited "
                                "to a list", self.SURFACE, registry=self.registry)
        self._not_credited = Counter("recsys_recommendation_outcomes_not_credited", "Events naming a "
                                     "recommendation_id that earned nothing: unknown (not a list made for that "
                                     "customer with that item, or too old), repeat (already credited)",
                                     ["outcome", "reason"], registry=self.registry)

    def _surface(self, kind: str, channel: str, placement: str, strategy: str, experiment: str, arm: str) -> tuple:
        placement = placement if placement in self.placements else ("none" if not placement else "other")
        return kind, channel, placement, strategy or "none", f"{experiment}/{arm}" if experiment else "none"

    def served(self, kind: str, channel: str, placement: str, strategy: str, experiment: str, arm: str) -> None:
        self._served.labels(*self._surface(kind, channel, placement, strategy, experiment, arm)).inc()

    def credit(self, outcome: str, labels: tuple[str, ...], revenue: float) -> None:
        """``labels``: engine.attribution.LABELS values (list, position, strategy, experiment, arm,
        model, channel, placement)."""
        kind, _position, strategy, experiment, arm, _model, channel, placement = labels
        surface = self._surface(kind, channel, placement, strategy, experiment, arm)
        self._outcomes.labels(outcome, *surface).inc()
        if revenue:
            self._revenue.labels(*surface).inc(revenue)

    def not_credited(self, outcome: str, reason: str) -> None:
        self._not_credited.labels(outcome, reason).inc()

    def samples(self) -> dict:
        return registry_samples(self.registry)
