"""CPU per gRPC Recommend, split by process, at a fixed offered rate.

    .venv/bin/python benchmarks/cpu_split.py [--rate 100] [--seconds 20] [--owners 2] [--output-json PATH]

Starts the engine as `recsys serve` does (2 owners, auth on, the Online Retail model in --model-dir,
a throwaway SQLite store), offers --rate Recommends per second for --seconds from h2load (8
processes, one real customer each, x-session-id set as the project's clients set it), and reads
every process's CPU time (utime + stime from /proc/PID/stat) before and after. Each process is
put in a group by its title (Ray names its worker processes ``ray::ClassName``): the gRPC front,
the owners, the ingress replicas, Serve's proxy and controller, the placement, Ray's own daemons
(raylet, GCS, agents), the load generator, the rest. Prints CPU milliseconds per answered request
for each group.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GROUPS = (("grpc front", ("ray::GrpcFront",)), ("owners", ("ray::PartitionOwner",)),
          ("ingress replicas", ("ray::ServeReplica:recsys:Ingress", "ServeReplica:recsys:Ingress")),
          ("serve proxy", ("ray::ProxyActor",)), ("serve controller", ("ray::ServeController",)),
          ("placement, registry, learner", ("ray::Placement", "ray::ModelRegistry", "ray::OfferLearner")),
          ("ray daemons", ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env", "monitor.py")),
          ("load generator (h2load)", ("h2load",)))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_process() -> dict[int, tuple[str, float]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(entry.name)] = (cmdline, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def _group(cmdline: str) -> str:
    for name, needles in GROUPS:
        if any(needle in cmdline for needle in needles):
            return name
    return "other"


def split(before: dict, after: dict, requests: int) -> dict[str, float]:
    """CPU ms per request by group (processes that started in between count from zero)."""
    totals: dict[str, float] = {}
    for pid, (cmdline, cpu) in after.items():
        used = cpu - before.get(pid, (cmdline, 0.0))[1]
        if used > 0:
            group = _group(cmdline)
            totals[group] = totals.get(group, 0.0) + used
    return {g: round(s * 1000 / max(requests, 1), 3) for g, s in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--owners", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--output-json")
    args = parser.parse_args(argv)

    import numpy as np
    import ray

    from benchmarks import h2load_grpc
    from benchmarks.bench_auth import bench_auth
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import free_loopback_port, start_service
    from recsys.v1 import recsys_pb2 as pb
    from scripts.cli import _ensure_bundle

    if not h2load_grpc.available():
        print("h2load is not installed: `make bench-tools` (Debian package nghttp2-client)", file=sys.stderr)
        return 2
    key, auth = bench_auth()
    store_dir = tempfile.mkdtemp(prefix="recsys-cpu-")
    config = ServeConfig(http_port=free_loopback_port(), grpc_port=free_loopback_port(),
                         owners=ScalingConfig(min_owners=args.owners, max_owners=args.owners), model_dir=args.model_dir,
                         data_dir=args.data_dir, auth=auth, store_url=f"sqlite:///{store_dir}/recsys.db")
    bundle = _ensure_bundle(config, None)
    customers = [c for c in bundle.arrays["user_ids"].tolist() if not c.startswith("guest-")]
    picks = np.random.default_rng(0).choice(len(customers), size=8, replace=False)
    bodies = [(customers[i], pb.RecommendRequest(customer_id=customers[i], k=10).SerializeToString()) for i in picks]
    target = f"127.0.0.1:{config.grpc_port}"
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, namespace="recsys", log_to_driver=False)
    service = start_service(config, bundle)
    try:
        h2load_grpc.open_loop(target, "/recsys.v1.Personalization/Recommend", bodies, args.rate, 3.0, key)  # warm-up
        time.sleep(1.0)
        before = cpu_by_process()
        step = h2load_grpc.open_loop(target, "/recsys.v1.Personalization/Recommend", bodies, args.rate,
                                     args.seconds, key)
        after = cpu_by_process()
    finally:
        service.stop()
        ray.shutdown()
    per_request = split(before, after, step["ok"])
    result = {"benchmark": "cpu_split", "rate_rps": args.rate, "seconds": args.seconds, "owners": args.owners,
              "answered": step["ok"], "latency_ms": step["latency_ms"], "cpu_ms_per_request": per_request,
              "total_cpu_ms_per_request": round(sum(per_request.values()), 3)}
    print(f"{step['ok']} Recommends answered at {args.rate:g}/s offered; p50 {step['latency_ms'].get('p50')} ms, "
          f"p99 {step['latency_ms'].get('p99')} ms")
    print("| process | CPU ms per request |\n|---|---|")
    for group, ms in per_request.items():
        print(f"| {group} | {ms} |")
    print(f"| all | {result['total_cpu_ms_per_request']} |")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
