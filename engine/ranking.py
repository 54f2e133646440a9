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

SOURCES = ("als", "history", "session", "repurchase", "popular", "trending", "new_items", "promoted")
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


def blend(candidates: Mapping[str, tuple[np.ndarray, np.ndarray]], weights: Mapping[str, float]) -> Blended:
    """Weighted sum of per-source normalised scores over the union of candidates."""
    sources = tuple(name for name in candidates if len(candidates[name][0]) > 0)
    if not sources:
        empty = np.zeros(0)
        return Blended(empty.astype(np.int64), empty, np.zeros((0, 0)), ())
    all_idx = np.unique(np.concatenate([np.asarray(candidates[s][0], dtype=np.int64) for s in sources]))
    contributions = np.zeros((all_idx.size, len(sources)))
    for column, name in enumerate(sources):
        idx, raw = candidates[name]
        idx = np.asarray(idx, dtype=np.int64)
        # a source may propose an item twice (e.g. two seeds): keep its best score
        order = np.argsort(-np.asarray(raw, dtype=np.float64), kind="stable")
        idx_sorted = idx[order]
        _, first = np.unique(idx_sorted, return_index=True)
        unique_idx = idx_sorted[first]
        unique_raw = np.asarray(raw, dtype=np.float64)[order][first]
        rows = np.searchsorted(all_idx, unique_idx)
        # a source on an absolute scale keeps it: min-max would give one weak candidate full marks
        scaled = np.clip(unique_raw, 0.0, 1.0) if name in ABSOLUTE_SOURCES else normalise(unique_raw)
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
    order = np.lexsort((blended.idx[keep], -blended.score[keep]))
    if groups is None or max_per_group is None:
        chosen = keep[order[:k]]
    else:
        taken: dict[int, int] = {}
        picked = []
        for row in keep[order]:
            group = int(groups[blended.idx[row]])
            if group >= 0 and taken.get(group, 0) >= max_per_group:  # negative: no group, no cap
                continue
            taken[group] = taken.get(group, 0) + 1
            picked.append(row)
            if len(picked) == k:
                break
        chosen = np.asarray(picked, dtype=np.int64)
    out = []
    for row in chosen:
        contrib = blended.contributions[row]
        proposed = np.flatnonzero(contrib > 0)
        ranked = proposed[np.argsort(-contrib[proposed], kind="stable")]
        out.append((int(blended.idx[row]), float(blended.score[row]),
                    tuple(blended.sources[c] for c in ranked)))
    return out
