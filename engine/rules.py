"""Business rules applied after blending: what may never be shown for this request."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

DAY_MS = 86_400_000


def purchased_to_exclude(policy: str, last_purchase_ms: Mapping[int, int], now_ms: int, window_days: int) -> set[int]:
    """Item indices the repurchase policy hides, given when each item was last bought."""
    if policy == "exclude_never":
        return set()
    if policy == "exclude_always":
        return set(last_purchase_ms)
    horizon = now_ms - window_days * DAY_MS
    return {item for item, last in last_purchase_ms.items() if last >= horizon}


def allowed_mask(
    candidate_idx: np.ndarray,
    *,
    excluded: Iterable[int],
    include_only: set[int] | None,
    prices: np.ndarray,
    min_price: float | None,
    max_price: float | None,
    recommendable: np.ndarray,
) -> np.ndarray:
    """Boolean mask over ``candidate_idx``: True where every rule lets the item through."""
    mask = recommendable[candidate_idx].copy()
    excluded = np.fromiter(excluded, dtype=np.int64)
    if excluded.size:
        mask &= ~np.isin(candidate_idx, excluded)
    if include_only is not None:
        mask &= np.isin(candidate_idx, np.fromiter(include_only, dtype=np.int64))
    if min_price is not None or max_price is not None:
        price = prices[candidate_idx]
        known = ~np.isnan(price)
        # an item with no known price cannot satisfy a price filter
        mask &= known
        if min_price is not None:
            mask &= np.where(known, price >= min_price, False)
        if max_price is not None:
            mask &= np.where(known, price <= max_price, False)
    return mask
