"""Customer events: the one value type every channel sends, and how raw input becomes one.

``parse_event`` is the only way an event enters the engine. It checks every field and
raises InvalidArgument naming the field; ``parse_batch`` checks a whole batch before any of
it is applied, so a rejected batch leaves nothing behind.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.errors import InvalidArgument
from engine.validation import (parse_whole_batch, reject_unknown, require_choice, require_id, require_int,
                               require_number)

# impression and click: a recommended list (or an item of it) was shown, an item of it picked; with
# attribute recommendation_id (from the answer) they are credited to that list (engine/attribution.py),
# as add_to_cart and purchase may be. They say nothing of taste (weight 0): a click's page is a view.
ITEM_EVENT_TYPES = frozenset({"view", "add_to_cart", "remove_from_cart", "purchase", "return", "rate", "impression",
                              "click"})
# what a client may not write on an event: the engine's record of what a recommendation earned
CREDIT_ATTRIBUTES = frozenset({"attributed_to", "rec_via", "rec_list", "rec_position", "rec_strategy",
                               "rec_experiment", "rec_arm", "rec_model", "rec_channel", "rec_placement"})
# A consent event carries no item: attributes {"personalization": "granted"|"denied",
# "marketing": "granted"|"denied"} (either or both).
# Offer events carry no item: attributes {"offer_id", "decision_id"} (from the NextBestOffer reply)
# and, written by the engine itself, experiment_id, arm, segment, value. The engine records
# offer_shown (and offer_control for a control-arm customer) when it decides; channels send
# offer_accepted / offer_declined.
OFFER_EVENT_TYPES = frozenset({"offer_shown", "offer_accepted", "offer_declined", "offer_control"})
# Exposures are the engine's record of its own decisions (caps, budgets, bandit trials,
# experiments): a client that could send them could reset or forge all four.
ENGINE_ONLY_EVENT_TYPES = frozenset({"offer_shown", "offer_control"})
# An identify event links another id of the same person (a web cookie, an app device, a loyalty card,
# a hashed e-mail address, a chat handle) to the customer it names: attributes {"alias_id": the other
# id, "alias_kind": what it is (optional, a name like a channel's)}, no item. From then on that id's
# history, session, cart and offers are the customer's profile's, and every event and request under
# it applies to the profile (gateway/operations.py: Operations.identify). An id that is linked to a
# profile cannot be claimed by another one (Conflict), and a profile is never linked into another.
IDENTIFY = "identify"
EVENT_TYPES = ITEM_EVENT_TYPES | {"consent"} | OFFER_EVENT_TYPES | {IDENTIFY}
# What a partition writes itself, under the linked id, when it links it (actors/shard.py): where the
# id points ("profile" attribute) and, once its history was copied into the profile, that the copy is
# done. Never accepted from a client (not in EVENT_TYPES); fixed event ids, so each is stored once.
LINK_RECORD = "alias_of"
LINK_DONE_RECORD = "alias_done"
RESERVED_EVENT_ID_PREFIX = "recsys:"
LINK_RECORD_ID = RESERVED_EVENT_ID_PREFIX + "alias_of"
LINK_DONE_RECORD_ID = RESERVED_EVENT_ID_PREFIX + "alias_done"
# What a partition writes when a triggered action (cart abandonment, cross-sell) goes out: a marketing
# contact in the action's channel, counted by the contact-frequency cap with the offers shown.
ACTION_CONTACT = "action_contact"
# the attribute that marks an event copied from a linked id into its profile (the id it came from):
# copies are applied to the profile's state but not counted again against budgets or learnt from again
COPIED_FROM = "linked_from"
CONSENT_PURPOSES = frozenset({"personalization", "marketing"})
CONSENT_VALUES = frozenset({"granted", "denied"})
# what the triggers put in the outbox (actors/shard.py), for SubscribeActions, /v1/actions and webhooks
ACTION_KINDS = frozenset({"cart_abandonment", "cross_sell"})
# The channels events and requests may name. `channels` in the serve config adds to these without a
# contract change (the contract's channel is a string): `configure_channels` sets them in a process,
# and the processes of the service read them from RECSYS_CHANNELS (the driver sets it for Ray's
# workers). Always read as ``events.CHANNELS`` (not imported by name), so a configured set is seen.
DEFAULT_CHANNELS = frozenset({"web", "app", "pos", "email", "push", "call_center", "kiosk", "sms", "chatbot",
                              "social"})
CHANNEL_ENV = "RECSYS_CHANNELS"
CHANNEL_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _channels(extra) -> frozenset[str]:
    extra = [c for c in extra if c]
    bad = [c for c in extra if not isinstance(c, str) or not CHANNEL_PATTERN.match(c)]
    if bad:
        raise InvalidArgument(f"channels: {bad[0]!r} is not a channel name (a-z, 0-9, _; up to 32, a letter first)")
    return DEFAULT_CHANNELS | frozenset(extra)


def configure_channels(extra) -> frozenset[str]:
    """Add ``extra`` channels to the defaults in this process and in the Ray workers it starts."""
    global CHANNELS
    CHANNELS = _channels(extra)
    os.environ[CHANNEL_ENV] = ",".join(sorted(CHANNELS - DEFAULT_CHANNELS))
    return CHANNELS


CHANNELS = _channels(os.environ.get(CHANNEL_ENV, "").split(","))

# How much one event says about a customer's taste, as implicit-feedback confidence.
# Training (recommenders/training.py) and live fold-in use the same table, so a live
# add-to-cart moves a customer's vector exactly as one in the training log would.
EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 0.25,
    "add_to_cart": 0.5,
    "remove_from_cart": 0.0,
    "purchase": 1.0,
    "return": 0.0,
    "rate": 1.0,
    "impression": 0.0,
    "click": 0.0,
    "consent": 0.0,
    "offer_shown": 0.0,
    "offer_accepted": 0.0,
    "offer_declined": 0.0,
    "offer_control": 0.0,
    IDENTIFY: 0.0,
    ACTION_CONTACT: 0.0,
}

MAX_QUANTITY = 1_000_000.0
MAX_PRICE = 1_000_000_000.0
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_LENGTH = 256
# Clocks drift; a timestamp further ahead than this is a bug or an attack.
MAX_FUTURE_SKEW_MS = 24 * 3600 * 1000
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01

EVENT_FIELDS = frozenset(
    {"event_id", "customer_id", "session_id", "event_type", "item_id", "quantity", "price",
     "channel", "store_id", "timestamp_ms", "attributes"}
)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a customer did, in one channel, at one time."""

    event_id: str
    customer_id: str
    event_type: str
    item_id: str
    channel: str
    timestamp_ms: int
    session_id: str = ""
    store_id: str = ""
    quantity: float = 1.0
    price: float | None = None
    attributes: tuple[tuple[str, str], ...] = field(default=())

    def __reduce__(self):
        # pickled as its constructor's arguments: events cross between processes (an owner
        # forwarding a batch's share), and the dataclass's own slots state is a third slower
        return (Event, (self.event_id, self.customer_id, self.event_type, self.item_id, self.channel,
                        self.timestamp_ms, self.session_id, self.store_id, self.quantity, self.price,
                        self.attributes))


def parse_event(raw: Any, now_ms: int, where: str = "event") -> Event:
    """Validate one raw event (a mapping of field -> value) into an Event. The engine-only types
    (offer_shown, offer_control) are refused: the engine records those itself when it decides."""
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: must be an object")
    reject_unknown(raw, EVENT_FIELDS, where)
    event_type = require_choice(raw.get("event_type"), f"{where}.event_type", EVENT_TYPES)
    if event_type in ENGINE_ONLY_EVENT_TYPES:
        raise InvalidArgument(f"{where}.event_type: {event_type} is recorded by the engine itself when "
                              "NextBestOffer decides; clients send offer_accepted or offer_declined with the "
                              "reply's decision_id and offer_id")
    quantity = raw.get("quantity")
    quantity = 1.0 if quantity is None else require_number(
        quantity, f"{where}.quantity", low=0.0, high=MAX_QUANTITY, low_inclusive=False)
    price = raw.get("price")
    if price is not None:
        price = require_number(price, f"{where}.price", low=0.0, high=MAX_PRICE)
    timestamp_ms = raw.get("timestamp_ms")
    if timestamp_ms is None or timestamp_ms == 0:
        timestamp_ms = now_ms
    else:
        timestamp_ms = require_int(timestamp_ms, f"{where}.timestamp_ms",
                                   low=MIN_TIMESTAMP_MS, high=now_ms + MAX_FUTURE_SKEW_MS)
    attributes = _parse_attributes(raw.get("attributes"), f"{where}.attributes")
    is_consent = event_type == "consent"
    if is_consent:
        _check_consent(attributes, raw.get("item_id"), where)
    is_offer = event_type in OFFER_EVENT_TYPES
    if is_offer:
        _check_offer(event_type, attributes, where)
    customer_id = require_id(raw.get("customer_id"), f"{where}.customer_id")
    is_identify = event_type == IDENTIFY
    if is_identify:
        _check_identify(customer_id, attributes, raw.get("item_id"), where)
    elif COPIED_FROM in dict(attributes):
        raise InvalidArgument(f"{where}.attributes.{COPIED_FROM}: is the engine's own mark of a linked id's copied "
                              "history; clients do not send it")
    forged = CREDIT_ATTRIBUTES.intersection(dict(attributes))
    if forged:
        raise InvalidArgument(f"{where}.attributes.{min(forged)}: is the engine's own record of what a recommendation "
                              "earned; send recommendation_id (from the answer) only")
    if "recommendation_id" in dict(attributes):
        require_id(dict(attributes)["recommendation_id"], f"{where}.attributes.recommendation_id")
    event_id = require_id(raw.get("event_id"), f"{where}.event_id")
    if event_id.startswith(RESERVED_EVENT_ID_PREFIX):
        raise InvalidArgument(f"{where}.event_id: ids starting with {RESERVED_EVENT_ID_PREFIX!r} are the engine's own")
    return Event(
        event_id=event_id,
        customer_id=customer_id,
        session_id=require_id(raw.get("session_id"), f"{where}.session_id", required=False),
        event_type=event_type,
        item_id=require_id(raw.get("item_id"), f"{where}.item_id", required=not (is_consent or is_offer or is_identify)),
        channel=require_choice(raw.get("channel"), f"{where}.channel", CHANNELS),
        store_id=require_id(raw.get("store_id"), f"{where}.store_id", required=False),
        quantity=quantity,
        price=price,
        timestamp_ms=timestamp_ms,
        attributes=attributes,
    )


def _check_consent(attributes: tuple[tuple[str, str], ...], item_id: Any, where: str) -> None:
    if item_id not in (None, ""):
        raise InvalidArgument(f"{where}.item_id: a consent event carries no item")
    given = dict(attributes)
    if not given or set(given) - CONSENT_PURPOSES:
        raise InvalidArgument(f"{where}.attributes: a consent event needs one or both of "
                              f"{sorted(CONSENT_PURPOSES)}, and nothing else")
    for purpose, value in given.items():
        if value not in CONSENT_VALUES:
            raise InvalidArgument(f"{where}.attributes.{purpose}: must be 'granted' or 'denied'")


def _check_identify(customer_id: str, attributes: tuple[tuple[str, str], ...], item_id: Any, where: str) -> None:
    if item_id not in (None, ""):
        raise InvalidArgument(f"{where}.item_id: an identify event carries no item")
    given = dict(attributes)
    if set(given) - {"alias_id", "alias_kind"}:
        raise InvalidArgument(f"{where}.attributes: an identify event takes alias_id (the other id of this customer) "
                              "and, optionally, alias_kind, and nothing else")
    alias = require_id(given.get("alias_id"), f"{where}.attributes.alias_id")
    if alias == customer_id:
        raise InvalidArgument(f"{where}.attributes.alias_id: is the customer's own id; name the other id to link")
    kind = given.get("alias_kind", "")
    if kind and not CHANNEL_PATTERN.match(kind):
        raise InvalidArgument(f"{where}.attributes.alias_kind: {kind[:40]!r} is not a kind name "
                              "(a-z, 0-9, _; up to 32, a letter first: cookie, device, card, email, ...)")


def _check_offer(event_type: str, attributes: tuple[tuple[str, str], ...], where: str) -> None:
    given = dict(attributes)
    needed = ("decision_id",) if event_type == "offer_control" else ("decision_id", "offer_id")
    for name in needed:
        require_id(given.get(name), f"{where}.attributes.{name}")
    if "value" in given:
        try:
            value = float(given["value"])
        except ValueError:
            raise InvalidArgument(f"{where}.attributes.value: must be a number") from None
        require_number(value, f"{where}.attributes.value", low=0.0, high=MAX_PRICE)


def _parse_attributes(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: must be an object of string -> string")
    if len(raw) > MAX_ATTRIBUTES:
        raise InvalidArgument(f"{where}: at most {MAX_ATTRIBUTES} entries")
    pairs = []
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(f"{where}: keys and values must be strings")
        if len(key) > MAX_ATTRIBUTE_LENGTH or len(value) > MAX_ATTRIBUTE_LENGTH:
            raise InvalidArgument(f"{where}: keys and values at most {MAX_ATTRIBUTE_LENGTH} characters")
        pairs.append((key, value))
    return tuple(sorted(pairs))


def parse_batch(raw_events: Any, now_ms: int, max_events: int) -> list[Event]:
    """Validate a whole batch; any bad event rejects all of it (nothing is half-applied)."""
    return parse_whole_batch(raw_events, "events", max_events, lambda raw, where: parse_event(raw, now_ms, where))


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-able form of an event (what the durable store keeps)."""
    return {
        "event_id": event.event_id, "customer_id": event.customer_id, "event_type": event.event_type,
        "item_id": event.item_id, "channel": event.channel, "timestamp_ms": event.timestamp_ms,
        "session_id": event.session_id, "store_id": event.store_id, "quantity": event.quantity,
        "price": event.price, "attributes": dict(event.attributes),
    }


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Inverse of event_to_dict, for events that were validated before they were stored."""
    fields_ = dict(data)
    fields_["attributes"] = tuple(sorted(fields_.get("attributes", {}).items()))
    return Event(**fields_)
