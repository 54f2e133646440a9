"""The other way in: Serve's own gRPC proxy with GRPC_SERVICERS (what the application builder and
deploy/rayservice.yaml run) answers Health/Watch and garbage as the project's front does."""
import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.integration.leaks import assert_no_internals


def test_serve_grpc_proxy_health_watch_and_garbage():
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "integration" / "serve_proxy_scenario.py")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    details = report.pop("details")
    assert report == {"recommend_items": 3, "check": "SERVING", "watch": "SERVING",
                      "garbage /grpc.health.v1.Health/Check": "INVALID_ARGUMENT",
                      "garbage /recsys.v1.Personalization/Recommend": "INVALID_ARGUMENT",
                      "stream_bad_input": "INVALID_ARGUMENT"}
    for text in details:
        assert text.startswith("malformed ")
        assert_no_internals(text)
