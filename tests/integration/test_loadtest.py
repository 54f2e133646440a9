"""The load generator against the real service: open loop, both protocols, figures and chart out."""
import json

from scripts.cli import main
from tests.integration.conftest import KEYS


def test_loadtest_grpc_and_http(service, tmp_path):
    for protocol, target in (("grpc", service.grpc_target), ("http", service.http)):
        out, chart = tmp_path / f"{protocol}.json", tmp_path / f"{protocol}.png"
        assert main(["loadtest", "--target", target, "--protocol", protocol, "--rate", "40", "--duration", "2",
                     "--key", KEYS["admin"], "--items", "i0001,i0002", "--customers", "50",
                     "--mix", "recommend=0.6,events=0.2,nbo=0.2",
                     "--output-json", str(out), "--chart", str(chart)]) == 0
        summary = json.loads(out.read_text())
        assert summary["sent"] == 80 and summary["ok"] == 80, summary["errors_by_code"]
        assert set(summary["latency_ms"]) == {"p50", "p90", "p99", "p99.9"}
        assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
        assert set(summary["by_operation"]) == {"recommend", "events", "nbo"}
        assert chart.stat().st_size > 5_000


def test_loadtest_counts_errors_by_code(service, tmp_path):
    out = tmp_path / "bad.json"
    assert main(["loadtest", "--target", service.grpc_target, "--rate", "20", "--duration", "1",
                 "--key", "rk_wrong", "--output-json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["ok"] == 0 and summary["errors_by_code"] == {"UNAUTHENTICATED": 20}
