"""How much a customer's taste points at an offer's items, from the collaborative model.

Affinity = the best cosine between the customer's ALS vector (trained, or folded in from live
events) and the offer's target items (its items, plus up to MAX_CATEGORY_ITEMS of its
categories' most popular items), clipped to [0, 1]. Offers without a target known to the model
get 0: the bandit's propensity alone decides for them.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from engine.offers import OfferCatalog
from engine.state import CustomerState
from recommenders.catalog_view import CatalogView
from recommenders.recommend import customer_vector

MAX_CATEGORY_ITEMS = 50


def offer_targets(catalog: OfferCatalog, view: CatalogView) -> dict[str, np.ndarray]:
    """Offer id -> trained item indices it promotes (computed once per catalogue and model)."""
    model = view.model
    by_category: dict[str, list[int]] = {}
    for i in model.popular_order.tolist():
        by_category.setdefault(view.category[i], []).append(i)
    targets = {}
    for offer in catalog.offers:
        idx = [model.item_index[i] for i in offer.target_items if i in model.item_index]
        for category in offer.target_categories:
            idx.extend(by_category.get(category, [])[:MAX_CATEGORY_ITEMS])
        targets[offer.id] = np.unique(np.asarray(idx, dtype=np.int64))
    return targets


def offer_affinity(view: CatalogView, targets: Mapping[str, np.ndarray], customer_id: str,
                   state: CustomerState | None) -> dict[str, float]:
    model = view.model
    vector = customer_vector(model, customer_id, state)
    if vector is None:
        return {}
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        return {}
    out = {}
    for offer_id, idx in targets.items():
        if idx.size:
            cosine = (model.item_factors[idx] @ vector) / (model.item_norms[idx] * norm)
            out[offer_id] = float(np.clip(cosine.max(), 0.0, 1.0))
    return out
