"""API keys, scopes and per-key limits: the policy, with the clock passed in.

Keys are random tokens (``rk_...``); only their SHA-256 is kept in configuration, so a leaked
config file does not leak a key. A key has scopes (recommend, events, offers, admin) and may
carry its own rate (token bucket) and request-size limit.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from engine.errors import InvalidArgument, PermissionDenied, RateLimited, Unauthenticated

SCOPES = frozenset({"recommend", "events", "offers", "admin"})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return "rk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """One client's key: who it is (name), its hash, what it may do and how much."""

    name: str
    sha256: str
    scopes: frozenset[str]
    rate_per_second: float | None = None   # None: unlimited
    burst: int = 50
    max_body_bytes: int | None = None      # None: the server's limit

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidArgument("auth key: name must not be empty (it names the caller in the audit log)")
        object.__setattr__(self, "scopes", frozenset(self.scopes))
        unknown = self.scopes - SCOPES
        if unknown:
            raise InvalidArgument(f"auth key {self.name!r}: unknown scope(s) {sorted(unknown)}; known: {sorted(SCOPES)}")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise InvalidArgument(f"auth key {self.name!r}: sha256 must be 64 lowercase hex digits")
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise InvalidArgument(f"auth key {self.name!r}: rate_per_second must be > 0")


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = True
    keys: tuple[ApiKey, ...] = ()


def bearer_token(header: str | None) -> str:
    """The key from an ``Authorization: Bearer <key>`` value (HTTP header or gRPC metadata)."""
    if not header:
        raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("malformed authorization: expected 'Bearer <key>'")
    return token.strip()


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class Authenticator:
    """Checks keys and scopes and meters each key's rate. One per ingress replica."""

    config: AuthConfig
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def authenticate(self, header: str | None) -> ApiKey | None:
        """The caller's key; None when auth is disabled."""
        if not self.config.enabled:
            return None
        digest = hash_key(bearer_token(header))
        for key in self.config.keys:
            if hmac.compare_digest(key.sha256, digest):
                return key
        raise Unauthenticated("unknown API key")

    def authorize(self, key: ApiKey | None, scope: str, now: float) -> None:
        if key is None:
            return
        if scope not in key.scopes:
            raise PermissionDenied(f"key {key.name!r} lacks scope {scope!r}")
        if key.rate_per_second is None:
            return
        bucket = self._buckets.get(key.name)
        if bucket is None:
            bucket = self._buckets[key.name] = _Bucket(float(key.burst), now)
        bucket.tokens = min(float(key.burst), bucket.tokens + (now - bucket.updated) * key.rate_per_second)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise RateLimited(f"key {key.name!r} is over its rate of {key.rate_per_second:g} requests/s")
        bucket.tokens -= 1.0

    def body_limit(self, key: ApiKey | None, server_limit: int) -> int:
        if key is None or key.max_body_bytes is None:
            return server_limit
        return min(key.max_body_bytes, server_limit)
