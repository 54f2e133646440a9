"""A customer shard: the live state of many customers and the scoring next to it.

One Ray actor per shard, not per customer (virtual actors, as Orleans grains): customers are
mapped to shards by a stable hash. State changes go through the durable store first:

    TrackEvents -> queue -> one transaction for everything queued (group commit)
                -> apply the newly stored events to memory -> acknowledge

so an acknowledged event is on disk, and a shard that restarts rebuilds its customers from
its latest snapshot plus the events logged after it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np
import orjson
import ray

from engine.catalog import CatalogUpdate, LiveCatalog
from engine.config import OffersConfig, RankingConfig
from engine.decisioning import counts_from_rows, counts_to_rows
from engine.errors import NotFound, RecsysError, Unavailable
from engine.events import Event, event_to_dict
from engine.offers import OfferCatalog
from engine.queries import Filters, OfferQuery, RecommendQuery, SimilarQuery
from engine.state import CustomerState, apply_event, state_from_dict, state_to_dict
from actors.customer_table import CustomerTable
from actors.shard_writer import ShardWriter
from actors.shard_offers import LEARNED_KINDS, ShardOffers, catalog_from_toml
from actors.store import SqlEventStore, open_store
from recommenders.catalog_view import CatalogView
from recommenders.recommend import Recommendations, recommend, similar_items
from recommenders.runtime import ModelRuntime

log = logging.getLogger(__name__)


# store meta key: the offer catalogue (TOML) in force
OFFER_CATALOG_META = "offer_catalog_toml"


def _now_ms() -> int:
    return int(time.time() * 1000)


class CustomerShardLogic:
    """The shard's behaviour without Ray, so it can be unit-tested and replayed."""

    def __init__(self, shard_id: int, model: ModelRuntime, ranking: RankingConfig,
                 store: SqlEventStore, snapshot_every: int = 10_000, *, num_shards: int = 1,
                 offers_config: OffersConfig = OffersConfig(), offer_catalog: OfferCatalog | None = None,
                 hot_customers: int = 50_000):
        self.shard_id = shard_id
        self.offers = ShardOffers(shard_id, num_shards, offers_config,
                                  offer_catalog or catalog_from_toml(None, "(none)"))
        self.catalog = LiveCatalog()
        self.view = CatalogView(model, self.catalog)
        self.ranking = ranking
        self.store = store
        self.snapshot_every = snapshot_every
        self.customers = CustomerTable(hot_customers)
        self.last_seq = 0
        self.since_snapshot = 0
        # triggers: customer -> (when the cart counts as abandoned, the add_to_cart event id)
        self.abandon_due: dict[str, tuple[int, str]] = {}
        # customers erased by this process: unmapped again in any model switched to later (a
        # promotion prepared before the erasure committed)
        self.erased_here: set[str] = set()
        self.new_actions: list[dict[str, Any]] = []

    # -- durability -------------------------------------------------------------------------------
    def recover(self) -> dict[str, Any]:
        """Rebuild every customer of this shard from the latest snapshot plus the log after it."""
        started = time.perf_counter()
        self.customers.clear()
        self.last_seq = 0
        # the catalogue first: events replayed below may name items it added
        self.catalog = LiveCatalog()
        catalog_updates = self.store.catalog_updates()
        for update in catalog_updates:
            self.catalog.apply(update)
        self.view = CatalogView(self.model, self.catalog)
        self.model.forget(self.store.forgotten_customers())
        snapshot = self.store.latest_snapshot(self.shard_id)
        if snapshot is not None:
            self.last_seq, payload = snapshot
            body = orjson.loads(zlib.decompress(payload))
            for data in body["customers"]:
                state = state_from_dict(data)
                self.customers[state.customer_id] = state
            self.offers.restore(body.get("offers"))
            self.abandon_due = {c: (due, e) for c, (due, e) in body.get("abandon_due", {}).items()}
        replayed = 0
        for seq, event in self.store.events_since(self.shard_id, self.last_seq):
            self._apply(event)
            self.last_seq = seq
            replayed += 1
        self.since_snapshot = replayed
        return {"customers": len(self.customers), "replayed": replayed, "from_snapshot": snapshot is not None,
                "catalog_updates": len(catalog_updates),
                "seconds": round(time.perf_counter() - started, 4)}

    def snapshot_payload(self) -> tuple[int, bytes]:
        body = {"customers": self.customers.snapshot_entries(), "offers": self.offers.snapshot(),
                "abandon_due": self.abandon_due}
        return self.last_seq, zlib.compress(orjson.dumps(body), 1)

    def write_snapshot(self) -> None:
        seq, payload = self.snapshot_payload()
        self.store.write_snapshot(self.shard_id, seq, payload)
        self.since_snapshot = 0

    @property
    def model(self) -> ModelRuntime:
        return self.view.model

    @model.setter
    def model(self, model: ModelRuntime) -> None:
        self.view = CatalogView(model, self.catalog, carry_from=self.view)

    def switch_model(self, model: ModelRuntime) -> None:
        """Serve ``model`` from now on. It may have been prepared before an erasure committed, so
        the customers erased here since are unmapped in it first."""
        model.forget(self.erased_here)
        self.model = model

    def _apply(self, event: Event) -> CustomerState:
        """Apply one stored event (a replay or a new one) to its customer; returns the customer."""
        state = self.customers.get(event.customer_id)
        if state is None:
            state = self.customers[event.customer_id] = CustomerState(event.customer_id)
        if self.view.new_index and event.item_id:
            self.view.observe(event.item_id, [item for item, _kind, _ts in state.recent])
        apply_event(state, event)
        self.offers.trim_history(state, event)
        self.offers.count(event)
        self._arm_triggers(state, event)
        return state

    # -- triggers: cart abandonment, POS cross-sell -> the outbox ------------------------------------
    def _arm_triggers(self, state: CustomerState, event: Event) -> None:
        kind = event.event_type
        if kind == "add_to_cart":
            delay = int(self.offers.config.cart_abandon_minutes * 60_000)
            self.abandon_due[event.customer_id] = (event.timestamp_ms + delay, event.event_id)
        elif kind == "purchase" or (kind == "remove_from_cart" and not state.cart):
            self.abandon_due.pop(event.customer_id, None)

    def _cross_sell(self, event: Event) -> None:
        """A purchase at the till: what to suggest next, for the channels that follow up. It is
        marketing: only for a customer with marketing consent."""
        n = self.offers.config.cross_sell_items
        if n == 0 or not self.offers.marketing_allowed(self.customers.get(event.customer_id)):
            return
        # a cross-sell proposes something else than what was just bought, whatever the shop's
        # repurchase policy for recommendations
        query = RecommendQuery(customer_id=event.customer_id, channel="pos", k=n,
                               filters=Filters(exclude_item_ids=(event.item_id,)))
        items = [i.item_id for i in self.recommend(query, event.timestamp_ms).items]
        self.new_actions.append({
            "action_id": f"cross_sell:{event.event_id}", "kind": "cross_sell", "customer_id": event.customer_id,
            "channel": event.channel, "store_id": event.store_id, "created_ms": event.timestamp_ms,
            "trigger_item_id": event.item_id, "item_ids": items})

    def due_actions(self, now_ms: int) -> list[dict[str, Any]]:
        """Cart-abandonment actions whose time has come, plus cross-sells made since the last call.
        Both are marketing: consent is checked again now (it may have been withdrawn since)."""
        made, self.new_actions = self.new_actions, []
        actions = [a for a in made if self.offers.marketing_allowed(self.customers.get(a["customer_id"]))]
        for customer, (due, add_event) in list(self.abandon_due.items()):
            if due > now_ms:
                continue
            del self.abandon_due[customer]
            state = self.customers.get(customer)
            if state is None or not state.cart or not self.offers.marketing_allowed(state):
                continue
            actions.append({"action_id": f"cart_abandonment:{customer}:{add_event}", "kind": "cart_abandonment",
                            "customer_id": customer, "channel": "", "store_id": "", "created_ms": now_ms,
                            "item_ids": list(state.cart)})
        return actions

    def apply_catalog(self, updates: Sequence[CatalogUpdate]) -> int:
        """Apply committed catalogue updates to this shard's view; returns how many changed it."""
        changed = 0
        for update in updates:
            item = self.catalog.apply(update)
            if item is not None:
                self.view.apply(item)
                changed += 1
        return changed

    def apply_committed(self, events: Sequence[Event], seqs: Sequence[int | None]) -> list[bool]:
        """Apply the events the store took as new (seq not None); the rest are re-deliveries."""
        applied = []
        for event, seq in zip(events, seqs):
            if seq is None:
                applied.append(False)
                continue
            state = self._apply(event)
            # applied: from here on a catch-up must not apply it again, whatever follows
            self.last_seq = max(self.last_seq, seq)
            self.since_snapshot += 1
            applied.append(True)
            try:
                if event.event_type in LEARNED_KINDS:
                    self.offers.learn(event, state, self.model.customer_summary(event.customer_id))
                elif event.event_type == "purchase" and event.channel == "pos":
                    self._cross_sell(event)
            except Exception:  # noqa: BLE001 - learning and follow-ups are extras; the event is applied
                log.exception("shard %d: a follow-up of event %s failed", self.shard_id, event.event_id)
        return applied

    def screen_events(self, events: list[Event]) -> tuple[list[Event], int]:
        """The events to store, and how many were ignored: an offer response counts only if it
        answers a show the engine made to that customer, and only its first answer (also within
        this batch); see ShardOffers.screen. Ignored responses are neither stored nor learnt from.
        Run before the store append, against the state the applied events left."""
        return self.offers.screen(events, self.customers.get, _now_ms())

    def acknowledge(self, chunks: Sequence[Sequence[Event]], kept: Sequence[Event],
                    seqs: Sequence[int | None]) -> list[tuple[int, int, int]]:
        """Apply the stored events (``kept``, as the store numbered them) and say per caller's
        chunk (accepted, duplicates, ignored). The write path's last step, shared by the actor's
        group commit (actors/shard_writer.py) and ``track``."""
        applied = self.apply_committed(kept, seqs)
        outcome = {id(event): ok for event, ok in zip(kept, applied)}
        results = []
        for chunk in chunks:
            mine = [outcome[id(e)] for e in chunk if id(e) in outcome]
            results.append((sum(mine), len(mine) - sum(mine), len(chunk) - len(mine)))
        return results

    def track(self, events: Sequence[Event]) -> tuple[int, int]:
        """Screen, store, then apply, then report (accepted, duplicates): the synchronous path.
        Screened-out responses are in neither count (``offers.ignored_responses`` counts them)."""
        kept, _ = self.screen_events(list(events))
        accepted, duplicates, _ = self.acknowledge([events], kept, self.store.append(self.shard_id, kept))[0]
        if self.since_snapshot >= self.snapshot_every:
            self.write_snapshot()
        return accepted, duplicates

    # -- reads ----------------------------------------------------------------------------------------
    def recommend(self, query: RecommendQuery, now_ms: int) -> Recommendations:
        return recommend(self.model, self.customers.get(query.customer_id), query, self.ranking, now_ms, self.view)

    def similar(self, query: SimilarQuery) -> Recommendations:
        state = self.customers.get(query.customer_id) if query.customer_id else None
        return similar_items(self.model, query, state, view=self.view)

    def offer_decision(self, query: OfferQuery, now_ms: int, rng) -> tuple[dict[str, Any], list[Event]]:
        """Decide (no state changes): the reply and the events to store and apply before replying."""
        return self.offers.decide(query, self.customers.get(query.customer_id), self.view, now_ms, rng)

    # -- privacy ------------------------------------------------------------------------------------------
    # Each operation is split into store steps (blocking I/O) and memory steps, so that the actor
    # can run the first on its store thread and the second on its event loop.
    def forget_live(self, customer_id: str) -> bool:
        """Erase what memory holds: live state, armed triggers, and the customer's rows of the
        model bundle (history, factors, summary), so no answer uses them from now on."""
        self.abandon_due.pop(customer_id, None)
        self.new_actions = [a for a in self.new_actions if a["customer_id"] != customer_id]
        self.model.forget([customer_id])
        self.erased_here.add(customer_id)
        return self.customers.pop(customer_id, None) is not None

    def erase_stored(self, customer_id: str, principal: str) -> dict[str, Any]:
        """The store step of an erasure (one transaction, audited); run on the store thread."""
        had_state = customer_id in self.customers
        deleted = self.store.forget_customer(customer_id, shard=self.shard_id, principal=principal,
                                             detail={"had_live_state": had_state, "shard": self.shard_id})
        return {"customer_id": customer_id, "events_deleted": deleted, "live_state_erased": had_state}

    def forget(self, customer_id: str, principal: str) -> dict[str, Any]:
        """Erase the customer: stored events, live state, bundle rows, and every snapshot that
        held them (the synchronous path; the actor runs the same two steps through ShardWriter)."""
        report = self.erase_stored(customer_id, principal)
        self.forget_live(customer_id)
        self.write_snapshot()
        return report

    def live_state(self, customer_id: str) -> dict[str, Any] | None:
        state = self.customers.get(customer_id)
        return None if state is None else state_to_dict(state)

    def export(self, customer_id: str, principal: str) -> dict[str, Any]:
        """Everything held about the customer, as JSON-able data."""
        return self.export_with(customer_id, principal, self.live_state(customer_id))

    def export_with(self, customer_id: str, principal: str, state: dict[str, Any] | None) -> dict[str, Any]:
        events = self.store.customer_events(customer_id)
        model = self.model.customer_record(customer_id)
        if state is None and not events and model is None:
            raise NotFound(f"customer {customer_id!r}: nothing is held about this customer")
        self.store.audit(principal, "export_customer", customer_id, {"events": len(events), "shard": self.shard_id})
        return {"customer_id": customer_id, "state": state, "events": [event_to_dict(e) for e in events],
                "model": model}

    def stats(self) -> dict[str, Any]:
        return {"shard_id": self.shard_id, "customers": len(self.customers),
                "customers_unpacked": self.customers.hot_count, "last_seq": self.last_seq,
                "model_version": self.model.version, "catalog_items": len(self.catalog),
                "new_items": len(self.view.new_index)}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CustomerShard:
    """Ray actor around CustomerShardLogic: group commit, recovery on (re)start.

    An async actor: requests interleave on one event loop, the store runs on one dedicated
    thread, and every mutation of customer state happens on the loop. The one place that must
    not interleave is a next-best-offer decision and the storing of the show it makes (the
    contact caps read that history): a per-customer lock serialises those.
    """

    def __init__(self, shard_id: int, ranking: RankingConfig, store_url: str, num_shards: int,
                 snapshot_every: int = 10_000, offers: OffersConfig = OffersConfig(),
                 offer_catalog_toml: str | None = None, hot_customers: int = 50_000):
        # The registry's current model, also after a restart or a move to another node.
        # refs = [ObjectRef], a list so that Ray hands us the reference and we keep it alive;
        # ray.get returns read-only numpy arrays mapped from shared memory (no copy).
        from actors.registry import find_registry

        refs, manifest = ray.get(find_registry().current.remote())
        self._model_ref = refs[0]
        self._pending_model: tuple[str, ModelRuntime, Any] | None = None
        model = ModelRuntime(ray.get(self._model_ref), manifest)
        store = open_store(store_url)
        store.check_layout(num_shards)
        # The catalogue the service started with, unless this is a restart: then the one in force
        # (`recsys offers reload` may have replaced it since), which the store keeps.
        if ray.get_runtime_context().was_current_actor_reconstructed:
            offer_catalog_toml = store.get_meta(OFFER_CATALOG_META) or offer_catalog_toml
        catalog = catalog_from_toml(offer_catalog_toml, "offer catalogue")
        self._logic = CustomerShardLogic(shard_id, model, ranking, store, snapshot_every, num_shards=num_shards,
                                         offers_config=offers, offer_catalog=catalog, hot_customers=hot_customers)
        self._recovery = self._logic.recover()
        self._offer_locks: dict[str, list] = {}
        self._rng = np.random.default_rng()
        self._offer_sync: asyncio.Task | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"shard-{shard_id}-store")
        self._writer = ShardWriter(self._logic, self._io_call)

    async def _io_call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def track(self, events: list[Event]) -> tuple[int, int, int]:
        """Store, apply, acknowledge: (accepted, duplicates, ignored) for these events."""
        self._start_background()
        return await self._writer.submit(events)

    async def recommend_many(self, requests: list[tuple[RecommendQuery, int]]) -> list[Recommendations | Exception]:
        """Several Recommends in one actor call (the ingress coalesces them under load); an error
        is returned in its request's place, so it fails that request only."""
        out: list[Recommendations | Exception] = []
        for query, now_ms in requests:
            try:
                out.append(self._logic.recommend(query, now_ms or _now_ms()))
            except RecsysError as exc:  # the caller's error: returned to the one caller it belongs to
                out.append(exc)
            except Exception as exc:  # noqa: BLE001 - a bug: logged here, where its traceback is
                log.exception("recommend failed for one request of a batch of %d", len(requests))
                out.append(exc)
        return out

    async def similar(self, query: SimilarQuery) -> Recommendations:
        return self._logic.similar(query)

    # -- next best offer ------------------------------------------------------------------------
    async def next_best_offer(self, query: OfferQuery, now_ms: int | None = None) -> dict[str, Any]:
        """Decide and store the shows before replying, one decision per customer at a time, so
        concurrent requests from several channels see each other's shows (caps hold exactly)."""
        self._start_background()
        entry = self._offer_locks.setdefault(query.customer_id, [asyncio.Lock(), 0])
        entry[1] += 1  # users of this lock; the last one out removes it
        try:
            async with entry[0]:
                reply, events = self._logic.offer_decision(query, now_ms or _now_ms(), self._rng)
                if events:
                    await self.track(events)
                return reply
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._offer_locks[query.customer_id]

    async def set_offer_catalog(self, toml_text: str) -> str:
        catalog = catalog_from_toml(toml_text, "offer catalogue")
        self._logic.offers.set_catalog(catalog)
        return catalog.version

    def _start_background(self) -> None:
        """The shard's timers (an async actor's __init__ has no running loop to start them in)."""
        if self._offer_sync is None:
            self._offer_sync = asyncio.create_task(self._sync_bandit_forever())
            self._triggers = asyncio.create_task(self._fire_triggers_forever())

    async def _fire_triggers_forever(self) -> None:
        logic = self._logic
        while True:
            await asyncio.sleep(logic.offers.config.trigger_tick_seconds)
            await self._writer.fire_triggers(_now_ms())

    async def actions_after(self, seq: int, limit: int) -> list:
        return await self._io_call(self._logic.store.actions_after, seq, limit)

    async def _sync_bandit_forever(self) -> None:
        from actors.learner import find_learner

        offers = self._logic.offers
        while True:
            await asyncio.sleep(offers.config.bandit_sync_seconds)
            delta = offers.bandit.delta_since_last()
            try:
                totals = await find_learner().exchange.remote(counts_to_rows(delta))
            except Exception:  # the learner restarting: keep the increments for next time
                offers.bandit.restore_delta(delta)
                continue
            offers.bandit.merge(counts_from_rows(totals))

    async def bandit_counts(self) -> list:
        return counts_to_rows(self._logic.offers.bandit.counts())

    async def commit_catalog(self, updates: list[CatalogUpdate]) -> None:
        """Make catalogue updates durable (one shard does this for the whole cluster)."""
        await self._io_call(self._logic.store.append_catalog, updates)

    async def apply_catalog(self, updates: list[CatalogUpdate]) -> int:
        return self._logic.apply_catalog(updates)

    async def forget(self, customer_id: str, principal: str) -> dict[str, Any]:
        # a model being promoted meanwhile unmaps the customer when it is switched to (commit_model)
        return await self._writer.forget(customer_id, principal)

    async def health(self) -> dict[str, Any]:
        self._start_background()
        return await self._writer.health()

    async def export(self, customer_id: str, principal: str) -> dict[str, Any]:
        state = self._logic.live_state(customer_id)
        return await self._io_call(self._logic.export_with, customer_id, principal, state)

    async def stats(self) -> dict[str, Any]:
        return {**self._logic.stats(), "recovery": self._recovery, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}

    # -- model swap (two-phase, driven by the registry) -------------------------------------------
    async def prepare_model(self, refs: list, manifest: Mapping[str, Any]) -> str:
        """Build the new model beside the serving one; nothing changes for requests yet."""
        arrays = await asyncio.get_running_loop().run_in_executor(None, ray.get, refs[0])
        model = await asyncio.get_running_loop().run_in_executor(None, ModelRuntime, arrays, manifest)
        # erased customers stay erased in every bundle, older ones (a rollback) included
        model.forget(await self._io_call(self._logic.store.forgotten_customers))
        self._pending_model = (model.version, model, refs[0])
        return model.version

    async def commit_model(self, version: str) -> str:
        """Switch to the prepared model: one reference assignment between two requests."""
        if self._pending_model is None or self._pending_model[0] != version:
            raise Unavailable(f"shard {self._logic.shard_id}: model {version} was not prepared")
        _, model, ref = self._pending_model
        self._logic.switch_model(model)
        self._model_ref, self._pending_model = ref, None
        return version

    async def abort_model(self, version: str) -> None:
        if self._pending_model is not None and self._pending_model[0] == version:
            self._pending_model = None

    async def ping(self) -> str:
        self._start_background()
        return self._logic.model.version
