"""Open-loop gRPC load from h2load (Debian's nghttp2-client), a native HTTP/2 load generator, so
that the client does not take the CPU the server needs on a small machine.

h2load sends one request body per process, so a step runs ``processes`` h2load processes side by
side, each for one customer (sampled from the model's known customers) at ``rate / processes``
requests per second on one connection, with up to ``max_streams`` requests in flight. Every
request's latency comes from h2load's per-request log (``--log-file``: start time, HTTP status,
microseconds to the end of the response).

h2load sees HTTP statuses, not gRPC's (a gRPC error is HTTP 200 with a grpc-status trailer), so
the caller checks the server's own counters for errors (serve_throughput.py reads the engine's
recsys_requests by code).
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path



def percentiles(ms: list[float]) -> dict:
    """p50, p90, p99, p99.9 of latencies in milliseconds (the shape every benchmark here reports)."""
    import numpy as np

    if not ms:
        return {}
    values = np.asarray(ms)
    return {name: round(float(np.percentile(values, q)), 3)
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))}


def available() -> bool:
    return shutil.which("h2load") is not None


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (not compressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def open_loop(target: str, path: str, bodies: list[tuple[str, bytes]], rate: float, duration_s: float,
              key: str, max_streams: int = 100) -> dict:
    """``bodies``: (routing key, serialized request) per h2load process. Returns the step's figures
    in serve_throughput.py's shape (errors_by_code holds non-2xx HTTP statuses only)."""
    processes = len(bodies)
    per_process = rate / processes
    work = Path(tempfile.mkdtemp(prefix="h2load-"))
    runs = []
    try:
        for i, (routing_key, body) in enumerate(bodies):
            data = work / f"body-{i}.bin"
            data.write_bytes(grpc_frame(body))
            log = work / f"log-{i}.tsv"
            command = ["h2load", f"http://{target}{path}", "-c", "1", "-m", str(max_streams),
                       "--rps", f"{per_process:.3f}", "-D", f"{duration_s:g}", "-d", str(data),
                       "--log-file", str(log),
                       "-H", "content-type: application/grpc", "-H", "te: trailers",
                       "-H", f"authorization: Bearer {key}", "-H", f"x-session-id: {routing_key}"]
            runs.append((subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                         log))
        starts, latencies, statuses = [], [], {}
        for proc, log in runs:
            out, _ = proc.communicate(timeout=duration_s + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"h2load failed ({proc.returncode}): {out[-500:]}")
            for line in log.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) < 3:
                    continue
                start_us, status, elapsed_us = int(parts[0]), int(parts[1]), int(parts[2])
                starts.append(start_us)
                latencies.append(elapsed_us / 1000)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    ends = sorted(s + lat * 1000 for s, lat in zip(starts, latencies))
    span_s = (ends[-1] - ends[0]) / 1e6 if len(ends) > 1 else 0.0
    return {"offered_rps": round(rate, 1), "duration_s": duration_s, "sent": len(latencies), "ok": ok,
            "errors_by_code": {f"HTTP_{s}": n for s, n in statuses.items() if not 200 <= s < 300},
            "dropped": max(0, int(rate * duration_s * 0.98) - len(latencies)),
            "achieved_rps": round((len(ends) - 1) / span_s, 1) if span_s > 0 else 0.0,
            "latency_ms": percentiles(latencies), "send_lag_ms_p99": 0.0, "client": "h2load",
            "h2load_processes": processes, "client_cpu_count": os.cpu_count()}
