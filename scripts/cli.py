"""The `recsys` command: serve, train, import.

    recsys serve [--http-port 8000] [--grpc-port 9000] [--shards 2] [--model-dir models]
    recsys train [--data PATH] [--format auto|online-retail|movielens|events] [--model-dir models]
    recsys import --format online-retail INPUT --output events.csv
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import fields

from engine.config import ServeConfig, load_serve_config
from engine.errors import RecsysError


def _train_params(args):
    from recommenders.training import TrainParams

    values = {f.name: getattr(args, f.name) for f in fields(TrainParams)
              if getattr(args, f.name, None) is not None}
    if getattr(args, "no_eval", False):
        values["evaluate"] = False
    return TrainParams(**values)


def _dataset(path: str | None, fmt: str, data_dir: str):
    from recommenders.loaders import default_data_path, load, synthetic_retail

    if path is None:
        found = default_data_path(data_dir)
        if found is None:
            print(f"no data under {data_dir}; training on a generated demo shop", file=sys.stderr)
            return synthetic_retail(n_customers=2000, n_items=300)
        path, fmt = str(found), "online-retail"
    print(f"loading {path} ({fmt})", file=sys.stderr)
    return load(path, fmt)


def cmd_train(args) -> int:
    from recommenders.bundle import save_bundle
    from recommenders.training import train

    dataset = _dataset(args.data, args.format, args.data_dir)
    bundle = train(dataset, _train_params(args), progress=not args.quiet)
    path = save_bundle(bundle, args.model_dir, make_current=not args.no_promote)
    size = sum(p.stat().st_size for p in path.iterdir())
    manifest = bundle.manifest
    print(json.dumps({"bundle": str(path), "version": manifest["version"],
                      "training_seconds": manifest["training_seconds"], "bundle_bytes": size,
                      "counts": manifest["counts"], "offline_metrics": manifest["offline_metrics"]}, indent=2))
    return 0


def cmd_import(args) -> int:
    from recommenders.loaders import load, write_events_csv

    dataset = load(args.input, args.format)
    rows = write_events_csv(dataset, args.output)
    print(f"wrote {rows} events ({dataset.events['customer_id'].nunique()} customers, "
          f"{dataset.events['item_id'].nunique()} items) to {args.output}")
    return 0


def _ensure_bundle(config: ServeConfig, version: str | None):
    from recommenders.bundle import load_bundle, resolve_bundle_path, save_bundle
    from recommenders.training import TrainParams, train

    path = resolve_bundle_path(config.model_dir, version)
    if path is None:
        print(f"no model in {config.model_dir}/: training a demo model first", flush=True)
        dataset = _dataset(None, "auto", config.data_dir)
        path = save_bundle(train(dataset, TrainParams()), config.model_dir)
    return load_bundle(path)


def cmd_serve(args) -> int:
    import ray

    from gateway.server import start_service

    config = load_serve_config(
        args.config, http_host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
        num_shards=args.shards, model_dir=args.model_dir, data_dir=args.data_dir,
        ray_address=args.address, num_cpus=args.num_cpus)
    bundle = _ensure_bundle(config, args.model)
    if config.ray_address:
        ray.init(address=config.ray_address, namespace="recsys")
    else:
        ray.init(num_cpus=config.num_cpus, namespace="recsys", include_dashboard=False)
    service = start_service(config, bundle)
    host = config.http_host
    print(f"""
recsys is serving model {bundle.version}
  HTTP  http://{host}:{config.http_port}   gRPC {host}:{config.grpc_port} (recsys.v1.Personalization, grpc.health.v1.Health)

Try:
  curl -s http://{host}:{config.http_port}/healthz
  curl -s -X POST http://{host}:{config.http_port}/v1/recommend -H 'content-type: application/json' \\
       -d '{{"customer_id": "17850", "channel": "web", "k": 5}}'
  curl -s -X POST http://{host}:{config.http_port}/v1/events -H 'content-type: application/json' \\
       -d '{{"events": [{{"event_id": "e1", "customer_id": "17850", "event_type": "add_to_cart", "item_id": "22423", "channel": "web"}}]}}'
Ctrl-C stops it.
""", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1.0)
    print("stopping", flush=True)
    service.stop()
    ray.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description="Real-time omnichannel recommendations on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = ServeConfig()

    serve = sub.add_parser("serve", help="run the service (HTTP + gRPC) on local Ray or a cluster")
    serve.add_argument("--config", help="TOML file with ServeConfig fields (see README)")
    serve.add_argument("--host", help=f"bind address (default {defaults.http_host})")
    serve.add_argument("--http-port", type=int, help=f"default {defaults.http_port}")
    serve.add_argument("--grpc-port", type=int, help=f"default {defaults.grpc_port}")
    serve.add_argument("--shards", type=int, help=f"customer shard actors (default {defaults.num_shards})")
    serve.add_argument("--model-dir", help=f"default {defaults.model_dir}")
    serve.add_argument("--model", help="model version to serve (default: models/CURRENT)")
    serve.add_argument("--data-dir", help=f"real data sets, for the demo model (default {defaults.data_dir})")
    serve.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    serve.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")
    serve.set_defaults(func=cmd_serve)

    train = sub.add_parser("train", help="train a model bundle")
    train.add_argument("--data", help="input file (default: Online Retail under --data-dir)")
    train.add_argument("--format", default="auto", help="auto, online-retail, movielens, events")
    train.add_argument("--data-dir", default=defaults.data_dir)
    train.add_argument("--model-dir", default=defaults.model_dir)
    train.add_argument("--factors", type=int)
    train.add_argument("--iterations", type=int)
    train.add_argument("--regularization", type=float)
    train.add_argument("--alpha", type=float)
    train.add_argument("--threads", type=int)
    train.add_argument("--no-eval", action="store_true", help="skip the offline holdout check")
    train.add_argument("--no-promote", action="store_true", help="do not make it models/CURRENT")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)

    imp = sub.add_parser("import", help="convert a data set to the generic events CSV")
    imp.add_argument("input")
    imp.add_argument("--format", default="auto", help="auto, online-retail, movielens, events")
    imp.add_argument("--output", required=True)
    imp.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RecsysError as exc:
        print(f"recsys {args.command}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
