"""The ingress: one Ray Serve deployment answering gRPC (recsys.v1.Personalization,
grpc.health.v1.Health) and HTTP/JSON on the same replicas.

Each request is validated here, mapped to a domain query and sent straight to the owner of
its customer's partition (one hop; gateway/routing.py follows the partitions as they move).
Errors become statuses in one place (gateway/status_map.py).
"""
# No `from __future__ import annotations` here: FastAPI needs the real Request annotation.

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import grpc
import orjson
import ray
from fastapi import FastAPI, Request
from fastapi.responses import Response
from grpc_health.v1 import health_pb2
from ray import serve

from engine.auth import ApiKey, AuthConfig, Authenticator
from engine.config import ServeConfig
from engine.catalog import parse_updates
from engine.errors import InvalidArgument, PartitionMoved, PayloadTooLarge, RecsysError, Unavailable
from engine.events import Event, parse_batch
from engine.queries import parse_offer_query, parse_recommend, parse_similar
from engine.sharding import partition_for
from engine.validation import reject_unknown, require_id, require_int
from gateway import codec, http_errors
from gateway.coalesce import Coalescer
from gateway.feeds import ActionFeed, SharedValue
from gateway.grpc_registration import METHODS, MalformedMessage
from gateway.metrics import Metrics
from gateway.routing import Routes
from gateway.status_map import statuses
from recsys.v1 import recsys_pb2 as pb

# Serve's logger: with the JSON logging config (gateway/server.py) every line carries the
# request id, route and replica, so a client that sends x-request-id (HTTP) or request_id
# (gRPC metadata) can find its request's lines again.
ACTION_KINDS = frozenset({"cart_abandonment", "cross_sell"})
ACTIONS_PAGE = 100
ACTIONS_POLL_S = 0.25
log = logging.getLogger("ray.serve")

# How often a Health/Watch stream's status is refreshed (one read per replica, for every watcher).
HEALTH_WATCH_S = 1.0
# The service names Health answers for ("" is the server as a whole).
HEALTH_SERVICES = ("", "recsys.v1.Personalization")

# No slash redirects: a path that is not a route is a 404 in the error shape, not a 307 elsewhere.
app = FastAPI(title="recsys", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
http_errors.install(app)

# a request's deadline for reaching its partition's owner, moves included
SHARD_TIMEOUT_S = 10.0
# health turns NOT_SERVING when a partition has had no owner this long (a move takes milliseconds)
UNOWNED_UNHEALTHY_S = 5.0


@dataclass(frozen=True)
class IngressSettings:
    partitions: int
    max_k: int
    max_body_bytes: int
    max_events_per_request: int
    auth: AuthConfig = AuthConfig(enabled=False)
    # Recommend calls to one owner: at most this many outstanding, the rest coalesced (gateway/coalesce.py);
    # defaults in ServeConfig
    shard_calls_in_flight: int = ServeConfig.shard_calls_in_flight
    shard_batch_max: int = ServeConfig.shard_batch_max

    @classmethod
    def from_config(cls, config: ServeConfig, partitions: int) -> "IngressSettings":
        return cls(partitions=partitions, max_k=config.ranking.max_k, max_body_bytes=config.max_body_bytes,
                   max_events_per_request=config.max_events_per_request, auth=config.auth,
                   shard_calls_in_flight=config.shard_calls_in_flight, shard_batch_max=config.shard_batch_max)


def group_by_partition(events: list[Event], partitions: int) -> dict[int, list[Event]]:
    groups: dict[int, list[Event]] = {}
    for event in events:
        groups.setdefault(partition_for(event.customer_id, partitions), []).append(event)
    return groups


def _request_id(given: str) -> str:
    """The caller's request id (body field), else the one Serve carries (x-request-id header or
    request_id metadata), else a new one."""
    if given:
        return given
    from ray.serve.context import _get_serve_request_context

    return _get_serve_request_context().request_id or uuid.uuid4().hex


def _principal(key: ApiKey | None) -> str:
    return key.name if key is not None else "auth-disabled"


def _list_body(raw: Any, field: str) -> tuple[Any, Any]:
    """A body of the shape {field: [...], "request_id": "..."}: (the list, the request id)."""
    if not isinstance(raw, dict):
        raise InvalidArgument(f"body: must be an object with an '{field}' list")
    reject_unknown(raw, {field, "request_id"}, "body")
    return raw.get(field), raw.get("request_id")


def _now_ms() -> int:
    return int(time.time() * 1000)


class _CallContext:
    """What the RPC methods use of a gRPC servicer context, for a call that the project's gRPC
    front (gateway/grpc_front.py) hands over: the caller's metadata in, the status out."""

    def __init__(self, metadata: tuple):
        self._metadata = tuple(metadata)
        self._code = grpc.StatusCode.OK
        self._details = ""

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# An open stream (SubscribeActions, Health/Watch) holds one of the replica's ongoing requests for
# as long as it is open; parked, it costs nothing else (gateway/feeds.py), hence the high bound.
@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
@serve.ingress(app)
class Ingress:
    def __init__(self, settings: IngressSettings):
        self.settings = settings
        self.routes = Routes(settings.partitions)
        # Recommend calls coalesced per owner (name -> Coalescer), made as owners appear
        self.recommenders: dict[str, Coalescer] = {}
        self.auth = Authenticator(settings.auth)
        self.metrics = Metrics()
        # one outbox poll and one health read per replica, whatever the number of open streams
        self.action_feed = ActionFeed(self._outbox_page, ACTIONS_PAGE, ACTIONS_POLL_S)
        self.health_feed = SharedValue(self._serving_status, HEALTH_WATCH_S)
        self.outbox_reads = 0
        self._unassigned_since: float | None = None

    async def _outbox_page(self, after: int, limit: int) -> list:
        self.outbox_reads += 1
        return await self._any_owner(lambda owner: owner.actions_after.remote(after, limit))

    def _coalescer(self, name: str, handle) -> Coalescer:
        coalescer = self.recommenders.get(name)
        if coalescer is None:
            async def send(requests: list) -> list:
                self.metrics.shard_batch.observe(len(requests))
                return await handle.recommend_many.remote(requests)
            coalescer = self.recommenders[name] = Coalescer(send, self.settings.shard_batch_max,
                                                            self.settings.shard_calls_in_flight)
        return coalescer

    def _partition(self, customer_id: str) -> int:
        return partition_for(customer_id, self.settings.partitions)

    async def _to_owner(self, customer_id: str, send) -> Any:
        """``send(handle)`` to the owner of the customer's partition (again after a move)."""
        return await self._call(self.routes.call(self._partition(customer_id), lambda _name, handle: send(handle),
                                                 time.monotonic() + SHARD_TIMEOUT_S))

    async def _any_owner(self, send) -> Any:
        """``send(handle)`` to some owner (a read of what every owner sees: the outbox)."""
        await self.routes.ensure()
        deadline = time.monotonic() + SHARD_TIMEOUT_S
        partition = next((p for p, o in enumerate(self.routes.owner_of) if o is not None), 0)
        return await self._call(self.routes.call(partition, lambda _name, handle: send(handle), deadline))

    def _admit(self, authorization: str | None, scope: str, size: int | None) -> ApiKey | None:
        """Authenticate, authorise, meter; then check the size against the key's limit."""
        key = self.auth.authenticate(authorization)
        self.auth.authorize(key, scope, time.monotonic())
        limit = self.auth.body_limit(key, self.settings.max_body_bytes)
        if size is not None and size > limit:
            raise PayloadTooLarge(f"request is {size} bytes; the limit is {limit}")
        return key

    # -- the operations, shared by gRPC and HTTP -------------------------------------------

    async def _call(self, ref) -> Any:
        try:
            return await asyncio.wait_for(ref, SHARD_TIMEOUT_S + 1.0)
        except RecsysError:
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, asyncio.TimeoutError) as exc:
            log.warning("owner call failed: %s", type(exc).__name__)
            raise Unavailable("customer partition owner unavailable, retry") from exc

    async def recommend(self, raw: Any) -> dict[str, Any]:
        query = parse_recommend(raw, self.settings.max_k)
        now_ms = _now_ms()
        # the deadline counts from here, time queued behind other calls to the owner included
        result = await self._call(self.routes.call(
            self._partition(query.customer_id),
            lambda name, handle: self._coalescer(name, handle).submit((query, now_ms)),
            time.monotonic() + SHARD_TIMEOUT_S))
        return {"result": result, "request_id": _request_id(query.request_id)}

    async def similar(self, raw: Any) -> dict[str, Any]:
        query = parse_similar(raw, self.settings.max_k)
        result = await self._to_owner(query.customer_id or query.item_id, lambda owner: owner.similar.remote(query))
        return {"result": result, "request_id": _request_id(query.request_id)}

    async def track(self, raw_events: Any, request_id: Any = "") -> dict[str, Any]:
        """{accepted, duplicates, ignored, request_id}. The whole batch is validated before any
        owner sees it: a bad event rejects all. Events go to their partitions' owners, one call
        per owner; a partition that moved meanwhile is sent again to its new owner."""
        request_id = require_id(request_id, "request_id", required=False)
        events = parse_batch(raw_events, _now_ms(), self.settings.max_events_per_request)
        results = await self._call(self._track(group_by_partition(events, self.settings.partitions)))
        out = {}
        for i, (name, label) in enumerate((("accepted", "accepted"), ("duplicates", "duplicate"),
                                           ("ignored", "ignored"))):
            out[name] = sum(r[i] for r in results)
            self.metrics.events.labels(label).inc(out[name])
        return {**out, "request_id": _request_id(request_id)}

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
            return await self.routes.handle(name).track.remote(groups)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ValueError):
            self.routes.forget_handle(name)
            return {p: None for p in groups}

    async def forget(self, customer_id: Any, key: ApiKey | None) -> dict[str, Any]:
        customer_id = require_id(customer_id, "customer_id")
        report = await self._to_owner(customer_id, lambda owner: owner.forget.remote(customer_id, _principal(key)))
        report.pop("partition", None)
        return report

    async def export(self, customer_id: Any, key: ApiKey | None) -> dict[str, Any]:
        customer_id = require_id(customer_id, "customer_id")
        return await self._to_owner(customer_id, lambda owner: owner.export.remote(customer_id, _principal(key)))

    async def update_catalog(self, raw_updates: Any, request_id: Any = "") -> tuple[int, str]:
        """Durable first (the store's catalogue log, through one owner), then every owner pulls
        what it has not applied (an owner starting meanwhile reads it when it starts, or at its
        next poll)."""
        request_id = require_id(request_id, "request_id", required=False)
        updates = parse_updates(raw_updates, _now_ms(), self.settings.max_events_per_request)
        await self._any_owner(lambda owner: owner.commit_catalog.remote(updates))
        owners = list(self.routes.owners().values())
        changed = await asyncio.gather(*[self._call(o.sync_catalog.remote()) for o in owners])
        return (max(changed) if changed else 0), _request_id(request_id)

    async def next_best_offer(self, raw: Any) -> dict[str, Any]:
        query = parse_offer_query(raw)
        now_ms = _now_ms()
        reply = await self._to_owner(query.customer_id, lambda owner: owner.next_best_offer.remote(query, now_ms))
        for offer in reply["offers"]:
            self.metrics.decisions.labels(offer["offer_id"]).inc()
        if not reply["offers"]:
            self.metrics.decisions.labels(f"none:{reply['reason']}").inc()
        return {**reply, "request_id": _request_id(query.request_id)}

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

    # -- gRPC: methods named after the RPCs ----------------------------------------------------

    async def _grpc(self, request, grpc_context, empty, scope: str,
                    work: Callable[[ApiKey | None], Awaitable[Any]]):
        started = time.perf_counter()
        rpc = type(empty).__name__.removesuffix("Response")
        try:
            response = await work(self._grpc_admit(request, grpc_context, scope))
            self.metrics.observe(rpc, "grpc", "OK", time.perf_counter() - started)
            return response
        except RecsysError as error:
            self._grpc_reject(rpc, error, grpc_context, started)
            return empty
        except Exception:  # noqa: BLE001 - a fault of ours, not of the request
            self._grpc_fault(rpc, grpc_context, started)
            return empty

    def _grpc_admit(self, request, grpc_context, scope: str) -> ApiKey | None:
        """Key, scope, rate and size of a gRPC call, and whether its message parsed at all."""
        metadata = dict(grpc_context.invocation_metadata()) if grpc_context is not None else {}
        key = self._admit(metadata.get("authorization"), scope, request.ByteSize())
        if isinstance(request, MalformedMessage):
            raise InvalidArgument(f"malformed {request.type_name}: {request.error}")
        return key

    def _grpc_reject(self, rpc: str, error: RecsysError, grpc_context, started: float) -> None:
        code, _ = statuses(error)
        grpc_context.set_code(code)
        grpc_context.set_details(error.message)
        self.metrics.observe(rpc, "grpc", code.name, time.perf_counter() - started)
        log.info("grpc %s rejected: %s %s", rpc, code.name, error.message)

    def _grpc_fault(self, rpc: str, grpc_context, started: float) -> None:
        """INTERNAL for an exception nothing expected: its traceback goes to the log, never to the
        caller (it could name hosts, processes and code); the caller gets the request id."""
        request_id = _request_id("")
        log.exception("grpc %s failed (request %s)", rpc, request_id)
        grpc_context.set_code(grpc.StatusCode.INTERNAL)
        grpc_context.set_details(f"internal error; request id {request_id}")
        self.metrics.observe(rpc, "grpc", "INTERNAL", time.perf_counter() - started)

    async def Recommend(self, request: pb.RecommendRequest, grpc_context=None) -> pb.RecommendResponse:
        async def work(_key):
            out = await self.recommend(codec.recommend_request(request))
            return codec.recommendations_proto(out["result"], out["request_id"])
        return await self._grpc(request, grpc_context, pb.RecommendResponse(), "recommend", work)

    async def SimilarItems(self, request: pb.SimilarItemsRequest, grpc_context=None) -> pb.SimilarItemsResponse:
        async def work(_key):
            out = await self.similar(codec.similar_request(request))
            return codec.similar_proto(out["result"], out["request_id"])
        return await self._grpc(request, grpc_context, pb.SimilarItemsResponse(), "recommend", work)

    async def TrackEvents(self, request: pb.TrackEventsRequest, grpc_context=None) -> pb.TrackEventsResponse:
        async def work(_key):
            out = await self.track([codec.event(e) for e in request.events], request.request_id)
            return pb.TrackEventsResponse(**out)
        return await self._grpc(request, grpc_context, pb.TrackEventsResponse(), "events", work)

    async def ForgetCustomer(self, request: pb.ForgetCustomerRequest, grpc_context=None) -> pb.ForgetCustomerResponse:
        async def work(key):
            request_id = _request_id(require_id(request.request_id, "request_id", required=False))
            out = await self.forget(request.customer_id, key)
            return pb.ForgetCustomerResponse(request_id=request_id, **out)
        return await self._grpc(request, grpc_context, pb.ForgetCustomerResponse(), "admin", work)

    async def ExportCustomer(self, request: pb.ExportCustomerRequest, grpc_context=None) -> pb.ExportCustomerResponse:
        async def work(key):
            request_id = _request_id(require_id(request.request_id, "request_id", required=False))
            out = await self.export(request.customer_id, key)
            return pb.ExportCustomerResponse(customer_id=out["customer_id"], export_json=orjson.dumps(out).decode(),
                                             request_id=request_id)
        return await self._grpc(request, grpc_context, pb.ExportCustomerResponse(), "admin", work)

    async def UpdateCatalog(self, request: pb.UpdateCatalogRequest, grpc_context=None) -> pb.UpdateCatalogResponse:
        async def work(_key):
            applied, request_id = await self.update_catalog([codec.catalog_update(u) for u in request.updates],
                                                            request.request_id)
            return pb.UpdateCatalogResponse(applied=applied, request_id=request_id)
        return await self._grpc(request, grpc_context, pb.UpdateCatalogResponse(), "admin", work)

    async def NextBestOffer(self, request: pb.NextBestOfferRequest, grpc_context=None) -> pb.NextBestOfferResponse:
        async def work(_key):
            out = await self.next_best_offer(codec.offer_request(request))
            return codec.offer_proto(out, out["request_id"])
        return await self._grpc(request, grpc_context, pb.NextBestOfferResponse(), "offers", work)

    async def SubscribeActions(self, request: pb.SubscribeActionsRequest, grpc_context=None):
        """Server-streaming: the outbox after ``after_seq``, then new actions as they come. A stream
        that waits costs no shard call of its own: it parks on the replica's one outbox poller
        (gateway/feeds.py) and leaves it as soon as the stream ends or is cancelled."""
        started = time.perf_counter()
        try:
            self._grpc_admit(request, grpc_context, "offers")
            after, kinds, limit = self._action_query(request.after_seq, list(request.kinds), request.max_actions)
        except RecsysError as error:
            self._grpc_reject("SubscribeActions", error, grpc_context, started)
            # A stream's status only reaches the client when the generator raises after setting
            # it (Serve wraps it in gRPCStatusError); a bare return would end the stream as OK.
            raise
        self.metrics.observe("SubscribeActions", "grpc", "OK", time.perf_counter() - started)
        sent = 0
        try:
            async with contextlib.aclosing(self.action_feed.rows_after(after)) as rows:
                async for seq, action in rows:
                    if kinds and action["kind"] not in kinds:
                        continue
                    yield codec.action_proto(seq, action)
                    sent += 1
                    if limit and sent >= limit:
                        return
        except RecsysError as error:  # the outbox went away mid-stream (UNAVAILABLE): the client resumes
            self._grpc_reject("SubscribeActions", error, grpc_context, started)
            raise
        except Exception:
            self._grpc_fault("SubscribeActions", grpc_context, started)
            raise

    @staticmethod
    def _action_query(after: Any, kinds: Any, limit: Any) -> tuple[int, set[str], int]:
        after = require_int(after, "after_seq", low=0, high=2**62)
        if not isinstance(kinds, list) or any(k not in ACTION_KINDS for k in kinds):
            raise InvalidArgument(f"kinds: a list of {sorted(ACTION_KINDS)}")
        return after, set(kinds), require_int(limit, "max_actions", low=0, high=1_000_000)

    # -- grpc.health.v1.Health -------------------------------------------------------------------

    async def _serving_status(self) -> int:
        try:
            await self.healthy()
            return health_pb2.HealthCheckResponse.SERVING
        except Exception:  # noqa: BLE001 - a shard not answering or not taking writes: not serving
            return health_pb2.HealthCheckResponse.NOT_SERVING

    def _health_request(self, request, grpc_context, rpc: str) -> bool:
        """False (and the status set) for a request that did not parse."""
        if isinstance(request, MalformedMessage):
            self._grpc_reject(rpc, InvalidArgument(f"malformed {request.type_name}: {request.error}"), grpc_context,
                              time.perf_counter())
            return False
        return True

    async def Check(self, request: health_pb2.HealthCheckRequest, grpc_context=None) -> health_pb2.HealthCheckResponse:
        if not self._health_request(request, grpc_context, "Check"):
            return health_pb2.HealthCheckResponse()
        if request.service not in HEALTH_SERVICES:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {_short(request.service)!r}")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=await self._serving_status())

    async def List(self, request: health_pb2.HealthListRequest, grpc_context=None) -> health_pb2.HealthListResponse:
        if not self._health_request(request, grpc_context, "List"):
            return health_pb2.HealthListResponse()
        status = await self._serving_status()
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name in HEALTH_SERVICES})

    async def Watch(self, request: health_pb2.HealthCheckRequest, grpc_context=None):
        """The status now, then each change (checked every HEALTH_WATCH_S by one loop per replica for
        every watcher). An unknown service gets SERVICE_UNKNOWN and the stream stays open, as the
        health protocol says."""
        if not self._health_request(request, grpc_context, "Watch"):
            raise InvalidArgument(grpc_context.details())  # a stream's status needs a raise (SubscribeActions)
        if request.service not in HEALTH_SERVICES:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            await asyncio.Event().wait()  # until the client goes
        async with contextlib.aclosing(self.health_feed.changes()) as changes:
            async for status in changes:
                yield health_pb2.HealthCheckResponse(status=status)

    # -- calls from the project's gRPC front (gateway/grpc_front.py) ----------------------------

    async def grpc_unary(self, method: str, data: bytes, metadata: tuple) -> tuple[str, str, bytes]:
        """Parse ``data`` as ``method``'s request, run the RPC method Serve's proxy would run, and
        return (status code name, details, the reply's bytes)."""
        rpc = METHODS.get(method)
        if rpc is None or rpc.server_streaming:
            return "UNIMPLEMENTED", f"no unary method {_short(method)}", b""
        context = _CallContext(metadata)
        try:
            reply = await getattr(self, rpc.name)(rpc.parse(data), context)
        except Exception:  # noqa: BLE001 - the methods answer their own errors; this is a fault
            self._grpc_fault(rpc.name, context, time.perf_counter())
            return context.code().name, context.details(), b""
        ok = context.code() == grpc.StatusCode.OK
        return context.code().name, context.details(), reply.SerializeToString() if ok else b""

    async def grpc_stream(self, method: str, data: bytes, metadata: tuple):
        """The replies of a server-streaming ``method`` as bytes, then (status code name, details)."""
        rpc = METHODS.get(method)
        if rpc is None or not rpc.server_streaming:
            yield "UNIMPLEMENTED", f"no streaming method {_short(method)}"
            return
        context = _CallContext(metadata)
        try:
            async with contextlib.aclosing(getattr(self, rpc.name)(rpc.parse(data), context)) as replies:
                async for reply in replies:
                    yield reply.SerializeToString()
        except Exception:  # noqa: BLE001 - the status is on the context (the method set it before raising)
            if context.code() == grpc.StatusCode.OK:
                self._grpc_fault(rpc.name, context, time.perf_counter())
        yield context.code().name, context.details()

    async def feed_stats(self) -> dict[str, int]:
        """This replica's open streams and the polls made for them (tests, operators)."""
        return {"pid": os.getpid(), "action_streams": self.action_feed.subscribers, "outbox_reads": self.outbox_reads,
                "outbox_polls": self.action_feed.polls,
                "health_watchers": self.health_feed.watchers, "health_reads": self.health_feed.reads}

    # -- HTTP/JSON mirrors ------------------------------------------------------------------------

    async def _read_json(self, request: Request, limit: int) -> Any:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
        if not body:
            raise InvalidArgument("body: a JSON object is required")
        try:
            return orjson.loads(bytes(body))
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"body: malformed JSON ({exc})") from exc

    async def _http(self, request: Request, rpc: str, scope: str,
                    work: Callable[[Any, ApiKey | None], Awaitable[Any]], *, body: bool = True) -> Response:
        started = time.perf_counter()
        try:
            declared = request.headers.get("content-length")
            size = int(declared) if declared is not None and declared.isdigit() else None
            key = self._admit(request.headers.get("authorization"), scope, size)
            raw = await self._read_json(request, self.auth.body_limit(key, self.settings.max_body_bytes)) if body else None
            response = Response(orjson.dumps(await work(raw, key)), media_type="application/json")
            self.metrics.observe(rpc, "http", "200", time.perf_counter() - started)
            return response
        except RecsysError as exc:
            _, status = statuses(exc)
            self.metrics.observe(rpc, "http", str(status), time.perf_counter() - started)
            log.info("http %s rejected: %s %s", rpc, status, exc.message)
            headers = {"www-authenticate": "Bearer"} if status == 401 else None
            return http_errors.error_response(status, exc.kind, exc.message, headers)
        except Exception:  # noqa: BLE001 - a fault of ours: logged; the caller gets no internals
            request_id = http_errors.request_id(request)
            log.exception("http %s failed (request %s)", rpc, request_id)
            self.metrics.observe(rpc, "http", "500", time.perf_counter() - started)
            return http_errors.error_response(500, "internal", f"internal error; request id {request_id}")

    @app.post("/v1/recommend")
    async def http_recommend(self, request: Request) -> Response:
        async def work(raw, _key):
            out = await self.recommend(raw)
            return codec.recommendations_json(out["result"], out["request_id"])
        return await self._http(request, "Recommend", "recommend", work)

    @app.post("/v1/similar-items")
    async def http_similar(self, request: Request) -> Response:
        async def work(raw, _key):
            out = await self.similar(raw)
            return codec.recommendations_json(out["result"], out["request_id"], similar=True)
        return await self._http(request, "SimilarItems", "recommend", work)

    @app.post("/v1/events")
    async def http_events(self, request: Request) -> Response:
        async def work(raw, _key):
            return await self.track(*_list_body(raw, "events"))
        return await self._http(request, "TrackEvents", "events", work)

    @app.post("/v1/next-best-offer")
    async def http_next_best_offer(self, request: Request) -> Response:
        async def work(raw, _key):
            return await self.next_best_offer(raw)
        return await self._http(request, "NextBestOffer", "offers", work)

    @app.get("/v1/actions")
    async def http_actions(self, request: Request) -> Response:
        """One page of the outbox: ?after=SEQ&limit=N&kind=cart_abandonment (kind repeatable)."""
        async def work(_raw, _key):
            params = request.query_params
            unknown = set(params) - {"after", "limit", "kind"}
            if unknown:
                raise InvalidArgument(f"query: unknown parameter(s) {', '.join(sorted(unknown))}")
            try:
                after, limit = int(params.get("after", "0")), int(params.get("limit", "100"))
            except ValueError:
                raise InvalidArgument("after, limit: must be integers") from None
            after, kinds, _ = self._action_query(after, params.getlist("kind"), 0)
            limit = require_int(limit, "limit", low=1, high=1000)
            rows = await self._any_owner(lambda owner: owner.actions_after.remote(after, limit))
            next_after = rows[-1][0] if rows else after
            actions = [{"seq": seq, **a} for seq, a in rows if not kinds or a["kind"] in kinds]
            return {"actions": actions, "next_after": next_after}
        return await self._http(request, "SubscribeActions", "offers", work, body=False)

    @app.post("/v1/catalog")
    async def http_catalog(self, request: Request) -> Response:
        async def work(raw, _key):
            applied, request_id = await self.update_catalog(*_list_body(raw, "updates"))
            return {"applied": applied, "request_id": request_id}
        return await self._http(request, "UpdateCatalog", "admin", work)

    # `path` converters: a customer id may hold any printable character, "/" included; the client
    # percent-encodes it (quote(id, safe="")) and the server decodes the path once before routing.
    @app.delete("/v1/customers/{customer_id:path}")
    async def http_forget(self, customer_id: str, request: Request) -> Response:
        async def work(_raw, key):
            return await self.forget(customer_id, key)
        return await self._http(request, "ForgetCustomer", "admin", work, body=False)

    @app.get("/v1/customers/{customer_id:path}/export")
    async def http_export(self, customer_id: str, request: Request) -> Response:
        async def work(_raw, key):
            return await self.export(customer_id, key)
        return await self._http(request, "ExportCustomer", "admin", work, body=False)

    @app.get("/metrics")
    async def http_metrics(self) -> Response:
        """Prometheus text format; no key needed (scrapers sit inside the network)."""
        try:
            await self.routes.ensure()
            stats = await asyncio.wait_for(asyncio.gather(*[o.stats.remote() for o in self.routes.owners().values()]),
                                           5.0)
            self.metrics.owner_stats(stats)
        except Exception as exc:  # metrics must answer even when an owner does not
            log.warning("metrics: owner stats unavailable: %s", type(exc).__name__)
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    async def http_health(self) -> Response:
        try:
            version = await self.healthy()
        except Unavailable as exc:  # a shard not answering or not taking writes: not serving
            return Response(orjson.dumps({"status": "unavailable", "error": {"code": exc.kind, "message": exc.message}}),
                            status_code=503, media_type="application/json")
        return Response(orjson.dumps({"status": "ok", "model_version": version,
                                      "partitions": self.settings.partitions,
                                      "owners": len(self.routes.owners())}), media_type="application/json")
