"""Item-to-item weights learnt from the whole interaction matrix (EASE, Steck 2019).

Closed form: B = I - P / diag(P), P = (XᵀX + λI)⁻¹, diagonal forced to zero. A customer's
score for item j is Σ over items i they interacted with of B[i, j]. The model is dense in the
catalogue size, so it is fitted up to ``max_items`` items and kept as the top-M weights per
item (the same neighbour-list shape as co-visitation, so the shard scores it the same way).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def fit_ease(matrix: sp.csr_matrix, regularization: float) -> np.ndarray:
    """Dense item x item weights from a binary customer x item matrix."""
    binary = matrix.copy()
    binary.data[:] = 1.0
    gram = (binary.T @ binary).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights


def top_neighbours(weights: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``m`` weights largest in magnitude, sign kept (EASE's negative weights matter:
    they push down items that people with this item avoid): (indices [n, m] int32, -1 padded;
    weights float32)."""
    n = weights.shape[0]
    m = min(m, n - 1) if n > 1 else 0
    idx = np.full((n, max(m, 1)), -1, dtype=np.int32)
    out = np.zeros((n, max(m, 1)), dtype=np.float32)
    if m == 0:
        return idx, out
    top = np.argpartition(-np.abs(weights), m - 1, axis=1)[:, :m]
    values = np.take_along_axis(weights, top, axis=1)
    order = np.argsort(-np.abs(values), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    nonzero = values != 0
    idx[:, :m] = np.where(nonzero, top, -1)
    out[:, :m] = np.where(nonzero, values, 0.0)
    return idx, out


def empty_neighbours(n_items: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_items, 1), -1, dtype=np.int32), np.zeros((n_items, 1), dtype=np.float32)


def top_per_row(matrix: sp.csr_matrix, m: int, progress: bool = False, desc: str = "",
                dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a sparse item x item matrix, its ``m`` largest values, largest first (ties by
    column): (indices [n, m] int32, -1 padded; values of ``dtype``): the neighbour-list shape."""
    from tqdm.auto import tqdm

    n = matrix.shape[0]
    idx = np.full((n, m), -1, dtype=np.int32)
    out = np.zeros((n, m), dtype=dtype)
    for row in tqdm(range(n), desc=desc, disable=not progress, mininterval=1.0):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        if lo == hi:
            continue
        cols, vals = matrix.indices[lo:hi], matrix.data[lo:hi]
        take = min(m, hi - lo)
        top = np.argpartition(-vals, take - 1)[:take]
        top = top[np.lexsort((cols[top], -vals[top]))]
        idx[row, :take] = cols[top]
        out[row, :take] = vals[top]
    return idx, out
