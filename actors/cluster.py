"""Starting the shard actors and finding them again.

Shards are named actors (``recsys-shard-<i>`` in namespace ``recsys``) so that any ingress
replica on any node finds them by name. The model arrays are put into the object store once
and every shard maps them from there.
"""
from __future__ import annotations

import ray

from engine.config import ServeConfig
from recommenders.bundle import ModelBundle

NAMESPACE = "recsys"


def shard_name(index: int) -> str:
    return f"recsys-shard-{index}"


def start_shards(bundle: ModelBundle, config: ServeConfig, actor_options: dict | None = None) -> list:
    """Create the shard actors sharing ``bundle``'s arrays; wait until they have recovered."""
    from actors.shard import CustomerShard

    model_ref = ray.put(dict(bundle.arrays))
    num_shards = config.num_shards
    options = {"scheduling_strategy": "SPREAD", **(actor_options or {})}
    shards = [
        CustomerShard.options(name=shard_name(i), namespace=NAMESPACE, **options)
        .remote(i, [model_ref], dict(bundle.manifest), config.ranking, config.store_url, num_shards,
                config.snapshot_every_events)
        for i in range(num_shards)
    ]
    ray.get([s.ping.remote() for s in shards])
    return shards


def find_shards(num_shards: int) -> list:
    return [ray.get_actor(shard_name(i), namespace=NAMESPACE) for i in range(num_shards)]


def stop_shards(num_shards: int, timeout_s: float = 30.0) -> None:
    """Kill the shard actors and wait until their names are free again (so a restart can reuse them)."""
    import time

    for i in range(num_shards):
        try:
            ray.kill(ray.get_actor(shard_name(i), namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
    deadline = time.monotonic() + timeout_s
    for i in range(num_shards):
        while time.monotonic() < deadline:
            try:
                ray.get_actor(shard_name(i), namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.1)
