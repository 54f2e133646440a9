"""The named actors of one service, and how any process finds them again.

Every actor module imports names from here and nothing from the other actor modules, so the
actors/ package has no import cycle: cluster.py (starting things) depends on the actors, the
actors depend on this.
"""
from __future__ import annotations

import ray

NAMESPACE = "recsys"
REGISTRY_NAME = "recsys-model-registry"
LEARNER_NAME = "recsys-offer-learner"
WEBHOOKS_NAME = "recsys-webhooks"
PLACEMENT_NAME = "recsys-placement"
OWNER_PREFIX = "recsys-owner-"
# store meta key: the offer catalogue (TOML) in force
OFFER_CATALOG_META = "offer_catalog_toml"


def owner_name(number: int) -> str:
    return f"{OWNER_PREFIX}{number}"


def find(name: str):
    return ray.get_actor(name, namespace=NAMESPACE)


def find_registry():
    return find(REGISTRY_NAME)


def find_learner():
    return find(LEARNER_NAME)


def find_placement():
    return find(PLACEMENT_NAME)
