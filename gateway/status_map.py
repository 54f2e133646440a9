"""The one table from engine errors to gRPC status codes and HTTP statuses."""
from __future__ import annotations

import grpc

from engine.errors import (Conflict, InvalidArgument, NotFound, PayloadTooLarge, PermissionDenied, RateLimited,
                           RecsysError, Unauthenticated, Unavailable)

_TABLE: dict[type, tuple[grpc.StatusCode, int]] = {
    PayloadTooLarge: (grpc.StatusCode.INVALID_ARGUMENT, 413),
    InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, 400),
    NotFound: (grpc.StatusCode.NOT_FOUND, 404),
    Conflict: (grpc.StatusCode.FAILED_PRECONDITION, 409),
    Unavailable: (grpc.StatusCode.UNAVAILABLE, 503),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, 401),
    PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, 403),
    RateLimited: (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
}


def statuses(error: RecsysError) -> tuple[grpc.StatusCode, int]:
    """(gRPC code, HTTP status) for ``error``: the most specific entry in its class hierarchy."""
    for cls in type(error).__mro__:
        if cls in _TABLE:
            return _TABLE[cls]
    return grpc.StatusCode.INTERNAL, 500
