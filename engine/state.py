"""A customer's live state and how one event changes it.

The shard actor owns many CustomerState objects and calls ``apply_event``; nothing else
mutates them. Everything here is plain Python so it can be tested, replayed (evaluation,
recovery) and reasoned about without Ray.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from engine.decisioning import OfferHistory, segment_of
from engine.events import ACTION_CONTACT, EVENT_WEIGHTS, IDENTIFY, Event
from engine.rules import DAY_MS

# Live session signals kept per customer: enough for co-visitation, small enough that a
# shard holds many customers.
MAX_RECENT = 30
# the contact-frequency cap counts at most this many contacts per channel (OffersConfig allows no more)
MAX_CONTACTS = 64
# offer event type -> what the contact history calls it. A control exposure (an offer withheld
# from a control-arm customer) counts as a contact for the caps and cool-downs, so both arms move
# through the catalogue the same way (else treated customers are capped off offer A onto B while
# control customers are withheld A for ever, and the arms are scored on different targets); it is
# never answerable, since nothing was shown.
OFFER_HISTORY_KIND = {"offer_shown": "shown", "offer_accepted": "accepted", "offer_declined": "declined",
                      "offer_control": "shown"}


@dataclass(slots=True)
class Purchase:
    count: float
    last_ms: int


@dataclass(slots=True)
class CustomerState:
    """Everything the engine knows live about one customer, across channels.

    Kept small: a shard holds many of these (engine figures: benchmarks/memory_per_customer.py).
    A retried delivery is recognised by the store (unique customer + event id), so no event ids
    are kept here; rarely used parts (returns, consent, offers) stay None until needed."""

    customer_id: str
    # (item_id, event_type, timestamp_ms), newest last, at most MAX_RECENT: views, cart adds, purchases.
    recent: list = field(default_factory=list)
    cart: dict[str, float] = field(default_factory=dict)
    purchases: dict[str, Purchase] = field(default_factory=dict)
    returned: set[str] | None = None
    # Implicit-feedback weight per item from live events (for folding in the customer's vector).
    interactions: dict[str, float] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    last_event_ms: int = 0
    event_count: int = 0
    # purpose -> granted; a purpose never mentioned falls back to the configured default
    consent: dict[str, bool] | None = None
    # orders (distinct purchase sessions) and spend, for the customer's lifecycle segment
    orders: int = 0
    spend: float = 0.0
    last_order: str = ""
    # offers shown and declined, and the shows a response may answer: the contact policy's and
    # the response screening's memory (None until the first), trimmed by the shard to the caps
    offers: OfferHistory | None = None
    # marketing contacts per channel (offers shown that need marketing consent, actions sent), their
    # times, the newest MAX_CONTACTS: what the contact-frequency cap counts
    contacts: dict[str, list[int]] | None = None
    # the other ids linked to this customer by identify events: id -> its kind ("" if not given)
    linked: dict[str, str] | None = None
    # the customer's last clicks on recommended items: item -> [list id, click ms, outcomes credited
    # (engine.attribution.BIT), the list's labels]; what a later add-to-cart or purchase is credited to
    rec_clicks: dict[str, list] | None = None


def apply_event(state: CustomerState, event: Event) -> None:
    """Apply ``event`` to ``state``. Re-deliveries are the caller's to drop: the store knows them
    (unique customer + event id), so the state keeps no event ids."""
    # one string object per item and kind, shared by every customer who touches it
    item, kind, ts = sys.intern(event.item_id), sys.intern(event.event_type), event.timestamp_ms
    if kind == IDENTIFY:
        attributes = dict(event.attributes)
        if state.linked is None:
            state.linked = {}
        state.linked[attributes["alias_id"]] = attributes.get("alias_kind", "")
    elif kind == "consent":
        if state.consent is None:
            state.consent = {}
        for purpose, value in event.attributes:
            state.consent[purpose] = value == "granted"
    elif kind == "add_to_cart":
        state.cart[item] = state.cart.get(item, 0.0) + event.quantity
    elif kind == "remove_from_cart":
        left = state.cart.get(item, 0.0) - event.quantity
        if left > 0:
            state.cart[item] = left
        else:
            state.cart.pop(item, None)
    elif kind in ("purchase", "rate"):
        # A rating means the item was consumed: for exclusion it counts as bought.
        previous = state.purchases.get(item)
        # purchases of the item, not units: a trade customer's 144 mugs are one repeat, as in the
        # trained history (one per purchase line), so live and trained counts add up on one scale
        count = (previous.count if previous else 0.0) + 1.0
        state.purchases[item] = Purchase(count=count, last_ms=max(ts, previous.last_ms if previous else 0))
        state.cart.pop(item, None)
        if state.returned:
            state.returned.discard(item)
        if kind == "purchase":
            order = event.session_id or event.event_id
            if order != state.last_order:
                state.orders += 1
                state.last_order = order
            if event.price is not None:
                state.spend += event.price * event.quantity
    elif kind == "return":
        if state.returned is None:
            state.returned = set()
        state.returned.add(item)
        state.interactions.pop(item, None)
    elif kind == ACTION_CONTACT:
        _record_contact(state, event.channel, ts)
    elif kind in OFFER_HISTORY_KIND:
        attributes = dict(event.attributes)
        # a show (or a control exposure, so that both arms meet the same cap) of an offer that is
        # marketing; "contact" is "0" for a service offer (no consent needed, not a direct channel)
        if kind in ("offer_shown", "offer_control") and attributes.get("contact") != "0":
            _record_contact(state, event.channel, ts)
        if state.offers is None:
            state.offers = OfferHistory()
        # the decision id makes a show answerable, and marks a response as its show's answer
        answerable = kind != "offer_control"
        state.offers.record(attributes["offer_id"], event.channel, OFFER_HISTORY_KIND[kind], ts,
                            decision_id=attributes.get("decision_id", "") if answerable else "",
                            event_id=event.event_id)

    weight = EVENT_WEIGHTS[kind]
    if weight > 0:
        state.interactions[item] = state.interactions.get(item, 0.0) + weight
        state.recent.append((item, kind, ts))
        if len(state.recent) > MAX_RECENT:
            del state.recent[0]
    channel = sys.intern(event.channel)
    state.channels[channel] = state.channels.get(channel, 0) + 1
    state.last_event_ms = max(state.last_event_ms, ts)
    state.event_count += 1


def _record_contact(state: CustomerState, channel: str, ts: int) -> None:
    if state.contacts is None:
        state.contacts = {}
    times = state.contacts.setdefault(sys.intern(channel), [])
    times.append(ts)
    if len(times) > MAX_CONTACTS:
        times.sort()
        del times[0]


def contacts_since(state: CustomerState | None, channel: str, since_ms: int) -> int:
    """The customer's marketing contacts in ``channel`` at or after ``since_ms``."""
    if state is None or state.contacts is None:
        return 0
    return sum(1 for t in state.contacts.get(channel, ()) if t >= since_ms)


def segment(state: CustomerState | None, now_ms: int, trained: tuple[int, float, int] | None = None) -> str:
    """The customer's lifecycle segment now (engine.decisioning.segment_of), from live state plus
    ``trained`` = (orders, spend, last purchase ms) of the history the model was trained on."""
    orders, spend, last = trained if trained is not None else (0, 0.0, 0)
    if state is not None:
        orders, spend = orders + state.orders, spend + state.spend
        last = max([last] + [p.last_ms for p in state.purchases.values()])
    days = None if not last else max(now_ms - last, 0) / DAY_MS
    return segment_of(orders, spend, days)


def consents(state: CustomerState | None, purpose: str, default: bool) -> bool:
    """Whether the customer allows ``purpose`` (personalization, marketing)."""
    if state is None or state.consent is None:
        return default
    return state.consent.get(purpose, default)


def state_to_dict(state: CustomerState) -> dict:
    """A JSON-able snapshot of ``state`` (the inverse of state_from_dict)."""
    return {
        "customer_id": state.customer_id,
        "recent": [list(r) for r in state.recent],
        "cart": state.cart,
        "purchases": {item: [p.count, p.last_ms] for item, p in state.purchases.items()},
        "returned": sorted(state.returned or ()),
        "interactions": state.interactions,
        "channels": state.channels,
        "last_event_ms": state.last_event_ms,
        "event_count": state.event_count,
        "consent": state.consent,
        "orders": state.orders,
        "spend": state.spend,
        "last_order": state.last_order,
        "offers": state.offers.to_list() if state.offers is not None else None,
        "linked": state.linked,
        "contacts": state.contacts,
        "rec_clicks": state.rec_clicks,
    }


def state_from_dict(data: dict) -> CustomerState:
    state = CustomerState(data["customer_id"])
    state.recent = [(sys.intern(i), sys.intern(k), t) for i, k, t in data["recent"]]
    state.cart = dict(data["cart"])
    state.purchases = {item: Purchase(count, last) for item, (count, last) in data["purchases"].items()}
    state.returned = set(data["returned"]) or None
    state.interactions = dict(data["interactions"])
    state.channels = dict(data["channels"])
    state.last_event_ms = data["last_event_ms"]
    state.event_count = data["event_count"]
    state.consent = dict(data["consent"]) if data.get("consent") else None
    state.orders = data.get("orders", 0)
    state.spend = data.get("spend", 0.0)
    state.last_order = data.get("last_order", "")
    if data.get("offers") is not None:
        state.offers = OfferHistory.from_list(data["offers"])
    if data.get("contacts"):
        state.contacts = {channel: list(times) for channel, times in data["contacts"].items()}
    if data.get("linked"):
        state.linked = dict(data["linked"])
    if data.get("rec_clicks"):
        state.rec_clicks = {item: list(entry) for item, entry in data["rec_clicks"].items()}
    return state
