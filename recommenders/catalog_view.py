"""One model's item arrays with the live catalogue laid over them.

The model's arrays are read-only and shared by every shard on a node; a shard's view copies
only what the catalogue can change (price, recommendable, category) and appends items the model
has never seen after the model's own, so item indices stay valid for both. A view belongs to
one shard and one model version; the shard builds a new one when the model changes.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from engine.catalog import CatalogItem, LiveCatalog
from recommenders.runtime import ModelRuntime

# How many of a customer's latest items a new item is counted as co-visited with.
LIVE_COVIS_WINDOW = 10
# Seed-weighted co-visits at which a new item's live evidence counts half.
NEW_ITEM_COVIS_HALF = 3.0


class CatalogView:
    def __init__(self, model: ModelRuntime, catalog: LiveCatalog | None = None,
                 carry_from: "CatalogView | None" = None):
        self.model = model
        self.n_known = model.n_items
        self.ids: list[str] = model.item_ids.tolist()
        self.names: list[str] = model.item_names.tolist()
        self.category: list[str] = model.item_category.tolist()
        # categories as small integers (-1: none), for vectorised category rules and diversity
        self._codes: dict[str, int] = {}
        self.category_code = np.array([self.code(c) for c in self.category], dtype=np.int32)
        self.price = np.array(model.item_price, dtype=np.float64)
        self.recommendable = np.array(model.recommendable, dtype=bool)
        self.new_index: dict[str, int] = {}
        # new item index -> known item index -> times seen in the same customer's recent items
        self.live_covis: dict[int, dict[int, float]] = defaultdict(dict)
        self._category_popularity: dict[str, float] | None = None
        if catalog is not None:
            for item in catalog.items.values():
                self.apply(item)
        if carry_from is not None:
            self._carry_live_covis(carry_from)

    def _carry_live_covis(self, old: "CatalogView") -> None:
        """Keep what the previous model's view learnt live, for items still new in this model
        (a retrain that saw an item learns its co-visitation properly and this is dropped)."""
        for new_i, row in old.live_covis.items():
            i = self.new_index.get(old.ids[new_i])
            if i is None:
                continue
            for known_j, count in row.items():
                j = self.model.item_index.get(old.ids[known_j])
                if j is not None:
                    self.live_covis[i][j] = self.live_covis[i].get(j, 0.0) + count

    def code(self, category: str) -> int:
        if not category:
            return -1
        return self._codes.setdefault(category, len(self._codes))

    def known_codes(self, categories) -> np.ndarray:
        """Codes of the categories this view has (an unknown category matches no item)."""
        return np.asarray([self._codes[c] for c in categories if c in self._codes], dtype=np.int32)

    # -- catalogue ------------------------------------------------------------------------------
    def index_of(self, item_id: str) -> int | None:
        i = self.model.item_index.get(item_id)
        return i if i is not None else self.new_index.get(item_id)

    def apply(self, item: CatalogItem) -> None:
        """Lay one item's live fields over the arrays (adding it if the model has not seen it)."""
        i = self.index_of(item.item_id)
        if i is None:
            i = len(self.ids)
            self.new_index[item.item_id] = i
            self.ids.append(item.item_id)
            self.names.append("")
            self.category.append("")
            self.price = np.append(self.price, np.nan)
            self.recommendable = np.append(self.recommendable, True)
            self.category_code = np.append(self.category_code, np.int32(-1))
        if item.name is not None:
            self.names[i] = item.name
        if item.category is not None:
            self.category[i] = item.category
            self.category_code[i] = self.code(item.category)
            self._category_popularity = None
        if item.price is not None:
            self.price[i] = item.price
        if item.in_stock is not None:
            base = bool(self.model.recommendable[i]) if i < self.n_known else True
            self.recommendable[i] = base and item.in_stock

    # -- new items: live co-visitation and category ---------------------------------------------
    def observe(self, item_id: str, recent_items: list[str]) -> None:
        """A customer touched ``item_id`` after ``recent_items``: count new<->known co-visits."""
        if not self.new_index:
            return
        i = self.index_of(item_id)
        if i is None:
            return
        window = recent_items[-LIVE_COVIS_WINDOW:]
        for other_id in window:
            j = self.index_of(other_id)
            if j is None or j == i:
                continue
            if i >= self.n_known and j < self.n_known:
                self.live_covis[i][j] = self.live_covis[i].get(j, 0.0) + 1.0
            elif j >= self.n_known and i < self.n_known:
                self.live_covis[j][i] = self.live_covis[j].get(i, 0.0) + 1.0

    def category_popularity(self) -> dict[str, float]:
        """Mean trained popularity of the known items in each category."""
        if self._category_popularity is None:
            sums: dict[str, float] = defaultdict(float)
            counts: dict[str, int] = defaultdict(int)
            for cat, pop in zip(self.category[: self.n_known], self.model.popularity.tolist()):
                if cat:
                    sums[cat] += pop
                    counts[cat] += 1
            self._category_popularity = {c: sums[c] / counts[c] for c in sums}
        return self._category_popularity

    def new_item_candidates(self, seeds: dict[int, float],
                            profile_weights: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
        """New items the customer's session co-visits (live) or whose category they favour."""
        if not self.new_index:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        affinity: dict[str, float] = defaultdict(float)
        total = 0.0
        for i, w in list(profile_weights.items()) + list(seeds.items()):
            cat = self.category[i]
            if cat:
                affinity[cat] += w
            total += w
        idx, scores = [], []
        for i in self.new_index.values():
            if not self.recommendable[i]:
                continue
            covis = self.live_covis.get(i)
            together = sum(w * covis.get(s, 0.0) for s, w in seeds.items()) if covis else 0.0
            # on [0, 1]: co-visits saturate (3 -> 0.5); a category alone counts at most 0.5
            score = together / (together + NEW_ITEM_COVIS_HALF)
            cat = self.category[i]
            if cat and total > 0:
                score += 0.5 * affinity.get(cat, 0.0) / total
            score = min(score, 1.0)
            if score > 0:
                idx.append(i)
                scores.append(score)
        return np.asarray(idx, dtype=np.int64), np.asarray(scores, dtype=np.float64)

    def new_items_by_category_popularity(self) -> tuple[np.ndarray, np.ndarray]:
        """New in-stock items with the popularity of their category (for cold start)."""
        if not self.new_index:  # every request asks: nothing to compute while there are none
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        popular = self.category_popularity()
        idx = [i for i in self.new_index.values()
               if self.recommendable[i] and self.category[i] in popular]
        return (np.asarray(idx, dtype=np.int64),
                np.asarray([popular[self.category[i]] for i in idx], dtype=np.float64))
