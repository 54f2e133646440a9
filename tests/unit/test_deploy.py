"""Operations as code (deploy/): the Grafana dashboard and the Prometheus rules name only metrics the
service exports, and the docker-compose trial runs commands the CLI takes."""
import json
import re
import shlex
from pathlib import Path

import yaml

from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def exported_series() -> set[str]:
    """Every series name the service's /metrics can show: the ingress's registry with every metric
    observed once (counters as _total, histograms as _bucket/_sum/_count), plus the model
    registry's counter, as the exposition prints them."""
    from prometheus_client import CollectorRegistry

    from actors.metric_samples import registry_samples
    from actors.registry import model_change_counter

    metrics = Metrics()
    metrics.observe("Recommend", "grpc", "OK", 0.01)
    metrics.events.labels("new").inc()
    metrics.owner_stats([{"owner": "o1", "customers": 3, "partitions": [0], "model_version": "v1"}])
    metrics.decisions.labels("o").inc()
    metrics.shard_batch.labels("front").observe(2)
    metrics.forwarded.labels("Recommend").inc()
    metrics.partitions.set(16)
    # the model registry actor's counter, as it builds it
    registry = CollectorRegistry()
    model_change_counter(registry).labels("promote", "ok").inc()
    text = metrics.exposition([registry_samples(registry)]).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def names_in(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w.startswith("recsys_")}


def test_the_dashboard_names_only_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "recsys-dashboard.json").read_text())
    exported = exported_series()
    named = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            named |= names_in(target["expr"])
    assert named and named <= exported, sorted(named - exported)
    # the overview the operators asked for: rates, errors, latency, ingest, owners, model
    for needed in ("recsys_requests_total", "recsys_request_duration_seconds_bucket", "recsys_events_ingested_total",
                   "recsys_owner_customers", "recsys_owner_partitions", "recsys_model_info"):
        assert needed in named, needed


def test_the_alert_rules_name_only_exported_metrics_and_cover_the_failures():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exported = exported_series()
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            alerts[rule["alert"]] = rule
            named = names_in(rule["expr"])
            assert named <= exported, (rule["alert"], sorted(named - exported))
            assert rule["annotations"]["summary"] and rule["labels"]["severity"] in ("page", "ticket")
    assert {"RecsysHighErrorRate", "RecsysRecommendP99High", "RecsysIngestStalled", "RecsysPartitionsUnheld",
            "RecsysModelPromotionFailed", "RecsysDown"} <= set(alerts)
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["alerts.yml"]
    assert prometheus["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_the_compose_trial_runs_a_command_the_cli_takes():
    from scripts.cli import build_parser

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"recsys", "postgres", "prometheus"} <= set(services)
    argv = shlex.split(services["recsys"]["command"])
    assert argv[0] == "recsys"
    args = build_parser().parse_args(argv[1:])
    assert args.store.startswith("postgresql://") and args.host == "0.0.0.0"
    assert "8000:8000" in services["recsys"]["ports"]
    # Prometheus scrapes the engine's service name on its HTTP port
    target = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert target["static_configs"][0]["targets"] == ["recsys:8000"]
