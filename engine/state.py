"""A customer's live state and how one event changes it.

The shard actor owns many CustomerState objects and calls ``apply_event``; nothing else
mutates them. Everything here is plain Python so it can be tested, replayed (evaluation,
recovery) and reasoned about without Ray.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from engine.decisioning import OfferHistory, segment_of
from engine.events import EVENT_WEIGHTS, Event

# Live session signals kept per customer: enough for co-visitation, small enough that a
# shard holds many customers.
MAX_RECENT = 30
# Event ids remembered per customer so a retried delivery is applied once.
MAX_SEEN_EVENT_IDS = 256
# offer event type -> what the contact history calls it (offer_control is no contact)
OFFER_HISTORY_KIND = {"offer_shown": "shown", "offer_accepted": "accepted", "offer_declined": "declined"}


@dataclass(slots=True)
class Purchase:
    count: float
    last_ms: int


@dataclass(slots=True)
class CustomerState:
    """Everything the engine knows live about one customer, across channels."""

    customer_id: str
    # (item_id, event_type, timestamp_ms), newest last: views, cart adds, purchases.
    recent: deque = field(default_factory=lambda: deque(maxlen=MAX_RECENT))
    cart: dict[str, float] = field(default_factory=dict)
    purchases: dict[str, Purchase] = field(default_factory=dict)
    returned: set[str] = field(default_factory=set)
    # Implicit-feedback weight per item from live events (for folding in the customer's vector).
    interactions: dict[str, float] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    last_event_ms: int = 0
    event_count: int = 0
    seen_event_ids: OrderedDict = field(default_factory=OrderedDict)
    # purpose -> granted; a purpose never mentioned falls back to the configured default
    consent: dict[str, bool] = field(default_factory=dict)
    # orders (distinct purchase sessions) and spend, for the customer's lifecycle segment
    orders: int = 0
    spend: float = 0.0
    last_order: str = ""
    # offers shown, accepted, declined: the contact policy's memory (None until the first)
    offers: OfferHistory | None = None

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.seen_event_ids


def apply_event(state: CustomerState, event: Event) -> bool:
    """Apply ``event`` to ``state``. Returns False (and changes nothing) for a duplicate id."""
    if state.has_seen(event.event_id):
        return False
    state.seen_event_ids[event.event_id] = None
    if len(state.seen_event_ids) > MAX_SEEN_EVENT_IDS:
        state.seen_event_ids.popitem(last=False)

    item, kind, ts = event.item_id, event.event_type, event.timestamp_ms
    if kind == "consent":
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
        count = (previous.count if previous else 0.0) + (event.quantity if kind == "purchase" else 1.0)
        state.purchases[item] = Purchase(count=count, last_ms=max(ts, previous.last_ms if previous else 0))
        state.cart.pop(item, None)
        state.returned.discard(item)
        if kind == "purchase":
            order = event.session_id or event.event_id
            if order != state.last_order:
                state.orders += 1
                state.last_order = order
            if event.price is not None:
                state.spend += event.price * event.quantity
    elif kind == "return":
        state.returned.add(item)
        state.interactions.pop(item, None)
    elif kind in OFFER_HISTORY_KIND:
        attributes = dict(event.attributes)
        if state.offers is None:
            state.offers = OfferHistory()
        state.offers.record(attributes["offer_id"], event.channel, OFFER_HISTORY_KIND[kind], ts)

    weight = EVENT_WEIGHTS[kind]
    if weight > 0:
        state.interactions[item] = state.interactions.get(item, 0.0) + weight
        state.recent.append((item, kind, ts))
    state.channels[event.channel] = state.channels.get(event.channel, 0) + 1
    state.last_event_ms = max(state.last_event_ms, ts)
    state.event_count += 1
    return True


def segment(state: CustomerState | None, now_ms: int) -> str:
    """The customer's lifecycle segment now (engine.decisioning.segment_of)."""
    if state is None:
        return segment_of(0, 0.0, None)
    last = max((p.last_ms for p in state.purchases.values()), default=None)
    days = None if last is None else max(now_ms - last, 0) / 86_400_000
    return segment_of(state.orders, state.spend, days)


def consents(state: CustomerState | None, purpose: str, default: bool) -> bool:
    """Whether the customer allows ``purpose`` (personalization, marketing)."""
    if state is None:
        return default
    return state.consent.get(purpose, default)


def state_to_dict(state: CustomerState) -> dict:
    """A JSON-able snapshot of ``state`` (the inverse of state_from_dict)."""
    return {
        "customer_id": state.customer_id,
        "recent": [list(r) for r in state.recent],
        "cart": state.cart,
        "purchases": {item: [p.count, p.last_ms] for item, p in state.purchases.items()},
        "returned": sorted(state.returned),
        "interactions": state.interactions,
        "channels": state.channels,
        "last_event_ms": state.last_event_ms,
        "event_count": state.event_count,
        "seen_event_ids": list(state.seen_event_ids),
        "consent": state.consent,
        "orders": state.orders,
        "spend": state.spend,
        "last_order": state.last_order,
        "offers": state.offers.to_list() if state.offers is not None else None,
    }


def state_from_dict(data: dict) -> CustomerState:
    state = CustomerState(data["customer_id"])
    state.recent.extend(tuple(r) for r in data["recent"])
    state.cart = dict(data["cart"])
    state.purchases = {item: Purchase(count, last) for item, (count, last) in data["purchases"].items()}
    state.returned = set(data["returned"])
    state.interactions = dict(data["interactions"])
    state.channels = dict(data["channels"])
    state.last_event_ms = data["last_event_ms"]
    state.event_count = data["event_count"]
    state.seen_event_ids = OrderedDict((e, None) for e in data["seen_event_ids"])
    state.consent = dict(data.get("consent", {}))
    state.orders = data.get("orders", 0)
    state.spend = data.get("spend", 0.0)
    state.last_order = data.get("last_order", "")
    if data.get("offers") is not None:
        state.offers = OfferHistory.from_list(data["offers"])
    return state
