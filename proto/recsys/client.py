"""A Python client for the engine's gRPC API, sync and asyncio (installed with the project).

    from recsys.client import Client, Event

    with Client("127.0.0.1:9000", api_key=KEY) as recsys:
        recsys.track([Event("e1", "17850", "add_to_cart", item_id="22423")])
        for item in recsys.recommend("17850", k=5).items:
            print(item.item_id, item.score, item.reasons)

    async with AsyncClient("127.0.0.1:9000", api_key=KEY) as recsys:
        answer = await recsys.recommend("17850", k=5)

Every call has a deadline (``timeout`` seconds, per client or per call) and carries the API key and
the routing key (``x-session-id``: the customer the call is about, so the service's front sends it
straight to the customer's owner). Calls that are safe to repeat (Recommend, SimilarItems,
TrackEvents, whose event ids make a repeat a duplicate, ForgetCustomer, ExportCustomer,
UpdateCatalog) are retried on UNAVAILABLE with doubling backoff, ``retries`` times at most;
NextBestOffer is not (a repeat would be a second decision). A failure raises ``RecsysClientError``
with the gRPC code's name and the server's message.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
import orjson

from recsys.v1 import recsys_pb2 as pb
from recsys.v1 import recsys_pb2_grpc as pb_grpc

ROUTING_KEY = "x-session-id"


class RecsysClientError(Exception):
    """A call that failed: ``code`` is the gRPC status name (INVALID_ARGUMENT, UNAVAILABLE, ...)."""

    def __init__(self, code: str, message: str, attempts: int = 1):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.attempts = code, message, attempts


@dataclass(frozen=True)
class Item:
    item_id: str
    score: float
    reasons: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True)
class Recommendations:
    items: tuple[Item, ...]
    model_version: str
    personalized: bool = False
    reasons: tuple[str, ...] = ()
    request_id: str = ""
    # send it with impression / click events (attributes={"recommendation_id": ...}) to credit this list
    recommendation_id: str = ""
    strategy: str = ""
    experiment_id: str = ""
    arm: str = ""


@dataclass(frozen=True)
class Event:
    """One customer event (see the README's event types and channels)."""

    event_id: str
    customer_id: str
    event_type: str
    item_id: str = ""
    channel: str = "web"
    quantity: float | None = None
    price: float | None = None
    session_id: str = ""
    store_id: str = ""
    timestamp_ms: int = 0
    attributes: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> pb.Event:
        return pb.Event(event_id=self.event_id, customer_id=self.customer_id, event_type=self.event_type,
                        item_id=self.item_id, channel=self.channel, quantity=self.quantity, price=self.price,
                        session_id=self.session_id, store_id=self.store_id, timestamp_ms=self.timestamp_ms,
                        attributes=dict(self.attributes))


@dataclass(frozen=True)
class TrackResult:
    accepted: int
    duplicates: int
    ignored: int = 0


@dataclass(frozen=True)
class Offer:
    offer_id: str
    name: str
    score: float
    propensity: float
    value: float
    affinity: float
    passed_rules: tuple[str, ...]
    caps_left: Mapping[str, int]


@dataclass(frozen=True)
class OfferDecision:
    decision_id: str
    offers: tuple[Offer, ...]
    reason: str
    strategy: str
    segment: str
    experiment_id: str = ""
    arm: str = ""
    recommendation_id: str = ""


def _items(items) -> tuple[Item, ...]:
    return tuple(Item(i.item_id, i.score, tuple(i.reasons), i.name) for i in items)


def _filters(filters: Mapping[str, Any] | None) -> pb.Filters | None:
    return pb.Filters(**filters) if filters else None


@dataclass(frozen=True)
class _Call:
    """One RPC as both clients make it: its request, routing key, whether a repeat is safe, and how
    its response becomes the typed result."""

    rpc: str
    request: Any
    routing_key: str | None
    idempotent: bool
    result: Callable[[Any], Any]


def _recommend(customer_id, k, channel, cart, current_item_id, country, filters, store_id, placement) -> _Call:
    context = pb.Context(cart_item_ids=list(cart), current_item_id=current_item_id, country=country)
    request = pb.RecommendRequest(customer_id=customer_id, k=k, channel=channel, store_id=store_id, context=context,
                                  filters=_filters(filters), placement=placement)
    return _Call("Recommend", request, customer_id, True, lambda r: Recommendations(
        _items(r.items), r.model_version, r.personalized, tuple(r.reasons), r.request_id, r.recommendation_id,
        r.strategy, r.experiment_id, r.arm))


def _similar(item_id, k, customer_id, channel, filters, placement) -> _Call:
    request = pb.SimilarItemsRequest(item_id=item_id, k=k, customer_id=customer_id, channel=channel,
                                     filters=_filters(filters), placement=placement)
    return _Call("SimilarItems", request, customer_id or None, True,
                 lambda r: Recommendations(_items(r.items), r.model_version, request_id=r.request_id,
                                           recommendation_id=r.recommendation_id, strategy="similar_items"))


def _track(events: Sequence[Event]) -> _Call:
    customers = {e.customer_id for e in events}
    request = pb.TrackEventsRequest(events=[e.to_proto() for e in events])
    return _Call("TrackEvents", request, customers.pop() if len(customers) == 1 else None, True,
                 lambda r: TrackResult(r.accepted, r.duplicates, r.ignored))


def _next_best_offer(customer_id, channel, basket, n, country, store_id, placement) -> _Call:
    lines = [pb.BasketLine(item_id=line[0], quantity=line[1] if len(line) > 1 else None,
                           unit_price=line[2] if len(line) > 2 else None) for line in basket]
    request = pb.NextBestOfferRequest(customer_id=customer_id, channel=channel, basket=lines, n=n, country=country,
                                      store_id=store_id, placement=placement)

    def decision(r) -> OfferDecision:
        offers = tuple(Offer(o.offer_id, o.name, o.score, o.propensity, o.value, o.affinity, tuple(o.passed_rules),
                             dict(o.caps_left)) for o in r.offers)
        return OfferDecision(r.decision_id, offers, r.reason, r.strategy, r.segment, r.experiment_id, r.arm,
                             r.recommendation_id)

    # not idempotent: a repeat would be a second decision (and a second show counted against the caps)
    return _Call("NextBestOffer", request, customer_id, False, decision)


def _forget(customer_id) -> _Call:
    return _Call("ForgetCustomer", pb.ForgetCustomerRequest(customer_id=customer_id), customer_id, True,
                 lambda r: r.events_deleted)


def _export(customer_id) -> _Call:
    return _Call("ExportCustomer", pb.ExportCustomerRequest(customer_id=customer_id), customer_id, True,
                 lambda r: orjson.loads(r.export_json))


class _Base:
    """What both clients share: the key, the deadline, the retry policy and every call's shape;
    ``self._do(call, timeout)`` (blocking or awaited) runs one."""

    def __init__(self, target: str, api_key: str | None, timeout: float, retries: int, backoff: float):
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError("retries >= 0, timeout > 0 and backoff >= 0")
        self.target, self.api_key, self.timeout, self.retries, self.backoff = target, api_key, timeout, retries, backoff

    def _metadata(self, routing_key: str | None) -> tuple:
        metadata = []
        if self.api_key:
            metadata.append(("authorization", f"Bearer {self.api_key}"))
        if routing_key:
            metadata.append((ROUTING_KEY, routing_key))
        return tuple(metadata)

    def _retry(self, call: _Call, exc: grpc.RpcError, attempt: int) -> float:
        """Seconds to wait before the next attempt, or raise the error as RecsysClientError."""
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE and call.idempotent and attempt < self.retries:
            return self.backoff * (2 ** attempt) * (0.5 + random.random() / 2)
        raise RecsysClientError(code.name, exc.details() or "", attempt + 1) from None

    def recommend(self, customer_id: str, k: int = 10, *, channel: str = "web", cart: Iterable[str] = (),
                  current_item_id: str = "", country: str = "", filters: Mapping[str, Any] | None = None,
                  store_id: str = "", placement: str = "", timeout: float | None = None):
        """Top k for the customer now -> Recommendations (awaitable on AsyncClient)."""
        return self._do(_recommend(customer_id, k, channel, cart, current_item_id, country, filters, store_id,
                                   placement), timeout)

    def similar_items(self, item_id: str, k: int = 10, *, customer_id: str = "", channel: str = "web",
                      filters: Mapping[str, Any] | None = None, placement: str = "", timeout: float | None = None):
        """Items like ``item_id`` (the customer's cart left out when given) -> Recommendations."""
        return self._do(_similar(item_id, k, customer_id, channel, filters, placement), timeout)

    def track(self, events: Sequence[Event], *, timeout: float | None = None):
        """Store and apply events, all or none -> TrackResult."""
        return self._do(_track(events), timeout)

    def next_best_offer(self, customer_id: str, *, channel: str = "web", basket: Iterable[tuple] = (), n: int = 1,
                        country: str = "", store_id: str = "", placement: str = "", timeout: float | None = None):
        """Which offer(s) now -> OfferDecision. ``basket``: (item_id[, quantity[, unit_price]]) lines."""
        return self._do(_next_best_offer(customer_id, channel, basket, n, country, store_id, placement), timeout)

    def forget(self, customer_id: str, *, timeout: float | None = None):
        """Erase the customer everywhere -> the number of stored events deleted."""
        return self._do(_forget(customer_id), timeout)

    def export(self, customer_id: str, *, timeout: float | None = None):
        """Everything held about the customer -> a dict."""
        return self._do(_export(customer_id), timeout)


class Client(_Base):
    """The blocking client. One gRPC channel; close it (or use ``with``)."""

    def __init__(self, target: str, api_key: str | None = None, *, timeout: float = 2.0, retries: int = 3,
                 backoff: float = 0.05, credentials: grpc.ChannelCredentials | None = None):
        super().__init__(target, api_key, timeout, retries, backoff)
        self.channel = (grpc.secure_channel(target, credentials) if credentials is not None
                        else grpc.insecure_channel(target))
        self.stub = pb_grpc.PersonalizationStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _do(self, call: _Call, timeout: float | None):
        for attempt in range(self.retries + 1):
            try:
                response = getattr(self.stub, call.rpc)(call.request, timeout=timeout or self.timeout,
                                                        metadata=self._metadata(call.routing_key))
                return call.result(response)
            except grpc.RpcError as exc:
                time.sleep(self._retry(call, exc, attempt))


class AsyncClient(_Base):
    """The asyncio client (grpc.aio): the same calls, awaited."""

    def __init__(self, target: str, api_key: str | None = None, *, timeout: float = 2.0, retries: int = 3,
                 backoff: float = 0.05, credentials: grpc.ChannelCredentials | None = None):
        super().__init__(target, api_key, timeout, retries, backoff)
        self.channel = (grpc.aio.secure_channel(target, credentials) if credentials is not None
                        else grpc.aio.insecure_channel(target))
        self.stub = pb_grpc.PersonalizationStub(self.channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _do(self, call: _Call, timeout: float | None):
        for attempt in range(self.retries + 1):
            try:
                response = await getattr(self.stub, call.rpc)(call.request, timeout=timeout or self.timeout,
                                                              metadata=self._metadata(call.routing_key))
                return call.result(response)
            except grpc.RpcError as exc:
                await asyncio.sleep(self._retry(call, exc, attempt))
