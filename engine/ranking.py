"""Candidate blending and top-k: the last step of every recommendation.

Candidate sources (recommenders/candidates.py) each propose item indices with raw scores.
``blend`` puts them on one scale and adds them with the configured weights, remembering
which sources proposed each item (its reason codes). ``top_k`` applies an allowed-mask from
the business rules and returns the best k, sorted, without duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

SOURCES = ("als", "history", "session", "repurchase", "popular", "trending", "new_items", "promoted", "transitions",
           "similar_sessions", "seen_again")
# Sources whose scores are already on [0, 1] with a meaning of their own (not rescaled per request).
ABSOLUTE_SOURCES = frozenset({"new_items", "promoted"})


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item with its blended score and why it is there."""

    item_id: str
    score: float
    reasons: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class Blended:
    """Union of candidates: unique item indices, blended scores, per-source contributions."""

    idx: np.ndarray            # int64 [n]
    score: np.ndarray          # float64 [n]
    contributions: np.ndarray  # float64 [n, len(sources)]
    sources: tuple[str, ...]


def normalise(scores: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant vector (or a single candidate) maps to all ones."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low < 1e-12:
        return np.ones_like(scores)
    return (scores - low) / (high - low)


# Below this many item indices, candidate unions are taken with dense arrays over the index
# space (a few array passes) rather than by sorting (np.unique): the same result, several times
# faster for a retail catalogue. Above it (a catalogue of millions), sorting the few hundred
# candidates is cheaper than touching an array the size of the catalogue.
DENSE_INDEX_LIMIT = 1 << 18


def sum_by_index(idx: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(unique indices ascending, summed weight of each); ``idx`` in [0, size)."""
    if size <= DENSE_INDEX_LIMIT or 16 * idx.size >= size:
        present = np.bincount(idx, minlength=size) > 0
        unique = np.flatnonzero(present)
        return unique, np.bincount(idx, weights=weights, minlength=size)[unique]
    unique, inverse = np.unique(idx, return_inverse=True)
    return unique, np.bincount(inverse, weights=weights)


def _union(indices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted union of candidate indices, and (dense case) each index's row in it."""
    size = max(int(i.max()) for i in indices) + 1
    if size > DENSE_INDEX_LIMIT or min(int(i.min()) for i in indices) < 0:
        return np.unique(np.concatenate(indices)), None
    mark = np.zeros(size, dtype=bool)
    for i in indices:
        mark[i] = True
    union = np.flatnonzero(mark)
    row_of = np.zeros(size, dtype=np.int64)
    row_of[union] = np.arange(union.size)
    return union, row_of


def _best_per_item(idx: np.ndarray, raw: np.ndarray, all_idx: np.ndarray,
                   row_of: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows in ``all_idx`` of the items a source proposed, and its best score for each (a source
    may propose an item twice, e.g. from two seeds)."""
    if row_of is not None:
        rows = row_of[idx]
        count = np.bincount(rows, minlength=all_idx.size)
        proposed = np.flatnonzero(count)
        best = np.full(all_idx.size, -np.inf)
        if int(count.max()) == 1:
            best[rows] = raw
            return proposed, best[proposed]
        if not np.isnan(raw).any():  # (with a NaN, the sort below: it puts NaN last, as best-of must)
            np.maximum.at(best, rows, raw)
            return proposed, best[proposed]
    order = np.argsort(-raw, kind="stable")
    idx_sorted = idx[order]
    _, first = np.unique(idx_sorted, return_index=True)
    return np.searchsorted(all_idx, idx_sorted[first]), raw[order][first]


def blend(candidates: Mapping[str, tuple[np.ndarray, np.ndarray]], weights: Mapping[str, float]) -> Blended:
    """Weighted sum of per-source normalised scores over the union of candidates."""
    sources = tuple(name for name in candidates if len(candidates[name][0]) > 0)
    if not sources:
        empty = np.zeros(0)
        return Blended(empty.astype(np.int64), empty, np.zeros((0, 0)), ())
    indices = [np.asarray(candidates[s][0], dtype=np.int64) for s in sources]
    all_idx, row_of = _union(indices)
    contributions = np.zeros((all_idx.size, len(sources)))
    for column, (name, idx) in enumerate(zip(sources, indices)):
        rows, best = _best_per_item(idx, np.asarray(candidates[name][1], dtype=np.float64), all_idx, row_of)
        # a source on an absolute scale keeps it: min-max would give one weak candidate full marks
        scaled = np.clip(best, 0.0, 1.0) if name in ABSOLUTE_SOURCES else normalise(best)
        # a small floor so that every proposed item carries its source's reason
        contributions[rows, column] = weights.get(name, 0.0) * (0.05 + 0.95 * scaled)
    return Blended(all_idx, contributions.sum(axis=1), contributions, sources)


def top_k(blended: Blended, allowed: np.ndarray, k: int, groups: np.ndarray | None = None,
          max_per_group: int | None = None) -> list[tuple[int, float, tuple[str, ...]]]:
    """Best ``k`` allowed candidates as (item index, score, reasons), score descending.

    ``allowed`` is a boolean mask aligned with ``blended.idx``. Ties break on item index so the
    answer is deterministic. With ``groups`` (a group code per item index) and ``max_per_group``,
    at most that many items of one group are taken (diversity); the next best fill the places.
    """
    if k <= 0 or blended.idx.size == 0:
        return []
    keep = np.flatnonzero(allowed)
    if keep.size == 0:
        return []
    if groups is None or max_per_group is None:
        chosen = _ranked(blended, keep, k)[:k]
    else:
        # the cap usually fills k from near the top: rank a prefix first, everything if it did not
        chosen = _capped(_ranked(blended, keep, 8 * k), blended.idx, groups, k, max_per_group)
        if chosen.size < k:
            chosen = _capped(_ranked(blended, keep, keep.size), blended.idx, groups, k, max_per_group)
    contrib = blended.contributions[chosen]
    columns = np.argsort(-contrib, axis=1, kind="stable").tolist()
    positive = (contrib > 0).tolist()
    out = []
    for cols, pos, idx, score in zip(columns, positive, blended.idx[chosen].tolist(), blended.score[chosen].tolist()):
        out.append((idx, score, tuple(blended.sources[c] for c in cols if pos[c])))
    return out


def _ranked(blended: Blended, keep: np.ndarray, need: int) -> np.ndarray:
    """The first ``need`` or more rows of ``keep`` in rank order (score descending, then item
    index): a prefix of the full ranking, found without sorting all of it. Every row scoring at
    least the need-th best score is ranked, so ties at the edge are ordered as in a full sort."""
    scores = blended.score[keep]
    if need < keep.size and not np.isnan(scores).any():  # (a NaN would top the partition)
        threshold = np.partition(scores, keep.size - need)[keep.size - need]
        keep = keep[scores >= threshold]
        scores = blended.score[keep]
    return keep[np.lexsort((blended.idx[keep], -scores))]


def _capped(ranked_rows: np.ndarray, idx: np.ndarray, groups: np.ndarray, k: int, max_per_group: int) -> np.ndarray:
    """The first k rows in rank order with at most ``max_per_group`` of one group (a negative
    group is no group: never capped). Looks at the ranking a slice at a time: k are usually found
    near the top."""
    taken: dict[int, int] = {}
    picked: list[int] = []
    step = max(4 * k, 64)
    for start in range(0, ranked_rows.size, step):
        rows = ranked_rows[start:start + step]
        for row, group in zip(rows.tolist(), groups[idx[rows]].tolist()):
            if group >= 0 and taken.get(group, 0) >= max_per_group:
                continue
            taken[group] = taken.get(group, 0) + 1
            picked.append(row)
            if len(picked) == k:
                return np.asarray(picked, dtype=np.int64)
    return np.asarray(picked, dtype=np.int64)
