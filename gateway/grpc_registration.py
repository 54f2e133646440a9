"""How recsys.v1.Personalization is registered on Serve's gRPC proxy.

The generated ``add_PersonalizationServicer_to_server`` parses requests with ``FromString``
in the proxy, where a malformed message (corrupt wire format, invalid UTF-8 in a string)
becomes an opaque UNKNOWN error. Registering with a lenient parser instead hands such a
request to the ingress as a ``MalformedMessage``, which answers INVALID_ARGUMENT with the
parser's own message, like any other bad input.
"""
from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from recsys.v1 import recsys_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Personalization"]


@dataclass(frozen=True)
class MalformedMessage:
    """Stands in for a request that could not be parsed."""

    type_name: str
    error: str

    def ByteSize(self) -> int:  # noqa: N802 - the protobuf message interface
        return 0


def _lenient(message_cls):
    def parse(data: bytes):
        try:
            return message_cls.FromString(data)
        except DecodeError as exc:
            return MalformedMessage(message_cls.DESCRIPTOR.full_name, str(exc))
    return parse


def add_personalization_to_server(servicer, server) -> None:
    handlers = {}
    for method in SERVICE.methods:
        request_cls = getattr(pb, method.input_type.name)
        response_cls = getattr(pb, method.output_type.name)
        # server-streaming RPCs (SubscribeActions) are unary-stream handlers; Serve streams them
        factory = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = factory(
            getattr(servicer, method.name, None),
            request_deserializer=_lenient(request_cls),
            response_serializer=response_cls.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
