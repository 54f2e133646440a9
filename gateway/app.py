"""The Ray Serve application builder: the service as a Serve config or a KubeRay RayService runs it.

    serve run gateway.app:build_app model_dir=/models store_url_env=RECSYS_STORE_URL shards=4
    # or, in a Serve config / RayService serveConfigV2:
    #   import_path: gateway.app:build_app
    #   args: {config: /etc/recsys/recsys.toml, model_dir: /models, store_url_env: RECSYS_STORE_URL, shards: 4}

``build_app`` gets one dict of arguments (strings when they come from the ``serve run`` command
line). Accepted keys, all optional:

- ``config``: a ServeConfig TOML file (ranking, auth keys, offers, snapshot interval ...);
- ``model_dir``: the bundles' directory, on storage every node sees (a shared volume);
- ``model``: the version to start with (default: ``CURRENT``, else the newest);
- ``store_url``: the durable store; or ``store_url_env``: the name of an environment variable
  that holds it, so a PostgreSQL password stays in a Kubernetes Secret, out of the manifest;
- ``shards``: the number of customer shard actors.

Unlike ``recsys serve`` (gateway/server.py), ports, bind address and TLS belong to Serve's own
``http_options`` / ``grpc_options`` here, and auth is never switched on with a made-up demo key:
a config whose auth is on must list its keys.

Serve calls the builder in a short-lived task (one call per worker process), so nothing that
task owns survives it: not the shard actors, the model registry, nor the model arrays' object.
They are started by one detached owner actor pinned to the head node, which plays the part of
the long-lived ``recsys serve`` process: it calls ``actors.cluster.start_shards`` and keeps the
handles and the arrays' object alive. A redeploy finds the owner (or shards someone else
started) and reuses them; killing the owner actor takes the whole back end down with it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import ray

from actors.cluster import NAMESPACE, shard_name
from engine.config import ServeConfig, ingress_scaling, load_serve_config
from engine.errors import InvalidArgument
from gateway.ingress import Ingress, IngressSettings

log = logging.getLogger("ray.serve")

BUILD_ARGS = ("config", "model_dir", "model", "store_url", "store_url_env", "shards")
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
    # `serve run ... shards=4` passes the string "4"; YAML passes the int.
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
                                   num_shards=_count(args, "shards"), store_url=store_url)
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
    # Shards and the registry resolve paths in their own processes: make the model dir absolute here.
    config = replace(config, model_dir=str(Path(config.model_dir).resolve()))
    return AppArgs(config=config, model=_text(args, "model"))


def build_app(args: dict):
    """Serve application builder (one parameter, as Serve requires): validate ``args``, make sure the
    shard actors and the model registry run, and return the ingress application."""
    parsed = parse_app_args(args)
    ensure_backend(parsed)
    config = parsed.config
    return Ingress.options(**ingress_scaling(config)).bind(IngressSettings.from_config(config))


# --- the Ray side -----------------------------------------------------------------------------

@ray.remote(num_cpus=0)
class ServiceOwner:
    """Starts the back end (registry, shards, offer learner) and owns it: the actors and the model
    arrays' object live as long as this detached actor does."""

    def __init__(self):
        self.running: dict | None = None
        self._keep: tuple = ()

    def start(self, config: ServeConfig, model: str | None) -> dict:
        if self.running is not None:  # a second builder raced the first to the same owner
            return self.running
        from actors.cluster import start_shards
        from recommenders.bundle import load_bundle, resolve_bundle_path

        path = resolve_bundle_path(config.model_dir, model)
        if path is None:
            raise InvalidArgument(f"model_dir: no model bundle in {config.model_dir} "
                                  f"(train one there: recsys train --model-dir {config.model_dir})")
        bundle = load_bundle(path)
        shards, registry, arrays_ref = start_shards(bundle, config)
        self._keep = (shards, registry, arrays_ref)
        self.running = {"num_shards": config.num_shards, "version": bundle.version}
        return self.running

    def describe(self) -> dict | None:
        return self.running


def _actor_exists(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
        return True
    except ValueError:
        return False


def _running_shards(limit: int) -> int:
    """How many consecutive named shards exist, counting from 0 (stops at limit + 1)."""
    count = 0
    while count <= limit and _actor_exists(shard_name(count)):
        count += 1
    return count


def _check_shard_count(running: int, wanted: int) -> None:
    if running != wanted:
        raise InvalidArgument(f"shards: {running} shard actors are running but args ask for {wanted}; customers "
                              "are placed by a hash over the shard count, so it cannot change under a running "
                              "service (stop it first: ray.kill(ray.get_actor('recsys-service-owner', namespace='recsys')))")


def ensure_backend(parsed: AppArgs) -> dict:
    """Reuse the running back end (a redeploy, or shards that `recsys serve` started), else start
    one under a detached owner on the head node. Returns {"num_shards", "version"} of what runs."""
    from actors.cluster import stop_shards

    config = parsed.config
    try:
        # A sync actor answers in order: if a start is under way, this waits for it.
        running = ray.get(ray.get_actor(OWNER_NAME, namespace=NAMESPACE).describe.remote())
    except ValueError:
        running = None
    if running is not None:
        _check_shard_count(running["num_shards"], config.num_shards)
        if parsed.model and parsed.model != running["version"]:
            log.warning("recsys: args.model %s ignored: the running service serves %s (change it with "
                        "`recsys models promote`)", parsed.model, running["version"])
        log.info("recsys: reusing the running back end (%d shards, model %s)", running["num_shards"],
                 running["version"])
        return running
    found = _running_shards(config.num_shards)
    if found:
        _check_shard_count(found, config.num_shards)
        log.info("recsys: reusing %d shard actors started by another driver", found)
        return {"num_shards": found, "version": None}
    owner = ServiceOwner.options(name=OWNER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                                 resources={HEAD_NODE_RESOURCE: 0.001}).remote()
    try:
        running = ray.get(owner.start.remote(config, parsed.model))
    except Exception:
        # Leave nothing half-started (its actors die with the owner; stop_shards waits until their
        # names are free), so the next build, which Serve retries, starts clean.
        ray.kill(owner, no_restart=True)
        stop_shards(config.num_shards)
        raise
    log.info("recsys: started %d shards serving model %s", running["num_shards"], running["version"])
    return running
