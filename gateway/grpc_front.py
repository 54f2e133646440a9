"""The service's gRPC port: the project's own gRPC server in front of the ingress replicas.

Why not Serve's gRPC proxy: in Ray 2.60 it always listens on every interface (``[::]:PORT``, in
``ray/serve/_private/grpc_util.py::start_grpc_server``; gRPCOptions has no host) and it has no
TLS. So ``recsys serve`` does not start it. The front, one Ray actor running a ``grpc.aio``
server, binds the configured host (``--host``, 127.0.0.1 by default), with TLS when a certificate
is configured, and hands each call to an ingress replica through a Serve deployment handle, as
Serve's proxy itself does: the request's bytes and metadata go to ``Ingress.grpc_unary`` or
``Ingress.grpc_stream``, which parse the message, run the same RPC method that Serve's proxy
would call, and return the status and the reply's bytes. Nothing else listens for gRPC.

A unary call that names a customer (Recommend, SimilarItems with a customer, TrackEvents,
NextBestOffer, ForgetCustomer, ExportCustomer: gateway/rpcs.py ``routing_key``) does not go through
an ingress replica: the front looks up the owner of the customer's partition in its copy of the
placement's routes and sends the call's bytes straight to that owner (``PartitionOwner.rpc_many``, coalesced),
which answers it from the same RPC table: one hop from the front to the process that holds the
customer and scores. The customer comes from the ``x-session-id`` metadata when the client sends it
(the project's clients do), else from the request itself. A call that reaches an owner that no longer
holds the partition is forwarded once by that owner; one whose owner is gone is sent again to the
new owner (gateway/routing.py). Everything else (no customer, the health service) goes to an
ingress replica through a Serve handle.

A server stream (SubscribeActions, Health/Watch) is a streaming handle call. When the client
cancels, disconnects, or its deadline passes, gRPC cancels the front's handler, which cancels the
handle call, and the replica's stream ends at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import grpc
import ray

from engine.sharding import partition_for
from gateway.grpc_registration import METHODS, SERVICE_NAMES, RpcMethod
from engine.auth import Authenticator
from engine.errors import RecsysError
from gateway.coalesce import PerOwner
from gateway.metrics import Metrics
from gateway.operations import SHARD_TIMEOUT_S, IngressSettings
from gateway.routing import Routes
from gateway.rpcs import BY_PATH, _sane_id, check_size, event_shares
from gateway.status_map import statuses
from recsys.v1 import recsys_pb2 as pb

log = logging.getLogger(__name__)

# Metadata that belongs to the transport, not to the caller; never forwarded.
_HOP_BY_HOP = {"user-agent", "grpc-accept-encoding", "grpc-encoding", "grpc-timeout", "te", "content-type"}
# Requests are checked against the configured size limits in the ingress; this only stops a
# client from making the front buffer an arbitrarily large message first.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_UNAVAILABLE = "the service cannot take the call now; retry"


def bind_address(host: str, port: int) -> str:
    """host:port as gRPC wants it (an IPv6 literal in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _metadata(context) -> tuple:
    return tuple((k, v) for k, v in (context.invocation_metadata() or ())
                 if k not in _HOP_BY_HOP and not k.startswith(":"))


def _request_id(metadata: tuple) -> str:
    """The caller's ``request_id`` metadata when it is a sane one, else a new id: it names the
    request in every log line of the replica."""
    for key, value in metadata:
        if key == "request_id" and isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable():
            return value
    return uuid.uuid4().hex


def _handoff(rpc: RpcMethod, metadata: tuple) -> None:
    # Serve's handle takes the request id and route from the caller's request context (a
    # contextvar, so per call here); Serve's own gRPC proxy sets them the same way.
    from ray.serve.context import _set_request_context

    _set_request_context(route=rpc.path, request_id=_request_id(metadata))


# the metadata a client sends its routing key in (the customer id): the header Serve's proxies read
# for session affinity, so one client code path serves both
ROUTING_KEY = "x-session-id"


def routing_key(rpc_path: str, request: bytes, metadata: tuple) -> str:
    """The customer a unary call is for: the client's x-session-id, else the request's own
    (parsed here); "" for a call of an RPC that names no customer, or one that does not parse (the
    ingress answers that)."""
    entry = BY_PATH.get(rpc_path)
    if entry is None or not entry.keyed:
        return ""
    for key, value in metadata:
        if key == ROUTING_KEY and isinstance(value, str) and 0 < len(value) <= 256:
            return value
    try:
        return entry.key_of(entry.grpc.request_cls.FromString(request))
    except Exception:  # noqa: BLE001 - malformed: the ingress answers INVALID_ARGUMENT
        return ""


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, handle, routes: Routes | None, settings: IngressSettings | None):
        self._unary_handle = handle
        self._stream_handle = handle.options(stream=True)
        self._routes = routes
        self._settings = settings
        # a call sent straight to an owner is admitted here (key, scope, rate, size), so a key's
        # rate is metered once for all gRPC calls, whichever owner answers them
        self._auth = Authenticator(settings.auth) if settings is not None else None
        self.metrics = Metrics()
        # the calls to owners, gRPC and HTTP (gateway/http_front.py shares it)
        self.owner_calls = OwnerCalls(routes, settings, self.metrics) if routes is not None else None
        self.direct = 0   # calls sent straight to an owner
        self.via_ingress = 0

    def _reject(self, rpc: RpcMethod, error: RecsysError, started: float) -> tuple[str, str, bytes]:
        code, _ = statuses(error)
        self.metrics.observe(rpc.name, "grpc", code.name, time.perf_counter() - started)
        return code.name, error.message, b""

    async def _direct(self, rpc: RpcMethod, request: bytes, metadata: tuple) -> tuple[str, str, bytes] | None:
        """The call answered by its customer's owner, or None when it names no customer (or does
        not parse): the ingress answers those. The caller's key is checked before the request is
        parsed, so a caller without one costs no parse here; its scope, rate and size after."""
        started = time.perf_counter()
        authorization = dict(metadata).get("authorization")
        try:
            api_key = self._auth.authenticate(authorization)
            check_size(self._auth, self._settings, api_key, len(request))
        except RecsysError as error:
            return self._reject(rpc, error, started)
        key = routing_key(rpc.path, request, metadata)
        if not key:
            return None
        self.direct += 1
        try:  # the order of rpcs.admit: the key, its size limit, then its scope and rate
            self._auth.authorize(api_key, BY_PATH[rpc.path].scope, time.monotonic())
        except RecsysError as error:
            return self._reject(rpc, error, started)
        admitted = api_key.name if api_key is not None else ""
        try:
            if rpc.name == "TrackEvents":
                answer = await self._track_by_owner(rpc, request, metadata, admitted, started)
                if answer is not None:
                    return answer
            return await self.owner_calls.send(partition_for(key, self._routes.partitions),
                                               ("grpc", rpc.path, request, metadata, admitted))
        except Exception as exc:  # noqa: BLE001 - no owner until the deadline, owner call failed
            log.warning("grpc front: %s to its owner failed: %s", rpc.path, type(exc).__name__)
            self.metrics.observe(rpc.name, "grpc", "UNAVAILABLE", time.perf_counter() - started)
            return "UNAVAILABLE", _UNAVAILABLE, b""

    async def _track_by_owner(self, rpc: RpcMethod, request: bytes, metadata: tuple, admitted: str,
                              started: float) -> tuple[str, str, bytes] | None:
        """A TrackEvents batch, validated whole here, then each owner's share sent to that owner
        (nothing for an owner to forward) and the answers added up; a batch of one owner's events
        goes whole, as it came. None when it does not parse (its owner answers INVALID_ARGUMENT)."""
        try:
            message = rpc.request_cls.FromString(request)
        except Exception:  # noqa: BLE001 - the owner answers INVALID_ARGUMENT with the parser's words
            return None
        entry = BY_PATH[rpc.path]
        await self._routes.ensure()  # a front's first call: its routes are read now
        try:
            shares = event_shares(entry.from_message(message), self._settings, self._routes.owner_of)
        except RecsysError as error:
            return self._reject(rpc, error, started)
        if len(shares) == 1:
            return await self.owner_calls.send(shares[0][0], ("grpc", rpc.path, request, metadata, admitted))
        # one id in every owner's log line for the shares, as the one owner of an unsplit call logs
        # it (the caller's request_id metadata, else a new one); the reply's is the body's, if any
        logged = _sane_id(dict(metadata).get("request_id")) or uuid.uuid4().hex
        metadata = (*(m for m in metadata if m[0] != "request_id"), ("request_id", logged))
        answers = await asyncio.gather(*[
            self.owner_calls.send(partition, ("grpc", rpc.path, pb.TrackEventsRequest(
                events=[message.events[i] for i in positions], request_id=message.request_id).SerializeToString(),
                metadata, admitted))
            for partition, positions in shares])
        failed = next((answer for answer in answers if answer[0] != "OK"), None)
        if failed is not None:  # nothing the front validated can fail a share; a store fault can
            return failed
        replies = [pb.TrackEventsResponse.FromString(body) for _, _, body in answers]
        return "OK", "", pb.TrackEventsResponse(
            accepted=sum(r.accepted for r in replies), duplicates=sum(r.duplicates for r in replies),
            ignored=sum(r.ignored for r in replies), request_id=replies[0].request_id).SerializeToString()

    def service(self, details):
        rpc = METHODS.get(details.method)
        if rpc is None:
            return None  # gRPC answers UNIMPLEMENTED (or the reflection service takes it)
        if rpc.server_streaming:
            return grpc.unary_stream_rpc_method_handler(self._stream(rpc))
        return grpc.unary_unary_rpc_method_handler(self._unary(rpc))

    def _unary(self, rpc: RpcMethod):
        async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = _metadata(context)
            answer = await self._direct(rpc, request, metadata) if self._routes is not None and rpc.path in BY_PATH \
                else None
            if answer is not None:
                code, details, body = answer
                if code != "OK":
                    await context.abort(grpc.StatusCode[code], details)
                return body
            self.via_ingress += 1
            _handoff(rpc, metadata)
            response = self._unary_handle.grpc_unary.remote(rpc.path, request, metadata)
            try:
                code, details, body = await response
            except asyncio.CancelledError:  # the client went away or its deadline passed
                response.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - no replica, replica died, back-pressure
                log.warning("grpc front: %s failed: %s", rpc.path, type(exc).__name__)
                code, details, body = "UNAVAILABLE", _UNAVAILABLE, b""
            if code != "OK":
                await context.abort(grpc.StatusCode[code], details)
            return body
        return call

    def _stream(self, rpc: RpcMethod):
        async def call(request: bytes, context: grpc.aio.ServicerContext):
            metadata = _metadata(context)
            _handoff(rpc, metadata)
            responses = self._stream_handle.grpc_stream.remote(rpc.path, request, metadata)
            status = None
            try:
                async for item in responses:
                    if isinstance(item, tuple):  # the last item: the stream's status
                        status = item
                        break
                    yield item
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("grpc front: %s stream failed: %s", rpc.path, type(exc).__name__)
                status = ("UNAVAILABLE", _UNAVAILABLE)
            finally:
                if status is None:  # cancelled, or the consumer stopped: end the replica's stream now
                    responses.cancel()
            if status is None:
                status = ("INTERNAL", "the stream ended without a status")
            if status[0] != "OK":
                await context.abort(grpc.StatusCode[status[0]], status[1])
        return call


class OwnerCalls:
    """The fronts' calls to owners, gRPC and HTTP alike (one per front process): each to the
    owner of a partition in the routes, again after a move until the deadline; the calls waiting
    for one owner travel in one actor call (``PartitionOwner.rpc_many``, gateway/coalesce.py)."""

    def __init__(self, routes: Routes, settings: IngressSettings, metrics: Metrics):
        self.routes = routes
        self._calls = PerOwner("rpc_many", settings.shard_batch_max, settings.shard_calls_in_flight,
                               metrics.shard_batch.labels("front").observe)

    async def send(self, partition: int, call: tuple) -> Any:
        return await asyncio.wait_for(
            self.routes.call(partition, lambda name, owner: self._calls.submit(name, owner, call),
                             time.monotonic() + SHARD_TIMEOUT_S),
            SHARD_TIMEOUT_S + 1.0)


@ray.remote(num_cpus=0, max_restarts=-1)
class GrpcFront:
    """Listens on ``host:port`` (TLS when a certificate and key are given) and hands every call of
    recsys.v1.Personalization and grpc.health.v1.Health to the ``deployment`` of ``app``;
    serves gRPC reflection itself."""

    def __init__(self, host: str, port: int, app: str, deployment: str,
                 cert_pem: bytes | None = None, key_pem: bytes | None = None,
                 settings: IngressSettings | None = None, http: tuple | None = None):
        """``settings``: the ingress's (the store's P, auth, limits), to admit the calls that name a
        customer here and send them straight to its owner (None: every call goes to the ingress).
        ``http``: (port, Serve's HTTP proxy URL, TLS certificate file, key file) to serve HTTP on
        ``host:port`` too (gateway/http_front.py), with ``settings``."""
        self._host = host
        self._address = bind_address(host, port)
        self._settings = settings
        self._forward: _Forward | None = None
        self._http_args = http
        self._http = None
        self._app, self._deployment = app, deployment
        self._credentials = (cert_pem, key_pem) if cert_pem is not None else None
        self._server = None
        # Started here (an async actor's __init__ runs on its event loop), not only by start(): a
        # front that Ray restarts after its process died listens again by itself.
        self._starting = asyncio.get_running_loop().create_task(self._listen())

    async def start(self) -> str:
        """Wait until the front listens; raises OSError when it cannot."""
        await asyncio.shield(self._starting)
        return self._address

    async def counts(self) -> dict[str, int]:
        """Calls sent straight to an owner, and through an ingress replica, gRPC and HTTP (tests,
        operators)."""
        f, h = self._forward, self._http
        return {"direct": f.direct if f else 0, "via_ingress": f.via_ingress if f else 0,
                "http_direct": h.direct if h else 0, "http_via_ingress": h.via_ingress if h else 0}

    async def metrics_samples(self) -> dict:
        """The counters of the calls rejected here (the ingress's /metrics adds them in)."""
        return self._forward.metrics.samples() if self._forward is not None else {}

    async def pid(self) -> int:
        import os

        return os.getpid()

    async def _listen(self) -> None:
        if self._server is None:
            from grpc_reflection.v1alpha import reflection
            from ray import serve

            # so_reuseport off: a port someone else holds is an error here, not a shared port
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                              ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
            routes = Routes(self._settings.partitions) if self._settings is not None else None
            self._forward = _Forward(serve.get_deployment_handle(self._deployment, self._app), routes, self._settings)
            server.add_generic_rpc_handlers((self._forward,))
            reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME), server)
            try:
                if self._credentials is None:
                    server.add_insecure_port(self._address)
                else:
                    cert_pem, key_pem = self._credentials
                    server.add_secure_port(self._address, grpc.ssl_server_credentials([(key_pem, cert_pem)]))
            except RuntimeError as exc:
                raise OSError(f"gRPC: cannot listen on {self._address}: {exc}") from None
            await server.start()
            self._server = server
        if self._http_args is not None and self._http is None:
            from gateway.http_front import HttpFront

            http_port, serve_url, certfile, keyfile = self._http_args
            http = HttpFront(self._settings, serve_url, self._forward.metrics, self._forward.owner_calls)
            await http.start(self._host, http_port, certfile, keyfile)
            self._http = http

    async def stop(self) -> None:
        await asyncio.gather(self._starting, return_exceptions=True)
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server = None
