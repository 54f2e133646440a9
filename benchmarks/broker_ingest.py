"""Sustained events/s from a RabbitMQ queue into durable state (issue 19, item 2).

    .venv/bin/python benchmarks/broker_ingest.py [--events 40000] [--consumers 1] [--batch 500] [--prefetch 2000]

A local RabbitMQ node (scripts/rabbitmq.py) and the whole service (2 owners, auth on, SQLite store) on
local Ray with 2 CPUs. The queue is filled first (persistent messages, publisher confirms), then
``--consumers`` `recsys consume` processes drain it: each message validated, each batch committed by
the engine (TrackEvents returns after the durable write) before it is acknowledged to the broker.
Prints the rate from the first acknowledged batch to an empty queue, and the publish rate.
Everything shares the same cores here: the broker, the consumers, the ingress and the owners.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _follow(process, latest: list[dict], n: int) -> None:
    """Keep ``latest[n]`` at the consumer's last progress line (counts committed so far)."""
    for line in process.stdout:
        if line.startswith(b"{"):
            latest[n] = json.loads(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--prefetch", type=int, default=2_000)
    args = parser.parse_args()

    import orjson
    import pika
    import ray

    from benchmarks.bench_auth import bench_auth
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import free_loopback_port as free_port, start_service
    from recommenders.loaders import synthetic_retail
    from recommenders.training import TrainParams, train
    from scripts.rabbitmq import LocalRabbitMQ

    tmp = Path(tempfile.mkdtemp(prefix="broker-ingest-"))
    bundle = train(synthetic_retail(n_customers=200, n_items=60, n_groups=3),
                   TrainParams(factors=8, iterations=5, threads=1), progress=False)
    key, auth = bench_auth()
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), partitions=64, auth=auth,
                         owners=ScalingConfig(min_owners=2, max_owners=2), autoscale_owners=False,
                         store_url=f"sqlite:///{tmp}/service.db", model_dir=str(tmp / "models"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="recsys", log_to_driver=False)
    node = LocalRabbitMQ(tmp / "rabbitmq").start()
    service = start_service(config, bundle)
    consumers = []
    try:
        queue = "bench.events"
        connection = pika.BlockingConnection(pika.URLParameters(node.url))
        channel = connection.channel()
        channel.queue_declare(queue=queue, durable=True)
        now = int(time.time() * 1000)
        started = time.perf_counter()
        for i in range(args.events):
            body = orjson.dumps({"event_id": f"b{i}", "customer_id": f"c{i % args.customers}", "event_type": "view",
                                 "item_id": f"i{i % 60:04d}", "channel": "app", "timestamp_ms": now})
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
        while channel.queue_declare(queue=queue, passive=True).method.message_count < args.events:
            time.sleep(0.05)  # every message is in the queue (no confirms: counted instead)
        publish_rate = args.events / (time.perf_counter() - started)
        toml = tmp / "consume.toml"
        toml.write_text(f'[consume]\nurl = "{node.url}"\nqueue = "{queue}"\ntarget = "127.0.0.1:{config.grpc_port}"\n'
                        f"prefetch = {args.prefetch}\nbatch_max = {args.batch}\n")
        env = {**os.environ, "RECSYS_API_KEY": key}
        recsys = str(Path(sys.executable).with_name("recsys"))
        started = time.perf_counter()
        latest: list[dict] = []
        for n in range(args.consumers):
            process = subprocess.Popen([recsys, "consume", "--config", str(toml), "--report-every", "0.1"],
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
            consumers.append(process)
            latest.append({"accepted": 0, "duplicates": 0, "dead_lettered": 0})
            threading.Thread(target=_follow, args=(process, latest, n), daemon=True).start()
        first = None
        while sum(s["accepted"] + s["duplicates"] for s in latest) < args.events:
            if first is None and any(s["accepted"] for s in latest):
                first = time.perf_counter()
            time.sleep(0.02)
        done = time.perf_counter()
        for process in consumers:
            os.killpg(process.pid, signal.SIGTERM)
        for process in consumers:
            process.wait(timeout=60)
        stats = latest
        connection.close()
        accepted = sum(s["accepted"] for s in stats)
        print(f"published {args.events} persistent messages at {publish_rate:,.0f}/s (one Python publisher)")
        print(f"consumed into durable state: {accepted} events accepted, {sum(s['duplicates'] for s in stats)} "
              f"duplicates, {sum(s['dead_lettered'] for s in stats)} dead-lettered, by {args.consumers} consumer(s), "
              f"batches of {args.batch}: {args.events / (done - started):,.0f} events/s from the consumers' start "
              f"({done - started:.1f} s, with their start-up); {args.events / (done - (first or started)):,.0f} "
              "events/s from the first committed batch until every event was committed")
    finally:
        for process in consumers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        service.stop()
        node.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
