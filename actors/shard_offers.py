"""A shard's next-best-offer side: the catalogue in force, the bandit, the per-shard budget.

Plain Python (no Ray), owned by CustomerShardLogic. A decision is turned into events
(offer_shown per offer made, offer_control per offer withheld from a control-arm customer, each
with the offer's target items for the experiment read-out: engine/offer_log.py) that the shard
makes durable and applies before it replies: the contact history that the caps read is then the
same whether the shard keeps running or restarts, and a later accept/decline (sent by the
channel with the decision id) finds its show. Only such a response counts (``screen``): one that
names no show made to that customer, or answers a show a second time, is ignored, so a client
cannot steer the bandit with made-up decisions.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Mapping, Sequence

from engine.config import OffersConfig
from engine.decisioning import BanditState, DecisionContext, OfferHistory, decide, is_marketing
from engine.events import ACTION_CONTACT, OFFER_EVENT_TYPES, RESERVED_EVENT_ID_PREFIX, Event
from engine.offers import DAY_MS, OfferCatalog, parse_catalog
from engine.queries import OfferQuery
from engine.state import CustomerState, consents, contacts_since, segment
from recommenders.catalog_view import CatalogView
from recommenders.offer_affinity import offer_affinity, offer_targets

EMPTY_CATALOG = {"version": "none", "offers": []}
LEARNED_KINDS = {"offer_shown": "shown", "offer_accepted": "accepted", "offer_declined": "declined"}
RESPONSE_TYPES = frozenset({"offer_accepted", "offer_declined"})
# An exposure event carries at most this many target item ids (and at most this many characters
# of them): the offer's target_items first, then its categories' most popular items.
MAX_EXPOSURE_TARGETS = 50
MAX_EXPOSURE_TARGETS_CHARS = 4000


def catalog_from_toml(text: str | None, source: str) -> OfferCatalog:
    import tomllib

    from engine.errors import InvalidArgument

    if not text:
        return parse_catalog(EMPTY_CATALOG, source="(no offer catalogue)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{source}: not valid TOML: {exc}") from None
    return parse_catalog(data, source=source)


def outcome_targets(catalog: OfferCatalog, view: CatalogView) -> dict[str, str]:
    """Offer id -> its target item ids as the JSON list an exposure event carries (bounded)."""
    model = view.model
    by_category: dict[str, list[str]] = {}
    if any(offer.target_categories for offer in catalog.offers):
        for i in model.popular_order.tolist():
            by_category.setdefault(view.category[i], []).append(str(model.item_ids[i]))
    out = {}
    for offer in catalog.offers:
        candidates = list(offer.target_items)
        for category in offer.target_categories:
            candidates.extend(by_category.get(category, ())[:MAX_EXPOSURE_TARGETS])
        items: list[str] = []
        size = 2
        for item in dict.fromkeys(candidates):
            size += len(json.dumps(item)) + 1
            if len(items) == MAX_EXPOSURE_TARGETS or size > MAX_EXPOSURE_TARGETS_CHARS:
                break
            items.append(item)
        out[offer.id] = json.dumps(items, separators=(",", ":"))
    return out


def _after_this_show(caps: Mapping[str, int]) -> dict[str, int]:
    """Caps left once the show this decision makes is counted (what the channel can still do)."""
    return {name: max(left - 1, 0) if name in ("per_customer_per_channel", "global_budget") else left
            for name, left in caps.items()}


class ShardOffers:
    def __init__(self, partition: int, partitions: int, config: OffersConfig, catalog: OfferCatalog,
                 bandit: BanditState | None = None):
        self.partition = partition
        self.partitions = partitions
        self.config = config
        self.catalog = catalog
        # one per owner process, shared by its partitions (actors/serving.py)
        self.bandit = bandit if bandit is not None else BanditState()
        self.bandit.settings = catalog.bandit
        # offer id -> times this partition showed it (the global budget is split across partitions)
        self.shows: dict[str, int] = {}
        # offer responses screened out since start (a metric: made-up or repeated answers)
        self.ignored_responses = 0
        self._targets: tuple[Any, dict] | None = None
        self._outcome_targets: tuple[Any, dict] | None = None
        # (customer, channel) -> contacts decided but not applied yet (shows being stored, actions
        # being sent): counted by the contact cap, so two decisions at once cannot both take the last
        self.pending_contacts: dict[tuple[str, str], int] = {}

    # -- the contact-frequency cap (OffersConfig.contact_cap_per_channel) ------------------------------
    def contacts_left(self, customer_id: str, state: CustomerState | None, channel: str, now_ms: int) -> int | None:
        """Marketing contacts the customer may still get in ``channel`` now; None: no cap."""
        cap = self.config.contact_cap_per_channel
        if cap == 0:
            return None
        since = now_ms - int(self.config.contact_cap_period_days * DAY_MS)
        used = contacts_since(state, channel, since) + self.pending_contacts.get((customer_id, channel), 0)
        return max(0, cap - used)

    def hold_contacts(self, customer_id: str, channel: str, count: int) -> None:
        if count:
            key = (customer_id, channel)
            self.pending_contacts[key] = self.pending_contacts.get(key, 0) + count

    def release_contacts(self, customer_id: str, channel: str, count: int) -> None:
        key = (customer_id, channel)
        left = self.pending_contacts.get(key, 0) - count
        if left > 0:
            self.pending_contacts[key] = left
        else:
            self.pending_contacts.pop(key, None)

    def action_channel(self, action: Mapping[str, Any]) -> str:
        return action.get("channel") or self.config.action_channel

    def action_contacts(self, actions: Sequence[Mapping[str, Any]], now_ms: int) -> list[Event]:
        """The contact records of actions going out (when a cap is on): stored and applied before
        the actions, so the cap counts them from then on, also after a restart."""
        if self.config.contact_cap_per_channel == 0:
            return []
        return [Event(f"{RESERVED_EVENT_ID_PREFIX}contact:{a['action_id']}", a["customer_id"], ACTION_CONTACT, "",
                      self.action_channel(a), now_ms, attributes=(("action_id", a["action_id"]), ("kind", a["kind"])))
                for a in actions]

    @staticmethod
    def contact_count(events: Sequence[Event]) -> int:
        """How many of a decision's exposure events are marketing contacts."""
        return sum(1 for e in events if ("contact", "1") in e.attributes)

    def set_catalog(self, catalog: OfferCatalog) -> None:
        """A new catalogue version; what the bandit learnt (counts) is kept, under the new prior."""
        self.bandit.settings = catalog.bandit
        self.catalog = catalog
        self._targets = None
        self._outcome_targets = None

    # -- what events change ----------------------------------------------------------------------
    def count(self, event: Event) -> None:
        """Every stored offer_shown counts against this shard's budget (also when replayed)."""
        if event.event_type == "offer_shown":
            offer_id = dict(event.attributes)["offer_id"]
            self.shows[offer_id] = self.shows.get(offer_id, 0) + 1

    def trim_history(self, state: CustomerState, event: Event) -> None:
        """After an offer event is applied: drop the history no cap of the catalogue in force can
        look at (engine.decisioning.OfferHistory.trim). The clock is the event's own timestamp when
        the engine wrote it (offer_shown: the decision's clock); a response, whose timestamp the
        client chose, trims by count only, so it can never age the shows out early."""
        if state.offers is None or event.event_type not in OFFER_EVENT_TYPES:
            return
        state.offers.trim(self.catalog, event.timestamp_ms if event.event_type == "offer_shown" else None,
                          keep_decisions=self.config.answerable_shows,
                          decision_window_ms=int(self.config.response_window_days * DAY_MS))

    def screen(self, events: Sequence[Event], state_of: Callable[[str], CustomerState | None],
               now_ms: int = 0) -> tuple[list[Event], int]:
        """The events to store, and how many responses were ignored. An offer_accepted /
        offer_declined is kept only if it answers a show the engine made to that same customer
        (its decision id and offer id, among the customer's last ``answerable_shows`` shows, at
        most ``response_window_days`` after it) and is the first answer to it, also within this
        batch. A re-delivery of the first answer (same event id) is kept: the store recognises it
        as a duplicate. Everything else passes (clients cannot send offer_shown: parse_event).
        The window is judged at the later of the response's own timestamp and ``now_ms`` (the
        shard's clock), so a response backdated by its client cannot reopen an old show."""
        window_ms = int(self.config.response_window_days * DAY_MS)
        answered: dict[tuple[str, str, str], str] = {}
        kept: list[Event] = []
        ignored = 0
        for event in events:
            if event.event_type in RESPONSE_TYPES:
                attributes = dict(event.attributes)
                key = (event.customer_id, attributes.get("decision_id", ""), attributes.get("offer_id", ""))
                first = answered.get(key)
                if first is not None:
                    ok = first == event.event_id
                else:
                    state = state_of(event.customer_id)
                    history = state.offers if state is not None else None
                    ok = history is not None and history.answerable(key[1], key[2], event.event_id,
                                                                    max(event.timestamp_ms, now_ms), window_ms)
                    if ok:
                        answered[key] = event.event_id
                if not ok:
                    ignored += 1
                    continue
            kept.append(event)
        self.ignored_responses += ignored
        return kept, ignored

    def marketing_allowed(self, state: CustomerState | None) -> bool:
        """Whether the customer allows marketing (an action, a cross-sell, an offer that needs it)."""
        return consents(state, "marketing", self.config.default_marketing_consent)

    def learn(self, event: Event, state: CustomerState | None, trained: tuple[int, float, int] | None = None) -> None:
        """Live events only (not replays): the bandit's counts were shared when first seen. Only
        screened responses get here (``screen``)."""
        kind = LEARNED_KINDS.get(event.event_type)
        if kind is None:
            return
        attributes = dict(event.attributes)
        if kind != "shown":
            # a second line of defence behind ``screen``: learn from a response only if it is the
            # recorded first answer of a show made to this customer
            history = state.offers if state is not None else None
            shown = history.decisions.get((attributes.get("decision_id", ""), attributes.get("offer_id", ""))) \
                if history is not None else None
            if shown is None or shown[1] != event.event_id:
                return
        seg = attributes.get("segment") or segment(state, event.timestamp_ms, trained)
        self.bandit.update(attributes["offer_id"], seg, kind)

    # -- deciding ------------------------------------------------------------------------------------
    def budget_left(self) -> dict[str, int]:
        left = {}
        for offer in self.catalog.offers:
            budget = offer.caps.global_budget
            if budget is not None:
                share = budget // self.partitions + (1 if self.partition < budget % self.partitions else 0)
                left[offer.id] = max(share - self.shows.get(offer.id, 0), 0)
        return left

    def _offer_targets(self, view: CatalogView) -> dict:
        if self._targets is None or self._targets[0] is not view:
            self._targets = (view, offer_targets(self.catalog, view))
        return self._targets[1]

    def _exposure_targets(self, view: CatalogView) -> dict:
        if self._outcome_targets is None or self._outcome_targets[0] is not view:
            self._outcome_targets = (view, outcome_targets(self.catalog, view))
        return self._outcome_targets[1]

    def decide(self, query: OfferQuery, state: CustomerState | None, view: CatalogView, now_ms: int,
               rng: Any) -> tuple[dict[str, Any], list[Event]]:
        """The decision as a plain dict (for the reply) and the events that record it."""
        basket = query.basket or tuple((item, qty, None) for item, qty in (state.cart.items() if state else ()))
        priced = []
        for item, qty, price in basket:
            if price is None:
                i = view.index_of(item)
                known = view.price[i] if i is not None else float("nan")
                price = None if known != known else float(known)
            priced.append((item, qty, price))
        seg = segment(state, now_ms, view.model.customer_summary(query.customer_id))
        ctx = DecisionContext(
            customer_id=query.customer_id, channel=query.channel, now_ms=now_ms, store_id=query.store_id,
            country=query.country, segment=seg, basket=tuple(priced),
            basket_value=sum(q * p for _, q, p in priced if p is not None),
            purchased_items=(frozenset(state.purchases) if state else frozenset())
            | view.model.purchased_item_ids(query.customer_id),
            item_categories={item: view.category[i] for item, _, _ in priced
                             if (i := view.index_of(item)) is not None and view.category[i]},
            marketing_consent=self.marketing_allowed(state),
            contacts_left=self.contacts_left(query.customer_id, state, query.channel, now_ms))
        history = state.offers if state is not None and state.offers is not None else OfferHistory()
        affinity = offer_affinity(view, self._offer_targets(view), query.customer_id, state) if self.catalog.offers else {}
        decision = decide(self.catalog, ctx, history, self.bandit, affinity, self.budget_left(), query.n, rng)
        decision_id = uuid.uuid4().hex
        common = (("arm", decision.arm), ("decision_id", decision_id), ("experiment_id", decision.experiment_id),
                  ("segment", seg))
        events = []
        # an experiment's exposures carry the offers' target items: the outcome every arm is measured on
        targets = self._exposure_targets(view) if decision.experiment_id else {}

        def exposure(kind: str, event_id: str, offer: Any) -> Event:
            known = self.catalog.by_id.get(offer.offer_id)
            contact = "0" if known is not None and not is_marketing(known, query.channel) else "1"
            extra = (("contact", contact), ("offer_id", offer.offer_id), ("value", repr(offer.value)))
            if offer.offer_id in targets:
                extra += (("targets", targets[offer.offer_id]),)
            return Event(event_id=event_id, customer_id=query.customer_id, event_type=kind, item_id="",
                         channel=query.channel, timestamp_ms=now_ms, store_id=query.store_id,
                         attributes=tuple(sorted(common + extra)))

        for n, offer in enumerate(decision.offers):
            events.append(exposure("offer_shown", f"{decision_id}-{n}", offer))
        # control: one exposure per offer withheld, as a treated customer would have had its shows
        for n, offer in enumerate(decision.withheld):
            events.append(exposure("offer_control", f"{decision_id}-control-{n}", offer))
        reply = {
            "decision_id": decision_id, "reason": decision.reason, "strategy": decision.strategy,
            "experiment_id": decision.experiment_id, "arm": decision.arm, "segment": seg,
            "catalog_version": self.catalog.version,
            "offers": [{"offer_id": o.offer_id, "name": o.name, "score": round(o.score, 6),
                        "propensity": round(o.propensity, 6), "value": o.value, "affinity": round(o.affinity, 6),
                        "passed_rules": list(o.passed_rules), "caps_left": _after_this_show(o.caps_left)}
                       for o in decision.offers],
            "rejected": dict(decision.rejected),
        }
        return reply, events

    def snapshot(self) -> dict[str, Any]:
        return {"shows": self.shows}

    def restore(self, data: Mapping[str, Any] | None) -> None:
        self.shows = dict((data or {}).get("shows", {}))
