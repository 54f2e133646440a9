"""Starting the back end of one service and stopping it again.

The model registry (actors/registry.py) puts the model arrays into the object store once and
every owner maps them from there; the offer learner adds up the bandits' counts; the placement
(actors/placement.py) starts the partition owners and hands out the partitions. Every actor is
named in namespace ``recsys`` (actors/names.py), so any ingress replica on any node finds them.
"""
from __future__ import annotations

import time
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.learner import OfferLearner
from actors.names import (LEARNER_NAME, WEBHOOKS_NAME, NAMESPACE, OFFER_CATALOG_META, OWNER_PREFIX, PLACEMENT_NAME,
                          REGISTRY_NAME)
from actors.owner import OwnerSettings
from actors.placement import Placement, PlacementSettings
from actors.registry import ModelRegistry
from actors.shard_offers import catalog_from_toml
from actors.store import open_store
from actors.webhooks import start_webhooks
from engine.config import ServeConfig
from engine.errors import InvalidArgument
from recommenders.bundle import ModelBundle


def placement_settings(config: ServeConfig, partitions: int, owner_options: dict | None = None,
                       edge: object | None = None) -> PlacementSettings:
    owner = OwnerSettings(store_url=config.store_url, partitions=partitions, ranking=config.ranking,
                          offers=config.offers, snapshot_every=config.snapshot_every_events,
                          hot_customers=config.hot_customers_per_partition, attribution=config.attribution,
                          recommend_experiment=config.recommend_experiment, edge=edge)
    return PlacementSettings(owner=owner, scaling=config.owners, control_interval_s=config.owner_control_interval_s,
                             autoscale=config.autoscale_owners, owner_actor_options=dict(owner_options or {}))


def start_backend(bundle: ModelBundle, config: ServeConfig, owner_options: dict | None = None,
                  edge: object | None = None) -> tuple[object, object, list]:
    """``edge``: what answers RPCs in each owner (gateway/rpcs.py ``OwnerEdge``; None: owners answer
    only the ingress's calls). Create the store (at the current schema, P partitions), the model registry (holding
    ``bundle``), the offer learner and the placement, which starts min_owners owners and gives
    out every partition; wait until all are held; then the webhook dispatcher, when webhooks are
    configured. Returns (placement, registry, what the caller
    must hold on to: the start-up arrays' ObjectRef and the learner, which live as long as those
    references)."""
    try:
        ray.get_actor(PLACEMENT_NAME, namespace=NAMESPACE)
        raise InvalidArgument("a recsys service is already running on this Ray cluster (its placement answers); "
                              "stop it first, or use `recsys owners` to change it")
    except ValueError:
        pass
    # owners are detached (they outlive a placement restart): any left by a service that was not
    # stopped (its process killed) go first; their leases are taken over, epoch + 1, below
    for name in _named_owners():
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
    store = open_store(config.store_url, config.partitions)
    try:
        partitions = store.partitions()
    finally:
        store.close()
    read_offer_catalog(config)
    # the service's control actors run on this node, with the process that owns them (and the
    # model arrays' object): they share its fate, and one that crashes is restarted here (the
    # placement then rebuilds its view from the store's leases)
    here = {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)}
    learner = OfferLearner.options(name=LEARNER_NAME, namespace=NAMESPACE, **here).remote(config.store_url)
    # This process owns the arrays' object and must outlive the service (it does: it is the
    # process that runs it), so a registry restarted on another node still finds them.
    arrays_ref = ray.put(dict(bundle.arrays))
    registry = ModelRegistry.options(name=REGISTRY_NAME, namespace=NAMESPACE, **here).remote(
        str(Path(config.model_dir).resolve()), [arrays_ref], dict(bundle.manifest))
    ray.get(registry.serving_version.remote())
    placement = Placement.options(name=PLACEMENT_NAME, namespace=NAMESPACE, **here).remote(
        placement_settings(config, partitions, owner_options, edge))
    ray.get(placement.start.remote())
    webhooks = start_webhooks(config.store_url, config.webhooks, WEBHOOKS_NAME, NAMESPACE, **here)
    return placement, registry, [arrays_ref, learner] + ([webhooks] if webhooks is not None else [])


def read_offer_catalog(config: ServeConfig) -> str | None:
    """The offer catalogue file's text, validated, and recorded in the store as the one in force
    (every owner reads it there). None when no catalogue is configured or the file is absent."""
    path = config.offers.catalog_path
    text = Path(path).read_text() if path and Path(path).exists() else None
    catalog_from_toml(text, str(path))  # a broken catalogue stops the start, with its message
    store = open_store(config.store_url)
    try:
        store.set_meta(OFFER_CATALOG_META, text or "")
    finally:
        store.close()
    return text


def find_owners() -> list:
    """Handles of the owners the placement runs now."""
    from actors.names import find, find_placement

    return [find(name) for name in ray.get(find_placement().owner_names.remote())]


def _named_owners() -> list[str]:
    from ray.util import list_named_actors

    return [a["name"] for a in list_named_actors(all_namespaces=True)
            if a.get("namespace") == NAMESPACE and a["name"].startswith(OWNER_PREFIX)]


def stop_backend(timeout_s: float = 30.0) -> None:
    """Kill the placement (first: it would replace the owners), the owners, the registry and the
    learner; wait until their names are free again (so a restart can reuse them)."""
    names = [PLACEMENT_NAME] + _named_owners() + [REGISTRY_NAME, LEARNER_NAME, WEBHOOKS_NAME]
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
    deadline = time.monotonic() + timeout_s
    for name in names:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.1)
