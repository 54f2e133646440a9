"""A partition owner: one process holding the live state of a set of partitions, and the scoring
next to it.

The placement (actors/placement.py) decides which owner holds which partition and moves them as
the tier grows and shrinks. The owner itself only knows how to take a partition (acquire its
lease in the store, epoch + 1, and rebuild it from snapshot + log), how to give one back (stop
taking requests for it, commit what is queued, snapshot, release the lease), and how to answer
requests for the partitions it holds. A request for a partition it does not hold is answered
with PartitionMoved, which the ingress handles by asking the placement again.

Nothing here depends on being a plain Ray actor rather than a Serve replica: the partitions held,
their leases and their moves are all in ``OwnerCore``; the actor below is a thin shell.

One store connection and one store thread per owner; customer state changes only on the event
loop. Each partition has its own writer (actors/shard_writer.py: group commit, catch-up, fencing).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import ray

from actors.group_commit import GroupCommit
from actors.names import OFFER_CATALOG_META, find_learner, find_registry
from actors.serving import Serving
from actors.shard import CustomerShardLogic, copies_for_profile
from actors.shard_offers import catalog_from_toml
from actors.shard_writer import ShardWriter
from actors.store import open_store
from engine.attribution import new_recommendation_id
from engine.catalog import CatalogUpdate
from engine.config import AttributionConfig, OffersConfig, RankingConfig, RecExperiment
from engine.decisioning import counts_from_rows, counts_to_rows
from engine.errors import Conflict, Linked, PartitionMoved, RecsysError, Unavailable
from engine.events import LINK_DONE_RECORD, LINK_DONE_RECORD_ID, LINK_RECORD, LINK_RECORD_ID, Event
from engine.queries import OfferQuery, RecommendQuery, SimilarQuery
from engine.sharding import partition_for
from engine.state import segment as state_segment
from recommenders.recommend import Recommendations, similar_items
from recommenders.runtime import ModelRuntime

log = logging.getLogger(__name__)

# how long a move waits for the requests already inside a partition to finish
DRAIN_TIMEOUT_S = 10.0
# how often an owner looks for catalogue updates it has not applied (one that started while an
# update was being pushed to every owner gets it this way)
CATALOG_POLL_S = 1.0
# how often an owner finishes the links of its partitions left half done (their driver crashed
# between storing the link and copying the id's history), and how old such a link must be first
LINK_REPAIR_S = 2.0
LINK_REPAIR_AFTER_MS = 5_000


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class OwnerSettings:
    """What every owner of one service is started with."""
    store_url: str
    partitions: int
    ranking: RankingConfig = RankingConfig()
    offers: OffersConfig = OffersConfig()
    snapshot_every: int = 10_000
    hot_customers: int = 50_000
    attribution: AttributionConfig = AttributionConfig()
    recommend_experiment: RecExperiment | None = None
    # what answers the RPCs sent straight to this owner (the gRPC front's calls that name a
    # customer): made by the gateway (gateway/rpcs.py OwnerEdge), so actors/ does not import it
    edge: Any = None


class OwnerAppends:
    """The owner's partitions' appends, queued together and committed in one transaction
    (store.append_many): group commit across partitions. Each partition's writer still decides,
    applies and acknowledges its own batch; only the trip to the store is shared."""

    def __init__(self, io, store):
        self._io, self._store = io, store
        self._commits = GroupCommit(self._commit)

    async def append(self, logic: CustomerShardLogic, kept: list[Event]) -> list:
        return await self._commits.submit([(logic.partition, logic.epoch, kept)])

    async def _commit(self, chunks: list) -> list:
        """One result per caller (each chunk is one partition's batch): its seqs, PartitionMoved,
        or the store's own error for every caller (a full disk stays a full disk in each
        partition's health)."""
        try:
            return await self._io(self._store.append_many, [item for chunk in chunks for item in chunk])
        except Exception as exc:  # noqa: BLE001 - handed to each partition's writer as it is
            return [exc] * len(chunks)


@dataclass
class Held:
    """One partition this owner holds."""
    logic: CustomerShardLogic
    writer: ShardWriter
    epoch: int
    active: bool = True  # False from the moment a move starts: requests get PartitionMoved
    inflight: int = 0
    recovery: dict = field(default_factory=dict)


class OwnerCore:
    """The owner without Ray: its partitions, their leases and moves, and the requests."""

    def __init__(self, name: str, settings: OwnerSettings, model: ModelRuntime, io, store):
        self.name = name
        self.settings = settings
        self.store = store
        self._io = io
        self.serving = Serving(model, settings.attribution.placements)
        self.held: dict[int, Held] = {}
        self.appends = OwnerAppends(io, store)
        self._offer_catalog = catalog_from_toml(store.get_meta(OFFER_CATALOG_META), "offer catalogue")
        self._offer_locks: dict[str, list] = {}
        self._rng = np.random.default_rng()
        self.requests = 0
        self.moves_in = 0
        self.moves_out = 0
        self.fenced = 0

    # -- which partition -----------------------------------------------------------------------
    def partition_of(self, customer_id: str) -> int:
        return partition_for(customer_id, self.settings.partitions)

    def holds(self, partition: int) -> bool:
        """Whether requests for ``partition`` are answered here now (held, and not moving)."""
        held = self.held.get(partition)
        return held is not None and held.active

    def _held(self, partition: int) -> Held:
        held = self.held.get(partition)
        if held is None or not held.active:
            raise PartitionMoved(partition)
        return held

    # -- taking and giving partitions ------------------------------------------------------------
    async def acquire(self, partition: int) -> dict[str, Any]:
        """Take the partition's lease (epoch + 1: whoever held it before can no longer write it)
        and rebuild it from its snapshot and the log after it."""
        if partition in self.held:
            return {"partition": partition, "epoch": self.held[partition].epoch, "already": True}
        started = time.perf_counter()
        epoch = await self._io(self.store.acquire_partition, partition, self.name)
        logic = CustomerShardLogic(partition, self.serving, self.settings.ranking, self.store,
                                   self.settings.snapshot_every, partitions=self.settings.partitions, epoch=epoch,
                                   offers_config=self.settings.offers, offer_catalog=self._offer_catalog,
                                   hot_customers=self.settings.hot_customers, attribution=self.settings.attribution,
                                   experiment=self.settings.recommend_experiment)
        stored = await self._io(logic.read_stored)
        recovery = logic.rebuild(stored)
        writer = ShardWriter(logic, self._io, on_fenced=self._fenced, append=self.appends.append)
        self.held[partition] = Held(logic, writer, epoch, recovery=recovery)
        self.moves_in += 1
        return {"partition": partition, "epoch": epoch, **recovery,
                "seconds": round(time.perf_counter() - started, 4)}

    async def release(self, partition: int) -> dict[str, Any]:
        """Give the partition back: new requests for it get PartitionMoved at once, the ones
        inside finish, what is queued is committed, a snapshot is written, then the lease is
        released. A partition not held (already moved) is answered as such."""
        held = self.held.get(partition)
        if held is None:
            return {"partition": partition, "held": False}
        started = time.perf_counter()
        held.active = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while held.inflight and loop.time() < deadline:
            await asyncio.sleep(0.002)
        try:
            handed = await held.writer.hand_over()
            released = await self._io(self.store.release_partition, partition, held.epoch)
        except PartitionMoved:
            handed, released = {}, False
        except Exception:
            held.active = True  # the store is away: keep serving it; the placement retries later
            raise
        self.held.pop(partition, None)
        self.moves_out += 1
        return {"partition": partition, "held": True, "released": released, **handed,
                "customers": len(held.logic.customers), "seconds": round(time.perf_counter() - started, 4)}

    def _fenced(self, partition: int) -> None:
        """A write found the lease taken by another owner: this one stops serving the partition."""
        held = self.held.pop(partition, None)
        if held is not None:
            held.active = False
            self.fenced += 1

    # -- requests ----------------------------------------------------------------------------------
    def recommend_many(self, requests: list[tuple[RecommendQuery, int]],
                       remember: bool = True) -> list[Recommendations | Exception]:
        """Several Recommends in one call (the ingress coalesces them under load); an error is
        returned in its request's place, so it fails that request only (a partition that moved:
        the ingress sends that one again). ``remember``: the lists are kept for attribution and get
        a recommendation id (False: a campaign's batch, engine/attribution.py)."""
        out: list[Recommendations | Exception] = []
        self.requests += len(requests)
        for query, now_ms in requests:
            try:
                held = self._held(self.partition_of(query.customer_id))
                _answers_for_itself(held.logic, query.customer_id)
                now = now_ms or _now_ms()
                result = held.logic.recommend(query, now)
                out.append(held.logic.remember("recommend", query.customer_id, query.channel, query.placement, result,
                                               now) if remember else result)
            except RecsysError as exc:
                out.append(exc)
            except Exception as exc:  # noqa: BLE001 - a bug: logged here, where its traceback is
                log.exception("recommend failed for one request of a batch of %d", len(requests))
                out.append(exc)
        return out

    def audience(self, segment: str | None, now_ms: int) -> tuple[list[int], list[str]]:
        """The customers of the partitions answered here now, the model's trained ones and those with
        live state, in ``segment`` (engine.state.segment over both; None: all). A campaign's list.
        Returns (the partitions it covers, the customers)."""
        model = self.serving.model
        # live state read without making anyone recently used (customers.items())
        members = {p: dict(h.logic.customers.items()) for p, h in self.held.items() if h.active}
        for customer in list(model.user_index):
            states = members.get(self.partition_of(customer))
            if states is not None and customer not in self.held[self.partition_of(customer)].logic.links:
                states.setdefault(customer, None)
        return sorted(members), [customer for states in members.values() for customer, state in sorted(states.items())
                                 if segment is None
                                 or state_segment(state, now_ms, model.customer_summary(customer)) == segment]

    def marketing_consents(self, customer_ids: list[str]) -> list[bool | Exception]:
        """Whether each customer allows marketing now (their consent events, else the default)."""
        out: list[bool | Exception] = []
        for customer in customer_ids:
            try:
                logic = self._held(self.partition_of(customer)).logic
                _answers_for_itself(logic, customer)
                out.append(logic.offers.marketing_allowed(logic.customers.get(customer)))
            except RecsysError as exc:
                out.append(exc)
            except Exception as exc:  # noqa: BLE001 - a bug: this customer's row says so, the rest go on
                log.exception("marketing consent failed for one customer")
                out.append(exc)
        return out

    def similar(self, query: SimilarQuery) -> Recommendations:
        self.requests += 1
        if not query.customer_id:  # item to item: no customer state, any owner answers
            # an id, but no list remembered: there is no customer whose events could be credited to it
            return dataclasses.replace(similar_items(self.serving.model, query, None, view=self.serving.view),
                                       recommendation_id=new_recommendation_id())
        logic = self._held(self.partition_of(query.customer_id)).logic
        _answers_for_itself(logic, query.customer_id)
        return logic.remember("similar", query.customer_id, query.channel, query.placement, logic.similar(query),
                              _now_ms())

    async def track(self, groups: Mapping[int, list[Event]]) -> dict[int, Any]:
        """Events grouped by partition: per partition (accepted, duplicates, ignored), or the
        error for that partition (PartitionMoved: the ingress sends it to the new owner)."""
        self.requests += 1
        partitions = list(groups)
        results = await asyncio.gather(*[self._track_one(p, groups[p]) for p in partitions], return_exceptions=True)
        return dict(zip(partitions, results))

    async def _track_one(self, partition: int, events: list[Event]) -> tuple:
        """(accepted, duplicates, ignored), and when some of the events name ids linked to a
        profile, those events as the profile's (not stored here: the caller sends them on)."""
        held = self._held(partition)
        links = held.logic.links
        elsewhere = []
        if links:
            mine = []
            for event in events:
                entry = links.get(event.customer_id)
                if entry is None:
                    mine.append(event)
                else:
                    elsewhere.append(dataclasses.replace(event, customer_id=entry[0]))
            events = mine
        held.inflight += 1
        try:
            # no await between the look-up above and the queueing: a link stored after it finds these
            # events committed when it reads the id's history (link_begin)
            result = await held.writer.submit(events) if events else (0, 0, 0)
        finally:
            held.inflight -= 1
        return (*result, elsewhere) if elsewhere else result

    async def next_best_offer(self, query: OfferQuery, now_ms: int | None = None) -> dict[str, Any]:
        """Decide and store the shows before replying, one decision per customer at a time, so
        concurrent requests from several channels see each other's shows (caps hold exactly)."""
        self.requests += 1
        held = self._held(self.partition_of(query.customer_id))
        _answers_for_itself(held.logic, query.customer_id)
        held.inflight += 1
        entry = self._offer_locks.setdefault(query.customer_id, [asyncio.Lock(), 0])
        entry[1] += 1  # users of this lock; the last one out removes it
        try:
            async with entry[0]:
                if not held.active:  # it started moving while this waited for the lock
                    raise PartitionMoved(held.logic.partition)
                now = now_ms or _now_ms()
                reply, events = held.logic.offer_decision(query, now, self._rng)
                if events:
                    # the shows are contacts from the decision on (the contact cap), not only once stored
                    offers = held.logic.offers
                    contacts = offers.contact_count(events)
                    offers.hold_contacts(query.customer_id, query.channel, contacts)
                    try:
                        await held.writer.submit(events)
                    finally:
                        offers.release_contacts(query.customer_id, query.channel, contacts)
                return held.logic.remember_offers(query, reply, now)
        finally:
            held.inflight -= 1
            entry[1] -= 1
            if entry[1] == 0:
                del self._offer_locks[query.customer_id]

    async def forget(self, customer_id: str, principal: str, profile: str = "") -> dict[str, Any]:
        """Erase the customer; an id linked to a profile only as part of erasing that ``profile``
        (else Linked: the profile is what is erased)."""
        self.requests += 1
        held = self._held(self.partition_of(customer_id))
        linked_to = held.logic.profile_of(customer_id)
        if linked_to is not None and linked_to != profile:
            raise Linked(customer_id, linked_to)
        held.inflight += 1
        try:
            return {**await held.writer.forget(customer_id, principal), "partition": held.logic.partition}
        finally:
            held.inflight -= 1

    async def export(self, customer_id: str, principal: str) -> dict[str, Any]:
        self.requests += 1
        held = self._held(self.partition_of(customer_id))
        _answers_for_itself(held.logic, customer_id)
        state = held.logic.live_state(customer_id)
        return await self._io(held.logic.export_with, customer_id, principal, state)

    # -- linked ids: this partition's steps of an identify (driven by gateway/operations.py) ------
    def resolve(self, customer_id: str) -> str:
        """The profile that answers for ``customer_id``: the one it is linked to, else itself."""
        return self._held(self.partition_of(customer_id)).logic.profile_of(customer_id) or customer_id

    def linked_ids(self, customer_id: str) -> list[str]:
        """The ids linked to the customer (Linked if it is itself linked to a profile)."""
        logic = self._held(self.partition_of(customer_id)).logic
        _answers_for_itself(logic, customer_id)
        state = logic.customers.get(customer_id)
        return sorted(state.linked) if state is not None and state.linked else []

    async def link_begin(self, alias: str, profile: str, kind: str, now_ms: int) -> tuple[list[Event], int, list]:
        """Link ``alias`` to ``profile``: store where the id points (from then on every request and
        event under it goes to the profile), then return what the id did, as the profile's events,
        when the link was stored, and the lists recommended to the id lately, as the profile's
        (handed over once: ``adopt_lists`` in the profile's partition). Idempotent: a link to the same profile returns the same.
        Conflict if the id is linked to another profile, or has linked ids of its own."""
        held = self._held(self.partition_of(alias))
        logic = held.logic
        held.inflight += 1
        try:
            _claimable(logic, alias, profile)
            if alias not in logic.links:
                record = Event(LINK_RECORD_ID, alias, LINK_RECORD, "", "", now_ms,
                               attributes=tuple(sorted({"profile": profile, "alias_kind": kind}.items())))
                await held.writer.submit([record])
                _claimable(logic, alias, profile)  # another profile's claim stored first wins
            # an empty batch queued behind every batch queued before the link took effect: once it
            # is answered, all the id's events are in the store, and none can come after
            await held.writer.submit([])
            events = await self._io(self.store.customer_events, alias)
            return copies_for_profile(events, alias, profile), logic.links[alias][3], logic.made.take(alias, profile)
        finally:
            held.inflight -= 1

    def adopt_lists(self, profile: str, lists: list) -> None:
        """A linked id's recent lists, now the profile's: its events under either id earn them credit."""
        logic = self._held(self.partition_of(profile)).logic
        _answers_for_itself(logic, profile)
        logic.made.adopt(lists)

    async def link_done(self, alias: str, profile: str, now_ms: int) -> bool:
        """Record that the id's history is in the profile. False: the link is gone (erased meanwhile)."""
        held = self._held(self.partition_of(alias))
        entry = held.logic.links.get(alias)
        if entry is None or entry[0] != profile:
            return False
        if not entry[1]:
            await held.writer.submit([Event(LINK_DONE_RECORD_ID, alias, LINK_DONE_RECORD, "", "", now_ms)])
        return True

    def pending_links(self) -> list[tuple[str, str, str, int]]:
        """The links of the partitions held here whose copy is not known done (a crash mid-link)."""
        return [link for held in self.held.values() if held.active for link in held.logic.pending_links()]

    # -- what spans partitions -------------------------------------------------------------------
    async def fire_triggers(self, now_ms: int) -> int:
        fired = 0
        for held in list(self.held.values()):
            if held.active:
                fired += await held.writer.fire_triggers(now_ms)
        return fired

    async def sync_catalog(self) -> int:
        """Apply the catalogue updates committed since the last one applied here."""
        rows = await self._io(self.store.catalog_updates_after, self.serving.catalog_seq)
        return self.serving.apply_catalog_rows(rows)

    def offer_preview(self, query: OfferQuery, now_ms: int) -> dict[str, Any]:
        """What NextBestOffer would decide now, with its reasons, recording nothing (no show, no cap
        used, no bandit trial): the console's view of a customer. A sample of the same posterior draw."""
        held = self._held(self.partition_of(query.customer_id))
        _answers_for_itself(held.logic, query.customer_id)
        reply, _events = held.logic.offer_decision(query, now_ms, self._rng)
        return reply

    def experiment_report(self, window_days: float) -> list[dict[str, Any]]:
        """Every experiment's arms read out from the stored offer events (engine.offer_log), as plain values."""
        from dataclasses import asdict

        from engine.decisioning import experiment_report
        from engine.offer_log import experiment_outcomes

        outcomes = experiment_outcomes(self.store.export_events(), window_days=window_days)
        return [asdict(row) for row in experiment_report(outcomes)] if outcomes else []

    def recommendation_report(self, by: str = "arm") -> list[dict[str, Any]]:
        """What the recommendations earned, read out from the stored events (engine.rec_report)."""
        from dataclasses import asdict

        from engine.rec_report import report

        return [asdict(row) for row in report(self.store.export_events(), by=by)]

    def offer_catalog(self) -> dict[str, Any]:
        """The offer catalogue in force here, as plain values (the console shows it)."""
        from dataclasses import asdict

        catalog = self._offer_catalog
        budget_left: dict[str, int] = {}
        for held in self.held.values():  # each partition's share of a global budget, what is left of it
            for offer_id, left in held.logic.offers.budget_left().items():
                budget_left[offer_id] = budget_left.get(offer_id, 0) + left
        return {"version": catalog.version, "checksum": catalog.checksum, "budget_left": budget_left,
                "partitions": sorted(self.held),
                "offers": [{"id": o.id, "name": o.name, "value": o.value, "channels": sorted(o.channels),
                            "caps": {k: v for k, v in asdict(o.caps).items() if v not in (None, 0, ())},
                            "eligibility": {k: (sorted(v) if isinstance(v, frozenset) else v)
                                            for k, v in asdict(o.eligibility).items() if v not in (None, 0, (), frozenset(), False)}}
                           for o in catalog.offers],
                "experiments": [{"id": e.id, "arms": [asdict(a) for a in e.arms]} for e in catalog.experiments]}

    def set_offer_catalog(self, toml_text: str) -> str:
        catalog = catalog_from_toml(toml_text, "offer catalogue")
        self._offer_catalog = catalog
        for held in self.held.values():
            held.logic.offers.set_catalog(catalog)
        return catalog.version

    async def health(self) -> dict[str, Any]:
        reports = await asyncio.gather(*[h.writer.health() for h in list(self.held.values())])
        stuck = [r for r in reports if not r["writable"]]
        return {"owner": self.name, "model_version": self.serving.model.version, "partitions": len(reports),
                "writable": not stuck,
                "write_error": "; ".join(f"partition {r['partition']}: {r['write_error']}" for r in stuck) or None,
                "snapshot_error": next((r["snapshot_error"] for r in reports if r["snapshot_error"]), None),
                "writer_starts": sum(r["writer_starts"] for r in reports),
                "failed_batches": sum(r["failed_batches"] for r in reports),
                "apply_errors": sum(r["apply_errors"] for r in reports)}

    def stats(self) -> dict[str, Any]:
        return {"owner": self.name, "partitions": sorted(self.held),
                "customers": sum(len(h.logic.customers) for h in self.held.values()),
                "last_seq": {p: h.logic.last_seq for p, h in self.held.items()},
                "epochs": {p: h.epoch for p, h in self.held.items()},
                "model_version": self.serving.model.version, "catalog_items": len(self.serving.catalog),
                "requests": self.requests, "moves_in": self.moves_in, "moves_out": self.moves_out,
                "fenced": self.fenced, "ignored_responses": sum(h.logic.offers.ignored_responses
                                                                for h in self.held.values())}


def _answers_for_itself(logic: CustomerShardLogic, customer_id: str) -> None:
    """Linked if ``customer_id`` is linked to a profile: the caller asks again for the profile."""
    profile = logic.profile_of(customer_id)
    if profile is not None:
        raise Linked(customer_id, profile)


def _claimable(logic: CustomerShardLogic, alias: str, profile: str) -> None:
    """Conflict unless ``alias`` may be linked to ``profile``. The message names neither the other
    customer nor what is held about them."""
    entry = logic.links.get(alias)
    if entry is not None and entry[0] != profile:
        raise Conflict(f"identify: {alias!r} is linked to another customer already; one id belongs to one "
                       "customer (erase that customer, or send the events under the customer it is linked to)")
    state = logic.customers.get(alias)
    if entry is None and state is not None and state.linked:
        raise Conflict(f"identify: {alias!r} has linked ids of its own; two customers' profiles are not merged")


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class PartitionOwner:
    """The Ray actor around OwnerCore, with the owner's timers (triggers, bandit exchange,
    catalogue poll) and its share of a model promotion. Not restarted by Ray: a dead owner's
    partitions are taken by others, under a new epoch, by the placement."""

    def __init__(self, name: str, settings: OwnerSettings):
        refs, manifest = ray.get(find_registry().current.remote())
        # refs = [ObjectRef], a list so that Ray hands us the reference and we keep it alive;
        # ray.get returns read-only numpy arrays mapped from shared memory (no copy)
        self._model_ref = refs[0]
        self._pending_model: tuple[str, ModelRuntime, Any] | None = None
        model = ModelRuntime(ray.get(self._model_ref), manifest)
        store = open_store(settings.store_url, settings.partitions)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-store")
        self.core = OwnerCore(name, settings, model, self._io, store)
        self._timers: list[asyncio.Task] = []
        self._cpu = (time.monotonic(), time.process_time())
        # (answering, metrics) once the first RPC comes (settings.edge builds them on this loop)
        self._edge: tuple[Any, Any] | None = None

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _start_timers(self) -> None:
        """An async actor's __init__ has no running loop to start them in."""
        if not self._timers:
            self._timers = [asyncio.create_task(self._every(self.core.settings.offers.trigger_tick_seconds,
                                                            lambda: self.core.fire_triggers(_now_ms()))),
                            asyncio.create_task(self._every(self.core.settings.offers.bandit_sync_seconds,
                                                            self._exchange_bandit)),
                            asyncio.create_task(self._every(CATALOG_POLL_S, self.core.sync_catalog)),
                            asyncio.create_task(self._every(LINK_REPAIR_S, self._finish_links))]

    @staticmethod
    async def _every(seconds: float, step) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception:  # noqa: BLE001 - a timer step that fails is tried at the next tick
                log.warning("owner timer step failed", exc_info=True)

    async def _finish_links(self) -> None:
        """Links stored here whose copy into the profile was not recorded done: finished by the same
        steps as an identify (idempotent: what was copied already is a duplicate)."""
        old = _now_ms() - LINK_REPAIR_AFTER_MS
        pending = [link for link in self.core.pending_links() if link[3] <= old]
        if not pending or self.core.settings.edge is None:
            return
        ops = self._answering()[0].ops
        for alias, profile, kind, _at in pending:
            try:
                await ops.finish_link(alias, profile, kind)
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.warning("finishing the link of an id failed; will retry", exc_info=True)

    async def _exchange_bandit(self) -> None:
        bandit = self.core.serving.bandit
        delta = bandit.delta_since_last()
        try:
            totals = await find_learner().exchange.remote(counts_to_rows(delta))
        except Exception:  # noqa: BLE001 - the learner restarting: keep the increments for next time
            bandit.restore_delta(delta)
            return
        bandit.merge(counts_from_rows(totals))

    # -- placement's calls ---------------------------------------------------------------------------
    async def acquire(self, partitions: list[int]) -> list[dict]:
        self._start_timers()
        return [await self.core.acquire(p) for p in partitions]

    async def release(self, partition: int) -> dict:
        return await self.core.release(partition)

    async def load(self) -> dict[str, Any]:
        """The scaling policy's signal: this process's CPU use (CPU seconds per second) since the
        last call, with the partitions held."""
        self._start_timers()
        now, cpu = time.monotonic(), time.process_time()
        (then, cpu_then), self._cpu = self._cpu, (now, cpu)
        return {"owner": self.core.name, "cpu": (cpu - cpu_then) / max(now - then, 1e-6),
                "partitions": len(self.core.held), "requests": self.core.requests,
                "node_id": ray.get_runtime_context().get_node_id()}

    # -- RPCs sent here by the gRPC front (answered from gateway/rpcs.py's table) ---------------------
    def _answering(self):
        if self._edge is None:
            if self.core.settings.edge is None:
                raise Unavailable(f"owner {self.core.name} answers no RPCs (started without an edge)")
            self._edge = self.core.settings.edge.build(self.core)
        return self._edge

    async def rpc_many(self, calls: list) -> list:
        """Calls from the protocol fronts, several at once when they queued for this owner
        (gateway/coalesce.py): each ("grpc", method, data, metadata, admitted), a unary RPC as
        bytes, admitted by the front with the key named ``admitted`` ("": auth is off), answered
        (status code name, details, reply bytes); or ("http", name, headers, params, body,
        admitted), answered (status, JSON body, extra headers). A call for a partition this owner
        does not hold is forwarded once to its owner. One answer per call, in order (an error in
        its place fails that call only)."""
        self._start_timers()
        answering = self._answering()[0]
        return await asyncio.gather(*[answering.unary_bytes(*call[1:]) if call[0] == "grpc"
                                      else answering.http_bytes(*call[1:]) for call in calls], return_exceptions=True)

    async def metrics_samples(self) -> dict:
        """The counters of the RPCs this owner answered (the ingress's /metrics adds them in)."""
        samples = self.core.serving.outcomes.samples()
        if self._edge is not None:
            for key, value in self._edge[1].samples().items():
                samples[key] = samples.get(key, 0.0) + value
        return samples

    # -- requests from other processes (for this owner's partitions only) ------------------------
    async def recommend_many(self, requests: list, remember: bool = True) -> list:
        return self.core.recommend_many(requests, remember)

    async def similar(self, query: SimilarQuery) -> Recommendations:
        return self.core.similar(query)

    async def audience(self, segment: str | None, now_ms: int) -> tuple[list[int], list[str]]:
        return self.core.audience(segment, now_ms)

    async def marketing_consents(self, customer_ids: list[str]) -> list:
        return self.core.marketing_consents(customer_ids)

    async def track_many(self, shares: list) -> list:
        """``track`` for several callers' shares at once (gateway/coalesce.py), one answer each."""
        self._start_timers()
        return await asyncio.gather(*[self.core.track(groups) for groups in shares], return_exceptions=True)

    async def track(self, groups: dict) -> dict:
        self._start_timers()
        return await self.core.track(groups)

    async def next_best_offer(self, query: OfferQuery, now_ms: int | None = None) -> dict[str, Any]:
        self._start_timers()
        return await self.core.next_best_offer(query, now_ms)

    async def forget(self, customer_id: str, principal: str, profile: str = "") -> dict[str, Any]:
        # a model being promoted meanwhile unmaps the customer when it is switched to (commit_model)
        return await self.core.forget(customer_id, principal, profile)

    async def resolve(self, customer_id: str) -> str:
        return self.core.resolve(customer_id)

    async def linked_ids(self, customer_id: str) -> list[str]:
        return self.core.linked_ids(customer_id)

    async def link_begin(self, alias: str, profile: str, kind: str, now_ms: int) -> tuple:
        self._start_timers()
        return await self.core.link_begin(alias, profile, kind, now_ms)

    async def link_done(self, alias: str, profile: str, now_ms: int) -> bool:
        return await self.core.link_done(alias, profile, now_ms)

    async def adopt_lists(self, profile: str, lists: list) -> None:
        self.core.adopt_lists(profile, lists)

    async def erased_since(self, customer_id: str, since_ms: int) -> bool:
        return await self._io(self.core.store.forgotten_since, customer_id, since_ms)

    async def export(self, customer_id: str, principal: str) -> dict[str, Any]:
        return await self.core.export(customer_id, principal)

    async def actions_after(self, seq: int, limit: int) -> list:
        return await self._io(self.core.store.actions_after, seq, limit)

    async def commit_catalog(self, updates: list[CatalogUpdate]) -> None:
        """Make catalogue updates durable (the ingress asks one owner; every owner then pulls them)."""
        await self._io(self.core.store.append_catalog, updates)

    async def sync_catalog(self) -> int:
        return await self.core.sync_catalog()

    async def set_offer_catalog(self, toml_text: str) -> str:
        return self.core.set_offer_catalog(toml_text)

    async def offer_catalog(self) -> dict[str, Any]:
        return self.core.offer_catalog()

    async def offer_preview(self, query: OfferQuery, now_ms: int) -> dict[str, Any]:
        return self.core.offer_preview(query, now_ms)

    async def experiment_report(self, window_days: float) -> list[dict[str, Any]]:
        return await self._io(self.core.experiment_report, window_days)

    async def recommendation_report(self, by: str = "arm") -> list[dict[str, Any]]:
        return await self._io(self.core.recommendation_report, by)

    async def health(self) -> dict[str, Any]:
        self._start_timers()
        return await self.core.health()

    async def stats(self) -> dict[str, Any]:
        return {**self.core.stats(), "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    async def bandit_counts(self) -> list:
        return counts_to_rows(self.core.serving.bandit.counts())

    async def ping(self) -> str:
        self._start_timers()
        return self.core.serving.model.version

    # -- model swap (two-phase, driven by the registry) -------------------------------------------
    async def prepare_model(self, refs: list, manifest: Mapping[str, Any]) -> str:
        """Build the new model beside the serving one; nothing changes for requests yet."""
        loop = asyncio.get_running_loop()
        arrays = await loop.run_in_executor(None, ray.get, refs[0])
        model = await loop.run_in_executor(None, ModelRuntime, arrays, manifest)
        # erased customers stay erased in every bundle, older ones (a rollback) included
        model.forget(await self._io(self.core.store.forgotten_customers))
        self._pending_model = (model.version, model, refs[0])
        return model.version

    async def commit_model(self, version: str) -> str:
        """Switch to the prepared model: one reference assignment between two requests."""
        if self._pending_model is None or self._pending_model[0] != version:
            raise Unavailable(f"owner {self.core.name}: model {version} was not prepared")
        _, model, ref = self._pending_model
        self.core.serving.switch(model)
        self._model_ref, self._pending_model = ref, None
        return version

    async def abort_model(self, version: str) -> None:
        if self._pending_model is not None and self._pending_model[0] == version:
            self._pending_model = None

    async def model_version(self) -> str:
        return self.core.serving.model.version
