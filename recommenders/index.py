"""Item-vector lookup with FAISS (inner product: the ALS score)."""
from __future__ import annotations

import faiss
import numpy as np

# Up to this many items exact search is cheap; above it an HNSW graph keeps latency flat.
EXACT_SEARCH_MAX_ITEMS = 200_000


class ItemIndex:
    """Top-n items by inner product with a query vector."""

    def __init__(self, index: faiss.Index):
        self._index = index

    @classmethod
    def build(cls, item_factors: np.ndarray) -> "ItemIndex":
        vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
        dim = vectors.shape[1]
        if len(vectors) <= EXACT_SEARCH_MAX_ITEMS:
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
        index.add(vectors)
        return cls(index)

    @classmethod
    def from_bytes(cls, data: np.ndarray) -> "ItemIndex":
        return cls(faiss.deserialize_index(np.asarray(data, dtype=np.uint8)))

    def to_bytes(self) -> np.ndarray:
        return faiss.serialize_index(self._index)

    @property
    def size(self) -> int:
        return self._index.ntotal

    def search(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(n, self._index.ntotal)
        if n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        scores, idx = self._index.search(query, n)
        keep = idx[0] >= 0
        return idx[0][keep].astype(np.int64), scores[0][keep]
