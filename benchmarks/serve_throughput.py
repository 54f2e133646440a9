"""Maximum gRPC throughput of the engine against a bare no-op Ray Serve deployment, and the engine's
p99 at half of its maximum, measured in one run on one machine.

    .venv/bin/python benchmarks/serve_throughput.py [--model-dir models] [--data-dir ../shared/data]
        [--num-cpus 2] [--owners 2] [--ingress-replicas 1] [--method open|closed]
        [--step-seconds 6] [--start-rate 50] [--growth 1.5] [--refine 3] [--max-p99-ms 1000]
        [--concurrency 1,4,16,64] [--half-seconds 30] [--channels 4] [--budget-seconds 300]
        [--client h2load|python] [--h2load-processes 8] [--output-json PATH]

What it does, in order, on a local Ray of --num-cpus CPUs (the client runs on the same machine):

1. Serve starts with its own gRPC proxy (the Personalization and Health servicers, reflection). A
   no-op deployment answers Personalization/Recommend with an empty RecommendResponse (no CPU
   reserved, as the ingress). Its maximum throughput is measured, then Serve is shut down.
2. The engine starts as `recsys serve` starts it (gateway.server.start_service: the placement
   and --owners partition owner processes, fixed (min_owners = max_owners), the model registry,
   the Ingress application, the project's gRPC front on the same port), auth on with a benchmark
   key, the model in --model-dir (trained on Online Retail from --data-dir if there is none), a
   throwaway SQLite store (64 partitions). Its maximum Recommend throughput is measured the same
   way. Requests name real customers of the bundle (sampled uniformly, a fixed seed), so each one
   does an owner's real work: profile, FAISS candidates, item-item, rules.
3. The engine gets an open-loop constant rate of half its maximum for --half-seconds, then the
   rate the no-op got in step 1, half the no-op's maximum; p50/p90/p99/p99.9 are reported for
   each. The engine's p99 over the no-op's, both at half the no-op's maximum, is the p99 ratio.

The open-loop load comes from h2load (Debian's nghttp2-client; benchmarks/h2load_grpc.py) when it
is installed, so that a Python client does not take the CPU the server needs: 8 h2load processes,
one real customer and one connection each, x-session-id set as the project's clients set it. h2load
sees HTTP statuses only, so the engine's own count of Recommend answers by gRPC code (its /metrics)
over the whole measurement is printed too. --client python uses the asyncio client below instead.

Maximum throughput, --method open (default): open-loop steps at a constant offered rate (request
i is sent at t0 + i/rate whatever the earlier ones did; latency counts from that scheduled time, so
queueing is not hidden). The rate starts at --start-rate and grows by --growth per step of
--step-seconds until a step fails: any error, any request dropped because --max-in-flight were
outstanding, p99 above --max-p99-ms, or achieved throughput (answers per second between the first
and the last answer of the step) below 90 % of the offered rate. If the start rate already fails,
the rate steps down instead until one passes. Then --refine bisection steps (geometric midpoints)
between the last passing and the first failing rate, unless the run has lasted --budget-seconds.
The maximum is the highest passing offered rate: a sustainable rate, with p99 within the bound.
The highest achieved rate of any step (usually an overloaded one) is reported too, as the
saturation throughput.

--method closed: --concurrency clients each send their next request as soon as the last one is
answered, --step-seconds per level; the maximum is the highest throughput of any level (levels
stop once one adds less than 5 %). Quicker and steadier on a busy machine, but its figure is a
saturation throughput, with whatever p99 that concurrency brings (reported per level).

Before each target's measurement a short closed-loop warm-up (Python client) runs and is not counted, then 30
sequential requests give its idle latency. Before each step the target must be idle again (three
sequential requests in a row within twice that latency, 10 s at most), so an overloaded step's
after-effects do not spill into the next one. When the
load generator falls behind its own schedule (the send lag's p99 above 50 ms), the step is marked
client_saturated: on a small machine the client shares the CPUs with Ray, so figures are best read
as the ratio engine / no-op, measured in the same run. Prints a table; --output-json writes all
steps.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ACHIEVED_FRACTION = 0.9     # an open-loop step passes only if it answered >= 90 % of the offered rate
CLIENT_LAG_MS = 50.0        # send-lag p99 above this: the generator, not the server, is the limit
PLATEAU_GAIN = 1.05         # closed loop: stop adding clients once a level adds less than 5 %
MIN_RATE = 1.0              # open loop: the lowest rate tried when the start rate already fails




from benchmarks.h2load_grpc import percentiles as _percentiles  # noqa: E402 - after the path is set


class Client:
    """Async gRPC Recommend over a few channels (one HTTP/2 connection each), round robin."""

    def __init__(self, target: str, key: str, channels: int):
        import grpc

        from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

        self.pb = pb
        self.grpc = grpc
        self.channels = [grpc.aio.insecure_channel(target) for _ in range(channels)]
        self.stubs = [recsys_pb2_grpc.PersonalizationStub(c) for c in self.channels]
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.turn = 0

    async def recommend(self, customer: str) -> str:
        self.turn = (self.turn + 1) % len(self.stubs)
        try:
            await self.stubs[self.turn].Recommend(self.pb.RecommendRequest(customer_id=customer, k=10),
                                                  metadata=(*self.metadata, ("x-session-id", customer)), timeout=30)
            return "OK"
        except self.grpc.aio.AioRpcError as error:
            return error.code().name

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def open_loop(client: Client, customers: list[str], rate: float, duration_s: float, rng,
                    max_in_flight: int) -> dict:
    """Constant-rate arrivals; latency from each request's scheduled start."""
    total = max(1, int(rate * duration_s))
    picks = rng.integers(0, len(customers), size=total)
    latencies: list[float] = []
    lags: list[float] = []
    codes: Counter = Counter()
    dropped = 0
    in_flight = 0
    answered: list[float] = []

    async def one(customer: str, due: float) -> None:
        nonlocal in_flight
        code = await client.recommend(customer)
        done = time.perf_counter()
        latencies.append((done - due) * 1000)
        codes[code] += 1
        if code == "OK":
            answered.append(done)
        in_flight -= 1

    tasks = []
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.perf_counter() - due) * 1000)
        if in_flight >= max_in_flight:
            dropped += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(one(customers[picks[i]], due)))
    await asyncio.gather(*tasks)
    ok = codes.pop("OK", 0)
    # Answers per second between the first and the last answer: the offered rate when the server
    # keeps up, its capacity when it does not (the backlog drains at that rate), and unbiased by
    # the latency of the first and last requests.
    span = max(answered) - min(answered) if len(answered) > 1 else 0.0
    achieved = (len(answered) - 1) / span if span > 0 else 0.0
    return {"offered_rps": round(rate, 1), "duration_s": duration_s, "sent": len(tasks), "ok": ok,
            "errors_by_code": dict(codes), "dropped": dropped, "achieved_rps": round(achieved, 1),
            "latency_ms": _percentiles(latencies),
            "send_lag_ms_p99": round(float(np.percentile(lags, 99)), 3) if lags else 0.0}


async def closed_loop(client: Client, customers: list[str], concurrency: int, duration_s: float, rng) -> dict:
    """`concurrency` clients, each sending its next request when the last is answered."""
    latencies: list[float] = []
    codes: Counter = Counter()
    start = time.perf_counter()
    stop = start + duration_s
    picks = rng.integers(0, len(customers), size=65_536).tolist()
    sent_count = 0

    async def worker() -> None:
        nonlocal sent_count
        while time.perf_counter() < stop:
            sent_count += 1
            customer = customers[picks[sent_count % len(picks)]]
            sent = time.perf_counter()
            code = await client.recommend(customer)
            latencies.append((time.perf_counter() - sent) * 1000)
            codes[code] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ok = codes.pop("OK", 0)
    return {"concurrency": concurrency, "duration_s": duration_s, "ok": ok, "errors_by_code": dict(codes),
            "achieved_rps": round(ok / elapsed, 1), "latency_ms": _percentiles(latencies)}


async def settle(client: Client, customers: list[str], baseline_ms: float, timeout_s: float = 10.0) -> float:
    """Wait until the target is idle again after a step (its backlog worked off, whatever it deferred
    done): one request at a time until three in a row answer within twice the idle latency, or
    timeout_s. Returns the seconds waited."""
    start = time.perf_counter()
    fast = 0
    while fast < 3 and time.perf_counter() - start < timeout_s:
        sent = time.perf_counter()
        await client.recommend(customers[fast])
        fast = fast + 1 if (time.perf_counter() - sent) * 1000 <= 2 * baseline_ms else 0
    return round(time.perf_counter() - start, 2)


async def idle_latency(client: Client, customers: list[str], n: int = 30) -> float:
    """Median latency of sequential requests (one client): the settle reference."""
    timings = []
    for i in range(n):
        sent = time.perf_counter()
        await client.recommend(customers[i % len(customers)])
        timings.append((time.perf_counter() - sent) * 1000)
    return float(np.median(timings))


async def _open_step(client: Client, target: str, key: str, customers: list[str], rate: float, duration_s: float,
                     rng, args) -> dict:
    """One open-loop step at ``rate``, from h2load (--client h2load) or the Python client."""
    if args.client == "h2load":
        from benchmarks import h2load_grpc
        from recsys.v1 import recsys_pb2 as pb

        picks = rng.choice(len(customers), size=args.h2load_processes, replace=False)
        bodies = [(customers[i], pb.RecommendRequest(customer_id=customers[i], k=10).SerializeToString())
                  for i in picks]
        return await asyncio.to_thread(h2load_grpc.open_loop, target, "/recsys.v1.Personalization/Recommend",
                                       bodies, rate, duration_s, key)
    return await open_loop(client, customers, rate, duration_s, rng, args.max_in_flight)


def _verdict(step: dict, max_p99_ms: float) -> str | None:
    """Why an open-loop step fails, or None when it passes."""
    if step["errors_by_code"]:
        return f"errors {step['errors_by_code']}"
    if step["dropped"]:
        return f"{step['dropped']} dropped (client in-flight limit)"
    p99 = step["latency_ms"].get("p99", math.inf)
    if p99 > max_p99_ms:
        return f"p99 {p99:.0f} ms > {max_p99_ms:.0f} ms"
    if step["achieved_rps"] < ACHIEVED_FRACTION * step["offered_rps"]:
        return f"achieved {step['achieved_rps']} < {ACHIEVED_FRACTION:.0%} of offered"
    return None


def _show(name: str, step: dict) -> None:
    lat = step["latency_ms"]
    level = f"rate {step['offered_rps']:>7.1f}/s" if "offered_rps" in step else f"clients {step['concurrency']:>4}"
    verdict = step.get("failed")
    flag = "pass" if verdict is None else f"FAIL: {verdict}"
    if step.get("client_saturated"):
        flag += " (client saturated)"
    print(f"  {name:<7} {level}  achieved {step['achieved_rps']:>7.1f}/s  p50 {lat.get('p50', 0):8.2f} ms"
          f"  p99 {lat.get('p99', 0):8.2f} ms  {flag if 'offered_rps' in step else ''}", flush=True)


async def find_max(name: str, target: str, key: str, customers: list[str], args) -> dict:
    """The maximum throughput of one target by the chosen method; all steps kept."""
    rng = np.random.default_rng(args.seed)
    client = Client(target, key, args.channels)
    try:
        await closed_loop(client, customers, 4, args.warmup_seconds, rng)  # warm-up, not counted
        baseline_ms = await idle_latency(client, customers)
        steps: list[dict] = []
        if args.method == "closed":
            best = None
            for concurrency in args.concurrency:
                await asyncio.sleep(args.pause_seconds)
                await settle(client, customers, baseline_ms)
                step = await closed_loop(client, customers, concurrency, args.step_seconds, rng)
                steps.append(step)
                _show(name, step)
                if best is not None and step["achieved_rps"] < best * PLATEAU_GAIN:
                    best = max(best, step["achieved_rps"])
                    break
                best = step["achieved_rps"] if best is None else max(best, step["achieved_rps"])
            return {"method": "closed", "idle_latency_ms": round(baseline_ms, 3), "steps": steps, "max_rps": best,
                    "peak_achieved_rps": best}

        async def step_at(rate: float) -> dict:
            await asyncio.sleep(args.pause_seconds)
            settled_s = await settle(client, customers, baseline_ms)
            step = await _open_step(client, target, key, customers, rate, args.step_seconds, rng, args)
            step["settle_s"] = settled_s
            step["failed"] = _verdict(step, args.max_p99_ms)
            step["client_saturated"] = step["send_lag_ms_p99"] > CLIENT_LAG_MS
            steps.append(step)
            _show(name, step)
            return step

        passed, failed = None, None
        rate = args.start_rate
        while rate <= args.max_rate:
            step = await step_at(rate)
            if step["failed"] is not None:
                failed = rate
                break
            passed = rate
            rate *= args.growth
        while passed is None and failed / args.growth >= MIN_RATE:  # the start rate was already too much
            rate = failed / args.growth
            if (await step_at(rate))["failed"] is None:
                passed = rate
            else:
                failed = rate
        if passed is not None and failed is not None:
            for _ in range(args.refine):
                if time.perf_counter() > args.deadline:
                    print("  (over --budget-seconds: no more refinement steps)", flush=True)
                    break
                mid = math.sqrt(passed * failed)
                if (await step_at(mid))["failed"] is None:
                    passed = mid
                else:
                    failed = mid
        peak = max(s["achieved_rps"] for s in steps)
        return {"method": "open", "idle_latency_ms": round(baseline_ms, 3), "steps": steps,
                "max_rps": round(passed, 1) if passed else None,
                "peak_achieved_rps": peak, "first_failing_rps": round(failed, 1) if failed else None,
                "capped_at_max_rate": failed is None,
                "client_saturated": any(s["client_saturated"] for s in steps if s["failed"] is None)}
    finally:
        await client.close()


async def half_load(target: str, key: str, customers: list[str], rate: float, baseline_ms: float, args) -> dict:
    client = Client(target, key, args.channels)
    try:
        await asyncio.sleep(args.pause_seconds)
        await settle(client, customers, baseline_ms)
        step = await _open_step(client, target, key, customers, rate, args.half_seconds,
                                np.random.default_rng(args.seed + 1), args)
    finally:
        await client.close()
    step["client_saturated"] = step["send_lag_ms_p99"] > CLIENT_LAG_MS
    return step


def _recommend_codes(http_port: int) -> dict[str, float]:
    """The engine's own count of gRPC Recommend answers by status code (its /metrics): h2load sees
    only HTTP statuses, so gRPC errors are counted here."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "recsys_requests":
            for sample in family.samples:
                if sample.labels.get("rpc") == "Recommend" and sample.labels.get("protocol") == "grpc":
                    out[sample.labels["code"]] = out.get(sample.labels["code"], 0) + sample.value
    return out


def _noop_deployment():
    from ray import serve

    from recsys.v1 import recsys_pb2 as pb

    # The ingress's replica options (gateway/ingress.py), so the two differ only in the work done.
    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
    class NoopPersonalization:
        async def Recommend(self, request, grpc_context=None):  # noqa: N802 - the RPC's name
            return pb.RecommendResponse()

    return NoopPersonalization


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--owners", type=int, default=2, help="partition owner processes (fixed)")
    parser.add_argument("--ingress-replicas", type=int, default=1)
    parser.add_argument("--method", choices=["open", "closed"], default="open")
    parser.add_argument("--step-seconds", type=float, default=6.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--pause-seconds", type=float, default=1.0, help="idle time before each step")
    parser.add_argument("--budget-seconds", type=float, default=300.0,
                        help="open: skip the remaining refinement steps once the run has lasted this long")
    parser.add_argument("--start-rate", type=float, default=50.0, help="open: first offered rate (req/s)")
    parser.add_argument("--growth", type=float, default=1.5, help="open: rate factor per step")
    parser.add_argument("--refine", type=int, default=3, help="open: bisection steps after the first failure")
    parser.add_argument("--max-rate", type=float, default=20_000.0, help="open: stop stepping above this rate")
    parser.add_argument("--max-p99-ms", type=float, default=1000.0, help="open: a step with a higher p99 fails")
    parser.add_argument("--max-in-flight", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,4,16,64", help="closed: client counts, comma-separated")
    parser.add_argument("--half-seconds", type=float, default=30.0, help="the run at half the engine's maximum")
    parser.add_argument("--channels", type=int, default=4, help="gRPC channels (connections) of the client")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--client", choices=["h2load", "python"], default=None,
                        help="open-loop load generator: h2load (native, the default when installed) or python")
    parser.add_argument("--h2load-processes", type=int, default=8,
                        help="h2load: processes side by side, one customer and one connection each")
    parser.add_argument("--output-json")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.client is None:
        from benchmarks import h2load_grpc

        args.client = "h2load" if h2load_grpc.available() else "python"
    if args.growth <= 1.0 or args.start_rate <= 0 or args.step_seconds <= 0 or not args.concurrency:
        parser.error("--growth must be > 1; --start-rate, --step-seconds > 0; --concurrency not empty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.deadline = time.perf_counter() + args.budget_seconds
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from benchmarks.bench_auth import bench_auth
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import GRPC_SERVICERS, free_loopback_port, start_service
    from scripts.cli import _ensure_bundle

    started = time.perf_counter()
    key, auth = bench_auth()
    store_dir = tempfile.mkdtemp(prefix="recsys-throughput-")
    config = ServeConfig(http_port=free_loopback_port(), grpc_port=free_loopback_port(),
                         owners=ScalingConfig(min_owners=args.owners, max_owners=args.owners),
                         model_dir=args.model_dir,
                         data_dir=args.data_dir, auth=auth, store_url=f"sqlite:///{store_dir}/recsys.db",
                         ingress_replicas=args.ingress_replicas, ingress_max_replicas=args.ingress_replicas)
    bundle = _ensure_bundle(config, None)
    customers = [c for c in bundle.arrays["user_ids"].tolist() if not c.startswith("guest-")]
    target = f"127.0.0.1:{config.grpc_port}"
    print(f"model {bundle.version}: {len(bundle.arrays['item_ids'])} items, {len(customers)} known customers; "
          f"Ray with {args.num_cpus} CPUs, client on the same machine; method {args.method}", flush=True)

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, namespace="recsys",
             log_to_driver=False)
    service = None
    try:
        # Serve as start_service starts it, so both targets sit behind the same proxy setup.
        serve.start(http_options=HTTPOptions(host=config.http_host, port=config.http_port),
                    grpc_options=gRPCOptions(port=config.grpc_port, grpc_servicer_functions=GRPC_SERVICERS,
                                             enable_reflection=True))
        serve.run(_noop_deployment().bind(), name="noop", route_prefix="/noop")
        print("no-op Serve deployment, gRPC Recommend:", flush=True)
        noop = asyncio.run(find_max("no-op", target, key, customers, args))
        # the floor under any p99 goal: the bare deployment's own latency at half its maximum
        noop_half_rate = (noop["max_rps"] or noop["peak_achieved_rps"]) / 2
        print(f"no-op at half its maximum, {noop_half_rate:.1f} req/s for {args.half_seconds:g} s:", flush=True)
        noop_half = asyncio.run(half_load(target, key, customers, noop_half_rate, noop["idle_latency_ms"], args))
        noop_half["failed"] = _verdict(noop_half, math.inf)
        _show("no-op", noop_half)
        serve.delete("noop")
        # recsys serve answers gRPC on its own front (gateway/grpc_front.py), not on Serve's proxy:
        # Serve goes down so the engine's front can take the port, as `recsys serve` has it
        serve.shutdown()

        service = start_service(config, bundle)
        codes_before = _recommend_codes(config.http_port)
        print("engine, gRPC Recommend:", flush=True)
        engine = asyncio.run(find_max("engine", target, key, customers, args))
        engine_max = engine["max_rps"] or engine["peak_achieved_rps"]
        half_rate = engine_max / 2
        print(f"engine at half its maximum, {half_rate:.1f} req/s for {args.half_seconds:g} s:", flush=True)
        half = asyncio.run(half_load(target, key, customers, half_rate, engine["idle_latency_ms"], args))
        half["failed"] = _verdict(half, math.inf)
        _show("engine", half)
        # the p99 goal's comparison: both at the same rate, half the no-op's maximum
        print(f"engine at half the no-op's maximum, {noop_half_rate:.1f} req/s for {args.half_seconds:g} s:", flush=True)
        at_noop_half = asyncio.run(half_load(target, key, customers, noop_half_rate, engine["idle_latency_ms"], args))
        at_noop_half["failed"] = _verdict(at_noop_half, math.inf)
        _show("engine", at_noop_half)
        codes_after = _recommend_codes(config.http_port)
        engine_codes = {c: codes_after.get(c, 0) - codes_before.get(c, 0) for c in codes_after}
        print(f"engine's own count of gRPC Recommend answers by code during its measurement: {engine_codes}",
              flush=True)
    finally:
        if service is not None:
            service.stop()
        else:
            serve.shutdown()
        ray.shutdown()

    noop_max = noop["max_rps"] or noop["peak_achieved_rps"]
    ratio = round(engine_max / noop_max, 3) if noop_max else None
    result = {
        "benchmark": "serve_throughput", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "ray_num_cpus": args.num_cpus,
                    "python": platform.python_version(), "platform": platform.platform()},
        "model_version": bundle.version, "owners": args.owners, "ingress_replicas": args.ingress_replicas,
        "method": args.method, "max_p99_ms": args.max_p99_ms, "step_seconds": args.step_seconds,
        "client": args.client, "noop": noop, "engine": engine, "ratio_engine_to_noop": ratio,
        "engine_recommend_codes": engine_codes,
        "engine_at_half_max": {"rate_rps": round(half_rate, 1), **half},
        "engine_at_noop_half_max": {"rate_rps": round(noop_half_rate, 1), **at_noop_half},
        "noop_at_half_max": {"rate_rps": round(noop_half_rate, 1), **noop_half},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    kind = "sustainable (open loop, p99 <= %g ms)" % args.max_p99_ms if args.method == "open" else "closed loop"
    lat, noop_lat, same = half["latency_ms"], noop_half["latency_ms"], at_noop_half["latency_ms"]
    p99_ratio = round(same["p99"] / noop_lat["p99"], 3) if same.get("p99") and noop_lat.get("p99") else None
    result["p99_ratio_engine_to_noop_at_noop_half_max"] = p99_ratio
    print(f"""
| measured ({kind})                  | value |
|---|---|
| no-op Serve deployment, gRPC: max throughput   | {noop_max} req/s (peak achieved {noop['peak_achieved_rps']}) |
| engine Recommend, gRPC: max throughput         | {engine_max} req/s (peak achieved {engine['peak_achieved_rps']}) |
| ratio engine / no-op                           | {ratio} |
| engine at {half_rate:.1f} req/s (half its max), {args.half_seconds:g} s | p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, p99.9 {lat.get('p99.9')} ms, errors {half['errors_by_code'] or 0}, achieved {half['achieved_rps']} req/s |
| no-op at {noop_half_rate:.1f} req/s (half its max), {args.half_seconds:g} s | p50 {noop_lat.get('p50')} ms, p99 {noop_lat.get('p99')} ms, p99.9 {noop_lat.get('p99.9')} ms, errors {noop_half['errors_by_code'] or 0}, achieved {noop_half['achieved_rps']} req/s |
| engine at the same {noop_half_rate:.1f} req/s, {args.half_seconds:g} s | p50 {same.get('p50')} ms, p99 {same.get('p99')} ms, p99.9 {same.get('p99.9')} ms, errors {at_noop_half['errors_by_code'] or 0}, achieved {at_noop_half['achieved_rps']} req/s |
| p99 engine / no-op at {noop_half_rate:.1f} req/s           | {p99_ratio} |

wall time {result['wall_seconds']} s""")
    if any(r.get("client_saturated") for r in (noop, engine, half, noop_half, at_noop_half)):
        print("note: the load generator fell behind its schedule in a passing step; the figure is a lower bound")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.output_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
