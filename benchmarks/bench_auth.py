"""An API key for a benchmark's own service: auth stays on, as in production."""
from __future__ import annotations

from engine.auth import SCOPES, ApiKey, AuthConfig, generate_key, hash_key


def bench_auth() -> tuple[str, AuthConfig]:
    """(key, AuthConfig accepting it with every scope)."""
    key = generate_key()
    return key, AuthConfig(enabled=True, keys=(ApiKey("benchmark", hash_key(key), frozenset(SCOPES)),))
