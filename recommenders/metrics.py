"""Ranking metrics, one customer at a time (averaged over customers): the offline evaluation's
and the fit's (recommenders/fitting.py) criterion."""
from __future__ import annotations

import numpy as np


def ranking_metrics(recommended: list[str], relevant: set[str], k: int) -> dict[str, float]:
    """MAP as the Microsoft Recommenders benchmark computes it (average precision over the top k,
    divided by the number of relevant items), nDCG@k with binary gain, precision@k, recall@k, hit@k."""
    hits = [1.0 if item in relevant else 0.0 for item in recommended[:k]]
    found = 0
    average_precision = 0.0
    for rank, hit in enumerate(hits, start=1):
        if hit:
            found += 1
            average_precision += found / rank
    dcg = sum(hit / np.log2(rank + 1) for rank, hit in enumerate(hits, start=1))
    ideal = sum(1.0 / np.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    n_hits = sum(hits)
    return {"map": average_precision / len(relevant), f"ndcg@{k}": dcg / ideal if ideal else 0.0,
            f"precision@{k}": n_hits / k, f"recall@{k}": n_hits / len(relevant), f"hr@{k}": float(n_hits > 0)}


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} if rows else {}
