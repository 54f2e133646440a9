"""Session models: what comes next in a visit, learnt from the order of the training sessions.

Two tables are built at training time from every session (``session_id``; else one customer's
day) with its items in the order they happened (time, then the order of the input: an invoice's
lines, a visit's clicks), repeats in a row dropped:

- **transitions**: for each item, the items that followed it within ``window`` places, each
  occurrence weighing 1/distance, as the conditional share P(next | item); top M per item, in the
  neighbour-list shape of co-visitation (``recommend.neighbour_candidates`` scores both).
- **similar sessions** (session-kNN, V-SKNN-like): the training sessions as item lists, and per
  item its most recent sessions. At serving, the sessions sharing most of the live session's
  latest items (the newest counting most) are the neighbours; their items score by similarity.

A similar-sessions lookup reads a few hundred short arrays: 0.17 ms at the median, 0.35 ms at p99
on Online Retail (``benchmarks/session_lookup.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from engine.ranking import sum_by_index
from engine.rules import DAY_MS
from recommenders.item_item import top_per_row

# How many of the live session's latest items a similar-sessions lookup compares.
SESSION_WINDOW = 10
# Neighbour sessions whose items are scored.
SESSION_NEIGHBOURS = 100


@dataclass(frozen=True)
class Sessions:
    """Training sessions in time order (of their first event): item indices in visit order."""

    indptr: np.ndarray   # int64 [sessions + 1]
    items: np.ndarray    # int32
    customer: np.ndarray  # str [sessions], the customer whose session it is


def session_keys(events: pd.DataFrame) -> pd.Series:
    """The session of each event: its customer and ``session_id``, else its customer's day. A session
    is one customer's (two customers' events with one session id, as clients that number sessions
    per customer send, are two sessions), so each session has one customer for erasure to mask."""
    customer = events["customer_id"].astype(str)
    session = events["session_id"].astype(str)
    day = (events["timestamp_ms"] // DAY_MS).astype(str)
    return customer + "\x1f" + session.where(session != "", "@" + day)


def ordered_sessions(events: pd.DataFrame, item_ids: np.ndarray) -> Sessions:
    """Every session's items in the order they happened (ties in time keep the input's order),
    consecutive repeats of one item dropped; sessions ordered by their first event."""
    if events.empty:
        return Sessions(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=str))
    frame = pd.DataFrame({
        "s": session_keys(events).to_numpy(),
        "t": events["timestamp_ms"].to_numpy(),
        "i": np.searchsorted(item_ids, events["item_id"].to_numpy().astype(str)).astype(np.int32),
        "c": events["customer_id"].astype(str).to_numpy(),
        "n": np.arange(len(events)),
    })
    start = frame.groupby("s")["t"].transform("min")
    frame = frame.assign(start=start).sort_values(["start", "s", "t", "n"], kind="stable")
    s, i = frame["s"].to_numpy(), frame["i"].to_numpy()
    new_session = np.ones(len(frame), dtype=bool)
    new_session[1:] = s[1:] != s[:-1]
    repeat = np.zeros(len(frame), dtype=bool)
    repeat[1:] = (~new_session[1:]) & (i[1:] == i[:-1])
    keep = ~repeat
    first = np.flatnonzero(new_session)
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    indptr = np.append(kept_before[first], keep.sum()).astype(np.int64)
    return Sessions(indptr, i[keep].astype(np.int32), frame["c"].to_numpy()[first].astype(str))


def _row_of(indptr: np.ndarray) -> np.ndarray:
    """The row (session) of every entry of a CSR layout."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _indptr(counts: np.ndarray) -> np.ndarray:
    """The CSR indptr of rows with these entry counts."""
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def transitions(sessions: Sessions, n_items: int, window: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per item, the ``m`` items most often next after it (within ``window`` places, 1/distance
    each), as P(next | item): (indices [n, m] int32, -1 padded; weights float32)."""
    items, indptr = sessions.items.astype(np.int64), sessions.indptr
    if items.size < 2 or m <= 0:
        return np.full((n_items, max(m, 1)), -1, dtype=np.int32), np.zeros((n_items, max(m, 1)), dtype=np.float32)
    session_of = _row_of(indptr)
    src, dst, w = [], [], []
    for distance in range(1, window + 1):
        same = session_of[distance:] == session_of[:-distance]
        a, b = items[:-distance][same], items[distance:][same]
        differ = a != b
        src.append(a[differ])
        dst.append(b[differ])
        w.append(np.full(int(differ.sum()), 1.0 / distance))
    counts = sp.csr_matrix((np.concatenate(w), (np.concatenate(src), np.concatenate(dst))), shape=(n_items, n_items))
    counts.sum_duplicates()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    idx, top = top_per_row(counts, m, dtype=np.float64)
    return idx, (top / np.maximum(totals, 1e-12)[:, None]).astype(np.float32)


def session_sets(sessions: Sessions) -> tuple[np.ndarray, np.ndarray]:
    """Each session's distinct items (first occurrence order), as CSR (indptr, items)."""
    pairs = pd.DataFrame({"s": _row_of(sessions.indptr), "i": sessions.items}).drop_duplicates()
    counts = np.bincount(pairs["s"].to_numpy(), minlength=len(sessions.indptr) - 1)
    return _indptr(counts), pairs["i"].to_numpy().astype(np.int32)


def item_sessions(set_indptr: np.ndarray, set_items: np.ndarray, n_items: int,
                  per_item: int) -> tuple[np.ndarray, np.ndarray]:
    """Per item, its ``per_item`` most recent sessions (CSR: indptr [n + 1], session numbers),
    from ``session_sets``."""
    pairs = pd.DataFrame({"i": set_items.astype(np.int64), "s": _row_of(set_indptr)}).sort_values(["i", "s"],
                                                                                               kind="stable")
    # keep each item's last per_item sessions (sessions are numbered in time order)
    from_end = pairs.groupby("i").cumcount(ascending=False).to_numpy()
    pairs = pairs[from_end < per_item]
    return _indptr(np.bincount(pairs["i"].to_numpy(), minlength=n_items)), pairs["s"].to_numpy().astype(np.int32)


def similar_session_candidates(sess_indptr: np.ndarray, sess_items: np.ndarray, item_indptr: np.ndarray,
                               item_sess: np.ndarray, latest: list[int], alive: np.ndarray | None = None,
                               neighbours: int = SESSION_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Items of the training sessions most like the live one (``sess_*``: ``session_sets``;
    ``item_*``: ``item_sessions``). ``latest``: the live session's item
    indices, newest first (at most SESSION_WINDOW are compared, the newest weighing most, linearly).
    A neighbour's similarity is its weighted overlap over sqrt(its length x the window's); its items
    score the sum of the similarities of the neighbours holding them. ``alive``: sessions that may be
    used (an erased customer's are not)."""
    window = [i for i in latest if 0 <= i < len(item_indptr) - 1][:SESSION_WINDOW]
    empty = np.zeros(0, dtype=np.int64), np.zeros(0)
    if not window:
        return empty
    n_sessions = len(sess_indptr) - 1
    spans = [(item_indptr[i], item_indptr[i + 1]) for i in window]
    lengths = np.array([hi - lo for lo, hi in spans])
    if lengths.sum() == 0:
        return empty
    found = np.concatenate([item_sess[lo:hi] for lo, hi in spans]).astype(np.int64)
    position_weight = 1.0 - np.arange(len(window)) / len(window)
    overlap_idx, overlap = sum_by_index(found, np.repeat(position_weight, lengths), n_sessions)
    if alive is not None:
        keep = alive[overlap_idx]
        overlap_idx, overlap = overlap_idx[keep], overlap[keep]
        if overlap_idx.size == 0:
            return empty
    size = (sess_indptr[overlap_idx + 1] - sess_indptr[overlap_idx]).astype(np.float64)
    similarity = overlap / np.sqrt(size * len(window))
    if similarity.size > neighbours:
        top = np.argpartition(-similarity, neighbours - 1)[:neighbours]
        overlap_idx, similarity, size = overlap_idx[top], similarity[top], size[top]
    members = np.concatenate([sess_items[sess_indptr[s]:sess_indptr[s + 1]] for s in overlap_idx.tolist()])
    scores = np.repeat(similarity, size.astype(np.int64))
    idx, summed = sum_by_index(members.astype(np.int64), scores, len(item_indptr) - 1)
    # the live session's own items are not proposed (every neighbour holds some: they would top the
    # list and squash the scale of the rest; a re-view is the seen_again source's to propose)
    other = ~np.isin(idx, latest)
    return idx[other], summed[other]


def session_arrays(events: pd.DataFrame, item_ids: np.ndarray, user_ids: np.ndarray, window: int,
                   neighbours: int, per_item: int, max_sessions: int, max_items: int) -> dict[str, np.ndarray]:
    """The bundle's session arrays: the transitions table, and the latest ``max_sessions``
    sessions of two to ``max_items`` distinct items for similar-sessions lookups (a wholesale
    restock of hundreds of lines, or a crawler, says little about a visit and would join every
    item's list), each with its customer's row in ``user_ids`` (an erased customer's sessions are
    masked by it)."""
    sessions = ordered_sessions(events, item_ids)
    trans_idx, trans_w = transitions(sessions, len(item_ids), window, neighbours)
    set_indptr, set_items = session_sets(sessions)
    sizes = np.diff(set_indptr)
    usable = (sizes >= 2) & (sizes <= max_items)
    chosen = np.flatnonzero(usable)[-max_sessions:] if max_sessions > 0 else np.zeros(0, dtype=np.int64)
    starts, ends = set_indptr[chosen], set_indptr[chosen + 1]
    items = (np.concatenate([set_items[a:b] for a, b in zip(starts.tolist(), ends.tolist())])
             if chosen.size else np.zeros(0, dtype=np.int32))
    indptr = _indptr(ends - starts)
    by_item_indptr, by_item = item_sessions(indptr, items, len(item_ids), per_item)
    customer = sessions.customer[chosen]
    row = np.searchsorted(user_ids, customer)
    row = np.where((row < len(user_ids)) & (user_ids[np.minimum(row, len(user_ids) - 1)] == customer), row, -1)
    return {"trans_idx": trans_idx, "trans_w": trans_w, "sess_indptr": indptr, "sess_items": items.astype(np.int32),
            "sess_user": row.astype(np.int32), "item_sess_indptr": by_item_indptr, "item_sess": by_item}
