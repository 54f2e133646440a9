"""The service's HTTP port: the project's own HTTP server, in the front process beside gRPC.

A request of an RPC that names a customer (``POST /v1/recommend``, ``/v1/similar-items`` with a
customer, ``/v1/events`` for one customer, ``/v1/next-best-offer``, ``DELETE /v1/customers/{id}``,
``GET /v1/customers/{id}/export``) is admitted here (key, size, scope, rate, in rpcs.admit's
order) and its body sent straight to the owner of the customer's partition
(``PartitionOwner.rpc_many``, coalesced with the gRPC calls to it), which parses it and answers from the RPC table (gateway/rpcs.py):
one hop, as for gRPC. The customer comes from the ``x-session-id`` header when the client sends it,
else from the path or the JSON body (one parse here).

Everything else (``/healthz``, ``/metrics``, ``/v1/actions``, ``/v1/catalog``, a batch of many
customers with no ``x-session-id``, a body that does not parse, unknown routes) is passed on
unchanged to Serve's HTTP proxy, which listens on loopback only, and so to an ingress replica.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
import uuid

import orjson

from engine.auth import Authenticator
from engine.errors import PayloadTooLarge, RecsysError
from engine.sharding import partition_for
from gateway.http_errors import error_body
from gateway.metrics import Metrics
from gateway.operations import IngressSettings
from gateway.rpcs import RPCS, Rpc, _sane_id, check_size, event_shares, http_routing_key
from gateway.status_map import statuses

log = logging.getLogger(__name__)

ROUTING_HEADER = "x-session-id"
_UNAVAILABLE = "the service cannot take the call now; retry"
# headers that describe one connection, not the request: never passed on
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "host", "content-length"}
# the request headers an owner reads (rpcs.Answering.http)
_TO_OWNER = ("authorization", "content-length", "x-request-id")


def _route_table() -> list[tuple[str, re.Pattern, Rpc]]:
    routes = []
    for rpc in RPCS:
        if not rpc.keyed:
            continue
        pattern = re.escape(rpc.http_path).replace(re.escape("{customer_id}"), "(?P<customer_id>.+)")
        routes.append((rpc.http_method, re.compile(f"^{pattern}$"), rpc))
    return routes


_ROUTES = _route_table()


def table_route(method: str, path: str) -> tuple[Rpc, dict[str, str]] | None:
    """The keyed RPC an HTTP request is for, with its path parameters (the path decoded once, as
    Serve's router matches it), or None."""
    for route_method, pattern, rpc in _ROUTES:
        if route_method == method:
            found = pattern.match(path)
            if found:
                return rpc, found.groupdict()
    return None


class _Gone(Exception):
    """The client disconnected before its body was read."""


def _batch(rpc: Rpc, body: bytes) -> dict | None:
    """The JSON object of a TrackEvents body, when it is one (None: any other RPC, or a body that
    does not parse as an object: the owner or the ingress answers that)."""
    if rpc.name != "TrackEvents" or not body:
        return None
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return raw if isinstance(raw, dict) else None


class HttpFront:
    """An ASGI application: the table's keyed routes straight to their owners, the rest to Serve."""

    def __init__(self, settings: IngressSettings, serve_url: str, metrics: Metrics, owner_calls):
        """``metrics``, ``owner_calls``: the gRPC front's (the same process; gateway/grpc_front.py
        OwnerCalls), so the calls to one owner are coalesced whichever protocol they came by."""
        self._owner_calls = owner_calls
        self._routes = owner_calls.routes
        self._settings = settings
        # its own rate buckets: HTTP calls are metered here, gRPC ones by the gRPC front
        self._auth = Authenticator(settings.auth)
        self._serve_url = serve_url.rstrip("/")
        self._client = None
        # a request passed on to the ingress may be as large as the largest key may send (the
        # ingress checks the caller's own limit); a larger declared length is refused unread
        self._pass_on_limit = max([settings.max_body_bytes, *(k.max_body_bytes or 0 for k in settings.auth.keys)])
        self.metrics = metrics
        self.direct = 0
        self.via_ingress = 0
        self._server = None
        self._main = None

    # -- the server -----------------------------------------------------------------------------
    async def start(self, host: str, port: int, certfile: str | None = None, keyfile: str | None = None) -> None:
        """Listen on host:port (TLS with a certificate); OSError when the port cannot be had."""
        import httpx
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"HTTP: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        sock.listen(2048)
        sock.setblocking(False)
        config = uvicorn.Config(self, lifespan="off", log_level="warning", access_log=False, http="httptools",
                                ssl_certfile=certfile, ssl_keyfile=keyfile, timeout_keep_alive=30,
                                timeout_graceful_shutdown=2, server_header=False)
        try:
            config.load()  # reads the certificate and key
        except Exception:
            sock.close()
            raise
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0), trust_env=False,
                                         limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        self._server = uvicorn.Server(config)
        # uvicorn's serve() without its signal handlers (they belong to Ray's worker process)
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup(sockets=[sock])
        # the server's clock (its Date header); the connections run by themselves
        self._main = asyncio.get_running_loop().create_task(self._server.main_loop())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._main is not None:
                await asyncio.gather(self._main, return_exceptions=True)
            await self._server.shutdown()
            self._server = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- one request ------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self._answer(scope, receive, send)
        except _Gone:
            return  # the client went away mid-body: nothing to answer
        except Exception:  # noqa: BLE001 - a fault of ours: logged; the caller gets no internals
            rid = uuid.uuid4().hex
            log.exception("http front: %s failed (request %s)", scope.get("method"), rid)
            await self._send(send, 500, error_body("internal", f"internal error; request id {rid}"), rid)

    async def _answer(self, scope, receive, send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = _sane_id(headers.get("x-request-id")) or uuid.uuid4().hex
        headers["x-request-id"] = rid
        route = table_route(scope["method"], scope["path"])
        started = time.perf_counter()
        if route is None:
            declared = headers.get("content-length")
            limit = self._pass_on_limit
            body = None if declared and declared.isdigit() and int(declared) > limit else await self._read(receive, limit)
            if body is None:
                await self._send(send, 413, error_body("payload_too_large",
                                                       f"body is larger than the limit of {limit} bytes"), rid)
                return
            await self._to_serve(scope, rid, body, send)
            return
        rpc, params = route
        try:
            key = self._auth.authenticate(headers.get("authorization"))
            declared = headers.get("content-length")
            check_size(self._auth, self._settings, key, int(declared) if declared and declared.isdigit() else None)
            limit = self._auth.body_limit(key, self._settings.max_body_bytes)
            body = await self._read(receive, limit)
            if body is None:
                raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
            # a batch of events is routed by its events (the body parsed once, here)
            batch = _batch(rpc, body)
            customer = self._customer(headers, params, body) if batch is None else ""
            if not customer and batch is None:  # nothing to route by: the ingress answers it (and admits it again)
                await self._to_serve(scope, rid, body, send)
                return
            self._auth.authorize(key, rpc.scope, time.monotonic())
            if batch is not None:
                await self._routes.ensure()  # a front's first call: its routes are read now
            # a batch of events: validated whole here, each owner's share to that owner
            shares = event_shares(rpc.from_http(batch, params), self._settings, self._routes.owner_of) \
                if batch is not None else [(partition_for(customer, self._routes.partitions), [])]
        except RecsysError as error:
            _, status = statuses(error)
            self.metrics.observe(rpc.name, "http", str(status), time.perf_counter() - started)
            await self._send(send, status, error_body(error.kind, error.message), rid,
                             {"www-authenticate": "Bearer"} if status == 401 else None)
            return
        self.direct += 1
        admitted = key.name if key is not None else ""
        to_owner = {name: headers[name] for name in _TO_OWNER if name in headers}
        try:
            if len(shares) == 1:
                status, reply, extra = await self._owner_calls.send(
                    shares[0][0], ("http", rpc.name, to_owner, params, body, admitted))
            else:
                status, reply, extra = await self._by_owner(rpc, to_owner, params, batch, shares, admitted)
        except Exception as exc:  # noqa: BLE001 - no owner until the deadline, or the owner call failed
            log.warning("http front: %s to its owner failed: %s", rpc.name, type(exc).__name__)
            self.metrics.observe(rpc.name, "http", "503", time.perf_counter() - started)
            status, reply, extra = 503, error_body("unavailable", _UNAVAILABLE), None
        await self._send(send, status, reply, rid, extra)

    async def _by_owner(self, rpc: Rpc, headers: dict, params: dict, batch: dict, shares: list,
                        admitted: str) -> tuple[int, bytes, dict | None]:
        """Each owner's share of a batch of events to that owner (a body of its events alone), the
        answers added up; an owner's refusal or fault is the answer."""
        events = batch["events"]
        headers = {name: value for name, value in headers.items() if name != "content-length"}
        answers = await asyncio.gather(*[
            self._owner_calls.send(partition, ("http", rpc.name, headers, params,
                                               orjson.dumps({**batch, "events": [events[i] for i in positions]}), admitted))
            for partition, positions in shares])
        failed = next((answer for answer in answers if answer[0] != 200), None)
        if failed is not None:
            return failed
        replies = [orjson.loads(reply) for _, reply, _ in answers]
        total = {name: sum(r[name] for r in replies) for name in ("accepted", "duplicates", "ignored")}
        return 200, orjson.dumps({**total, "request_id": replies[0]["request_id"]}), None

    def _customer(self, headers: dict, params: dict, body: bytes) -> str:
        try:  # header values arrive as latin-1; a customer id is UTF-8, as in the JSON body
            given = headers.get(ROUTING_HEADER, "").encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            given = ""
        if 0 < len(given) <= 256:
            return given
        if "customer_id" in params:
            return params["customer_id"]
        try:
            return http_routing_key(orjson.loads(body) if body else None)
        except (orjson.JSONDecodeError, TypeError):
            return ""  # the ingress answers the malformed body

    @staticmethod
    async def _read(receive, limit: int) -> bytes | None:
        """The whole body, or None once it passes ``limit`` bytes; _Gone if the client went away."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone()
            body.extend(message.get("body", b""))
            if len(body) > limit:
                return None
            if not message.get("more_body", False):
                break
        return bytes(body)

    @staticmethod
    async def _send(send, status: int, body: bytes, rid: str, extra: dict | None = None) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", rid.encode())]
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items())
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _to_serve(self, scope, rid: str, body: bytes, send) -> None:
        """Pass the request on to Serve's HTTP proxy as it came, headers as bytes and the path
        as sent (the ingress answers it)."""
        import httpx

        self.via_ingress += 1
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            raw_path += b"?" + scope["query_string"]
        url = httpx.URL(self._serve_url).copy_with(raw_path=raw_path)
        forward = [(k, v) for k, v in scope["headers"]
                   if k.decode("latin-1").lower() not in _HOP_BY_HOP and k.lower() != b"x-request-id"]
        forward.append((b"x-request-id", rid.encode()))
        try:
            reply = await self._client.request(scope["method"], url, headers=forward, content=body)
        except Exception as exc:  # noqa: BLE001 - Serve's proxy not answering
            log.warning("http front: passing %s on failed: %s", scope["method"], type(exc).__name__)
            await self._send(send, 503, error_body("unavailable", _UNAVAILABLE), rid)
            return
        out = [(k, v) for k, v in reply.headers.raw
               if k.decode("latin-1").lower() not in _HOP_BY_HOP | {"content-encoding", "date", "server"}]
        content = reply.content
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": reply.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})

