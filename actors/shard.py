"""A customer shard: the live state of many customers and the scoring next to it.

One Ray actor per shard, not per customer (virtual actors, as Orleans grains): customers are
mapped to shards by a stable hash. Ray runs one method at a time per actor, so every update
of a customer's state and every read of it is serialised without locks.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import ray

from engine.config import RankingConfig
from engine.events import Event
from engine.queries import RecommendQuery, SimilarQuery
from engine.state import CustomerState, apply_event
from recommenders.recommend import Recommendations, recommend, similar_items
from recommenders.runtime import ModelRuntime


def _now_ms() -> int:
    return int(time.time() * 1000)


class CustomerShardLogic:
    """The shard's behaviour without Ray, so it can be unit-tested and replayed."""

    def __init__(self, shard_id: int, model: ModelRuntime, ranking: RankingConfig):
        self.shard_id = shard_id
        self.model = model
        self.ranking = ranking
        self.customers: dict[str, CustomerState] = {}

    def recommend(self, query: RecommendQuery, now_ms: int) -> Recommendations:
        return recommend(self.model, self.customers.get(query.customer_id), query, self.ranking, now_ms)

    def similar(self, query: SimilarQuery) -> Recommendations:
        state = self.customers.get(query.customer_id) if query.customer_id else None
        return similar_items(self.model, query, state)

    def track(self, events: list[Event]) -> tuple[int, int]:
        accepted = duplicates = 0
        for event in events:
            state = self.customers.get(event.customer_id)
            if state is None:
                state = self.customers[event.customer_id] = CustomerState(event.customer_id)
            if apply_event(state, event):
                accepted += 1
            else:
                duplicates += 1
        return accepted, duplicates

    def stats(self) -> dict[str, Any]:
        return {"shard_id": self.shard_id, "customers": len(self.customers),
                "model_version": self.model.version}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CustomerShard:
    """Ray actor wrapper around CustomerShardLogic. Model arrays arrive through the object store."""

    def __init__(self, shard_id: int, model_refs: list, manifest: Mapping[str, Any], ranking: RankingConfig):
        # model_refs = [ObjectRef]: wrapped in a list so Ray hands us the reference and we keep
        # it alive; ray.get returns read-only numpy arrays mapped from shared memory (no copy).
        self._model_ref = model_refs[0]
        model = ModelRuntime(ray.get(self._model_ref), manifest)
        self._logic = CustomerShardLogic(shard_id, model, ranking)

    def recommend(self, query: RecommendQuery, now_ms: int | None = None) -> Recommendations:
        return self._logic.recommend(query, now_ms or _now_ms())

    def similar(self, query: SimilarQuery) -> Recommendations:
        return self._logic.similar(query)

    def track(self, events: list[Event]) -> tuple[int, int]:
        return self._logic.track(events)

    def stats(self) -> dict[str, Any]:
        return self._logic.stats()

    def ping(self) -> str:
        return self._logic.model.version
