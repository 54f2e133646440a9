"""Open-loop load generator for the engine: `recsys loadtest`.

Requests start on a fixed schedule (request i at t0 + i / rate) whatever the earlier ones did,
and each latency is measured from its scheduled start, so a slow server cannot slow the
generator down and hide its own queueing (no coordinated omission). Bounded in count and time:
it sends rate x duration requests to the target and stops.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OPERATIONS = ("recommend", "events", "nbo")


@dataclass(frozen=True)
class LoadSpec:
    target: str                     # host:port (gRPC) or http(s)://host:port (HTTP)
    protocol: str = "grpc"
    rate: float = 100.0             # requests per second
    duration_s: float = 10.0
    mix: dict = field(default_factory=lambda: {"recommend": 0.8, "events": 0.2})
    key: str | None = None
    customers: int = 1000
    items: tuple[str, ...] = ("i0001",)
    max_in_flight: int = 2000
    seed: int = 0


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in OPERATIONS:
            raise ValueError(f"--mix: unknown operation {name!r}; one of {OPERATIONS}")
        mix[name] = float(weight)
    total = sum(mix.values())
    return {name: weight / total for name, weight in mix.items() if weight > 0}


class _Grpc:
    def __init__(self, spec: LoadSpec):
        import grpc

        from recsys.v1 import recsys_pb2 as pb, recsys_pb2_grpc

        self.pb = pb
        self.channel = grpc.aio.insecure_channel(spec.target)
        self.stub = recsys_pb2_grpc.PersonalizationStub(self.channel)
        self.metadata = (("authorization", f"Bearer {spec.key}"),) if spec.key else ()

    async def call(self, op: str, customer: str, item: str) -> str:
        import grpc

        pb = self.pb
        # the routing key: the front sends the call straight to the customer's owner (README)
        metadata = (*self.metadata, ("x-session-id", customer))
        try:
            if op == "recommend":
                await self.stub.Recommend(pb.RecommendRequest(customer_id=customer, k=10), metadata=metadata,
                                          timeout=30)
            elif op == "nbo":
                await self.stub.NextBestOffer(pb.NextBestOfferRequest(
                    customer_id=customer, channel="pos", basket=[pb.BasketLine(item_id=item)]),
                    metadata=metadata, timeout=30)
            else:
                event = pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type="view", item_id=item,
                                 channel="web")
                await self.stub.TrackEvents(pb.TrackEventsRequest(events=[event]), metadata=metadata, timeout=30)
            return "OK"
        except grpc.aio.AioRpcError as error:
            return error.code().name

    async def close(self) -> None:
        await self.channel.close()


class _Http:
    def __init__(self, spec: LoadSpec):
        import httpx

        headers = {"authorization": f"Bearer {spec.key}"} if spec.key else {}
        self.client = httpx.AsyncClient(base_url=spec.target, headers=headers, timeout=30,
                                        limits=httpx.Limits(max_connections=256))

    async def call(self, op: str, customer: str, item: str) -> str:
        import httpx

        try:
            if op == "recommend":
                response = await self.client.post("/v1/recommend", json={"customer_id": customer, "k": 10})
            elif op == "nbo":
                response = await self.client.post("/v1/next-best-offer", json={
                    "customer_id": customer, "channel": "pos", "basket": [{"item_id": item}]})
            else:
                response = await self.client.post("/v1/events", json={"events": [{
                    "event_id": uuid.uuid4().hex, "customer_id": customer, "event_type": "view", "item_id": item,
                    "channel": "web"}]})
            return str(response.status_code)
        except httpx.HTTPError as error:
            return type(error).__name__

    async def close(self) -> None:
        await self.client.aclose()


async def _run(spec: LoadSpec) -> dict:
    client = _Grpc(spec) if spec.protocol == "grpc" else _Http(spec)
    rng = np.random.default_rng(spec.seed)
    total = int(spec.rate * spec.duration_s)
    ops = rng.choice(list(spec.mix), size=total, p=list(spec.mix.values()))
    customers = rng.integers(0, spec.customers, size=total)
    items = rng.integers(0, len(spec.items), size=total)
    results: list[tuple[float, float, str, str]] = []
    dropped = 0
    in_flight = 0

    async def one(i: int, due: float) -> None:
        nonlocal in_flight
        code = await client.call(str(ops[i]), f"c{customers[i]}", spec.items[items[i]])
        results.append((due - start, time.perf_counter() - due, str(ops[i]), code))
        in_flight -= 1

    tasks = []
    start = time.perf_counter()
    for i in range(total):
        due = start + i / spec.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= spec.max_in_flight:
            dropped += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await client.close()
    latencies = np.array([r[1] for r in results]) * 1000
    ok = {"OK", "200"}
    summary = {
        "target": spec.target, "protocol": spec.protocol, "rate": spec.rate, "duration_s": spec.duration_s,
        "mix": spec.mix, "sent": len(results), "dropped_client_saturated": dropped,
        "throughput_rps": round(len(results) / elapsed, 1),
        "ok": sum(1 for r in results if r[3] in ok),
        "errors_by_code": dict(Counter(r[3] for r in results if r[3] not in ok)),
        "latency_ms": {name: round(float(np.percentile(latencies, q)), 3) for name, q in
                       (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))} if len(latencies) else {},
        "by_operation": {op: round(float(np.percentile([r[1] * 1000 for r in results if r[2] == op], 99)), 3)
                         for op in spec.mix if any(r[2] == op for r in results)},
    }
    summary["_series"] = [(round(r[0], 4), round(r[1] * 1000, 3), r[2], r[3]) for r in results]
    return summary


def run_load(spec: LoadSpec) -> dict:
    return asyncio.run(_run(spec))


def write_outputs(summary: dict, json_path: str | None, chart_path: str | None) -> None:
    series = summary.pop("_series")
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2))
    if chart_path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
        for op in summary["mix"]:
            points = [(t, ms) for t, ms, o, _ in series if o == op]
            if points:
                left.scatter(*zip(*points), s=2, label=op)
        left.set_xlabel("scheduled start (s)")
        left.set_ylabel("latency (ms)")
        left.set_yscale("log")
        left.legend()
        ordered = np.sort([ms for _, ms, _, _ in series])
        if len(ordered):
            quantiles = 1 - np.arange(1, len(ordered) + 1) / (len(ordered) + 1)
            right.plot(ordered, quantiles)
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xlabel("latency (ms)")
        right.set_ylabel("fraction slower")
        fig.suptitle(f"{summary['protocol']} at {summary['rate']:g} req/s: p50 {summary['latency_ms'].get('p50')} ms, "
                     f"p99 {summary['latency_ms'].get('p99')} ms")
        fig.tight_layout()
        fig.savefig(chart_path, dpi=100)
        plt.close(fig)
