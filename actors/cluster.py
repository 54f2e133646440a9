"""Starting the shard actors and finding them again.

Shards are named actors (``recsys-shard-<i>`` in namespace ``recsys``) so that any ingress
replica on any node finds them by name. The model registry (actors/registry.py) puts the model
arrays into the object store once and every shard maps them from there.
"""
from __future__ import annotations

from pathlib import Path

import ray

from engine.config import ServeConfig
from recommenders.bundle import ModelBundle

NAMESPACE = "recsys"


def shard_name(index: int) -> str:
    return f"recsys-shard-{index}"


def start_shards(bundle: ModelBundle, config: ServeConfig, actor_options: dict | None = None) -> tuple[list, object, object]:
    """Create the model registry (holding ``bundle``) and the shard actors, which map the
    registry's current model; wait until they have recovered. Returns (shards, registry, what the caller must hold on to: the
    start-up arrays' ObjectRef and the offer learner, which live as long as those references)."""
    from actors.learner import LEARNER_NAME, OfferLearner
    from actors.registry import REGISTRY_NAME, ModelRegistry
    from actors.shard import CustomerShard

    offer_toml = read_offer_catalog(config)
    learner = OfferLearner.options(name=LEARNER_NAME, namespace=NAMESPACE).remote(config.store_url)

    # This process owns the arrays' object and must outlive the service (it does: it is the
    # process that runs it), so a registry restarted on another node still finds them.
    arrays_ref = ray.put(dict(bundle.arrays))
    registry = ModelRegistry.options(name=REGISTRY_NAME, namespace=NAMESPACE).remote(
        str(Path(config.model_dir).resolve()), config.num_shards, [arrays_ref], dict(bundle.manifest))
    ray.get(registry.serving_version.remote())
    num_shards = config.num_shards
    options = {"scheduling_strategy": "SPREAD", **(actor_options or {})}
    shards = [
        CustomerShard.options(name=shard_name(i), namespace=NAMESPACE, **options)
        .remote(i, config.ranking, config.store_url, num_shards, config.snapshot_every_events, config.offers,
                offer_toml, config.hot_customers_per_shard)
        for i in range(num_shards)
    ]
    ray.get([s.ping.remote() for s in shards])
    return shards, registry, [arrays_ref, learner]


def read_offer_catalog(config: ServeConfig) -> str | None:
    """The offer catalogue file's text, validated, and recorded in the store as the one in force
    (a restarted shard reads it there). None when no catalogue is configured or the file is absent."""
    from actors.shard import OFFER_CATALOG_META
    from actors.shard_offers import catalog_from_toml
    from actors.store import open_store

    path = config.offers.catalog_path
    text = Path(path).read_text() if path and Path(path).exists() else None
    catalog_from_toml(text, str(path))  # a broken catalogue stops the start, with its message
    store = open_store(config.store_url)
    try:
        store.set_meta(OFFER_CATALOG_META, text or "")
    finally:
        store.close()
    return text


def find_shards(num_shards: int) -> list:
    return [ray.get_actor(shard_name(i), namespace=NAMESPACE) for i in range(num_shards)]


def stop_shards(num_shards: int, timeout_s: float = 30.0) -> None:
    """Kill the shard actors and the registry; wait until their names are free again (so a
    restart can reuse them)."""
    import time

    from actors.learner import LEARNER_NAME
    from actors.registry import REGISTRY_NAME

    names = [shard_name(i) for i in range(num_shards)] + [REGISTRY_NAME, LEARNER_NAME]
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
