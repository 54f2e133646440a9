"""Which shard owns a customer: a stable hash, the same in every process and every release."""
from __future__ import annotations

import hashlib


def shard_for(customer_id: str, num_shards: int) -> int:
    """Shard index of ``customer_id`` among ``num_shards`` (blake2b, not Python's salted hash)."""
    digest = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards
