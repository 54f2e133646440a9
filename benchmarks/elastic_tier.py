"""The elastic customer tier under a constant load: p99 and failures while owners scale up and
down, lose a node and lose an owner mid-move, and how fast the owner count follows a load step.

    .venv/bin/python benchmarks/elastic_tier.py [--store postgresql://...]

Runs tests/integration/elastic_scenario.py (a 4-node ray.cluster_utils.Cluster: a head and three workers; PostgreSQL, a
constant open-loop mixed load of Recommend / TrackEvents / NextBestOffer from two clients at 12
req/s each, plus a burst of four closed-loop clients) against a PostgreSQL server it starts itself
(pgserver) unless --store names one, and prints its figures: per phase, how long the tier took to
reach its new shape and the p99 of the constant load meanwhile; the failed requests; the owners'
load as the placement saw it, second by second.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", help="a PostgreSQL URL (default: a server started here, removed after)")
    parser.add_argument("--output-json")
    args = parser.parse_args()
    server = None
    url = args.store
    if url is None:
        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="recsys-bench-pg-"), cleanup_mode="delete")
        url = server.get_uri()
    try:
        result = subprocess.run([sys.executable, str(ROOT / "tests" / "integration" / "elastic_scenario.py"), url],
                                capture_output=True, text=True, timeout=900, cwd=ROOT)
    finally:
        if server is not None:
            server.cleanup()
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        print(result.stderr[-3000:], file=sys.stderr)
        return 1
    report = json.loads(lines[-1])
    print(f"requests {report['requests']}, failed {report['failed']}, events acknowledged {report['acked']}")
    for phase, figures in report["phases"].items():
        print(f"  {phase:>16}: reached in {figures['seconds']:.2f} s" + (
            f" (partition {figures['partition']}, lease held locked)" if phase == "killed_mid_move" else ""))
    for phase, figures in report["p99_ms_by_phase"].items():
        print(f"  p99 while {phase:>16}: {figures['p99_ms']} ms over {figures['requests']} requests")
    print(f"  p99 by RPC over the whole run: {report['p99_ms']}")
    print("  scaling decisions: " + ", ".join(f"{h['event']} {h.get('frm', '')}->{h.get('to', h.get('owner', ''))}"
                                             f" ({h.get('reason', '')})" for h in report["history"]))
    samples = report.get("load_samples", [])
    if samples:
        start = samples[0][0]
        print("  owners / load (CPU s/s per owner) by second: " +
              " ".join(f"{t - start:.0f}s:{n}" for t, n, _ in samples))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
