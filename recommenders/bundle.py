"""The model bundle: a versioned, immutable directory on disk.

    models/<version>/manifest.json   version, data fingerprint, parameters, counts,
                                     training time, offline metrics, file checksums
    models/<version>/arrays.npz      every array the shards need (see ARRAY_NAMES)
    models/CURRENT                   the version `recsys serve` loads by default

A bundle is written to a temporary directory and renamed into place, so a reader never sees
half a bundle; it is never modified afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine.errors import InvalidArgument

FORMAT_VERSION = 4
# The session models (format 4; recommenders/sessions.py).
SESSION_ARRAYS = ("trans_idx", "trans_w", "sess_indptr", "sess_items", "sess_user", "item_sess_indptr", "item_sess")
# Arrays a format-2 bundle lacks (read as empty, so older bundles still load).
OPTIONAL_ARRAYS = ("item_category", "repurchase_cycle_days", "trend_keys", "trend_pop", "user_orders", "user_spend",
                   "user_last_purchase_ms") + SESSION_ARRAYS
ARRAY_NAMES = (
    "item_ids", "item_names", "item_category", "item_factors", "item_price", "repurchase_cycle_days",
    "recommendable", "popularity",
    "covis_idx", "covis_w", "ii_idx", "ii_w", "user_ids", "user_factors", "hist_indptr", "hist_items",
    "hist_weight", "hist_last_purchase_ms", "faiss_index", "trend_keys", "trend_pop", "user_orders", "user_spend",
    "user_last_purchase_ms",
) + SESSION_ARRAYS


@dataclass(frozen=True)
class ModelBundle:
    """Arrays plus manifest. ``arrays`` is what goes into the Ray object store as is."""

    manifest: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(bundle: ModelBundle, model_dir: str | Path, make_current: bool = True) -> Path:
    """Write ``bundle`` under ``model_dir/<version>`` atomically; return its path."""
    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    target = root / bundle.version
    if target.exists():
        raise InvalidArgument(f"{target}: a bundle with this version exists; bundles are immutable")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        np.savez(staging / "arrays.npz", **{name: bundle.arrays[name] for name in ARRAY_NAMES if name in bundle.arrays})
        manifest = dict(bundle.manifest)
        manifest["format_version"] = FORMAT_VERSION
        manifest["files"] = {"arrays.npz": _sha256(staging / "arrays.npz")}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if make_current:
        set_current(root, bundle.version)
    return target


def set_current(model_dir: str | Path, version: str) -> None:
    root = Path(model_dir)
    tmp = root / ".CURRENT.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / "CURRENT")


def current_version(model_dir: str | Path) -> str | None:
    pointer = Path(model_dir) / "CURRENT"
    if pointer.exists():
        return pointer.read_text().strip() or None
    return None


def list_versions(model_dir: str | Path) -> list[str]:
    root = Path(model_dir)
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").exists())


def load_bundle(path: str | Path) -> ModelBundle:
    """Read a bundle directory, verifying its checksum and shape; raise InvalidArgument if bad."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise InvalidArgument(f"{path}: not a model bundle (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise InvalidArgument(f"{manifest_path}: not valid JSON ({exc})") from exc
    expected = manifest.get("files", {}).get("arrays.npz")
    if expected is None or _sha256(path / "arrays.npz") != expected:
        raise InvalidArgument(f"{path}: arrays.npz does not match the manifest checksum")
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        missing = [n for n in ARRAY_NAMES if n not in data.files and n not in OPTIONAL_ARRAYS]
        if missing:
            raise InvalidArgument(f"{path}: missing arrays {missing}")
        arrays = {name: data[name] for name in ARRAY_NAMES if name in data.files}
    check_shapes(arrays, where=str(path))
    check_fitted(manifest, where=str(path))
    return ModelBundle(manifest, arrays)


def check_fitted(manifest: Mapping, where: str) -> None:
    """A bundle whose fitted ranking the shards could not apply is refused at load, not at the first
    request after a swap."""
    from engine.config import RankingConfig, fitted_ranking

    try:
        fitted_ranking(RankingConfig(), manifest.get("fitted"))
    except (InvalidArgument, TypeError, ValueError, AttributeError) as exc:
        message = exc.message if isinstance(exc, InvalidArgument) else str(exc)
        raise InvalidArgument(f"{where}: its fitted ranking cannot be served ({message})") from None


def check_shapes(arrays: Mapping[str, np.ndarray], where: str) -> None:
    n_items = len(arrays["item_ids"])
    n_users = len(arrays["user_ids"])
    problems = []
    for name in ("item_names", "item_category", "item_price", "repurchase_cycle_days", "recommendable", "popularity", "covis_idx", "covis_w",
                 "ii_idx", "ii_w", "trans_idx", "trans_w"):
        if name in arrays and len(arrays[name]) != n_items:
            problems.append(f"{name} has {len(arrays[name])} rows, expected {n_items}")
    if "trend_pop" in arrays and arrays["trend_pop"].size and arrays["trend_pop"].shape != (len(arrays["trend_keys"]), n_items):
        problems.append("trend_pop is not [trend_keys, items]")
    if arrays["item_factors"].shape[0] != n_items:
        problems.append("item_factors rows != items")
    if arrays["user_factors"].shape[0] != n_users:
        problems.append("user_factors rows != users")
    if arrays["user_factors"].shape[1] != arrays["item_factors"].shape[1]:
        problems.append("user and item factors differ in dimension")
    if len(arrays["hist_indptr"]) != n_users + 1:
        problems.append("hist_indptr length != users + 1")
    present = [name for name in SESSION_ARRAYS if name in arrays]
    if present and len(present) != len(SESSION_ARRAYS):
        problems.append(f"session arrays incomplete (has {present})")
    elif present:
        n_sessions = len(arrays["sess_indptr"]) - 1
        if len(arrays["item_sess_indptr"]) != n_items + 1:
            problems.append("item_sess_indptr length != items + 1")
        if len(arrays["sess_user"]) != n_sessions:
            problems.append("sess_user length != sessions")
        if arrays["sess_indptr"][-1] != len(arrays["sess_items"]) or arrays["item_sess_indptr"][-1] != len(arrays["item_sess"]):
            problems.append("a session indptr does not end at its array's length")
        if (arrays["sess_items"].size and not 0 <= arrays["sess_items"].min() <= arrays["sess_items"].max() < n_items) or \
                (arrays["item_sess"].size and not 0 <= arrays["item_sess"].min() <= arrays["item_sess"].max() < n_sessions) or \
                (arrays["sess_user"].size and not -1 <= arrays["sess_user"].min() <= arrays["sess_user"].max() < n_users):
            problems.append("a session array points outside its range")
    if problems:
        raise InvalidArgument(f"{where}: inconsistent bundle: " + "; ".join(problems))


def resolve_bundle_path(model_dir: str | Path, version: str | None = None) -> Path | None:
    """The directory of ``version``, or of CURRENT, or of the newest bundle; None if none."""
    root = Path(model_dir)
    version = version or current_version(root)
    if version is None:
        versions = list_versions(root)
        if not versions:
            return None
        version = versions[-1]
    path = root / version
    if not path.exists():
        raise InvalidArgument(f"{model_dir}: no model version {version!r}")
    return path
