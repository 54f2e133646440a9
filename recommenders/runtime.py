"""A model bundle made ready for scoring: id maps, the FAISS index, precomputed matrices.

Built once per shard from the arrays the Ray object store hands over (read-only, zero-copy
numpy views); only the id maps, the Gram matrix and the FAISS index are per-process.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from recommenders.index import ItemIndex


def confidence(weight: np.ndarray | float, alpha: float) -> np.ndarray:
    """Implicit-feedback confidence from summed event weights (training and fold-in alike)."""
    return alpha * np.log1p(np.asarray(weight, dtype=np.float64))


class ModelRuntime:
    """Everything candidate generation needs from one model version."""

    def __init__(self, arrays: Mapping[str, np.ndarray], manifest: Mapping[str, Any]):
        self.manifest = manifest
        self.version: str = str(manifest["version"])
        params = manifest["params"]
        self.alpha = float(params["alpha"])
        self.regularization = float(params["regularization"])
        self.item_ids: np.ndarray = arrays["item_ids"]
        self.item_names: np.ndarray = arrays["item_names"]
        self.item_index: dict[str, int] = {item: i for i, item in enumerate(self.item_ids.tolist())}
        self.user_index: dict[str, int] = {user: i for i, user in enumerate(arrays["user_ids"].tolist())}
        self.item_factors: np.ndarray = arrays["item_factors"]
        self.user_factors: np.ndarray = arrays["user_factors"]
        self.item_price: np.ndarray = arrays["item_price"]
        # bundles before format 3 have no categories
        category = arrays.get("item_category")
        self.item_category: np.ndarray = category if category is not None else np.full(len(self.item_ids), "")
        cycles = arrays.get("repurchase_cycle_days")
        self.repurchase_cycle_days: np.ndarray = (cycles if cycles is not None
                                                  else np.full(len(self.item_ids), np.nan, dtype=np.float32))
        self.recommendable: np.ndarray = arrays["recommendable"]
        self.popularity: np.ndarray = arrays["popularity"]
        self.covis_idx: np.ndarray = arrays["covis_idx"]
        self.covis_w: np.ndarray = arrays["covis_w"]
        self.ii_idx: np.ndarray = arrays["ii_idx"]
        self.ii_w: np.ndarray = arrays["ii_w"]
        # session models (bundles before format 4 have none: the two sources then propose nothing)
        n = len(self.item_ids)
        self.trans_idx: np.ndarray = arrays.get("trans_idx", np.full((n, 1), -1, dtype=np.int32))
        self.trans_w: np.ndarray = arrays.get("trans_w", np.zeros((n, 1), dtype=np.float32))
        self.sess_indptr: np.ndarray = arrays.get("sess_indptr", np.zeros(1, dtype=np.int64))
        self.sess_items: np.ndarray = arrays.get("sess_items", np.zeros(0, dtype=np.int32))
        self.sess_user: np.ndarray = arrays.get("sess_user", np.zeros(0, dtype=np.int32))
        self.item_sess_indptr: np.ndarray = arrays.get("item_sess_indptr", np.zeros(n + 1, dtype=np.int64))
        self.item_sess: np.ndarray = arrays.get("item_sess", np.zeros(0, dtype=np.int32))
        # sessions an erased customer had are never a neighbour again (per process; see forget)
        self.session_alive: np.ndarray | None = None
        self.hist_indptr = arrays["hist_indptr"]
        self.hist_items = arrays["hist_items"]
        self.hist_weight = arrays["hist_weight"]
        self.hist_last_purchase_ms = arrays["hist_last_purchase_ms"]
        factors = self.item_factors.astype(np.float64)
        self.gram = factors.T @ factors
        self.index = ItemIndex.from_bytes(arrays["faiss_index"])
        norms = np.linalg.norm(self.item_factors, axis=1)
        self.item_norms = np.where(norms > 0, norms, 1.0).astype(np.float32)
        order = np.argsort(-self.popularity, kind="stable")
        self.popular_order = order[self.recommendable[order]]
        # trending per country / channel: key -> (its row of trend_pop, recommendable items best first)
        keys = arrays.get("trend_keys")
        self.trend_pop = arrays.get("trend_pop")
        self.trend: dict[str, tuple[int, np.ndarray]] = {}
        for row, key in enumerate([] if keys is None else keys.tolist()):
            order = np.argsort(-self.trend_pop[row], kind="stable")
            order = order[self.recommendable[order] & (self.trend_pop[row][order] > 0)]
            self.trend[key] = (row, order)
        self._plain_view = None
        summaries = [arrays.get(n) for n in ("user_orders", "user_spend", "user_last_purchase_ms")]
        self._summaries = None if any(a is None for a in summaries) else tuple(summaries)

    def plain_view(self):
        """This model's items with no live catalogue changes (evaluation, tests, fresh shards)."""
        if self._plain_view is None:
            from recommenders.catalog_view import CatalogView

            self._plain_view = CatalogView(self)
        return self._plain_view

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return self.item_factors.shape[1]

    def forget(self, customer_ids) -> int:
        """Erased customers: their rows (history, factors, summary) are never looked up again in
        this process, nor their training sessions used as neighbours. The arrays are shared
        read-only memory, so the rows are unmapped rather than overwritten; ``recsys train`` leaves
        these customers out of the next bundle."""
        removed = 0
        rows = []
        for customer_id in customer_ids:
            row = self.user_index.pop(customer_id, None)
            if row is not None:
                removed += 1
                rows.append(row)
        if rows and self.sess_user.size:
            gone = np.isin(self.sess_user, rows)
            if gone.any():
                alive = self.session_alive if self.session_alive is not None else np.ones(self.sess_user.size, bool)
                alive = alive & ~gone
                self.session_alive = alive
        return removed

    def customer_record(self, customer_id: str) -> dict[str, Any] | None:
        """What this bundle holds about one customer (for ExportCustomer), or None."""
        row = self.user_index.get(customer_id)
        if row is None:
            return None
        items, weights, last = self.history(row)
        summary = self.customer_summary(customer_id)
        return {
            "model_version": self.version,
            "history": [{"item_id": str(self.item_ids[i]), "weight": float(w),
                         "last_purchase_ms": int(t)} for i, w, t in zip(items.tolist(), weights.tolist(), last.tolist())],
            "orders": summary[0] if summary else None,
            "spend": summary[1] if summary else None,
            "last_purchase_ms": summary[2] if summary else None,
            "factors": [float(x) for x in self.user_factors[row]],
            # their training sessions (similar-sessions neighbours): each one's distinct items, first seen first
            "sessions": [[str(self.item_ids[i]) for i in self.sess_items[self.sess_indptr[s]:self.sess_indptr[s + 1]]]
                         for s in np.flatnonzero(self.sess_user == row).tolist()],
        }

    def customer_summary(self, customer_id: str) -> tuple[int, float, int] | None:
        """(orders, spend, last purchase ms) in the training data, or None (unknown, or an old bundle)."""
        row = self.user_index.get(customer_id)
        if row is None or self._summaries is None:
            return None
        orders, spend, last = self._summaries
        return int(orders[row]), float(spend[row]), int(last[row])

    def purchased_item_ids(self, customer_id: str) -> frozenset[str]:
        """Items the customer bought in the training data."""
        row = self.user_index.get(customer_id)
        if row is None:
            return frozenset()
        items, _weights, last = self.history(row)
        return frozenset(self.item_ids[items[last > 0]].tolist())

    def history(self, user_row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training history of a known customer: item indices, weights, last purchase (ms, 0 = none)."""
        lo, hi = self.hist_indptr[user_row], self.hist_indptr[user_row + 1]
        return self.hist_items[lo:hi], self.hist_weight[lo:hi], self.hist_last_purchase_ms[lo:hi]

    def fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """The ALS customer vector that best explains ``items`` with these weights.

        Solves (YtY + Yᵢᵀ(Cᵢ - I)Yᵢ + λI) x = Yᵢᵀ Cᵢ 1, the exact ALS user step, so a customer
        the model never saw gets a vector from live events alone.
        """
        if len(items) == 0:
            return None
        y = self.item_factors[items].astype(np.float64)
        c = confidence(weights, self.alpha)
        a = self.gram + (y.T * (c - 1.0)) @ y + self.regularization * np.eye(self.dim)
        b = y.T @ c
        return np.linalg.solve(a, b).astype(np.float32)
