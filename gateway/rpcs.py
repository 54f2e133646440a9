"""Every unary RPC declared once: its scope, how its request becomes a body (from a gRPC message
or from an HTTP request), the operation that answers it (gateway/operations.py), how the answer
is encoded for each protocol, and the routing key that names the owner of its customer.

``Answering`` serves the table over either protocol, in any process: an ingress replica (HTTP
through Serve's proxy, and gRPC through Serve's gRPC proxy in the application builder), and a
partition owner (gRPC from the project's gRPC front, which sends a call carrying a customer
straight to that customer's owner). Admission (key, scope, rate, size), error statuses
(gateway/status_map.py) and metrics are here, once for every RPC and protocol.

The streaming RPCs (SubscribeActions, Health) and the HTTP-only pages (/v1/actions, /healthz,
/metrics) are the ingress's own (gateway/ingress.py).
"""
from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import grpc
import orjson

from engine.auth import ApiKey, Authenticator
from engine.errors import InvalidArgument, PayloadTooLarge, RecsysError
from engine.sharding import partition_for
from engine.validation import reject_unknown
from gateway import codec
from gateway.grpc_registration import METHODS, MalformedMessage, RpcMethod
from gateway.metrics import Metrics
from gateway.operations import (REQUEST_ID, IngressSettings, LocalFirst, Operations, RemoteOwners, parse_track,
                                request_id, serve_request_id)
from gateway.status_map import statuses
from recsys.v1 import recsys_pb2 as pb

log = logging.getLogger("ray.serve")
# one JSON line per call an owner answers (its worker log): the request id finds it again
access = logging.getLogger("recsys.access")

SERVICE_PATH = "/recsys.v1.Personalization/"


def _list_body(field_name: str) -> Callable[[Any, dict], Any]:
    """An HTTP body of the shape {field: [...], "request_id": "..."}."""
    def parse(raw: Any, _params: dict) -> Any:
        if not isinstance(raw, dict):
            raise InvalidArgument(f"body: must be an object with an '{field_name}' list")
        reject_unknown(raw, {field_name, "request_id"}, "body")
        return raw
    return parse


def _the_body(raw: Any, _params: dict) -> Any:
    return raw


def _customer_path(_raw: Any, params: dict) -> Any:
    return {"customer_id": params["customer_id"]}


def _customer_message(msg) -> dict[str, Any]:
    return {"customer_id": msg.customer_id, "request_id": msg.request_id}


def _one_customer(events) -> str:
    """The customer of a batch's first event: the owner of that partition answers it (the rest of
    the batch, if any, it forwards)."""
    return events[0].customer_id if len(events) else ""


@dataclass(frozen=True)
class Rpc:
    name: str                                   # the gRPC method, and the metrics' rpc label
    scope: str                                  # what the API key must allow
    run: Callable[[Operations, Any, ApiKey | None], Awaitable[Any]]
    from_message: Callable[[Any], Any]          # gRPC message -> body
    to_message: Callable[[Any], Any]            # answer -> gRPC message
    to_json: Callable[[Any], Any]               # answer -> JSON body
    http_method: str
    http_path: str                              # with {customer_id} where the path names the customer
    from_http: Callable[[Any, dict], Any] = _the_body   # (JSON body or None, path parameters) -> body
    routing_key: Callable[[Any], str] | None = None  # gRPC message -> customer id; None: names none
    grpc: RpcMethod = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "grpc", METHODS[SERVICE_PATH + self.name])

    @property
    def keyed(self) -> bool:
        """Whether the RPC names a customer (and so has an owner to go to)."""
        return self.routing_key is not None

    def key_of(self, msg) -> str:
        return self.routing_key(msg) if self.routing_key is not None else ""

    @property
    def http_body(self) -> bool:
        return self.http_method == "POST"


RPCS: tuple[Rpc, ...] = (
    Rpc("Recommend", "recommend", Operations.recommend, codec.recommend_request,
        lambda out: codec.recommendations_proto(out["result"], out["request_id"]),
        lambda out: codec.recommendations_json(out["result"], out["request_id"]),
        "POST", "/v1/recommend", routing_key=lambda msg: msg.customer_id),
    Rpc("SimilarItems", "recommend", Operations.similar, codec.similar_request,
        lambda out: codec.similar_proto(out["result"], out["request_id"]),
        lambda out: codec.recommendations_json(out["result"], out["request_id"], similar=True),
        "POST", "/v1/similar-items", routing_key=lambda msg: msg.customer_id),
    Rpc("TrackEvents", "events", Operations.track,
        lambda msg: {"events": [codec.event(e) for e in msg.events], "request_id": msg.request_id},
        lambda out: pb.TrackEventsResponse(**out), lambda out: out,
        "POST", "/v1/events", _list_body("events"), routing_key=lambda msg: _one_customer(msg.events)),
    Rpc("NextBestOffer", "offers", Operations.next_best_offer, codec.offer_request,
        lambda out: codec.offer_proto(out, out["request_id"]), lambda out: out,
        "POST", "/v1/next-best-offer", routing_key=lambda msg: msg.customer_id),
    Rpc("UpdateCatalog", "admin", Operations.update_catalog,
        lambda msg: {"updates": [codec.catalog_update(u) for u in msg.updates], "request_id": msg.request_id},
        lambda out: pb.UpdateCatalogResponse(**out), lambda out: out,
        "POST", "/v1/catalog", _list_body("updates")),
    # a customer id may hold any printable character, "/" included: the client percent-encodes it
    # (quote(id, safe="")) and the server decodes the path once before routing
    Rpc("ForgetCustomer", "admin", Operations.forget, _customer_message,
        lambda out: pb.ForgetCustomerResponse(**out), lambda out: {k: v for k, v in out.items() if k != "request_id"},
        "DELETE", "/v1/customers/{customer_id}", _customer_path, routing_key=lambda msg: msg.customer_id),
    Rpc("ExportCustomer", "admin", Operations.export, _customer_message,
        lambda out: pb.ExportCustomerResponse(customer_id=out["export"]["customer_id"],
                                              export_json=orjson.dumps(out["export"]).decode(),
                                              request_id=out["request_id"]),
        lambda out: out["export"],
        "GET", "/v1/customers/{customer_id}/export", _customer_path, routing_key=lambda msg: msg.customer_id),
)
BY_NAME: dict[str, Rpc] = {rpc.name: rpc for rpc in RPCS}
BY_PATH: dict[str, Rpc] = {rpc.grpc.path: rpc for rpc in RPCS}


def http_routing_key(raw: Any) -> str:
    """The customer of a keyed RPC's JSON body (its ``customer_id``), "" when there is none to
    route by (the ingress answers those). A batch of events is routed by its events instead
    (``event_shares``)."""
    found = raw.get("customer_id") if isinstance(raw, dict) else None
    return found if isinstance(found, str) and 0 < len(found) <= 256 else ""


SPLIT_CLOCK_MARGIN_MS = 60_000


def event_shares(body: Any, settings: IngressSettings, owner_of: Sequence[str | None]) -> list[tuple[int, list[int]]]:
    """A TrackEvents body's events split by owner: per owner, in the order of its first event, one
    of its partitions to route by and the positions of its events. A batch whose customers all
    have one owner is one share, not parsed here (that owner validates it, once). A batch that
    spans owners is validated whole first, as the owner validates it (operations.parse_track: a
    bad event rejects all of it, before any owner sees any). One share of every event when some
    event's partition has no owner now (a move): the first event's owner gets the batch and
    forwards the rest once."""
    def partition(customer: str) -> int:
        return partition_for(customer, settings.partitions)

    raw = body.get("events") if isinstance(body, dict) else None
    customers = [e.get("customer_id") if isinstance(e, dict) else None for e in raw] if isinstance(raw, list) else []
    # (a batch over the size limit is refused by parse_track below before any work per event)
    if 0 < len(customers) <= settings.max_events_per_request and all(isinstance(c, str) and c for c in customers):
        owners = {owner_of[partition(c)] for c in customers}
        if len(owners) == 1 or None in owners:
            return [(partition(customers[0]), list(range(len(customers))))]
    # held to a clock a minute behind this one: an owner whose clock is behind the front's by up to
    # that still accepts every share the front let through (none is refused after another is stored)
    _, events = parse_track(body, settings, int(time.time() * 1000) - SPLIT_CLOCK_MARGIN_MS)
    shares: dict[str, tuple[int, list[int]]] = {}
    for i, event in enumerate(events):
        p = partition(event.customer_id)
        shares.setdefault(owner_of[p], (p, []))[1].append(i)
    return list(shares.values())


def check_size(auth: Authenticator, settings: IngressSettings, key: ApiKey | None, size: int | None) -> None:
    limit = auth.body_limit(key, settings.max_body_bytes)
    if size is not None and size > limit:
        raise PayloadTooLarge(f"request is {size} bytes; the limit is {limit}")


def admit(auth: Authenticator, settings: IngressSettings, authorization: str | None, scope: str,
          size: int | None) -> ApiKey | None:
    """Authenticate; check the size against the key's limit; authorise and meter (a request
    refused for its size uses none of the key's rate)."""
    key = auth.authenticate(authorization)
    check_size(auth, settings, key, size)
    auth.authorize(key, scope, time.monotonic())
    return key


_NOT_YET = object()


class Answering:
    """The table served in one process: admission, the operation, the status and the encoding."""

    def __init__(self, settings: IngressSettings, owners, metrics: Metrics, access_log: str = ""):
        """``access_log``: this process's name, to log one JSON line per call with its request id (in
        an owner; an ingress replica has Serve's own access log)."""
        self.settings = settings
        self.metrics = metrics
        self.auth = Authenticator(settings.auth)
        self.ops = Operations(settings, owners, metrics)
        self.access_log = access_log

    def admit(self, authorization: str | None, scope: str, size: int | None) -> ApiKey | None:
        return admit(self.auth, self.settings, authorization, scope, size)

    def key_named(self, name: str) -> ApiKey | None:
        """The key a call was admitted with elsewhere (the gRPC front): "" when auth is off."""
        return next((k for k in self.settings.auth.keys if k.name == name), None) if name else None

    def body_limit(self, key: ApiKey | None) -> int:
        return self.auth.body_limit(key, self.settings.max_body_bytes)

    # -- gRPC ----------------------------------------------------------------------------------------
    async def grpc(self, rpc: Rpc, request, metadata, admitted: Any = _NOT_YET) -> tuple[grpc.StatusCode, str, Any]:
        """(status, details, reply message or None) for a parsed (or MalformedMessage) request.
        ``admitted``: the key the call was already admitted with (by the gRPC front), if it was."""
        started = time.perf_counter()
        meta = dict(metadata or ())
        # one id for the reply, the access line and any fault message of this call
        token = REQUEST_ID.set(_sane_id(meta.get("request_id")) or serve_request_id() or uuid.uuid4().hex)
        try:
            if admitted is _NOT_YET:
                key = self.admit(meta.get("authorization"), rpc.scope, request.ByteSize())
            else:
                key = admitted
            if isinstance(request, MalformedMessage):
                raise InvalidArgument(f"malformed {request.type_name}: {request.error}")
            reply = rpc.to_message(await rpc.run(self.ops, rpc.from_message(request), key))
            self.metrics.observe(rpc.name, "grpc", "OK", time.perf_counter() - started)
            self._access(rpc.name, "OK", started)
            return grpc.StatusCode.OK, "", reply
        except RecsysError as error:
            code, details = self.grpc_rejected(rpc.name, error, started)
            self._access(rpc.name, code.name, started)
            return code, details, None
        except Exception:  # noqa: BLE001 - a fault of ours, not of the request
            code, details = self.grpc_fault(rpc.name, started)
            self._access(rpc.name, code.name, started)
            return code, details, None
        finally:
            REQUEST_ID.reset(token)

    def _access(self, name: str, code: str, started: float) -> None:
        if self.access_log:
            access.info(orjson.dumps({"request_id": request_id(""), "rpc": name, "code": code, "process": self.access_log,
                                      "duration_ms": round((time.perf_counter() - started) * 1000, 3)}).decode())

    def grpc_rejected(self, name: str, error: RecsysError, started: float) -> tuple[grpc.StatusCode, str]:
        code, _ = statuses(error)
        self.metrics.observe(name, "grpc", code.name, time.perf_counter() - started)
        log.info("grpc %s rejected: %s %s", name, code.name, error.message)
        return code, error.message

    def grpc_fault(self, name: str, started: float) -> tuple[grpc.StatusCode, str]:
        """INTERNAL for an exception nothing expected: its traceback goes to the log, never to the
        caller (it could name hosts, processes and code); the caller gets the request id."""
        rid = request_id("")
        log.exception("grpc %s failed (request %s)", name, rid)
        self.metrics.observe(name, "grpc", "INTERNAL", time.perf_counter() - started)
        return grpc.StatusCode.INTERNAL, f"internal error; request id {rid}"

    async def unary_bytes(self, method: str, data: bytes, metadata: tuple,
                          admitted: str | None = None) -> tuple[str, str, bytes]:
        """A call from the project's gRPC front: (status code name, details, reply bytes).
        ``admitted``: the name of the key the front admitted it with ("" auth off; None: not admitted)."""
        rpc = BY_PATH.get(method)
        if rpc is None:
            return "UNIMPLEMENTED", f"no unary method {method[:100]}", b""
        key = _NOT_YET if admitted is None else self.key_named(admitted)
        code, details, reply = await self.grpc(rpc, rpc.grpc.parse(data), metadata, key)
        return code.name, details, reply.SerializeToString() if reply is not None else b""

    async def http_bytes(self, name: str, headers: dict, params: dict, body: bytes,
                         admitted: str) -> tuple[int, bytes, dict | None]:
        """A request from the project's HTTP front, admitted there with the key named ``admitted``
        ("": auth is off), its body read: (status, JSON bytes, extra headers)."""
        async def read_body(_limit: int) -> bytes:
            return body
        return await self.http(BY_NAME[name], headers, params, read_body, self.key_named(admitted))

    # -- HTTP ----------------------------------------------------------------------------------------
    async def http(self, rpc: Rpc, headers, params: dict, read_body: Callable[[int], Awaitable[bytes]],
                   admitted: Any = _NOT_YET) -> tuple[int, bytes, dict | None]:
        """(status, JSON bytes, extra headers) for one HTTP request: ``headers`` a mapping with
        lower-case names, ``read_body(limit)`` the body, refused past ``limit`` bytes.
        ``admitted``: the key the request was already admitted with (by the HTTP front), if it was."""
        started = time.perf_counter()
        token = REQUEST_ID.set(_sane_id(headers.get("x-request-id")) or serve_request_id() or uuid.uuid4().hex)
        try:
            if admitted is _NOT_YET:
                declared = headers.get("content-length")
                size = int(declared) if declared is not None and declared.isdigit() else None
                key = self.admit(headers.get("authorization"), rpc.scope, size)
            else:
                key = admitted
            raw = _json(await read_body(self.body_limit(key))) if rpc.http_body else None
            out = rpc.to_json(await rpc.run(self.ops, rpc.from_http(raw, params), key))
            self.metrics.observe(rpc.name, "http", "200", time.perf_counter() - started)
            self._access(rpc.name, "200", started)
            return 200, orjson.dumps(out), None
        except RecsysError as exc:
            _, status = statuses(exc)
            self.metrics.observe(rpc.name, "http", str(status), time.perf_counter() - started)
            self._access(rpc.name, str(status), started)
            log.info("http %s rejected: %s %s", rpc.name, status, exc.message)
            return status, _error_body(exc.kind, exc.message), {"www-authenticate": "Bearer"} if status == 401 else None
        except Exception:  # noqa: BLE001 - a fault of ours: logged; the caller gets no internals
            rid = request_id("")
            log.exception("http %s failed (request %s)", rpc.name, rid)
            self.metrics.observe(rpc.name, "http", "500", time.perf_counter() - started)
            self._access(rpc.name, "500", started)
            return 500, _error_body("internal", f"internal error; request id {rid}"), None
        finally:
            REQUEST_ID.reset(token)


def _error_body(kind: str, message: str) -> bytes:
    from gateway.http_errors import error_body

    return error_body(kind, message)


def _json(body: bytes) -> Any:
    if not body:
        raise InvalidArgument("body: a JSON object is required")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"body: malformed JSON ({exc})") from exc


def _sane_id(value: Any) -> str:
    """A caller's request id when it can name the request in logs and headers: short, printable ASCII."""
    return value if isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable() else ""


@dataclass(frozen=True)
class OwnerEdge:
    """What a partition owner needs to answer the table itself: built in the owner's process, on
    its event loop, from the settings the service started with."""
    settings: IngressSettings

    def build(self, core) -> tuple[Answering, Metrics]:
        settings = dataclasses.replace(self.settings, partitions=core.settings.partitions)
        metrics = Metrics()
        owners = LocalFirst(core, RemoteOwners(settings, metrics), metrics)
        if not access.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            access.addHandler(handler)
            access.setLevel(logging.INFO)
            access.propagate = False
        return Answering(settings, owners, metrics, access_log=core.name), metrics
