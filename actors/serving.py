"""What every partition of one owner process shares: the model, the live catalogue laid over it,
the bandit's counts, and the customers erased here.

An owner holds many partitions (actors/owner.py); each partition's CustomerShardLogic keeps its
own customers and log position, and reads the model and catalogue through this one object, so a
catalogue update or a model switch is applied once per process, not once per partition.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from engine.catalog import CatalogUpdate, LiveCatalog
from actors.metric_samples import OutcomeMetrics
from engine.config import DEFAULT_PLACEMENTS
from engine.decisioning import BanditState
from recommenders.catalog_view import CatalogView
from recommenders.runtime import ModelRuntime


class Serving:
    def __init__(self, model: ModelRuntime, placements: Sequence[str] = DEFAULT_PLACEMENTS):
        self.catalog = LiveCatalog()
        # what the recommendations of this process's partitions earn (Prometheus counters)
        self.outcomes = OutcomeMetrics(placements)
        self.view = CatalogView(model, self.catalog)
        # the last catalogue update applied (store seq): updates are applied once each, in order
        self.catalog_seq = 0
        self.bandit = BanditState()
        # customers erased by this process: unmapped again in any model switched to later (a
        # promotion prepared before the erasure committed)
        self.erased: set[str] = set()

    @property
    def model(self) -> ModelRuntime:
        return self.view.model

    def switch(self, model: ModelRuntime) -> None:
        """Serve ``model`` from now on. It may have been prepared before an erasure committed, so
        the customers erased here since are unmapped in it first."""
        model.forget(self.erased)
        self.view = CatalogView(model, self.catalog, carry_from=self.view)

    def forget(self, customer_ids: Iterable[str]) -> None:
        """Unmap erased customers from the model (its history, factors and summary rows)."""
        self.model.forget(customer_ids)

    def apply_catalog(self, updates: Sequence[CatalogUpdate]) -> int:
        """Apply committed catalogue updates; returns how many changed the view."""
        changed = 0
        for update in updates:
            item = self.catalog.apply(update)
            if item is not None:
                self.view.apply(item)
                changed += 1
        return changed

    def apply_catalog_rows(self, rows: Sequence[tuple[int, CatalogUpdate]]) -> int:
        """Apply stored updates (seq, update) not applied yet; a row seen before is skipped, so
        a pull that overlaps a push is harmless."""
        fresh = [update for seq, update in rows if seq > self.catalog_seq]
        if rows:
            self.catalog_seq = max(self.catalog_seq, max(seq for seq, _ in rows))
        return self.apply_catalog(fresh)
