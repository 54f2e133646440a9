"""What every RPC does once it is admitted and parsed, whichever process answers it.

``Operations`` turns a request body (the JSON shape; gRPC messages are mapped to it by
gateway/codec.py) into a domain query, validates it with the one parser in engine/, and asks an
``Owners`` for the answer. Two kinds of ``Owners``:

- ``RemoteOwners``: every request goes to its partition's owner through the placement's routes
  (gateway/routing.py), resent after a move. The ingress replicas (HTTP, streams, gRPC calls that
  carry no customer) answer this way.
- ``LocalFirst``: in a partition owner. A request for one of its own partitions is answered in
  this process, with no hop at all; one for a partition it does not hold (the caller's routes were
  stale, or the request carried no routing key) is forwarded once, through ``RemoteOwners`` to the
  owner that holds it. The owner called that way answers from its own partitions only, never
  forwarding again: a request is forwarded at most once, and a resend after a move goes from the
  forwarding owner, not along a chain. Every forward is counted (``recsys_forwarded_requests``).
"""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import ray

from engine.auth import ApiKey, AuthConfig
from engine.catalog import parse_updates
from engine.config import ServeConfig
from engine.errors import Conflict, Linked, PartitionMoved, RecsysError, Unavailable
from engine.events import IDENTIFY, RESERVED_EVENT_ID_PREFIX, Event, parse_batch
from engine.queries import OfferQuery, RecommendQuery, SimilarQuery, parse_offer_query, parse_recommend, parse_similar
from engine.sharding import partition_for
from engine.validation import require_id
from gateway.coalesce import PerOwner
from gateway.metrics import Metrics
from gateway.routing import Routes

log = logging.getLogger("ray.serve")

# a request's deadline for reaching its partition's owner, moves included
SHARD_TIMEOUT_S = 10.0
# health turns NOT_SERVING when a partition has had no owner this long (a move takes milliseconds)
UNOWNED_UNHEALTHY_S = 5.0
# how many links a request follows from the id it names to the profile that answers (an id points
# at its profile directly; a second step only while a link is being made to an id just linked)
MAX_LINK_HOPS = 3
# an erasure this close before a link was stored is taken as during it (owners' clocks differ a little)
CLOCK_MARGIN_MS = 5_000

# the request id a protocol front found for the call being answered (metadata, header)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("recsys_request_id", default="")


@dataclass(frozen=True)
class IngressSettings:
    """What answering an RPC needs, in an ingress replica and in an owner alike."""
    partitions: int
    max_k: int
    max_body_bytes: int
    max_events_per_request: int
    auth: AuthConfig = AuthConfig(enabled=False)
    # Recommend calls to one owner: at most this many outstanding, the rest coalesced (gateway/coalesce.py);
    # defaults in ServeConfig
    shard_calls_in_flight: int = ServeConfig.shard_calls_in_flight
    shard_batch_max: int = ServeConfig.shard_batch_max
    # the console's experiments page: a conversion counts within this many days of the first exposure
    experiment_window_days: float = 14.0

    @classmethod
    def from_config(cls, config: ServeConfig, partitions: int) -> "IngressSettings":
        return cls(partitions=partitions, max_k=config.ranking.max_k, max_body_bytes=config.max_body_bytes,
                   max_events_per_request=config.max_events_per_request, auth=config.auth,
                   shard_calls_in_flight=config.shard_calls_in_flight, shard_batch_max=config.shard_batch_max,
                   experiment_window_days=config.offers.experiment_window_days)


def group_by_partition(events: list[Event], partitions: int) -> dict[int, list[Event]]:
    groups: dict[int, list[Event]] = {}
    for event in events:
        groups.setdefault(partition_for(event.customer_id, partitions), []).append(event)
    return groups


def parse_track(raw: Any, settings: IngressSettings, now_ms: int | None = None) -> tuple[str, list[Event]]:
    """A TrackEvents body (the JSON shape) validated: its request id and its events. The whole
    batch at once: a bad event rejects all of it. ``now_ms``: the clock the timestamps are held to
    (this process's by default)."""
    rid = require_id(raw.get("request_id", ""), "request_id", required=False)
    return rid, parse_batch(raw.get("events"), _now_ms() if now_ms is None else now_ms,
                            settings.max_events_per_request)


def request_id(given: str) -> str:
    """The caller's request id (body field), else the one its protocol carried (x-request-id
    header, request_id metadata), else a new one."""
    if given:
        return given
    return REQUEST_ID.get() or serve_request_id() or uuid.uuid4().hex


def serve_request_id() -> str:
    """The id Serve gave the request being answered, in a Serve replica; "" elsewhere (an owner,
    which must not pay for importing Serve on its first call)."""
    context = sys.modules.get("ray.serve.context")
    return context._get_serve_request_context().request_id if context is not None else ""


def principal(key: ApiKey | None) -> str:
    return key.name if key is not None else "auth-disabled"


def _now_ms() -> int:
    return int(time.time() * 1000)


class RemoteOwners:
    """Each request to the owner of its partition, through the routes (and again after a move)."""

    def __init__(self, settings: IngressSettings, metrics: Metrics, routes: Routes | None = None):
        self.settings = settings
        self.metrics = metrics
        self.routes = routes or Routes(settings.partitions)
        # concurrent calls to one owner coalesced into fewer actor calls (gateway/coalesce.py):
        # Recommends, and the shares of TrackEvents batches
        calls, batch = settings.shard_calls_in_flight, settings.shard_batch_max
        self.recommenders = PerOwner("recommend_many", batch, calls, metrics.shard_batch.labels("recommend").observe)
        self.trackers = PerOwner("track_many", batch, calls, metrics.shard_batch.labels("track").observe)
        self._unassigned_since: float | None = None

    def partition(self, customer_id: str) -> int:
        return partition_for(customer_id, self.settings.partitions)

    async def _call(self, ref) -> Any:
        try:
            return await asyncio.wait_for(ref, SHARD_TIMEOUT_S + 1.0)
        except RecsysError:
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, asyncio.TimeoutError) as exc:
            log.warning("owner call failed: %s", type(exc).__name__)
            raise Unavailable("customer partition owner unavailable, retry") from exc

    async def _to_owner(self, customer_id: str, send) -> Any:
        """``send(handle)`` to the owner of the customer's partition (again after a move)."""
        return await self._call(self.routes.call(self.partition(customer_id), lambda _name, handle: send(handle),
                                                 time.monotonic() + SHARD_TIMEOUT_S))

    async def any_owner(self, send) -> Any:
        """``send(handle)`` to some owner (what every owner can answer: the outbox, the catalogue log)."""
        await self.routes.ensure()
        deadline = time.monotonic() + SHARD_TIMEOUT_S
        partition = next((p for p, o in enumerate(self.routes.owner_of) if o is not None), 0)
        return await self._call(self.routes.call(partition, lambda _name, handle: send(handle), deadline))

    # -- the operations ----------------------------------------------------------------------------
    async def recommend(self, query: RecommendQuery, now_ms: int) -> Any:
        # the deadline counts from here, time queued behind other calls to the owner included
        return await self._call(self.routes.call(
            self.partition(query.customer_id),
            lambda name, handle: self.recommenders.submit(name, handle, (query, now_ms)),
            time.monotonic() + SHARD_TIMEOUT_S))

    async def similar(self, query: SimilarQuery) -> Any:
        return await self._to_owner(query.customer_id or query.item_id, lambda owner: owner.similar.remote(query))

    async def track(self, groups: dict[int, list[Event]]) -> list[tuple[int, int, int]]:
        return await self._call(self._track(groups))

    async def _track(self, groups: dict[int, list[Event]]) -> list[tuple[int, int, int]]:
        """Per partition (accepted, duplicates, ignored), each partition sent to its owner, and
        again to the next owner while it moves, until the deadline."""
        deadline = time.monotonic() + SHARD_TIMEOUT_S
        await self.routes.ensure()
        done: list[tuple[int, int, int]] = []
        attempt = 0
        while groups:
            by_owner: dict[str, dict[int, list[Event]]] = {}
            for p, batch in groups.items():
                by_owner.setdefault(self.routes.owner_of[p] or "", {})[p] = batch
            unrouted = by_owner.pop("", {})
            answers = await asyncio.gather(*[self._track_on(name, part) for name, part in by_owner.items()])
            again = dict(unrouted)
            for part, answer in zip(by_owner.values(), answers):
                for p, result in answer.items():
                    if isinstance(result, PartitionMoved) or result is None:
                        again[p] = part[p]
                    elif isinstance(result, BaseException):
                        raise result
                    else:
                        done.append(result)
            groups = again
            if groups:
                if time.monotonic() >= deadline:
                    raise Unavailable("customer partition unavailable (moving), retry")
                await asyncio.sleep(min(0.005 * 2 ** attempt, 0.2))
                attempt += 1
                await self.routes.refresh()
        return done

    async def _track_on(self, name: str, groups: dict[int, list[Event]]) -> dict[int, Any]:
        """One owner's share of a batch; an owner that is gone answers None for each partition
        (sent again once the routes show where they went)."""
        try:
            return await self.trackers.submit(name, self.routes.handle(name), groups)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ValueError):
            self.routes.forget_handle(name)
            return {p: None for p in groups}

    async def forget(self, customer_id: str, who: str, profile: str = "") -> dict[str, Any]:
        return await self._to_owner(customer_id, lambda owner: owner.forget.remote(customer_id, who, profile))

    async def export(self, customer_id: str, who: str) -> dict[str, Any]:
        return await self._to_owner(customer_id, lambda owner: owner.export.remote(customer_id, who))

    async def resolve(self, customer_id: str) -> str:
        return await self._to_owner(customer_id, lambda owner: owner.resolve.remote(customer_id))

    async def linked_ids(self, customer_id: str) -> list[str]:
        return await self._to_owner(customer_id, lambda owner: owner.linked_ids.remote(customer_id))

    async def link_begin(self, alias: str, profile: str, kind: str, now_ms: int) -> tuple[list[Event], int, list]:
        return await self._to_owner(alias, lambda owner: owner.link_begin.remote(alias, profile, kind, now_ms))

    async def adopt_lists(self, profile: str, lists: list) -> None:
        return await self._to_owner(profile, lambda owner: owner.adopt_lists.remote(profile, lists))

    async def link_done(self, alias: str, profile: str, now_ms: int) -> bool:
        return await self._to_owner(alias, lambda owner: owner.link_done.remote(alias, profile, now_ms))

    async def erased_since(self, customer_id: str, since_ms: int) -> bool:
        return await self.any_owner(lambda owner: owner.erased_since.remote(customer_id, since_ms))

    async def next_best_offer(self, query: OfferQuery, now_ms: int) -> dict[str, Any]:
        return await self._to_owner(query.customer_id, lambda owner: owner.next_best_offer.remote(query, now_ms))

    async def update_catalog(self, updates: list) -> int:
        """Durable first (the store's catalogue log, through one owner), then every owner pulls
        what it has not applied (an owner starting meanwhile reads it when it starts, or at its
        next poll)."""
        await self.any_owner(lambda owner: owner.commit_catalog.remote(updates))
        owners = list(self.routes.owners().values())
        changed = await asyncio.gather(*[self._call(o.sync_catalog.remote()) for o in owners])
        return max(changed) if changed else 0

    async def actions_after(self, after: int, limit: int) -> list:
        return await self.any_owner(lambda owner: owner.actions_after.remote(after, limit))

    async def healthy(self) -> str:
        """The serving model version when every partition has an owner and every owner answers
        and can take writes; else Unavailable naming what cannot and why (a full disk, a store away)."""
        await self.routes.refresh()
        unassigned = sum(1 for o in self.routes.owner_of if o is None)
        # a partition is without an owner for a moment during every move: only one that stays so
        # (no owner could take it) makes the service not serving
        now = time.monotonic()
        if not unassigned:
            self._unassigned_since = None
        elif self._unassigned_since is None:
            self._unassigned_since = now
        if unassigned and now - self._unassigned_since >= UNOWNED_UNHEALTHY_S:
            raise Unavailable(f"{unassigned} partition(s) have had no owner for {now - self._unassigned_since:.0f} s")
        try:
            reports = await asyncio.wait_for(asyncio.gather(*[o.health.remote() for o in self.routes.owners().values()]),
                                             5.0)
        except Exception as exc:  # noqa: BLE001 - an owner not answering
            log.warning("health: an owner did not answer: %s", type(exc).__name__)
            raise Unavailable("a customer partition owner is not answering") from None
        stuck = [r for r in reports if not r["writable"]]
        if stuck:
            raise Unavailable("; ".join(f"owner {r['owner']} cannot take writes: {r['write_error']}" for r in stuck))
        return reports[0]["model_version"]

    async def owner_stats(self) -> list[dict]:
        await self.routes.ensure()
        return await asyncio.wait_for(asyncio.gather(*[o.stats.remote() for o in self.routes.owners().values()]), 5.0)

    async def metrics_samples(self) -> list[dict]:
        """Every owner's own request counters (gateway/metrics.py), for one exposition; an owner
        that does not answer within 5 s is left out of this one (logged), the others are not."""
        await self.routes.ensure()
        answers = await asyncio.gather(*[asyncio.wait_for(o.metrics_samples.remote(), 5.0)
                                         for o in self.routes.owners().values()], return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                log.warning("metrics: an owner's counters unavailable: %s", type(answer).__name__)
        return [a for a in answers if not isinstance(a, BaseException)]


async def _nothing() -> dict:
    return {}


class LocalFirst:
    """In an owner: its own partitions answered here, with no hop; anything else forwarded once
    through ``remote`` (counted). ``core`` is the owner's OwnerCore."""

    def __init__(self, core, remote: RemoteOwners, metrics: Metrics):
        self.core, self.remote, self.metrics = core, remote, metrics

    def _here(self, customer_id: str) -> bool:
        return self.core.holds(self.core.partition_of(customer_id))

    def _forwarded(self, rpc: str) -> None:
        self.metrics.forwarded.labels(rpc).inc()

    async def _local_or_forward(self, rpc: str, customer_id: str, local, forward) -> Any:
        """``local()`` when the partition is here; else, or when it started moving meanwhile
        (PartitionMoved from here), ``forward()`` once to its owner."""
        if self._here(customer_id):
            try:
                return await local()
            except PartitionMoved:
                pass
        self._forwarded(rpc)
        return await forward()

    async def recommend(self, query: RecommendQuery, now_ms: int) -> Any:
        async def local():
            result = self.core.recommend_many([(query, now_ms)])[0]
            if isinstance(result, Exception):
                raise result
            return result
        return await self._local_or_forward("Recommend", query.customer_id, local,
                                            lambda: self.remote.recommend(query, now_ms))

    async def similar(self, query: SimilarQuery) -> Any:
        if not query.customer_id:  # item to item: no customer state, this owner answers
            return self.core.similar(query)

        async def local():
            return self.core.similar(query)
        return await self._local_or_forward("SimilarItems", query.customer_id, local,
                                            lambda: self.remote.similar(query))

    async def track(self, groups: dict[int, list[Event]]) -> list[tuple[int, int, int]]:
        """The owner's own partitions' events committed here while the rest go, at the same time,
        once to their owners; a partition that began moving meanwhile follows them."""
        here = {p: g for p, g in groups.items() if self.core.holds(p)}
        elsewhere = {p: g for p, g in groups.items() if p not in here}

        async def forward(part: dict) -> list:
            if not part:
                return []
            self._forwarded("TrackEvents")
            return await self.remote.track(part)
        local, forwarded = await asyncio.gather(self.core.track(here) if here else _nothing(), forward(elsewhere))
        done: list[tuple[int, int, int]] = list(forwarded)
        moved = {}
        for p, result in local.items():
            if isinstance(result, PartitionMoved):
                moved[p] = here[p]
            elif isinstance(result, BaseException):
                raise result
            else:
                done.append(result)
        done.extend(await forward(moved))
        return done

    async def forget(self, customer_id: str, who: str, profile: str = "") -> dict[str, Any]:
        return await self._local_or_forward("ForgetCustomer", customer_id,
                                            lambda: self.core.forget(customer_id, who, profile),
                                            lambda: self.remote.forget(customer_id, who, profile))

    async def resolve(self, customer_id: str) -> str:
        async def local():
            return self.core.resolve(customer_id)
        return await self._local_or_forward("Identify", customer_id, local, lambda: self.remote.resolve(customer_id))

    async def linked_ids(self, customer_id: str) -> list[str]:
        async def local():
            return self.core.linked_ids(customer_id)
        return await self._local_or_forward("Identify", customer_id, local,
                                            lambda: self.remote.linked_ids(customer_id))

    async def link_begin(self, alias: str, profile: str, kind: str, now_ms: int) -> tuple[list[Event], int, list]:
        return await self._local_or_forward("Identify", alias, lambda: self.core.link_begin(alias, profile, kind, now_ms),
                                            lambda: self.remote.link_begin(alias, profile, kind, now_ms))

    async def adopt_lists(self, profile: str, lists: list) -> None:
        async def local():
            self.core.adopt_lists(profile, lists)
        return await self._local_or_forward("Identify", profile, local, lambda: self.remote.adopt_lists(profile, lists))

    async def link_done(self, alias: str, profile: str, now_ms: int) -> bool:
        return await self._local_or_forward("Identify", alias, lambda: self.core.link_done(alias, profile, now_ms),
                                            lambda: self.remote.link_done(alias, profile, now_ms))

    async def erased_since(self, customer_id: str, since_ms: int) -> bool:
        return await self.core._io(self.core.store.forgotten_since, customer_id, since_ms)

    async def export(self, customer_id: str, who: str) -> dict[str, Any]:
        return await self._local_or_forward("ExportCustomer", customer_id, lambda: self.core.export(customer_id, who),
                                            lambda: self.remote.export(customer_id, who))

    async def next_best_offer(self, query: OfferQuery, now_ms: int) -> dict[str, Any]:
        return await self._local_or_forward("NextBestOffer", query.customer_id,
                                            lambda: self.core.next_best_offer(query, now_ms),
                                            lambda: self.remote.next_best_offer(query, now_ms))

    async def update_catalog(self, updates: list) -> int:
        return await self.remote.update_catalog(updates)

    async def actions_after(self, after: int, limit: int) -> list:
        return await self.remote.actions_after(after, limit)

    async def healthy(self) -> str:
        return await self.remote.healthy()


class Operations:
    """The RPCs' work on request bodies (the JSON shape), with ``owners`` doing the partition's part.

    A customer id linked to a profile (an identify event) is answered for that profile: the
    partition of the id says Linked, and the request is asked again for the profile (``_follow``).
    Only linked ids pay that second hop."""

    def __init__(self, settings: IngressSettings, owners, metrics: Metrics):
        self.settings, self.owners, self.metrics = settings, owners, metrics

    async def _follow(self, customer_id: str, ask) -> Any:
        """``ask(customer id)``, again for the profile while the id answers Linked."""
        for _ in range(MAX_LINK_HOPS):
            try:
                return await ask(customer_id)
            except Linked as linked:
                customer_id = linked.profile_id
        raise Unavailable("the customer's linked ids are changing; retry")

    async def recommend(self, raw: Any, key: ApiKey | None) -> dict[str, Any]:
        query = parse_recommend(raw, self.settings.max_k)
        now = _now_ms()
        result = await self._follow(query.customer_id, lambda c: self.owners.recommend(
            query if c == query.customer_id else dataclasses.replace(query, customer_id=c), now))
        return {"result": result, "request_id": request_id(query.request_id)}

    async def similar(self, raw: Any, key: ApiKey | None) -> dict[str, Any]:
        query = parse_similar(raw, self.settings.max_k)
        if query.customer_id:
            result = await self._follow(query.customer_id, lambda c: self.owners.similar(
                query if c == query.customer_id else dataclasses.replace(query, customer_id=c)))
        else:
            result = await self.owners.similar(query)
        return {"result": result, "request_id": request_id(query.request_id)}

    async def track(self, raw: Any, key: ApiKey | None) -> dict[str, Any]:
        """{accepted, duplicates, ignored, request_id}. The whole batch is validated before any
        owner sees it: a bad event rejects all. Events go to their partitions' owners, one call
        per owner; a partition that moved meanwhile is sent again to its new owner. Identify
        events are applied first, in order (``identify``); one that is refused (Conflict) fails
        the request before any other event of it is applied."""
        rid, events = parse_track(raw, self.settings)
        results = []
        identifies = [e for e in events if e.event_type == IDENTIFY]
        if identifies:
            for event in identifies:
                results.append(await self.identify(event))
            events = [e for e in events if e.event_type != IDENTIFY]
        if events:
            results += await self._track_events(events)
        out = {}
        for i, (name, label) in enumerate((("accepted", "accepted"), ("duplicates", "duplicate"),
                                           ("ignored", "ignored"))):
            out[name] = sum(r[i] for r in results)
            self.metrics.events.labels(label).inc(out[name])
        return {**out, "request_id": request_id(rid)}

    async def _track_events(self, events: list[Event]) -> list[tuple[int, int, int]]:
        """Store and apply the events; those whose id is linked come back from its partition as the
        profile's and are sent on to the profile's."""
        results: list[tuple[int, int, int]] = []
        for _ in range(MAX_LINK_HOPS):
            answers = await self.owners.track(group_by_partition(events, self.settings.partitions))
            events = []
            for answer in answers:
                results.append(tuple(answer[:3]))
                if len(answer) > 3:
                    events += answer[3]
            if not events:
                return results
        raise Unavailable("the customer's linked ids are changing; retry")

    # -- identify: one customer under many ids ------------------------------------------------------
    async def identify(self, event: Event) -> tuple[int, int, int]:
        """Link the event's ``alias_id`` to the customer it names (to that customer's profile, if
        the customer is itself a linked id). The steps, each idempotent, so a retry after a crash
        at any point finishes the link and applies everything once:

        1. the alias's partition stores the link (from then on everything under the alias goes to
           the profile) and returns what the alias did (``link_begin``; Conflict, with nothing
           stored, if the alias belongs to another profile or has linked ids of its own);
        2. that history, with an engine-made identify event (the profile's list of linked ids,
           which erasure follows), is stored as the profile's, event ids kept (duplicates are
           dropped); then the client's identify event itself (its counts are the answer);
        3. the alias's partition records the copy done (``link_done``). A link left undone by a
           crash is finished by its partition's owner (PartitionOwner._finish_links), with 1-3.

        An erasure of the profile that ran while the link was being made is run again after it, so
        nothing of either id survives it."""
        attributes = dict(event.attributes)
        alias, kind = attributes["alias_id"], attributes.get("alias_kind", "")
        profile = await self._follow(event.customer_id, self._resolve_once)
        if profile == alias:  # the customer is linked to this very id already: nothing to do
            return (0, 1, 0)
        await self.finish_link(alias, profile, kind, event.timestamp_ms)
        return (await self._track_events([dataclasses.replace(event, customer_id=profile)]))[0]

    async def _resolve_once(self, customer_id: str) -> str:
        profile = await self.owners.resolve(customer_id)
        if profile != customer_id:
            raise Linked(customer_id, profile)
        return profile

    async def finish_link(self, alias: str, profile: str, kind: str, at_ms: int | None = None) -> None:
        """Steps 1-3 of ``identify`` for a link to ``profile``."""
        now = _now_ms()
        copies, linked_ms, lists = await self.owners.link_begin(alias, profile, kind, now)
        if lists:  # before the copies: the credits they carry mark these lists in the profile's partition
            await self.owners.adopt_lists(profile, lists)
        marker = Event(f"{RESERVED_EVENT_ID_PREFIX}identify:{alias}", profile, IDENTIFY, "", "web",
                       min(at_ms or linked_ms, now),
                       attributes=tuple(sorted({"alias_id": alias, "alias_kind": kind}.items())))
        await self._track_events(copies + [marker])
        if await self.owners.erased_since(profile, linked_ms - CLOCK_MARGIN_MS):
            # the profile was erased while this link was made: erase what the link brought in too
            await self._erase(profile, "identify-after-erasure")
            raise Conflict(f"identify: the customer was erased while {alias!r} was being linked; nothing of "
                           "either is kept")
        await self.owners.link_done(alias, profile, _now_ms())

    async def forget(self, raw: Any, key: ApiKey | None) -> dict[str, Any]:
        rid = require_id(raw.get("request_id", ""), "request_id", required=False)
        customer_id = require_id(raw.get("customer_id"), "customer_id")
        report = await self._follow(customer_id, lambda c: self._erase(c, principal(key)))
        report.pop("partition", None)
        return {**report, "request_id": request_id(rid)}

    async def _erase(self, customer_id: str, who: str) -> dict[str, Any]:
        """Erase the customer and every id linked to it: the linked ids first, so that an erasure
        interrupted part way still knows, when sent again, which ids are left."""
        linked = await self.owners.linked_ids(customer_id)
        deleted = 0
        for alias in linked:
            deleted += (await self.owners.forget(alias, who, customer_id))["events_deleted"]
        report = await self.owners.forget(customer_id, who)
        return {**report, "events_deleted": report["events_deleted"] + deleted, "linked_ids_erased": linked}

    async def export(self, raw: Any, key: ApiKey | None) -> dict[str, Any]:
        rid = require_id(raw.get("request_id", ""), "request_id", required=False)
        customer_id = require_id(raw.get("customer_id"), "customer_id")
        export = await self._follow(customer_id, lambda c: self.owners.export(c, principal(key)))
        return {"export": export, "request_id": request_id(rid)}

    async def update_catalog(self, raw: Any, key: ApiKey | None) -> dict[str, Any]:
        rid = require_id(raw.get("request_id", ""), "request_id", required=False)
        updates = parse_updates(raw.get("updates"), _now_ms(), self.settings.max_events_per_request)
        return {"applied": await self.owners.update_catalog(updates), "request_id": request_id(rid)}

    async def next_best_offer(self, raw: Any, key: ApiKey | None) -> dict[str, Any]:
        query = parse_offer_query(raw)
        now = _now_ms()
        reply = await self._follow(query.customer_id, lambda c: self.owners.next_best_offer(
            query if c == query.customer_id else dataclasses.replace(query, customer_id=c), now))
        for offer in reply["offers"]:
            self.metrics.decisions.labels(offer["offer_id"]).inc()
        if not reply["offers"]:
            self.metrics.decisions.labels(f"none:{reply['reason']}").inc()
        return {**reply, "request_id": request_id(query.request_id)}
