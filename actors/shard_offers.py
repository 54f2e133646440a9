"""A shard's next-best-offer side: the catalogue in force, the bandit, the per-shard budget.

Plain Python (no Ray), owned by CustomerShardLogic. A decision is turned into events
(offer_shown per offer made, offer_control for a control-arm customer) that the shard makes
durable and applies before it replies: the contact history that the caps read is then the
same whether the shard keeps running or restarts, and a later accept/decline (sent by the
channel with the decision id) finds its show.
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from engine.config import OffersConfig
from engine.decisioning import BanditState, DecisionContext, OfferHistory, decide
from engine.events import Event
from engine.offers import OfferCatalog, parse_catalog
from engine.queries import OfferQuery
from engine.state import CustomerState, consents, segment
from recommenders.catalog_view import CatalogView
from recommenders.offer_affinity import offer_affinity, offer_targets

EMPTY_CATALOG = {"version": "none", "offers": []}
LEARNED_KINDS = {"offer_shown": "shown", "offer_accepted": "accepted", "offer_declined": "declined"}


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


def _after_this_show(caps: Mapping[str, int]) -> dict[str, int]:
    """Caps left once the show this decision makes is counted (what the channel can still do)."""
    return {name: max(left - 1, 0) if name in ("per_customer_per_channel", "global_budget") else left
            for name, left in caps.items()}


class ShardOffers:
    def __init__(self, shard_id: int, num_shards: int, config: OffersConfig, catalog: OfferCatalog):
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.config = config
        self.catalog = catalog
        self.bandit = BanditState(catalog.bandit)
        # offer id -> times this shard showed it (the global budget is split across shards)
        self.shows: dict[str, int] = {}
        self._targets: tuple[Any, dict] | None = None

    def set_catalog(self, catalog: OfferCatalog) -> None:
        """A new catalogue version; what the bandit learnt (counts) is kept, under the new prior."""
        self.bandit.settings = catalog.bandit
        self.catalog = catalog
        self._targets = None

    # -- what events change ----------------------------------------------------------------------
    def count(self, event: Event) -> None:
        """Every stored offer_shown counts against this shard's budget (also when replayed)."""
        if event.event_type == "offer_shown":
            offer_id = dict(event.attributes)["offer_id"]
            self.shows[offer_id] = self.shows.get(offer_id, 0) + 1

    def learn(self, event: Event, state: CustomerState | None, trained: tuple[int, float, int] | None = None) -> None:
        """Live events only (not replays): the bandit's counts were shared when first seen."""
        kind = LEARNED_KINDS.get(event.event_type)
        if kind is None:
            return
        attributes = dict(event.attributes)
        seg = attributes.get("segment") or segment(state, event.timestamp_ms, trained)
        self.bandit.update(attributes["offer_id"], seg, kind)

    # -- deciding ------------------------------------------------------------------------------------
    def budget_left(self) -> dict[str, int]:
        left = {}
        for offer in self.catalog.offers:
            budget = offer.caps.global_budget
            if budget is not None:
                share = budget // self.num_shards + (1 if self.shard_id < budget % self.num_shards else 0)
                left[offer.id] = max(share - self.shows.get(offer.id, 0), 0)
        return left

    def _offer_targets(self, view: CatalogView) -> dict:
        if self._targets is None or self._targets[0] is not view:
            self._targets = (view, offer_targets(self.catalog, view))
        return self._targets[1]

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
            marketing_consent=consents(state, "marketing", self.config.default_marketing_consent))
        history = state.offers if state is not None and state.offers is not None else OfferHistory()
        affinity = offer_affinity(view, self._offer_targets(view), query.customer_id, state) if self.catalog.offers else {}
        decision = decide(self.catalog, ctx, history, self.bandit, affinity, self.budget_left(), query.n, rng)
        decision_id = uuid.uuid4().hex
        common = (("arm", decision.arm), ("decision_id", decision_id), ("experiment_id", decision.experiment_id),
                  ("segment", seg))
        events = []
        for n, offer in enumerate(decision.offers):
            attributes = tuple(sorted(common + (("offer_id", offer.offer_id), ("value", repr(offer.value)))))
            events.append(Event(event_id=f"{decision_id}-{n}", customer_id=query.customer_id,
                                event_type="offer_shown", item_id="", channel=query.channel, timestamp_ms=now_ms,
                                store_id=query.store_id, attributes=attributes))
        if decision.reason == "control_arm":
            events.append(Event(event_id=f"{decision_id}-control", customer_id=query.customer_id,
                                event_type="offer_control", item_id="", channel=query.channel,
                                timestamp_ms=now_ms, store_id=query.store_id, attributes=tuple(sorted(common))))
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
