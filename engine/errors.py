"""One error hierarchy for the whole engine.

Each error names its kind; ``gateway/status_map.py`` turns a kind into a gRPC status code and an
HTTP status in one table. Messages are written for the caller: they say what was wrong
and where (``events[3].quantity: must be > 0``).
"""
from __future__ import annotations


class RecsysError(Exception):
    """Base of every error the engine raises on purpose."""

    kind = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(RecsysError):
    """The request is malformed or out of range. Nothing was applied."""

    kind = "invalid_argument"


class PayloadTooLarge(InvalidArgument):
    """The request body or batch is larger than the configured limit."""

    kind = "payload_too_large"


class NotFound(RecsysError):
    kind = "not_found"


class Conflict(RecsysError):
    """The request contradicts what is stored (an identify that would merge two customers'
    profiles). Nothing of it was applied; sending it again is refused again."""

    kind = "failed_precondition"


class Linked(RecsysError):
    """Internal, never a client's answer: the customer id is linked to another customer's profile
    (an identify event), which answers for it. The gateway's operations ask again with
    ``profile_id`` (gateway/operations.py)."""

    kind = "linked"

    def __init__(self, customer_id: str, profile_id: str):
        super().__init__(f"customer {customer_id!r} is linked to the profile {profile_id!r}")
        self.customer_id, self.profile_id = customer_id, profile_id

    def __reduce__(self):  # crosses Ray's process boundary with its ids
        return (Linked, (self.customer_id, self.profile_id))


class Unavailable(RecsysError):
    """A dependency (a shard, the model) is not ready; the caller may retry."""

    kind = "unavailable"


class PartitionMoved(Unavailable):
    """The partition is not held here (any more): it moved, or is moving, to another owner. The
    ingress asks the placement again and retries; a client sees it only if the move outlasts the
    request's deadline, as a retryable UNAVAILABLE."""

    def __init__(self, partition: int):
        super().__init__(f"partition {partition} is moving to another owner; retry")
        self.partition = partition

    def __reduce__(self):  # crosses Ray's process boundary with its partition
        return (PartitionMoved, (self.partition,))


class Unauthenticated(RecsysError):
    """No API key, or one that is not known."""

    kind = "unauthenticated"


class PermissionDenied(RecsysError):
    """A known key without the scope this call needs."""

    kind = "permission_denied"


class RateLimited(RecsysError):
    """The key sent more requests than its rate allows; retry later."""

    kind = "rate_limited"
