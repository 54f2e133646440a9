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
