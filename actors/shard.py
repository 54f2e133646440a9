"""One partition of customers: their live state and the scoring next to it, without Ray.

Customers hash to P fixed partitions (engine/sharding.py); an owner process (actors/owner.py)
holds many partitions, one CustomerShardLogic each, and hands a partition to another owner when
the tier grows or shrinks. State changes go through the durable store first:

    TrackEvents -> queue -> one transaction for everything queued (group commit, fenced by the
                   partition's lease epoch) -> apply the newly stored events -> acknowledge

so an acknowledged event is on disk, and an owner that takes the partition (after a move or a
crash) rebuilds its customers from the latest snapshot plus the events logged after it. This is
the one implementation of the partition's behaviour: the owner actor runs it, the tests drive it.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from typing import Any, Sequence

import orjson

from engine.attribution import BIT as OUTCOME_BIT, REC_VIA, Made, MadeLog, annotate, credited_outcome, new_recommendation_id, record_credit
from engine.catalog import CatalogUpdate
from engine.config import (AttributionConfig, OffersConfig, RankingConfig, RecArm, RecExperiment, fitted_ranking,
                           ranking_over)
from engine.decisioning import assign_arm
from engine.errors import NotFound
from engine.events import (COPIED_FROM, IDENTIFY, LINK_DONE_RECORD, LINK_RECORD, RESERVED_EVENT_ID_PREFIX, Event,
                           event_to_dict)
from engine.offers import OfferCatalog
from engine.queries import Filters, OfferQuery, RecommendQuery, SimilarQuery
from engine.state import CustomerState, apply_event, state_from_dict, state_to_dict
from actors.customer_table import CustomerTable
from actors.serving import Serving
from actors.shard_offers import LEARNED_KINDS, ShardOffers, catalog_from_toml
from actors.store import SqlEventStore
from recommenders.catalog_view import CatalogView
from recommenders.recommend import Recommendations, popular_answer, recommend, similar_items
from recommenders.runtime import ModelRuntime

log = logging.getLogger(__name__)


# store meta key: the offer catalogue (TOML) in force
OFFER_CATALOG_META = "offer_catalog_toml"


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_copy(event: Event) -> bool:
    """An event of a linked id, copied into its profile (engine/events.py COPIED_FROM)."""
    return bool(event.attributes) and any(key == COPIED_FROM for key, _ in event.attributes)


def copies_for_profile(events: Sequence[Event], alias: str, profile: str) -> list[Event]:
    """What ``alias`` did (its stored events), as the profile's: same event ids (a late re-delivery
    under the alias is a duplicate in the profile), marked with where they came from. The link's
    own records and the engine-made ids stay behind."""
    out = []
    for e in events:
        if e.event_type in (LINK_RECORD, LINK_DONE_RECORD, IDENTIFY) or e.event_id.startswith(RESERVED_EVENT_ID_PREFIX):
            continue
        attributes = tuple(sorted(dict(e.attributes, **{COPIED_FROM: alias}).items()))
        out.append(Event(e.event_id, profile, e.event_type, e.item_id, e.channel, e.timestamp_ms, e.session_id,
                         e.store_id, e.quantity, e.price, attributes))
    return out


class CustomerShardLogic:
    """The shard's behaviour without Ray, so it can be unit-tested and replayed."""

    def __init__(self, partition: int, serving: Serving | ModelRuntime, ranking: RankingConfig,
                 store: SqlEventStore, snapshot_every: int = 10_000, *, partitions: int = 1,
                 epoch: int | None = None, offers_config: OffersConfig = OffersConfig(),
                 offer_catalog: OfferCatalog | None = None, hot_customers: int = 50_000,
                 attribution: AttributionConfig = AttributionConfig(), experiment: RecExperiment | None = None):
        self.partition = partition
        # what the owner's partitions share (model, catalogue, bandit); a partition alone gets its own
        self.serving = serving if isinstance(serving, Serving) else Serving(serving)
        # the lease this partition is held under: every write checks it in its own transaction
        # (None: unfenced, a partition driven alone by a test or a tool)
        self.epoch = epoch
        self.offers = ShardOffers(partition, partitions, offers_config,
                                  offer_catalog or catalog_from_toml(None, "(none)"), bandit=self.serving.bandit)
        # the serve config's ranking; what a request is ranked with is `ranking_for_model` (the model's
        # fitted choices over it, config-file keys winning)
        self.ranking = ranking
        self._fitted: tuple[ModelRuntime, RankingConfig] | None = None
        self.store = store
        self.snapshot_every = snapshot_every
        self.customers = CustomerTable(hot_customers)
        self.last_seq = 0
        self.since_snapshot = 0
        # triggers: customer -> (when the cart counts as abandoned, the add_to_cart event id)
        self.abandon_due: dict[str, tuple[int, str]] = {}
        self.new_actions: list[dict[str, Any]] = []
        # actions the contact-frequency cap stopped (a metric), and those whose contact is stored
        # but which are not in the outbox yet (the store failed in between: sent at the next tick)
        self.capped_actions = 0
        self.contacted: set[str] = set()
        # ids of this partition linked to a customer's profile (identify events): id -> [profile,
        # copied (its history is in the profile), alias kind, when the link was stored (ms)]
        self.links: dict[str, list] = {}
        # the lists this partition answered with lately, for what impressions, clicks and purchases
        # are credited to (engine/attribution.py); the tier's budget shared by the partitions
        self.attribution = attribution
        self.made = MadeLog(max(100, attribution.lists_kept // partitions), int(attribution.window_minutes * 60_000))
        self.annotated_from: dict[int, Event] = {}
        self.experiment = experiment
        self._arm_rankings: dict[str, tuple[RankingConfig, RankingConfig]] = {}

    # -- durability -------------------------------------------------------------------------------
    def read_stored(self) -> dict[str, Any]:
        """What a recovery needs from the store (blocking reads; the owner runs them on its store
        thread): catalogue updates not applied yet, erased customers, the snapshot, the log after it."""
        snapshot = self.store.latest_snapshot(self.partition)
        return {"catalog": self.store.catalog_updates_after(self.serving.catalog_seq),
                "forgotten": self.store.forgotten_customers(), "snapshot": snapshot,
                "events": list(self.store.events_since(self.partition, snapshot[0] if snapshot else 0))}

    def rebuild(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Rebuild every customer of this partition from ``read_stored``'s snapshot and log (in
        memory only; the owner runs it on its event loop)."""
        started = time.perf_counter()
        self.customers.clear()
        self.last_seq = 0
        self.abandon_due = {}
        self.links = {}
        self.made.restore(None)
        # the catalogue first: events replayed below may name items it added
        applied = self.serving.apply_catalog_rows(stored["catalog"])
        self.serving.forget(stored["forgotten"])
        snapshot = stored["snapshot"]
        if snapshot is not None:
            self.last_seq, payload = snapshot
            body = orjson.loads(zlib.decompress(payload))
            for data in body["customers"]:
                state = state_from_dict(data)
                self.customers[state.customer_id] = state
            self.offers.restore(body.get("offers"))
            self.abandon_due = {c: (due, e) for c, (due, e) in body.get("abandon_due", {}).items()}
            self.links = {alias: list(entry) for alias, entry in body.get("links", {}).items()}
            self.made.restore(body.get("made"))
        for seq, event in stored["events"]:
            self._apply(event)
            self.last_seq = seq
        self.since_snapshot = len(stored["events"])
        return {"customers": len(self.customers), "replayed": len(stored["events"]),
                "from_snapshot": snapshot is not None, "catalog_updates": applied,
                "seconds": round(time.perf_counter() - started, 4)}

    def recover(self) -> dict[str, Any]:
        """Rebuild every customer of this partition from the latest snapshot plus the log after it."""
        return self.rebuild(self.read_stored())

    # the partition's writes, each checked against its lease (actors/store.py: _fence)
    def store_append(self, events: Sequence[Event]) -> list[int | None]:
        return self.store.append(self.partition, events, self.epoch)

    def store_snapshot(self, seq: int, payload: bytes) -> None:
        self.store.write_snapshot(self.partition, seq, payload, self.epoch)

    def store_actions(self, actions: Sequence[dict[str, Any]]) -> int:
        return self.store.append_actions(actions, self.partition, self.epoch)

    def stored_since_memory(self) -> list[tuple[int, Event]]:
        return list(self.store.events_since(self.partition, self.last_seq))

    def snapshot_payload(self) -> tuple[int, bytes]:
        body = {"customers": self.customers.snapshot_entries(), "offers": self.offers.snapshot(),
                "abandon_due": self.abandon_due, "links": self.links, "made": self.made.snapshot(_now_ms())}
        return self.last_seq, zlib.compress(orjson.dumps(body), 1)

    def write_snapshot(self) -> None:
        seq, payload = self.snapshot_payload()
        self.store_snapshot(seq, payload)
        self.since_snapshot = 0

    @property
    def model(self) -> ModelRuntime:
        return self.serving.model

    @property
    def view(self) -> CatalogView:
        return self.serving.view

    @property
    def catalog(self):
        return self.serving.catalog

    def switch_model(self, model: ModelRuntime) -> None:
        """Serve ``model`` from now on (Serving.switch: the customers erased here are unmapped in it)."""
        self.serving.switch(model)

    def _apply(self, event: Event) -> CustomerState | None:
        """Apply one stored event (a replay or a new one) to its customer; returns the customer
        (None: a link record, or an event stored under an id being linked, which the link copies)."""
        if event.event_type in (LINK_RECORD, LINK_DONE_RECORD):
            self._apply_link_record(event)
            return None
        if event.customer_id in self.links:
            return None
        state = self.customers.get(event.customer_id)
        if state is None:
            state = self.customers[event.customer_id] = CustomerState(event.customer_id)
        if self.view.new_index and event.item_id:
            self.view.observe(event.item_id, [item for item, _kind, _ts in state.recent])
        apply_event(state, event)
        credit = credited_outcome(event)
        if credit is not None:  # replayed too: the items it credited are not credited again
            state.rec_clicks = record_credit(state.rec_clicks or {}, self.made, event, *credit)
        self.offers.trim_history(state, event)
        if not is_copy(event):  # a copied show was counted against the budget where it was made
            self.offers.count(event)
        self._arm_triggers(state, event)
        return state

    # -- linked ids (identify events; the protocol is gateway/operations.py Operations.identify) ---------
    def _apply_link_record(self, event: Event) -> None:
        alias, attributes = event.customer_id, dict(event.attributes)
        if event.event_type == LINK_RECORD:
            self.links[alias] = [attributes["profile"], False, attributes.get("alias_kind", ""), event.timestamp_ms]
            # from here on the profile answers for the id: what it held is copied there
            self.customers.pop(alias, None)
            self.abandon_due.pop(alias, None)
            self.new_actions = [a for a in self.new_actions if a["customer_id"] != alias]
        elif alias in self.links:
            self.links[alias][1] = True

    def profile_of(self, customer_id: str) -> str | None:
        """The profile that answers for ``customer_id`` (None: it answers for itself)."""
        entry = self.links.get(customer_id)
        return entry[0] if entry is not None else None

    def pending_links(self) -> list[tuple[str, str, str, int]]:
        """(id, profile, kind, linked at) of the links whose copy into the profile is not known done."""
        return [(alias, entry[0], entry[2], entry[3]) for alias, entry in self.links.items() if not entry[1]]

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
        return self._within_contact_cap(actions, now_ms)

    def _within_contact_cap(self, actions: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        """The actions the contact-frequency cap allows now, each held as a pending contact until
        ``release_action_contacts`` (the others are dropped and counted: a marketing contact that
        is not sent is not sent later either)."""
        kept = []
        for action in actions:
            customer, channel = action["customer_id"], self.offers.action_channel(action)
            left = self.offers.contacts_left(customer, self.customers.get(customer), channel, now_ms)
            if action["action_id"] in self.contacted:  # its contact is stored already (a retry)
                left = None
            if left is not None:
                if left <= 0:
                    self.capped_actions += 1
                    continue
                self.offers.hold_contacts(customer, channel, 1)
            kept.append(action)
        return kept

    def release_action_contacts(self, actions: Sequence[dict[str, Any]]) -> None:
        if self.offers.config.contact_cap_per_channel:
            for action in actions:
                self.offers.release_contacts(action["customer_id"], self.offers.action_channel(action), 1)

    def apply_catalog(self, updates: Sequence[CatalogUpdate]) -> int:
        """Apply committed catalogue updates to the view; returns how many changed it."""
        return self.serving.apply_catalog(updates)

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
            if state is None or is_copy(event):  # learnt from (or followed up) where it first came in
                continue
            self._count_outcome(event)
            try:
                if event.event_type in LEARNED_KINDS:
                    self.offers.learn(event, state, self.model.customer_summary(event.customer_id))
                elif event.event_type == "purchase" and event.channel == "pos":
                    self._cross_sell(event)
            except Exception:  # noqa: BLE001 - learning and follow-ups are extras; the event is applied
                log.exception("partition %d: a follow-up of event %s failed", self.partition, event.event_id)
        return applied

    def _count_outcome(self, event: Event) -> None:
        """The online metrics of a newly stored event that a recommendation earned (or named in vain)."""
        credit = credited_outcome(event)
        if credit is not None:
            revenue = (event.price or 0.0) * event.quantity if event.event_type == "purchase" else 0.0
            self.serving.outcomes.credit(event.event_type, credit[1], revenue)
        else:
            why = dict(event.attributes).get(REC_VIA)
            if why:
                self.serving.outcomes.not_credited(event.event_type, why)

    def _annotated(self, events: list[Event]) -> list[Event]:
        """The events with what recommendation each is credited to written on them (annotate). An
        annotated event is a new value: ``self.annotated_from`` maps it back to the caller's, so the
        acknowledgement counts it in its caller's chunk (until the next screening)."""
        now, taken, out = _now_ms(), set(), []
        self.annotated_from = {}
        # the customers' last clicks as this batch leaves them: a click and the purchase after it may
        # come in one batch (copies: the state is only changed when the batch is applied)
        clicks: dict[str, dict] = {}
        window = int(self.attribution.purchase_window_hours * 3_600_000)
        for event in events:
            if event.event_type in OUTCOME_BIT and not is_copy(event):
                mine = clicks.get(event.customer_id)
                if mine is None:
                    state = self.customers.get(event.customer_id)
                    known = state.rec_clicks if state is not None else None
                    mine = clicks[event.customer_id] = {item: list(entry) for item, entry in (known or {}).items()}
                given = event
                event, why = annotate(event, self.made, mine, taken, now, window)
                credit = credited_outcome(event)
                if credit is not None:
                    record_credit(mine, None, event, *credit)
                if why in ("unknown", "repeat"):
                    event = dataclasses.replace(event, attributes=tuple(sorted(
                        dict(event.attributes, **{REC_VIA: why}).items())))
                if event is not given:
                    self.annotated_from[id(event)] = given
            out.append(event)
        return out

    def screen_events(self, events: list[Event]) -> tuple[list[Event], int]:
        """The events to store, and how many were ignored: an offer response counts only if it
        answers a show the engine made to that customer, and only its first answer (also within
        this batch); see ShardOffers.screen. Ignored responses are neither stored nor learnt from.
        Run before the store append, against the state the applied events left."""
        events = self._annotated(events)
        copies = [e for e in events if is_copy(e)]
        if not copies:
            return self.offers.screen(events, self.customers.get, _now_ms())
        # a linked id's history copied into its profile was screened when it first came in
        kept, ignored = self.offers.screen([e for e in events if not is_copy(e)], self.customers.get, _now_ms())
        keep = {id(e) for e in kept} | {id(e) for e in copies}
        return [e for e in events if id(e) in keep], ignored

    def acknowledge(self, chunks: Sequence[Sequence[Event]], kept: Sequence[Event],
                    seqs: Sequence[int | None]) -> list[tuple[int, int, int]]:
        """Apply the stored events (``kept``, as the store numbered them) and say per caller's
        chunk (accepted, duplicates, ignored). The write path's last step, shared by the actor's
        group commit (actors/shard_writer.py) and ``track``."""
        applied = self.apply_committed(kept, seqs)
        given, self.annotated_from = self.annotated_from, {}
        outcome = {id(given.get(id(event), event)): ok for event, ok in zip(kept, applied)}
        results = []
        for chunk in chunks:
            mine = [outcome[id(e)] for e in chunk if id(e) in outcome]
            results.append((sum(mine), len(mine) - sum(mine), len(chunk) - len(mine)))
        return results

    def track(self, events: Sequence[Event]) -> tuple[int, int]:
        """Screen, store, then apply, then report (accepted, duplicates): the synchronous path.
        Screened-out responses are in neither count (``offers.ignored_responses`` counts them)."""
        kept, _ = self.screen_events(list(events))
        accepted, duplicates, _ = self.acknowledge([events], kept, self.store_append(kept))[0]
        if self.since_snapshot >= self.snapshot_every:
            self.write_snapshot()
        return accepted, duplicates

    # -- reads ----------------------------------------------------------------------------------------
    def recommend(self, query: RecommendQuery, now_ms: int) -> Recommendations:
        """The customer's list, ranked as their experiment arm says (none: the served ranking)."""
        model = self.model
        state = self.customers.get(query.customer_id)
        ranking = self.ranking_for_model(model)
        arm = self.arm_of(query.customer_id, query.channel, query.placement)
        if arm is None:
            return recommend(model, state, query, ranking, now_ms, self.view)
        if arm.strategy == "popularity":
            result = popular_answer(self.view, state, query, ranking, "holdout")
        else:
            result = recommend(model, state, query, self._arm_ranking(arm, ranking), now_ms, self.view)
        return dataclasses.replace(result, strategy=arm.strategy, experiment_id=self.experiment.id, arm=arm.name)

    def arm_of(self, customer_id: str, channel: str, placement: str) -> RecArm | None:
        """The customer's arm of the recommendation experiment on this surface (None: not in one)."""
        experiment = self.experiment
        if experiment is None or not experiment.applies(channel, placement):
            return None
        return assign_arm(customer_id, experiment)

    def _arm_ranking(self, arm: RecArm, base: RankingConfig) -> RankingConfig:
        cached = self._arm_rankings.get(arm.name)
        if cached is None or cached[0] is not base:
            cached = self._arm_rankings[arm.name] = (base, ranking_over(base, arm.ranking))
        return cached[1]

    def remember(self, kind: str, customer_id: str, channel: str, placement: str, result: Recommendations,
                 now_ms: int) -> Recommendations:
        """``result`` with its recommendation id, the list remembered for what it earns."""
        rec_id = new_recommendation_id()
        items = tuple(i.item_id for i in result.items)
        if items:
            self.made.add(Made(rec_id, customer_id, now_ms, kind, channel, placement, result.strategy,
                               result.experiment_id, result.arm, result.model_version, items))
        self.serving.outcomes.served(kind, channel, placement, result.strategy, result.experiment_id, result.arm)
        return dataclasses.replace(result, recommendation_id=rec_id)

    def remember_offers(self, query: OfferQuery, reply: dict[str, Any], now_ms: int) -> dict[str, Any]:
        """A NextBestOffer reply with its recommendation id (its decision id); the offers made are
        remembered as a list, so impressions and clicks of them are credited like any list's."""
        offers = tuple(o["offer_id"] for o in reply["offers"])
        if offers:
            self.made.add(Made(reply["decision_id"], query.customer_id, now_ms, "offer", query.channel, query.placement,
                               reply["strategy"], reply["experiment_id"], reply["arm"], reply["catalog_version"],
                               offers))
            self.serving.outcomes.served("offer", query.channel, query.placement, reply["strategy"],
                                         reply["experiment_id"], reply["arm"])
        return {**reply, "recommendation_id": reply["decision_id"]}

    def ranking_for_model(self, model: ModelRuntime) -> RankingConfig:
        """The serve config's ranking with what ``model``'s training fitted to its data over it."""
        if self._fitted is None or self._fitted[0] is not model:
            self._fitted = (model, fitted_ranking(self.ranking, model.manifest.get("fitted")))
        return self._fitted[1]

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
        self.serving.forget([customer_id])
        self.serving.erased.add(customer_id)
        self.links.pop(customer_id, None)
        self.made.forget(customer_id)
        self.annotated_from = {}
        return self.customers.pop(customer_id, None) is not None

    def erase_stored(self, customer_id: str, principal: str) -> dict[str, Any]:
        """The store step of an erasure (one transaction, audited); run on the store thread."""
        had_state = customer_id in self.customers
        deleted = self.store.forget_customer(customer_id, partition=self.partition, epoch=self.epoch,
                                             principal=principal,
                                             detail={"had_live_state": had_state, "partition": self.partition})
        return {"customer_id": customer_id, "events_deleted": deleted, "live_state_erased": had_state}

    def forget(self, customer_id: str, principal: str) -> dict[str, Any]:
        """Erase the customer: stored events, live state, bundle rows, and every snapshot that
        held them (the synchronous path; the actor runs the same two steps through ShardWriter)."""
        report = self.erase_stored(customer_id, principal)
        self.forget_live(customer_id)
        self.write_snapshot()
        return report

    def live_state(self, customer_id: str) -> dict[str, Any] | None:
        """What memory holds of the customer: their state and the lists they were recommended lately."""
        state = self.customers.get(customer_id)
        lists = self.made.of_customer(customer_id)
        if state is None and not lists:
            return None
        return {**(state_to_dict(state) if state is not None else {"customer_id": customer_id}),
                "recommendations": lists}

    def export(self, customer_id: str, principal: str) -> dict[str, Any]:
        """Everything held about the customer, as JSON-able data."""
        return self.export_with(customer_id, principal, self.live_state(customer_id))

    def export_with(self, customer_id: str, principal: str, state: dict[str, Any] | None) -> dict[str, Any]:
        events = self.store.customer_events(customer_id)
        model = self.model.customer_record(customer_id)
        if state is None and not events and model is None:
            raise NotFound(f"customer {customer_id!r}: nothing is held about this customer")
        self.store.audit(principal, "export_customer", customer_id, {"events": len(events), "partition": self.partition})
        return {"customer_id": customer_id, "state": state, "events": [event_to_dict(e) for e in events],
                "model": model}

    def stats(self) -> dict[str, Any]:
        return {"partition": self.partition, "epoch": self.epoch, "customers": len(self.customers),
                "customers_unpacked": self.customers.hot_count, "last_seq": self.last_seq,
                "model_version": self.model.version, "catalog_items": len(self.catalog),
                "new_items": len(self.view.new_index), "lists_remembered": len(self.made),
                "lists_evicted_early": self.made.evicted_early}
