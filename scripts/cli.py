"""The `recsys` command: serve, train, import.

    recsys serve [--http-port 8000] [--grpc-port 9000] [--min-owners 2] [--max-owners 4] [--model-dir models]
    recsys train [--data PATH] [--format auto|online-retail|movielens|events] [--model-dir models]
    recsys import --format online-retail INPUT --output events.csv
    recsys keys create --name storefront --scopes recommend,events
    recsys export-events --store sqlite:///var/recsys.db --output events.csv
    recsys models list | promote VERSION [--force] | rollback
    recsys owners status | scale N | drain NODE_ID
    recsys store migrate --store URL [--partitions P]
    recsys webhooks dead-letters [--store URL] [--webhook NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from dataclasses import fields, replace
from pathlib import Path

from engine.auth import SCOPES, ApiKey, AuthConfig, generate_key, hash_key
from engine.config import ServeConfig, load_serve_config
from engine.errors import InvalidArgument, RecsysError


def _train_params(args):
    from recommenders.training import TrainParams

    values = {f.name: getattr(args, f.name) for f in fields(TrainParams)
              if getattr(args, f.name, None) is not None}
    if getattr(args, "no_eval", False):
        values["evaluate"] = False
    if getattr(args, "no_fit", False):
        values["fit"] = False
    # what the caller set is not searched by the fitting (recommenders/fitting.py)
    values["fixed"] = tuple(sorted(name for name in values if name not in ("evaluate", "fit", "threads")))
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


def forgotten_customers(store_url: str) -> set[str]:
    """Customers erased in the service's store (none when the store was never created)."""
    from actors.store import open_store
    from engine.config import absolute_store_url

    url = absolute_store_url(store_url)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return set()
    store = open_store(url)
    try:
        return store.forgotten_customers()
    finally:
        store.close()


def _training_data(path: str | None, fmt: str, data_dir: str, store_url: str):
    """The data to train on, whatever its format, without the customers the store has erased."""
    from recommenders.loaders import without_customers

    dataset, dropped = without_customers(_dataset(path, fmt, data_dir), forgotten_customers(store_url))
    if dropped:
        print(f"left out {dropped} events of customers erased in {store_url}", file=sys.stderr)
    return dataset


def cmd_train(args) -> int:
    from recommenders.bundle import save_bundle
    from recommenders.training import train

    dataset = _training_data(args.data, args.format, args.data_dir, args.store)
    bundle = train(dataset, _train_params(args), progress=not args.quiet)
    path = save_bundle(bundle, args.model_dir, make_current=not args.no_promote)
    size = sum(p.stat().st_size for p in path.iterdir())
    manifest = bundle.manifest
    print(json.dumps({"bundle": str(path), "version": manifest["version"],
                      "training_seconds": manifest["training_seconds"], "bundle_bytes": size,
                      "counts": manifest["counts"], "offline_metrics": manifest["offline_metrics"],
                      "fitted": {key: value for key, value in manifest.get("fitted", {}).items() if key != "tried"}},
                     indent=2))
    return 0


def cmd_import(args) -> int:
    from recommenders.loaders import load, write_events_csv

    dataset = load(args.input, args.format)
    rows = write_events_csv(dataset, args.output)
    print(f"wrote {rows} events ({dataset.events['customer_id'].nunique()} customers, "
          f"{dataset.events['item_id'].nunique()} items) to {args.output}")
    return 0


def cmd_export_events(args) -> int:
    from actors.store import open_store
    from engine.config import absolute_store_url
    from recommenders.loaders import dataset_from_events, write_events_csv

    store = open_store(absolute_store_url(args.store))
    try:
        dataset = dataset_from_events(store.export_events(), source="store")
    finally:
        store.close()
    rows = write_events_csv(dataset, args.output)
    print(f"wrote {rows} events of {dataset.events['customer_id'].nunique()} customers to {args.output} "
          "(forgotten customers left out; consent events, which carry no item, too)")
    return 0


def cmd_webhooks(args) -> int:
    """The actions a webhook could not take after every attempt, one JSON object per line."""
    from actors.store import open_store
    from engine.config import absolute_store_url

    store = open_store(absolute_store_url(args.store))
    try:
        letters = store.dead_letters(args.webhook, args.limit)
    finally:
        store.close()
    for letter in letters:
        print(json.dumps(letter))
    print(f"{len(letters)} dead letter(s)", file=sys.stderr)
    return 0


def cmd_experiments(args) -> int:
    if args.action == "simulate":
        return _simulate_shoppers(args)
    from actors.store import open_store
    from engine.config import absolute_store_url
    from engine.decisioning import experiment_report, format_report
    from engine.offer_log import experiment_outcomes
    from engine import rec_report

    store = open_store(absolute_store_url(args.store))
    try:
        if args.of in ("all", "recommendations"):
            rows = rec_report.report(store.export_events(), by=args.by, baseline=args.baseline)
            print("# recommendations: what the lists earned, by " + ("experiment arm" if args.by == "arm" else
                                                                     "surface and strategy"))
            print(rec_report.format_report(rows, by=args.by) if rows else
                  "no impressions credited to a recommendation stored yet")
            if args.of == "recommendations":
                return 0
            print()
        outcomes = experiment_outcomes(store.export_events(), window_days=args.window_days, as_of_ms=args.as_of_ms)
    finally:
        store.close()
    if args.of == "all":
        print("# offers: next-best-offer experiments")
    if args.complete_only:
        outcomes = [o for o in outcomes if not o.window_open]
    if not outcomes:
        print("no experiment exposures stored yet" + (" whose window is over" if args.complete_only else ""))
        return 0
    print(format_report(experiment_report(outcomes, baseline=args.baseline), window_days=args.window_days))
    return 0


def _simulate_shoppers(args) -> int:
    """Simulated shoppers against a running service (recommenders/traffic_simulation.py): the
    model's customers, each shown ``rounds`` lists, clicking what is to their taste (the items they
    bought in the training data) more often than the rest; everything through the public gRPC API."""
    import numpy as np

    from recommenders.bundle import load_bundle, resolve_bundle_path
    from recommenders.runtime import ModelRuntime
    from recommenders.traffic_simulation import ClickModel, shopper_events
    from recsys.client import Client, Event

    path = resolve_bundle_path(args.model_dir)
    if path is None:
        print(f"no model in {args.model_dir}", file=sys.stderr)
        return 2
    bundle = load_bundle(path)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    rng = np.random.default_rng(args.seed)
    customers = [str(c) for c in rng.permutation(bundle.arrays["user_ids"])[:args.customers]]
    key = args.key or (DEMO_KEY_FILE.read_text().strip() if DEMO_KEY_FILE.exists() else None)
    arms: dict[str, int] = {}
    sent = 0
    with Client(args.target, key, timeout=10.0) as client:
        for n, customer in enumerate(customers):
            taste = {h["item_id"] for h in model.customer_record(customer)["history"]}
            for r in range(args.rounds):
                answer = client.recommend(customer, k=10, channel=args.channel, placement=args.placement)
                arms[f"{answer.experiment_id}/{answer.arm}"] = arms.get(f"{answer.experiment_id}/{answer.arm}", 0) + 1
                items = [(i.item_id, float(model.item_price[model.item_index[i.item_id]])
                          if i.item_id in model.item_index else 0.0) for i in answer.items]
                events = shopper_events(customer, answer.recommendation_id, items, taste.__contains__, ClickModel(),
                                        rng, f"sim-{args.seed}-{customer}-{r}", channel=args.channel)
                if events:
                    client.track([Event(e["event_id"], e["customer_id"], e["event_type"], e["item_id"],
                                        e["channel"], e.get("quantity"), e.get("price"),
                                        attributes=e.get("attributes", {})) for e in events])
                    sent += len(events)
            if (n + 1) % 100 == 0:
                print(f"{n + 1}/{len(customers)} customers", file=sys.stderr)
    print(json.dumps({"customers": len(customers), "lists": len(customers) * args.rounds, "events": sent,
                      "lists_per_arm": arms}))
    return 0


def cmd_offers(args) -> int:
    from actors.shard_offers import catalog_from_toml

    text = Path(args.file).read_text()
    catalog = catalog_from_toml(text, args.file)  # refuses a broken file before anything changes
    print(f"{args.file}: catalogue {catalog.version} with {len(catalog.offers)} offers, "
          f"{len(catalog.experiments)} experiment(s) is valid")
    if args.action == "check":
        return 0
    import ray

    from actors.cluster import find_owners
    from actors.names import OFFER_CATALOG_META
    from actors.store import open_store
    from engine.config import absolute_store_url

    owners = _service_actor(args, find_owners)
    if owners is None:
        return 2
    store = open_store(absolute_store_url(args.store))
    try:
        store.set_meta(OFFER_CATALOG_META, text)  # what an owner that starts later reads
    finally:
        store.close()
    versions = ray.get([o.set_offer_catalog.remote(text) for o in owners])
    print(f"catalogue {versions[0]} in force on {len(versions)} owners")
    return 0


def _service_actor(args, find):
    """Connect to the service's Ray cluster (--address) and find one of its actors; None (with a
    message) when no service runs there."""
    import ray

    ray.init(address=args.address, namespace="recsys", log_to_driver=False)
    try:
        return find()
    except ValueError:
        print(f"recsys {args.command}: no running service found on that Ray cluster (start `recsys serve` first)",
              file=sys.stderr)
        return None


def cmd_store(args) -> int:
    """recsys store migrate: bring a store written by an earlier release to the current schema."""
    from actors.schema import migrate_legacy
    from engine.config import absolute_store_url

    report = migrate_legacy(absolute_store_url(args.store), args.partitions)
    if not report["migrated"]:
        print(f"the store is at the current schema already ({report['partitions']} partitions); nothing to do")
    elif report.get("from_shards") is not None:
        print(f"migrated: {report['events']} events re-filed from {report['from_shards']} shards into "
              f"{report['partitions']} partitions; schema revision {report['revision']}")
    else:
        print(f"migrated to schema revision {report['revision']} ({report['partitions']} partitions)")
    return 0


def cmd_owners(args) -> int:
    """recsys owners status | scale N | drain NODE_ID: the customer tier of the running service."""
    import ray

    from actors.names import find_placement

    placement = _service_actor(args, find_placement)
    if placement is None:
        return 2
    if args.action == "scale":
        if args.value is None or not args.value.isdigit():
            print("recsys owners scale: give the number of owners, e.g. `recsys owners scale 4`", file=sys.stderr)
            return 2
        status = ray.get(placement.scale_to.remote(int(args.value), "operator"))
    elif args.action == "drain":
        if not args.value:
            print("recsys owners drain: give the node id (see `recsys owners status`)", file=sys.stderr)
            return 2
        status = ray.get(placement.drain_node.remote(args.value))
    else:
        status = ray.get(placement.status.remote())
    for noisy in ("history", "assignment"):  # per_owner says how many each holds; scalings say what changed
        status.pop(noisy, None)
    print(json.dumps(status, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from recommenders.evaluation import (evaluate_movielens, evaluate_online_retail, movielens_grid,
                                         retail_grid, shipped_ranking)
    from recommenders.evaluation_report import movielens_table, retail_table, sessions_table, write_reports
    from recommenders.session_evaluation import anonymous_grid, evaluate_sessions
    from recommenders.loaders import load_movielens, load_online_retail
    from recommenders.training import TrainParams

    data = Path(args.data_dir)
    results = {}
    if args.dataset in ("movielens", "all"):
        grid = movielens_grid()[: 4 if args.fast else None]
        dataset = load_movielens(data / "movielens-100k")
        params = TrainParams(evaluate=False, factors=args.factors, ease_neighbours=args.ease_neighbours)
        results["movielens"] = evaluate_movielens(dataset, range(1, args.seeds + 1), params, grid=grid)
        print(movielens_table(results["movielens"]))
    if args.dataset in ("online-retail", "all"):
        dataset = load_online_retail(data / "online-retail" / "online_retail.csv.gz")
        grid = retail_grid()[: 4 if args.fast else None]
        results["online_retail"] = evaluate_online_retail(dataset, TrainParams(evaluate=False),
                                                          max_customers=args.max_customers, grid=grid)
        print(retail_table(results["online_retail"]))
        shipped = shipped_ranking()
        session_grid = anonymous_grid(shipped.weights)[: 4 if args.fast else None]
        results["online_retail_sessions"] = evaluate_sessions(dataset, TrainParams(evaluate=False), shipped,
                                                              grid=session_grid)
        print(sessions_table(results["online_retail_sessions"]))
    command = "recsys evaluate " + " ".join(args.argv)
    json_path = Path(args.output_json) if args.output_json else Path(args.report_dir) / "evaluation.json"
    if args.dataset != "all" and json_path.exists():
        # one data set re-run: the others' results (each with its own run stamp) are kept beside it
        kept = {k: v for k, v in json.loads(json_path.read_text()).items() if k not in results}
        results = {**kept, **results}
        command += f" (kept from an earlier run: {', '.join(sorted(kept)) or 'none'})"
    written = write_reports(results, json_path, Path(args.report_dir), command.strip())
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def cmd_models(args) -> int:
    from recommenders.bundle import current_version, list_versions

    if args.action == "list":
        current = current_version(args.model_dir)
        for version in list_versions(args.model_dir):
            manifest = json.loads((Path(args.model_dir) / version / "manifest.json").read_text())
            hr = (manifest.get("offline_metrics") or {}).get("hr@10")
            mark = "*" if version == current else " "
            print(f"{mark} {version}  trained {manifest.get('created_at', '?')[:19]}  "
                  f"items {manifest['counts']['items']}  offline HR@10 {hr if hr is not None else '-'}")
        return 0
    import ray

    from actors.names import find_registry

    registry = _service_actor(args, find_registry)
    if registry is None:
        return 2
    if args.action == "promote":
        if not args.version:
            print("recsys models promote: give a VERSION (see `recsys models list`)", file=sys.stderr)
            return 2
        result = ray.get(registry.promote.remote(args.version, args.force))
    else:
        result = ray.get(registry.rollback.remote())
    print(json.dumps(result))
    return 0


def cmd_loadtest(args) -> int:
    from benchmarks.loadtest import LoadSpec, parse_mix, run_load, write_outputs

    key = args.key or (DEMO_KEY_FILE.read_text().strip() if DEMO_KEY_FILE.exists() else None)
    spec = LoadSpec(target=args.target, protocol=args.protocol, rate=args.rate, duration_s=args.duration,
                    mix=parse_mix(args.mix), key=key, customers=args.customers, items=tuple(args.items.split(",")))
    summary = run_load(spec)
    write_outputs(summary, args.output_json, args.chart)
    print(json.dumps(summary, indent=2))
    return 0


def _ensure_bundle(config: ServeConfig, version: str | None):
    from recommenders.bundle import load_bundle, resolve_bundle_path, save_bundle
    from recommenders.training import TrainParams, train

    path = resolve_bundle_path(config.model_dir, version)
    if path is None:
        print(f"no model in {config.model_dir}/: training a demo model first", flush=True)
        dataset = _training_data(None, "auto", config.data_dir, config.store_url)
        path = save_bundle(train(dataset, TrainParams()), config.model_dir)
    return load_bundle(path)


DEMO_KEY_FILE = Path("var") / "demo-api-key"


def _demo_key() -> str:
    """The demo's key, made once and kept (readable by this user only) so every run prints the same."""
    if DEMO_KEY_FILE.exists():
        return DEMO_KEY_FILE.read_text().strip()
    DEMO_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(DEMO_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _with_auth(config: ServeConfig, no_auth: bool) -> tuple[ServeConfig, str | None]:
    """Auth is on unless asked off; with no keys configured, the demo makes one with every scope."""
    if no_auth:
        return replace(config, auth=AuthConfig(enabled=False)), None
    if config.auth.enabled and not config.auth.keys:
        key = _demo_key()
        demo = ApiKey("demo", hash_key(key), SCOPES)
        return replace(config, auth=AuthConfig(enabled=True, keys=(demo,))), key
    return config, None


def cmd_keys(args) -> int:
    scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
    key = generate_key()
    ApiKey(args.name, hash_key(key), scopes, rate_per_second=args.rate)  # validates
    print(f"# key for {args.name!r}: give it to the client once; it is not stored anywhere")
    print(f"# {key}")
    print("[[auth.keys]]")
    print(f'name = "{args.name}"')
    print(f'sha256 = "{hash_key(key)}"')
    print("scopes = [" + ", ".join(f'"{s}"' for s in sorted(scopes)) + "]")
    if args.rate is not None:
        print(f"rate_per_second = {args.rate}")
    return 0


def cmd_tls(args) -> int:
    from gateway.tls import write_self_signed

    cert, key = write_self_signed(args.out, tuple(args.host))
    print(f"wrote {cert} and {key} (self-signed, for {', '.join(args.host)}); serve with "
          f"--tls-cert {cert} --tls-key {key}")
    return 0


def cmd_consume(args) -> int:
    """Events from the broker queue to the service until interrupted (gateway/consume.py)."""
    import time

    from engine.config import load_serve_config
    from gateway.consume import Consumer, RabbitMQSource
    from recsys.client import Client, Event

    config = load_serve_config(args.config).consume
    overrides = {k: v for k, v in (("url", args.url), ("queue", args.queue), ("target", args.target)) if v}
    config = replace(config, **overrides)
    key = os.environ.get(config.api_key_env)
    if key is None and DEMO_KEY_FILE.exists():
        key = DEMO_KEY_FILE.read_text().strip()
    source = RabbitMQSource(config.url, config.queue, config.prefetch, config.dead_letter_queue)
    client = Client(config.target, key, timeout=args.timeout, retries=0)

    def send(events):
        result = client.track([Event(e.event_id, e.customer_id, e.event_type, e.item_id, e.channel, e.quantity,
                                     e.price, e.session_id, e.store_id, e.timestamp_ms, dict(e.attributes))
                               for e in events])
        return result.accepted, result.duplicates

    consumer = Consumer(source, send, batch_max=config.batch_max)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: consumer.stopping.set())
    print(f"consuming {config.queue} at {config.url.split('@')[-1]} into {config.target}", flush=True)
    last = time.monotonic()
    try:
        while not consumer.stopping.is_set():
            consumer.step()
            if time.monotonic() - last >= args.report_every:
                last = time.monotonic()
                print(json.dumps(consumer.stats.__dict__), flush=True)
    finally:
        source.close()
        client.close()
    print(json.dumps(consumer.stats.__dict__), flush=True)
    return 0


def cmd_publish_actions(args) -> int:
    """The outbox's actions to a RabbitMQ queue until interrupted (gateway/publish_actions.py)."""
    import httpx

    from gateway.publish_actions import ActionPublisher

    key = os.environ.get("RECSYS_API_KEY") or (DEMO_KEY_FILE.read_text().strip() if DEMO_KEY_FILE.exists() else "")
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    with httpx.Client(base_url=args.http, timeout=30, headers={"authorization": f"Bearer {key}"}) as http:
        publisher = ActionPublisher(http, args.url, args.queue, Path(args.cursor_file), kinds=tuple(args.kind or ()))
        print(f"publishing actions after {publisher.after} from {args.http} to {args.queue}", flush=True)
        try:
            publisher.run(lambda: bool(stopping))
        finally:
            publisher.close()
        print(json.dumps({"published": publisher.published, "cursor": publisher.after}), flush=True)
    return 0


def cmd_batch_recommend(args) -> int:
    """A campaign's recommendations from the running service's owners, to CSV or Parquet."""
    from actors import batch_recommend as batch
    from engine.decisioning import SEGMENTS
    from engine.events import CHANNELS

    if (args.customers is None) == (args.segment is None):
        raise InvalidArgument("give --customers FILE or --segment S (one of them)")
    if args.segment is not None and args.segment not in SEGMENTS and args.segment != "all":
        raise InvalidArgument(f"--segment: one of {sorted(SEGMENTS) + ['all']}")
    if args.channel not in CHANNELS:
        raise InvalidArgument(f"--channel: one of {sorted(CHANNELS)}")
    if not 1 <= args.k <= 100:
        raise InvalidArgument("--k: between 1 and 100 (the service's default max_k)")
    writer = batch.RowWriter(args.output)
    batch.connect(args.address)
    customers = (batch.read_customers(args.customers) if args.customers is not None
                 else batch.audience(None if args.segment == "all" else args.segment))
    skipped = 0
    try:
        def write(rows):
            nonlocal skipped
            if args.consented_only:  # rows with an error stay: the customer was not answered
                kept = [row for row in rows if row[6] is True or row[-1]]
                skipped += len({row[0] for row in rows}) - len({row[0] for row in kept})
                rows = kept
            writer(rows)

        summary = batch.run(customers, batch.BatchSpec(k=args.k, channel=args.channel), write,
                            workers=args.workers, chunk=args.chunk, progress=not args.quiet)
    finally:
        writer.close()
    summary.update(output=str(args.output), left_out_without_marketing_consent=skipped)
    print(json.dumps(summary))
    return 0


def cmd_serve(args) -> int:
    import ray

    from gateway.server import start_service

    config = load_serve_config(
        args.config, http_host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
        partitions=args.partitions, model_dir=args.model_dir, data_dir=args.data_dir,
        ray_address=args.address, num_cpus=args.num_cpus, store_url=args.store,
        tls_certfile=args.tls_cert, tls_keyfile=args.tls_key)
    if args.min_owners is not None or args.max_owners is not None:
        low, high = args.min_owners, args.max_owners
        owners = replace(config.owners, min_owners=low if low is not None else config.owners.min_owners,
                         max_owners=high if high is not None else max(config.owners.max_owners, low or 0))
        config = replace(config, owners=owners)
    config, demo_key = _with_auth(config, args.no_auth)
    from engine.events import CHANNEL_ENV, configure_channels

    configure_channels(config.channels)  # here, and (by the environment) in every Ray worker of the service
    runtime_env = {"env_vars": {CHANNEL_ENV: os.environ[CHANNEL_ENV]}}
    bundle = _ensure_bundle(config, args.model)
    if config.ray_address:
        ray.init(address=config.ray_address, namespace="recsys", runtime_env=runtime_env)
    else:
        ray.init(num_cpus=config.num_cpus, namespace="recsys", include_dashboard=False, runtime_env=runtime_env)
    service = start_service(config, bundle)
    host = config.http_host
    auth_line, auth_header = "auth: off (--no-auth)", ""
    if demo_key:
        auth_line = f"API key (demo, every scope; kept in {DEMO_KEY_FILE}): {demo_key}"
        auth_header = f" -H 'authorization: Bearer {demo_key}'"
    elif config.auth.enabled:
        auth_line = f"auth: on, {len(config.auth.keys)} configured key(s)"
        auth_header = " -H 'authorization: Bearer $RECSYS_KEY'"
    scheme = "https" if config.tls_certfile else "http"
    print(f"""
recsys is serving model {bundle.version}
  HTTP  {scheme}://{host}:{config.http_port}   gRPC {host}:{config.grpc_port} (recsys.v1.Personalization, grpc.health.v1.Health)
  store {config.store_url}
  {auth_line}

Try:
  curl -s {scheme}://{host}:{config.http_port}/healthz
  curl -s -X POST {scheme}://{host}:{config.http_port}/v1/recommend{auth_header} \\
       -d '{{"customer_id": "17850", "channel": "web", "k": 5}}'
  curl -s -X POST {scheme}://{host}:{config.http_port}/v1/events{auth_header} \\
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
    serve.add_argument("--min-owners", type=int,
                       help=f"fewest partition owner processes (default {defaults.owners.min_owners})")
    serve.add_argument("--max-owners", type=int,
                       help=f"most partition owner processes (default {defaults.owners.max_owners})")
    serve.add_argument("--partitions", type=int,
                       help="partitions of a new store (default: the store's own; 64 for a new one)")
    serve.add_argument("--model-dir", help=f"default {defaults.model_dir}")
    serve.add_argument("--model", help="model version to serve (default: models/CURRENT)")
    serve.add_argument("--data-dir", help=f"real data sets, for the demo model (default {defaults.data_dir})")
    serve.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    serve.add_argument("--num-cpus", type=int, help="CPUs for the local Ray (default: all)")
    serve.add_argument("--store", help=f"durable store URL (default {defaults.store_url})")
    serve.add_argument("--no-auth", action="store_true", help="serve without API keys (development only)")
    serve.add_argument("--tls-cert", help="PEM certificate: HTTPS, and gRPC over TLS")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.set_defaults(func=cmd_serve)

    publish = sub.add_parser("publish-actions", help="publish triggered actions from the outbox to a RabbitMQ queue")
    publish.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F", help="AMQP URL")
    publish.add_argument("--queue", default="recsys.actions")
    publish.add_argument("--http", default="http://127.0.0.1:8000", help="the service's HTTP address")
    publish.add_argument("--cursor-file", default="var/publish-actions.cursor",
                         help="where the last published outbox sequence is kept")
    publish.add_argument("--kind", action="append", help="only these kinds (repeatable; default all)")
    publish.set_defaults(func=cmd_publish_actions)

    batch = sub.add_parser("batch-recommend", help="recommendations for a list or a segment of customers (a campaign)")
    batch.add_argument("--customers", help="file: one customer id per line, or a CSV with a customer_id column")
    batch.add_argument("--segment", help="every known customer in this segment (new, occasional, regular, lapsed, vip; all)")
    batch.add_argument("--output", required=True, help="a .csv or .parquet file")
    batch.add_argument("--k", type=int, default=10)
    batch.add_argument("--channel", default="email", help="the channel the campaign goes out on (rules per channel)")
    batch.add_argument("--consented-only", action="store_true", help="leave out customers without marketing consent")
    batch.add_argument("--workers", type=int, default=4, help="Ray tasks at once")
    batch.add_argument("--chunk", type=int, default=500, help="customers per task")
    batch.add_argument("--address", help="Ray cluster of the running service (default: auto)")
    batch.add_argument("--quiet", action="store_true")
    batch.set_defaults(func=cmd_batch_recommend)

    consume = sub.add_parser("consume", help="read customer events from a RabbitMQ queue into the service")
    consume.add_argument("--config", help="TOML file; its [consume] section (see README)")
    consume.add_argument("--url", help="AMQP URL (default: [consume] url)")
    consume.add_argument("--queue", help="queue name (default: [consume] queue)")
    consume.add_argument("--target", help="the service's gRPC address (default: [consume] target)")
    consume.add_argument("--timeout", type=float, default=10.0, help="seconds per Track call")
    consume.add_argument("--report-every", type=float, default=10.0, help="seconds between progress lines")
    consume.set_defaults(func=cmd_consume)

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
    train.add_argument("--no-eval", action="store_true",
                       help="skip the offline holdout check (and the fitting, which is chosen on it)")
    train.add_argument("--no-fit", action="store_true",
                       help="serve the shipped defaults: do not fit ALS, popularity, repurchase and blend to the data")
    train.add_argument("--no-promote", action="store_true", help="do not make it models/CURRENT")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--store", default=defaults.store_url,
                       help="the service's store: customers erased there are left out of training")
    train.set_defaults(func=cmd_train)

    keys = sub.add_parser("keys", help="make an API key and print its config entry (the key is shown once)")
    keys.add_argument("action", choices=["create"])
    keys.add_argument("--name", required=True)
    keys.add_argument("--scopes", default="recommend", help="comma-separated: recommend, events, offers, admin")
    keys.add_argument("--rate", type=float, help="requests per second for this key (token bucket)")
    keys.set_defaults(func=cmd_keys)

    tls = sub.add_parser("tls-cert", help="write a self-signed certificate and key (development, tests)")
    tls.add_argument("--out", default="var/tls")
    tls.add_argument("--host", action="append", default=None, help="host name or IP (repeatable)")
    tls.set_defaults(func=cmd_tls)

    evaluate = sub.add_parser("evaluate", help="offline evaluation through the serving pipeline")
    evaluate.add_argument("--dataset", choices=["movielens", "online-retail", "all"], default="all")
    evaluate.add_argument("--data-dir", default=defaults.data_dir)
    evaluate.add_argument("--seeds", type=int, default=5, help="MovieLens seeds")
    evaluate.add_argument("--max-customers", type=int, help="Online Retail: a random subset of test customers")
    evaluate.add_argument("--factors", type=int, default=24, help="MovieLens: ALS factors")
    evaluate.add_argument("--ease-neighbours", type=int, default=2000,
                          help="MovieLens: item-item neighbours kept per item (2000 = all)")
    evaluate.add_argument("--fast", action="store_true", help="small blend grids (the test suite's version)")
    evaluate.add_argument("--output-json", help="metrics JSON (default REPORT_DIR/evaluation.json)")
    evaluate.add_argument("--report-dir", default="docs/evaluation")
    evaluate.set_defaults(func=cmd_evaluate)

    models = sub.add_parser("models", help="list bundles; promote one to the running service; roll back")
    models.add_argument("action", choices=["list", "promote", "rollback"])
    models.add_argument("version", nargs="?")
    models.add_argument("--model-dir", default=defaults.model_dir)
    models.add_argument("--force", action="store_true", help="promote even if it scores worse offline")
    models.add_argument("--address", default="auto", help="the service's Ray cluster (default: the local one)")
    models.set_defaults(func=cmd_models)

    load = sub.add_parser("loadtest", help="open-loop load at a constant arrival rate (gRPC or HTTP)")
    load.add_argument("--target", default="127.0.0.1:9000", help="host:port for gRPC, http://host:port for HTTP")
    load.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    load.add_argument("--rate", type=float, default=100.0, help="requests per second")
    load.add_argument("--duration", type=float, default=10.0, help="seconds")
    load.add_argument("--mix", default="recommend=0.8,events=0.2", help="weights of recommend, events (TrackEvents of one view), nbo (NextBestOffer at a till)")
    load.add_argument("--key", help=f"API key (default: {DEMO_KEY_FILE} when present)")
    load.add_argument("--customers", type=int, default=1000)
    load.add_argument("--items", default="85123A,22423,47566,84879,20725", help="comma-separated item ids for events")
    load.add_argument("--output-json")
    load.add_argument("--chart", help="PNG latency chart")
    load.set_defaults(func=cmd_loadtest)

    experiments = sub.add_parser("experiments", help="read-out of the recommendation and offer experiments; "
                                                     "simulated shoppers")
    experiments.add_argument("action", choices=["report", "simulate"])
    experiments.add_argument("--store", default=defaults.store_url)
    experiments.add_argument("--of", choices=["all", "recommendations", "offers"], default="all",
                             help="report: which read-out")
    experiments.add_argument("--by", choices=["arm", "surface"], default="arm",
                             help="report: recommendations by experiment arm, or by list, channel, placement "
                                  "and strategy")
    experiments.add_argument("--target", default="127.0.0.1:9000", help="simulate: the service's gRPC address")
    experiments.add_argument("--key", help=f"simulate: API key (default: {DEMO_KEY_FILE} when present)")
    experiments.add_argument("--model-dir", default=defaults.model_dir, help="simulate: whose customers shop")
    experiments.add_argument("--customers", type=int, default=300, help="simulate: how many shoppers")
    experiments.add_argument("--rounds", type=int, default=2, help="simulate: lists shown to each")
    experiments.add_argument("--channel", default="web")
    experiments.add_argument("--placement", default="home")
    experiments.add_argument("--seed", type=int, default=1)
    experiments.add_argument("--window-days", type=float, default=defaults.offers.experiment_window_days,
                             help="a customer converts by buying a target item within this many days "
                                  "of their first exposure")
    experiments.add_argument("--baseline", help="the arm the others are compared with (default: the control arm)")
    experiments.add_argument("--as-of-ms", type=int, help="the read-out's clock (default: the latest stored event)")
    experiments.add_argument("--complete-only", action="store_true",
                             help="only customers whose window is over at the read-out's clock")
    experiments.set_defaults(func=cmd_experiments)

    offers = sub.add_parser("offers", help="check an offer catalogue file, or put it in force in the running service")
    offers.add_argument("action", choices=["check", "reload"])
    offers.add_argument("--file", default=defaults.offers.catalog_path or "config/offers.toml")
    offers.add_argument("--store", default=defaults.store_url)
    offers.add_argument("--address", default="auto", help="the service's Ray cluster (default: the local one)")
    offers.set_defaults(func=cmd_offers)

    owners = sub.add_parser("owners", help="the customer tier: status, scale to N owners, drain a node")
    owners.add_argument("action", choices=["status", "scale", "drain"])
    owners.add_argument("value", nargs="?", help="scale: the number of owners; drain: the node id")
    owners.add_argument("--address", default="auto", help="the service's Ray cluster (default: the local one)")
    owners.set_defaults(func=cmd_owners)

    store = sub.add_parser("store", help="the durable store's schema: migrate one written by an earlier release")
    store.add_argument("action", choices=["migrate"])
    store.add_argument("--store", default=defaults.store_url)
    store.add_argument("--partitions", type=int, help="P for the migrated store (default 64)")
    store.set_defaults(func=cmd_store)

    hooks = sub.add_parser("webhooks", help="actions the webhooks could not deliver (dead letters)")
    hooks.add_argument("action", choices=["dead-letters"])
    hooks.add_argument("--store", default=defaults.store_url)
    hooks.add_argument("--webhook", help="one webhook's (default: every webhook's)")
    hooks.add_argument("--limit", type=int, default=1000)
    hooks.set_defaults(func=cmd_webhooks)

    export = sub.add_parser("export-events", help="write the stored events as a generic events CSV")
    export.add_argument("--store", default=defaults.store_url)
    export.add_argument("--output", required=True)
    export.set_defaults(func=cmd_export_events)

    imp = sub.add_parser("import", help="convert a data set to the generic events CSV")
    imp.add_argument("input")
    imp.add_argument("--format", default="auto", help="auto, online-retail, movielens, events")
    imp.add_argument("--output", required=True)
    imp.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)[1:]
    if getattr(args, "command", None) == "tls-cert" and not args.host:
        args.host = ["localhost", "127.0.0.1"]
    try:
        return args.func(args)
    except RecsysError as exc:
        print(f"recsys {args.command}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
