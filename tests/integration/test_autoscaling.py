"""The ingress scales up under HTTP load and back down after it (Serve autoscaling, in a Ray of its own)."""
import json
import subprocess
import sys

from tests.conftest import ROOT


def test_ingress_scales_up_under_load_and_down_after():
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "integration" / "autoscale_scenario.py")],
                            capture_output=True, text=True, timeout=500, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert report["before"] == 1
    assert max(report["during"]) == 2, report
    assert report["after"][-1] == 1, report
    # the load is meant to be more than one replica wants (target 0.25 ongoing requests): answers still come
    assert report["ok"] >= 0.9 * report["sent"], report["errors"]
    print(report)
