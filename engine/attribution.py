"""Recommendation ids and what they earn.

Every Recommend, SimilarItems (for a customer) and NextBestOffer answer is remembered by the
customer's partition for a while (``MadeLog``): its id, the customer, when, where (channel and
placement), how (list kind, strategy, experiment, arm, model version) and the items in order.
Events may then name the id (attribute ``recommendation_id``):

- ``impression`` (the list, or an item of it, was on screen) and ``click`` (the customer picked an
  item of it): credited to that list and the item's position, if the engine made that list for
  that customer, the item is in it, and it was made at most ``window_minutes`` before;
- ``add_to_cart`` and ``purchase``: likewise with an id; without one, credited to the customer's
  last click on that item from a recommendation within ``purchase_window_hours`` (from any
  channel: a click on the web, a purchase at the till).

Each (list, item, outcome) is credited once: a second impression of the same item of the same
list, a second purchase, counts nothing. The shard writes what it credited onto the event before
storing it (``annotate``: ``attributed_to`` and the ``rec_*`` attributes), so the stored log is the
record (`recsys experiments report` reads it back; a replay after a crash marks the same items
credited again) and a client cannot forge it (events.parse_event refuses those attributes).
Impressions and clicks are not taste signals (weight 0): the page a click opens is a ``view``.
"""
from __future__ import annotations

import dataclasses
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.events import CREDIT_ATTRIBUTES, Event

IMPRESSION, CLICK = "impression", "click"
ATTRIBUTION_EVENT_TYPES = frozenset({IMPRESSION, CLICK})
# what a list earns, in funnel order; the bit each takes in a list's per-item record
OUTCOMES = ("impression", "click", "add_to_cart", "purchase")
BIT = {outcome: 1 << i for i, outcome in enumerate(OUTCOMES)}
REC_ID = "recommendation_id"
# the engine's own annotations of a credited event (never accepted from a client)
ATTRIBUTED_TO = "attributed_to"
LABELS = ("rec_list", "rec_position", "rec_strategy", "rec_experiment", "rec_arm", "rec_model", "rec_channel",
          "rec_placement")
REC_VIA = "rec_via"  # "id": the event named the list; "click": the customer's last click on the item
# events.parse_event refuses these from clients
assert CREDIT_ATTRIBUTES == {ATTRIBUTED_TO, REC_VIA, *LABELS}
# the last clicks per customer a later add-to-cart or purchase may be credited to
MAX_CLICKS = 20
# lists remembered per customer (the newest): one customer's requests cannot push out everyone's
LISTS_PER_CUSTOMER = 16
LIST_KINDS = ("recommend", "similar", "offer")


def new_recommendation_id() -> str:
    return "r" + secrets.token_hex(8)


@dataclass(slots=True)
class Made:
    """One list the engine answered with."""

    rec_id: str
    customer_id: str
    made_ms: int
    kind: str           # recommend, similar, offer
    channel: str
    placement: str
    strategy: str
    experiment: str
    arm: str
    model: str
    items: tuple[str, ...]
    # item -> the outcomes already credited to it (BIT flags)
    credited: dict[str, int] = field(default_factory=dict)

    def labels(self, position: int) -> tuple[str, ...]:
        """The LABELS values of the item at ``position`` (1-based)."""
        return (self.kind, str(position), self.strategy, self.experiment, self.arm, self.model, self.channel,
                self.placement)

    def to_list(self) -> list:
        return [self.rec_id, self.customer_id, self.made_ms, self.kind, self.channel, self.placement, self.strategy,
                self.experiment, self.arm, self.model, list(self.items), self.credited]

    @classmethod
    def from_list(cls, row: list) -> "Made":
        return cls(*row[:10], tuple(row[10]), dict(row[11]))


class MadeLog:
    """A partition's recent lists, oldest first: at most ``keep``, at most LISTS_PER_CUSTOMER of one
    customer (their newest), none older than ``window_ms``. ``evicted_early``: lists dropped for room
    before their window was over (a sign ``[attribution] lists_kept`` is too small for the traffic)."""

    def __init__(self, keep: int, window_ms: int):
        self.keep, self.window_ms = keep, window_ms
        self._lists: OrderedDict[str, Made] = OrderedDict()
        self._of: dict[str, list[str]] = {}
        self.evicted_early = 0

    def __len__(self) -> int:
        return len(self._lists)

    def add(self, made: Made) -> None:
        self._lists[made.rec_id] = made
        mine = self._of.setdefault(made.customer_id, [])
        mine.append(made.rec_id)
        if len(mine) > LISTS_PER_CUSTOMER:
            self._lists.pop(mine.pop(0), None)
        self._trim(made.made_ms)

    def _drop_oldest(self) -> Made:
        _rec, made = self._lists.popitem(last=False)
        mine = self._of.get(made.customer_id)
        if mine is not None:
            if made.rec_id in mine:
                mine.remove(made.rec_id)
            if not mine:
                del self._of[made.customer_id]
        return made

    def _trim(self, now_ms: int) -> None:
        lists = self._lists
        while lists and len(lists) > self.keep:
            if self._drop_oldest().made_ms >= now_ms - self.window_ms:
                self.evicted_early += 1
        while lists and next(iter(lists.values())).made_ms < now_ms - self.window_ms:
            self._drop_oldest()

    def get(self, rec_id: str, now_ms: int) -> Made | None:
        made = self._lists.get(rec_id)
        if made is None or made.made_ms < now_ms - self.window_ms:
            return None
        return made

    def forget(self, customer_id: str) -> int:
        """Drop the customer's lists (an erasure); returns how many."""
        return len(self.take(customer_id))

    def take(self, customer_id: str, new_owner: str | None = None) -> list[list]:
        """Remove the customer's lists and return them (``to_list`` rows), as ``new_owner``'s when
        given: a linked id's lists go to its profile's partition."""
        taken = [self._lists.pop(rec) for rec in self._of.pop(customer_id, []) if rec in self._lists]
        rows = [made.to_list() for made in taken]
        if new_owner is not None:
            for row in rows:
                row[1] = new_owner
        return rows

    def adopt(self, rows: Iterable[list]) -> None:
        """Lists handed over from another partition (``take``)."""
        for row in sorted(rows, key=lambda r: r[2]):
            self.add(Made.from_list(row))

    def of_customer(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's remembered lists (an export)."""
        return [{"recommendation_id": m.rec_id, "made_ms": m.made_ms, "list": m.kind, "channel": m.channel,
                 "placement": m.placement, "strategy": m.strategy, "experiment_id": m.experiment, "arm": m.arm,
                 "model_version": m.model, "item_ids": list(m.items)}
                for m in self._lists.values() if m.customer_id == customer_id]

    def snapshot(self, now_ms: int) -> list[list]:
        self._trim(now_ms)
        return [made.to_list() for made in self._lists.values()]

    def restore(self, rows: Iterable[list] | None) -> None:
        self._lists, self._of = OrderedDict(), {}
        for row in rows or ():
            made = Made.from_list(row)
            self._lists[made.rec_id] = made
            self._of.setdefault(made.customer_id, []).append(made.rec_id)


def credited_outcome(event: Event) -> tuple[str, tuple[str, ...]] | None:
    """(list id, LABELS values) of an event the engine credited to a list, else None."""
    attributes = dict(event.attributes)
    rec = attributes.get(ATTRIBUTED_TO)
    if not rec or event.event_type not in BIT:
        return None
    return rec, tuple(attributes.get(name, "") for name in LABELS)


def annotate(event: Event, log: MadeLog, clicks: dict | None, taken: set, now_ms: int,
             purchase_window_ms: int) -> tuple[Event, str]:
    """``event`` as it is to be stored, with what it is credited to written on it, and why it is
    (or is not): "id", "click", or a reason it is not ("unknown", "repeat"; "" when there was
    nothing to credit). ``clicks`` is the customer's CustomerState.rec_clicks; ``taken`` the
    (list, item, outcome) credited earlier in the same batch (updated here)."""
    kind = event.event_type
    bit = BIT.get(kind)
    if bit is None:
        return event, ""
    attributes = dict(event.attributes)
    rec_id = attributes.get(REC_ID)
    item = event.item_id
    click = (clicks or {}).get(item)
    made = log.get(rec_id, now_ms) if rec_id else None
    if made is not None and made.customer_id == event.customer_id and item in made.items:
        if (made.credited.get(item, 0) & bit or (rec_id, item, bit) in taken
                or (click is not None and click[0] == rec_id and click[2] & bit)):
            return event, "repeat"
        labels, via = made.labels(made.items.index(item) + 1), "id"
    elif kind in ("add_to_cart", "purchase") and click is not None and (not rec_id or click[0] == rec_id):
        # no id, or the list it names is no longer remembered: the customer's last click on the item
        named = rec_id
        rec_id, clicked_ms, flags, labels = click
        listed = log.get(rec_id, now_ms)
        if (not 0 <= event.timestamp_ms - clicked_ms <= purchase_window_ms or flags & bit
                or (rec_id, item, bit) in taken or (listed is not None and listed.credited.get(item, 0) & bit)):
            return event, "repeat" if named and flags & bit else ("unknown" if named else "")
        via = "click"
    else:
        return event, "unknown" if rec_id else ""
    taken.add((rec_id, item, bit))
    attributes.update(zip(LABELS, tuple(labels)))
    attributes[ATTRIBUTED_TO] = rec_id
    attributes[REC_VIA] = via
    return dataclasses.replace(event, attributes=tuple(sorted(attributes.items()))), via


def record_credit(clicks: dict, log: MadeLog | None, event: Event, rec_id: str, labels: tuple[str, ...]) -> dict:
    """Mark ``event``'s outcome credited to ``rec_id`` in the customer's ``clicks`` (a click becomes
    the item's last click) and in ``log``; returns ``clicks``."""
    bit, item = BIT[event.event_type], event.item_id
    if log is not None:
        made = log._lists.get(rec_id)
        if made is not None:
            made.credited[item] = made.credited.get(item, 0) | bit
    entry = clicks.get(item)
    if event.event_type == CLICK:
        clicks.pop(item, None)
        clicks[item] = [rec_id, event.timestamp_ms, bit | (entry[2] if entry and entry[0] == rec_id else 0),
                        list(labels)]
        while len(clicks) > MAX_CLICKS:
            del clicks[next(iter(clicks))]
    elif entry is not None and entry[0] == rec_id:
        entry[2] |= bit
    return clicks
