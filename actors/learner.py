"""The offer learner: one small actor that adds up what every owner's bandit saw.

Each owner sends the increments it recorded since its last exchange and adopts the totals it
gets back (engine.decisioning.BanditState documents the protocol: nothing is counted twice,
and a failed exchange is sent again). The totals are written to the store, so a restarted
learner, or a whole restarted service, goes on from what was learnt.
"""
from __future__ import annotations

import time

import orjson
import ray

from actors.store import open_store
from engine.decisioning import BanditState, counts_from_rows, counts_to_rows

META_KEY = "bandit_counts"
SAVE_EVERY_S = 1.0


# no task retries: a retried exchange could add a delta twice; the shard re-sends a failed one
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class OfferLearner:
    def __init__(self, store_url: str):
        self.store = open_store(store_url)
        self.state = BanditState()
        saved = self.store.get_meta(META_KEY)
        if saved:
            self.state.add_counts(counts_from_rows(orjson.loads(saved)))
        self._saved_at = 0.0
        self._dirty = False

    def exchange(self, delta_rows: list) -> list:
        """Add one shard's increments; return the totals over every shard."""
        if delta_rows:
            self.state.add_counts(counts_from_rows(delta_rows))
            self._dirty = True
        now = time.monotonic()
        if self._dirty and now - self._saved_at >= SAVE_EVERY_S:
            self.store.set_meta(META_KEY, orjson.dumps(counts_to_rows(self.state.counts())).decode())
            self._saved_at, self._dirty = now, False
        return counts_to_rows(self.state.counts())
