"""Which partition holds a customer: a stable hash, the same in every process and every release.

Customers hash to P fixed partitions (P is chosen once per store); owner processes own sets of
partitions and hand them on as the tier grows and shrinks (actors/placement.py).
"""
from __future__ import annotations

import hashlib

# P for a store created without saying: large compared with the owner processes one runs, so
# that partitions spread evenly and a move is a small part of the whole (docs/architecture.md)
DEFAULT_PARTITIONS = 64
MAX_PARTITIONS = 65_536


def partition_for(customer_id: str, partitions: int) -> int:
    """Partition of ``customer_id`` among ``partitions`` (blake2b, not Python's salted hash)."""
    digest = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions
