"""The ingress: one Ray Serve deployment answering HTTP/JSON (through Serve's proxy) and the gRPC
calls that do not name a customer (streams, health, the catalogue) on the same replicas.

The unary RPCs are declared once, in gateway/rpcs.py; this class serves that table (its gRPC
methods and HTTP routes are made from it below) with ``RemoteOwners`` (gateway/operations.py):
each request is validated here and sent to the owner of its customer's partition. gRPC calls
that carry a customer do not come here at all: the gRPC front sends them straight to the owner,
which answers them from the same table. Errors become statuses in one place
(gateway/status_map.py).
"""
# No `from __future__ import annotations` here: FastAPI needs the real Request annotation.

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import grpc
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from grpc_health.v1 import health_pb2
from ray import serve

from engine.events import ACTION_KINDS
from engine.errors import InvalidArgument, NotFound, PayloadTooLarge, RecsysError, Unavailable
from engine.validation import require_int
from gateway import codec, console, http_errors, openapi
from gateway.feeds import ActionFeed, SharedValue
from gateway.grpc_registration import METHODS, MalformedMessage
from gateway.metrics import Metrics
from gateway.operations import IngressSettings, RemoteOwners
from gateway.rpcs import RPCS, Answering, Rpc
from gateway.status_map import statuses
from engine.queries import parse_offer_query
from recsys.v1 import recsys_pb2 as pb

ACTIONS_PAGE = 100
ACTIONS_POLL_S = 0.25
# Serve's logger: with the JSON logging config (gateway/server.py) every line carries the
# request id, route and replica, so a client that sends x-request-id (HTTP) or request_id
# (gRPC metadata) can find its request's lines again.
log = logging.getLogger("ray.serve")

# How often a Health/Watch stream's status is refreshed (one read per replica, for every watcher).
HEALTH_WATCH_S = 1.0
# The service names Health answers for ("" is the server as a whole).
HEALTH_SERVICES = ("", "recsys.v1.Personalization")

# No slash redirects: a path that is not a route is a 404 in the error shape, not a 307 elsewhere.
app = FastAPI(title="recsys", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
http_errors.install(app)


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


class Ingress:
    def __init__(self, settings: IngressSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.owners = RemoteOwners(settings, self.metrics)
        self.routes = self.owners.routes
        self.answer = Answering(settings, self.owners, self.metrics)
        # one outbox poll and one health read per replica, whatever the number of open streams
        self.action_feed = ActionFeed(self._outbox_page, ACTIONS_PAGE, ACTIONS_POLL_S)
        self.health_feed = SharedValue(self._serving_status, HEALTH_WATCH_S)
        self.outbox_reads = 0
        self._console_rates = console.Rates()

    async def _outbox_page(self, after: int, limit: int) -> list:
        self.outbox_reads += 1
        return await self.owners.actions_after(after, limit)

    async def healthy(self) -> str:
        return await self.owners.healthy()

    # -- the table's RPCs over both protocols (their methods are made from gateway/rpcs.py below) ---
    async def _grpc_rpc(self, rpc: Rpc, request, grpc_context):
        metadata = grpc_context.invocation_metadata() if grpc_context is not None else ()
        code, details, reply = await self.answer.grpc(rpc, request, metadata)
        if code != grpc.StatusCode.OK:
            grpc_context.set_code(code)
            grpc_context.set_details(details)
            return rpc.grpc.response_cls()
        return reply

    async def _http_rpc(self, rpc: Rpc, request: Request) -> Response:
        async def read_body(limit: int) -> bytes:
            body = bytearray()
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limit:
                    raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
            return bytes(body)
        status, body, extra = await self.answer.http(rpc, request.headers, dict(request.path_params), read_body)
        return Response(body, status_code=status, media_type="application/json", headers=extra)

    # -- what is not in the table: streams, health, outbox pages, metrics ---------------------------
    def _grpc_admit(self, request, grpc_context, scope: str) -> None:
        metadata = dict(grpc_context.invocation_metadata()) if grpc_context is not None else {}
        self.answer.admit(metadata.get("authorization"), scope, request.ByteSize())
        if isinstance(request, MalformedMessage):
            raise InvalidArgument(f"malformed {request.type_name}: {request.error}")

    def _grpc_reject(self, rpc: str, error: RecsysError, grpc_context, started: float) -> None:
        code, details = self.answer.grpc_rejected(rpc, error, started)
        grpc_context.set_code(code)
        grpc_context.set_details(details)

    def _grpc_fault(self, rpc: str, grpc_context, started: float) -> None:
        code, details = self.answer.grpc_fault(rpc, started)
        grpc_context.set_code(code)
        grpc_context.set_details(details)

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
        if method in _TABLE_PATHS:
            return await self.answer.unary_bytes(method, data, metadata)
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

    # -- HTTP pages outside the table ----------------------------------------------------------------
    async def _http_page(self, request: Request, rpc: str, scope: str, work) -> Response:
        started = time.perf_counter()
        try:
            self.answer.admit(request.headers.get("authorization"), scope, None)
            response = Response(orjson.dumps(await work(None, None)), media_type="application/json")
            self.metrics.observe(rpc, "http", "200", time.perf_counter() - started)
            return response
        except RecsysError as exc:
            status, body, extra = _error(exc)
            self.metrics.observe(rpc, "http", str(status), time.perf_counter() - started)
            return Response(body, status_code=status, media_type="application/json", headers=extra)

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
            rows = await self.owners.actions_after(after, limit)
            next_after = rows[-1][0] if rows else after
            actions = [{"seq": seq, **a} for seq, a in rows if not kinds or a["kind"] in kinds]
            return {"actions": actions, "next_after": next_after}
        return await self._http_page(request, "SubscribeActions", "offers", work)

    @app.get("/metrics")
    async def http_metrics(self) -> Response:
        """Prometheus text format; no key needed (scrapers sit inside the network)."""
        return Response(await self._exposition(), media_type="text/plain; version=0.0.4")

    async def _exposition(self) -> bytes:
        try:
            self.metrics.owner_stats(await self.owners.owner_stats())
        except Exception as exc:  # metrics must answer even when an owner does not
            log.warning("metrics: owner stats unavailable: %s", type(exc).__name__)
        # each process's counters on their own: one that does not answer drops only its own
        self.metrics.partitions.set(self.settings.partitions)
        others = [*await self.owners.metrics_samples(), *await _front_samples(), *await _registry_samples()]
        # the owners answer the gRPC calls that name a customer: their counters are added to ours
        return self.metrics.exposition(others)

    # -- the console (gateway/console.py): pages behind an admin key kept in a cookie ----------------
    def _console_key(self, request: Request):
        """The admin key of the console's cookie (admitted as an API call is), or None."""
        key = request.cookies.get(console.COOKIE)
        if not key:
            return None
        try:
            return self.answer.admit(f"Bearer {key}", "admin", None)
        except RecsysError:
            return None

    def _console_page(self, html_text: str, status: int = 200) -> Response:
        return Response(html_text, status_code=status, media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-store", "x-frame-options": "DENY"})

    async def _console(self, request: Request, render) -> Response:
        if not self.settings.auth.enabled:
            key = None
        else:
            key = self._console_key(request)
            if key is None:
                return self._console_page(console.login_page(), 401)
        try:
            return self._console_page(await render(key))
        except RecsysError as exc:
            return self._console_page(console.page("error", f'<p class="bad" id="message">{console.esc(exc.message)}</p>'),
                                      statuses(exc)[1])

    @app.post("/console/login")
    async def console_login(self, request: Request) -> Response:
        form = await _form(request)
        key = form.get("key", "")
        try:
            self.answer.admit(f"Bearer {key}", "admin", None)
        except RecsysError as exc:
            return self._console_page(console.login_page(exc.message), 401)
        response = Response(status_code=303, headers={"location": "/console"})
        response.set_cookie(console.COOKIE, key, httponly=True, samesite="strict", path="/console",
                            secure=request.url.scheme == "https")
        return response

    @app.get("/console/logout")
    async def console_logout(self) -> Response:
        response = Response(status_code=303, headers={"location": "/console"})
        response.delete_cookie(console.COOKIE, path="/console")
        return response

    @app.get("/console")
    async def console_overview(self, request: Request) -> Response:
        async def render(_key):
            try:
                health = {"status": "ok", "model_version": await self.healthy(), "partitions": self.settings.partitions}
            except Unavailable as exc:
                health = {"status": "unavailable", "message": exc.message, "partitions": self.settings.partitions}
            owners = await self.owners.owner_stats()
            exposition = (await self._exposition()).decode()
            figures = console.rpc_figures(exposition)
            return console.overview(health, owners, figures, self._console_rates.update(figures),
                                    console.events_ingested(exposition))
        return await self._console(request, render)

    @app.get("/console/models")
    async def console_models(self, request: Request) -> Response:
        return await self._models_page(request)

    async def _models_page(self, request: Request, message: str = "", ok: bool = True) -> Response:
        from actors.names import find_registry

        async def render(_key):
            registry = find_registry()
            versions, manifests = await asyncio.gather(registry.versions.remote(), registry.manifests.remote())
            return console.models(versions, manifests, message, ok)
        return await self._console(request, render)

    @app.post("/console/models/promote")
    async def console_promote(self, request: Request) -> Response:
        return await self._model_change(request, "promote")

    @app.post("/console/models/rollback")
    async def console_rollback(self, request: Request) -> Response:
        return await self._model_change(request, "rollback")

    async def _model_change(self, request: Request, action: str) -> Response:
        from actors.names import find_registry

        if self.settings.auth.enabled and self._console_key(request) is None:
            return self._console_page(console.login_page(), 401)
        form = await _form(request)
        registry = find_registry()
        try:
            if action == "promote":
                result = await registry.promote.remote(form.get("version", ""), form.get("force") == "1")
            else:
                result = await registry.rollback.remote()
            message, ok = f"{action}: now serving {result.get('version', result)}", True
        except Exception as exc:  # noqa: BLE001 - the registry's refusal, shown as it words it
            cause = getattr(exc, "cause", None) or exc
            message, ok = f"{action} refused: {getattr(cause, 'message', None) or cause}", False
        return await self._models_page(request, message, ok)

    @app.get("/console/offers")
    async def console_offers(self, request: Request) -> Response:
        async def render(_key):
            await self.routes.ensure()
            answers = await asyncio.wait_for(asyncio.gather(*[o.offer_catalog.remote()
                                                              for o in self.routes.owners().values()]), 10.0)
            catalog = dict(answers[0])
            # a global budget is split over the partitions: what is left is the sum over every owner's
            catalog["budget_left"] = {}
            for answer in answers:
                for offer_id, left in answer["budget_left"].items():
                    catalog["budget_left"][offer_id] = catalog["budget_left"].get(offer_id, 0) + left
            catalog["partitions_counted"] = sum(len(a["partitions"]) for a in answers)
            return console.offers(catalog)
        return await self._console(request, render)

    @app.get("/console/experiments")
    async def console_experiments(self, request: Request) -> Response:
        async def render(_key):
            window = self.settings.experiment_window_days
            rows = await self.owners.any_owner(lambda owner: owner.experiment_report.remote(window))
            lists = await self.owners.any_owner(lambda owner: owner.recommendation_report.remote("arm"))
            return console.experiments(rows, window, lists)
        return await self._console(request, render)

    @app.get("/console/customer")
    async def console_customer(self, request: Request) -> Response:
        customer_id = request.query_params.get("id", "")

        async def render(key):
            if not customer_id:
                return console.customer_form()
            try:
                export = (await self.answer.ops.export({"customer_id": customer_id}, key))["export"]
            except NotFound:
                export = None
            recommended = (await self.answer.ops.recommend({"customer_id": customer_id, "k": 10}, key))["result"]
            reply = codec.recommendations_json(recommended, "")
            query = parse_offer_query({"customer_id": customer_id, "channel": "web"})
            offer = await self.owners._to_owner(customer_id, lambda owner: owner.offer_preview.remote(query, 0))
            return console.customer(customer_id, export, reply,
                                    "" if export is not None else "nothing stored for this customer", offer)
        return await self._console(request, render)

    @app.get("/console/customer/export")
    async def console_export(self, request: Request) -> Response:
        async def render(key):
            return (await self.answer.ops.export({"customer_id": request.query_params.get("id", "")}, key))["export"]
        if self.settings.auth.enabled and self._console_key(request) is None:
            return self._console_page(console.login_page(), 401)
        try:
            return Response(orjson.dumps(await render(self._console_key(request))), media_type="application/json",
                            headers={"content-disposition": "attachment; filename=customer.json"})
        except RecsysError as exc:
            status, body, extra = _error(exc)
            return Response(body, status_code=status, media_type="application/json", headers=extra)

    @app.post("/console/customer/erase")
    async def console_erase(self, request: Request) -> Response:
        form = await _form(request)

        async def render(key):
            customer_id = form.get("id", "")
            if not customer_id or form.get("confirm", "") != customer_id:
                return console.customer_form("not erased: type the customer id exactly to confirm", ok=False)
            report = await self.answer.ops.forget({"customer_id": customer_id}, key)
            return console.customer_form(f"erased {customer_id}: {report.get('events_deleted', 0)} stored events "
                                         "deleted, live state and model rows gone", ok=True)
        return await self._console(request, render)

    @app.get("/openapi.json")
    async def http_openapi(self) -> Response:
        """The HTTP API's OpenAPI 3.1 document, made from the RPC table (gateway/openapi.py); no key."""
        return Response(_OPENAPI, media_type="application/json")

    @app.get("/docs")
    async def http_docs(self) -> Response:
        return Response(openapi.DOCS_PAGE, media_type="text/html; charset=utf-8")

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


async def _form(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded), at most 64 KB."""
    from urllib.parse import parse_qsl

    body = await request.body()
    if len(body) > 65_536:
        raise PayloadTooLarge("form over 64 KB")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _error(exc: RecsysError) -> tuple[int, bytes, dict | None]:
    from gateway.status_map import statuses

    _, status = statuses(exc)
    return status, http_errors.error_body(exc.kind, exc.message), ({"www-authenticate": "Bearer"}
                                                                    if status == 401 else None)


async def _registry_samples() -> list[dict]:
    """The model registry's counters (promotions and rollbacks by result)."""
    from actors.names import find_registry

    try:
        return [await asyncio.wait_for(find_registry().metrics_samples.remote(), 5.0)]
    except Exception as exc:  # noqa: BLE001 - metrics answer without it
        log.warning("metrics: the model registry's counters unavailable: %s", type(exc).__name__)
        return []


async def _front_samples() -> list[dict]:
    """The gRPC front's counters (the calls it rejected before any owner saw them), if it runs."""
    import ray

    from gateway.server import GRPC_FRONT_NAME

    try:
        front = ray.get_actor(GRPC_FRONT_NAME, namespace="recsys")
        return [await asyncio.wait_for(front.metrics_samples.remote(), 5.0)]
    except Exception as exc:  # noqa: BLE001 - not running (the application builder), or not answering
        if not isinstance(exc, ValueError):
            log.warning("metrics: the gRPC front's counters unavailable: %s", type(exc).__name__)
        return []


_TABLE_PATHS = frozenset(rpc.grpc.path for rpc in RPCS)
_OPENAPI = orjson.dumps(openapi.document(RPCS))


def _grpc_method(rpc: Rpc):
    async def method(self, request, grpc_context=None):
        return await self._grpc_rpc(rpc, request, grpc_context)
    method.__name__ = rpc.name
    method.__qualname__ = f"Ingress.{rpc.name}"
    return method


def _http_route(rpc: Rpc):
    async def endpoint(self, request: Request) -> Response:
        return await self._http_rpc(rpc, request)
    endpoint.__name__ = f"http_{rpc.name}"
    endpoint.__qualname__ = f"Ingress.http_{rpc.name}"
    return endpoint


# Every RPC of the table, as a gRPC method (named after the RPC, as Serve's gRPC proxy calls it) and
# an HTTP route; a customer id in a path may hold "/" (the client percent-encodes it).
for _rpc in RPCS:
    setattr(Ingress, _rpc.name, _grpc_method(_rpc))
    _endpoint = _http_route(_rpc)
    setattr(Ingress, _endpoint.__name__, _endpoint)
    app.add_api_route(_rpc.http_path.replace("{customer_id}", "{customer_id:path}"), _endpoint,
                      methods=[_rpc.http_method])

# An open stream (SubscribeActions, Health/Watch) holds one of the replica's ongoing requests for
# as long as it is open; parked, it costs nothing else (gateway/feeds.py), hence the high bound.
Ingress = serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)(serve.ingress(app)(Ingress))
