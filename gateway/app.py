"""The Ray Serve application builder: the service as a Serve config or a KubeRay RayService runs it.

    serve run gateway.app:build_app model_dir=/models store_url_env=RECSYS_STORE_URL min_owners=4
    # or, in a Serve config / RayService serveConfigV2:
    #   import_path: gateway.app:build_app
    #   args: {config: /etc/recsys/recsys.toml, model_dir: /models, store_url_env: RECSYS_STORE_URL, min_owners: 4}

``build_app`` gets one dict of arguments (strings when they come from the ``serve run`` command
line). Accepted keys, all optional:

- ``config``: a ServeConfig TOML file (ranking, auth keys, offers, snapshot interval ...);
- ``model_dir``: the bundles' directory, on storage every node sees (a shared volume);
- ``model``: the version to start with (default: ``CURRENT``, else the newest);
- ``store_url``: the durable store; or ``store_url_env``: the name of an environment variable
  that holds it, so a PostgreSQL password stays in a Kubernetes Secret, out of the manifest;
- ``min_owners``, ``max_owners``: the bounds of the customer tier (partition owner processes);
- ``partitions``: P for a new store (an existing store keeps its own).

Unlike ``recsys serve`` (gateway/server.py), ports, bind address and TLS belong to Serve's own
``http_options`` / ``grpc_options`` here, and auth is never switched on with a made-up demo key:
a config whose auth is on must list its keys.

Serve calls the builder in a short-lived task (one call per worker process), so nothing that
task owns survives it: not the placement and its owners, the model registry, nor the model
arrays' object. They are started by one detached actor pinned to the head node, which plays the
part of the long-lived ``recsys serve`` process: it calls ``actors.cluster.start_backend`` and
keeps the handles and the arrays' object alive. A redeploy finds it (or a back end someone else
started) and reuses it; killing that actor takes the whole back end down with it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import ray

from actors.names import NAMESPACE, PLACEMENT_NAME
from engine.config import ServeConfig, ingress_scaling, load_serve_config
from engine.errors import InvalidArgument
from gateway.ingress import Ingress, IngressSettings

log = logging.getLogger("ray.serve")

BUILD_ARGS = ("config", "model_dir", "model", "store_url", "store_url_env", "min_owners", "max_owners", "partitions")
OWNER_NAME = "recsys-service-owner"
# The resource Ray gives the head node only; Serve's controller is pinned the same way.
HEAD_NODE_RESOURCE = "node:__internal_head__"


@dataclass(frozen=True)
class AppArgs:
    """build_app's arguments, validated: the service's config and the model version to start with."""

    config: ServeConfig
    model: str | None = None


def _text(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"args.{key}: must be a non-empty string, got {value!r}")
    return value.strip()


def _count(args: Mapping[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    # `serve run ... min_owners=4` passes the string "4"; YAML passes the int.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument(f"args.{key}: must be a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"args.{key}: must be a whole number, got {value!r}") from None


def parse_app_args(args: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> AppArgs:
    """Validate build_app's arguments into an AppArgs; every mistake is an InvalidArgument naming the key."""
    environ = os.environ if environ is None else environ
    args = {} if args is None else args
    if not isinstance(args, Mapping):
        raise InvalidArgument(f"args: expected a mapping of {', '.join(BUILD_ARGS)}; got {type(args).__name__}")
    unknown = sorted(set(args) - set(BUILD_ARGS))
    if unknown:
        raise InvalidArgument(f"args: unknown key(s) {', '.join(map(str, unknown))}; accepted: {', '.join(BUILD_ARGS)}")

    config_path = _text(args, "config")
    if config_path is not None and not Path(config_path).is_file():
        raise InvalidArgument(f"args.config: no such file {config_path!r}")
    store_url = _text(args, "store_url")
    store_env = _text(args, "store_url_env")
    if store_url is not None and store_env is not None:
        raise InvalidArgument("args.store_url, args.store_url_env: give one, not both")
    if store_env is not None:
        store_url = environ.get(store_env, "").strip() or None
        if store_url is None:
            raise InvalidArgument(f"args.store_url_env: environment variable {store_env} is not set (or empty) "
                                  "where the application is built")
    if store_url is not None and not store_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        # Not echoed: the URL may carry a password.
        raise InvalidArgument("args.store_url: expected sqlite:///PATH or postgresql://...")

    try:
        config = load_serve_config(config_path, model_dir=_text(args, "model_dir"),
                                   partitions=_count(args, "partitions"), store_url=store_url)
        low, high = _count(args, "min_owners"), _count(args, "max_owners")
        if low is not None or high is not None:
            config = replace(config, owners=replace(
                config.owners, min_owners=low if low is not None else config.owners.min_owners,
                max_owners=high if high is not None else max(config.owners.max_owners, low or 0)))
    except InvalidArgument:
        raise
    except (OSError, ValueError, TypeError) as exc:  # TOML syntax, wrong value types
        raise InvalidArgument(f"args.config: {config_path}: {exc}") from exc
    if config.tls_certfile or config.tls_keyfile:
        raise InvalidArgument("tls_certfile/tls_keyfile: not used by the application builder; terminate TLS in "
                              "front of Serve (a Kubernetes Ingress or load balancer)")
    if config.auth.enabled and not config.auth.keys:
        raise InvalidArgument("auth: on with no keys, so every request would be refused; add [[auth.keys]] to the "
                              "config file (`recsys keys create`) or set auth.enabled = false")
    # Owners and the registry resolve paths in their own processes: make the model dir absolute here.
    config = replace(config, model_dir=str(Path(config.model_dir).resolve()))
    return AppArgs(config=config, model=_text(args, "model"))


def build_app(args: dict):
    """Serve application builder (one parameter, as Serve requires): validate ``args``, make sure the
    customer tier and the model registry run, and return the ingress application."""
    parsed = parse_app_args(args)
    running = ensure_backend(parsed)
    config = parsed.config
    return Ingress.options(**ingress_scaling(config)).bind(IngressSettings.from_config(config, running["partitions"]))


# --- the Ray side -----------------------------------------------------------------------------

@ray.remote(num_cpus=0)
class ServiceOwner:
    """Starts the back end (registry, placement and owners, offer learner) and owns it: the actors
    and the model arrays' object live as long as this detached actor does."""

    def __init__(self):
        self.running: dict | None = None
        self._keep: tuple = ()

    def start(self, config: ServeConfig, model: str | None) -> dict:
        if self.running is not None:  # a second builder raced the first to the same owner
            return self.running
        from actors.cluster import start_backend
        from recommenders.bundle import load_bundle, resolve_bundle_path

        path = resolve_bundle_path(config.model_dir, model)
        if path is None:
            raise InvalidArgument(f"model_dir: no model bundle in {config.model_dir} "
                                  f"(train one there: recsys train --model-dir {config.model_dir})")
        bundle = load_bundle(path)
        placement, registry, arrays_ref = start_backend(bundle, config)
        self._keep = (placement, registry, arrays_ref)
        partitions = ray.get(placement.status.remote())["partitions"]
        self.running = {"partitions": partitions, "version": bundle.version}
        return self.running

    def describe(self) -> dict | None:
        return self.running


def _running_placement() -> dict | None:
    """The status of a placement someone else started (`recsys serve` on this cluster), if any."""
    try:
        return ray.get(ray.get_actor(PLACEMENT_NAME, namespace=NAMESPACE).status.remote())
    except ValueError:
        return None


def ensure_backend(parsed: AppArgs) -> dict:
    """Reuse the running back end (a redeploy, or shards that `recsys serve` started), else start
    one under a detached owner on the head node. Returns {"partitions", "version"} of what runs."""
    from actors.cluster import stop_backend

    config = parsed.config
    try:
        # A sync actor answers in order: if a start is under way, this waits for it.
        running = ray.get(ray.get_actor(OWNER_NAME, namespace=NAMESPACE).describe.remote())
    except ValueError:
        running = None
    if running is not None:
        if parsed.model and parsed.model != running["version"]:
            log.warning("recsys: args.model %s ignored: the running service serves %s (change it with "
                        "`recsys models promote`)", parsed.model, running["version"])
        log.info("recsys: reusing the running back end (%d partitions, model %s)", running["partitions"],
                 running["version"])
        return running
    found = _running_placement()
    if found:
        log.info("recsys: reusing the customer tier started by another driver (%d owners)", found["owners"])
        return {"partitions": found["partitions"], "version": None}
    owner = ServiceOwner.options(name=OWNER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                                 resources={HEAD_NODE_RESOURCE: 0.001}).remote()
    try:
        running = ray.get(owner.start.remote(config, parsed.model))
    except Exception:
        # Leave nothing half-started (its actors die with the owner; stop_backend waits until their
        # names are free), so the next build, which Serve retries, starts clean.
        ray.kill(owner, no_restart=True)
        stop_backend()
        raise
    log.info("recsys: started the customer tier (%d partitions) serving model %s", running["partitions"],
             running["version"])
    return running
