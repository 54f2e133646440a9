"""The gRPC methods the service answers, declared once, and how they are registered.

``METHODS`` lists every method of recsys.v1.Personalization and grpc.health.v1.Health with its
request and response types and whether it streams. Both gRPC entry points use it:

- the project's own gRPC front (gateway/grpc_front.py, what ``recsys serve`` runs), which binds
  the configured host and hands each call's bytes to the ingress (``Ingress.grpc_unary`` /
  ``Ingress.grpc_stream``);
- Serve's gRPC proxy (the application builder, gateway/app.py), through the ``add_*_to_server``
  functions named in ``grpc_servicer_functions``.

The generated ``add_..._to_server`` functions parse requests with ``FromString``, where a
malformed message (corrupt wire format, invalid UTF-8 in a string) becomes an opaque UNKNOWN
error. Parsing leniently instead hands such a request to the ingress as a ``MalformedMessage``,
which answers INVALID_ARGUMENT with the parser's own short message, like any other bad input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from recsys.v1 import recsys_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Personalization"]
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]


@dataclass(frozen=True)
class MalformedMessage:
    """Stands in for a request that could not be parsed."""

    type_name: str
    error: str

    def ByteSize(self) -> int:  # noqa: N802 - the protobuf message interface
        return 0


@dataclass(frozen=True)
class RpcMethod:
    """One gRPC method: ``path`` is ``/package.Service/Method``; ``name`` is the Ingress method."""

    path: str
    name: str
    request_cls: Any
    response_cls: Any
    server_streaming: bool

    def parse(self, data: bytes):
        """The request message, or a MalformedMessage when ``data`` is not one."""
        try:
            return self.request_cls.FromString(data)
        except (DecodeError, ValueError) as exc:  # ValueError: invalid UTF-8 in a string field
            return MalformedMessage(self.request_cls.DESCRIPTOR.full_name, _short(str(exc)))


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _methods(service, module) -> dict[str, RpcMethod]:
    return {f"/{service.full_name}/{m.name}": RpcMethod(
                f"/{service.full_name}/{m.name}", m.name, getattr(module, m.input_type.name),
                getattr(module, m.output_type.name), m.server_streaming)
            for m in service.methods}


METHODS: dict[str, RpcMethod] = {**_methods(SERVICE, pb), **_methods(HEALTH_SERVICE, health_pb2)}
# What server reflection advertises.
SERVICE_NAMES = (SERVICE.full_name, HEALTH_SERVICE.full_name)


def _add(service, servicer, server) -> None:
    handlers = {}
    for rpc in METHODS.values():
        if not rpc.path.startswith(f"/{service.full_name}/"):
            continue
        # server-streaming RPCs (SubscribeActions, Watch) are unary-stream handlers; Serve streams them
        factory = grpc.unary_stream_rpc_method_handler if rpc.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[rpc.name] = factory(getattr(servicer, rpc.name, None), request_deserializer=rpc.parse,
                                     response_serializer=rpc.response_cls.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


def add_personalization_to_server(servicer, server) -> None:
    _add(SERVICE, servicer, server)


def add_health_to_server(servicer, server) -> None:
    """grpc.health.v1.Health (Check, Watch, List), parsed leniently like the service itself."""
    _add(HEALTH_SERVICE, servicer, server)
