"""The model registry: which bundle the owners serve, and how a new one reaches them.

One named actor (``recsys-model-registry``). It owns the object-store copy of every model it
has handed out, so an owner on any node that starts maps the current arrays from there.
Promotion is two-phase: every owner builds the new model beside the old (prepare); only when
all have succeeded does each switch its reference (commit), so a bundle that fails anywhere is
never served anywhere, and each response names the version that made it.

The owners come and go while the tier scales: an owner started during a promotion either reads
the new model as the current one when it starts, or was started before and is found by the
check after the commit, which brings every owner the placement runs to the promoted version.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import ray

from actors.metric_samples import registry_samples
from actors.names import find, find_placement
from engine.errors import InvalidArgument
from recommenders.bundle import current_version, list_versions, load_bundle, set_current
from recommenders.promotion import check_promotion

class ModelLoadFailed(InvalidArgument):
    """A bundle the checks accepted that an owner could not load (nothing changed)."""


def model_change_counter(registry):
    """Promotions and rollbacks by result (ok; refused: a check said no; failed: an owner could not
    load it), scraped through the ingress's /metrics like the owners' counters."""
    from prometheus_client import Counter

    return Counter("recsys_model_changes", "Model promotions and rollbacks by result", ["action", "result"],
                   registry=registry)


# an owner that started mid-promotion is brought up to date by at most this many passes
CATCH_UP_PASSES = 5


@ray.remote(num_cpus=0, max_restarts=-1)
class ModelRegistry:
    def __init__(self, model_dir: str, initial_refs: list, manifest: Mapping[str, Any]):
        from prometheus_client import CollectorRegistry

        self._metrics = CollectorRegistry()
        self._changes = model_change_counter(self._metrics)
        # initial_refs = [ObjectRef] put (and kept alive) by the process that started the service:
        # constructor arguments by value would be gone when Ray restarts this actor elsewhere.
        self.model_dir = Path(model_dir)
        self.models: dict[str, tuple[list, dict]] = {str(manifest["version"]): (list(initial_refs), dict(manifest))}
        self.history: list[str] = [str(manifest["version"])]
        if ray.get_runtime_context().was_current_actor_reconstructed:
            self._resume_promoted()

    def _resume_promoted(self) -> None:
        """After a restart, serve what was promoted last (CURRENT on disk), not the start-up model."""
        promoted = current_version(self.model_dir)
        if promoted is None or promoted in self.models or not (self.model_dir / promoted).exists():
            return
        bundle = load_bundle(self.model_dir / promoted)
        self.models[promoted] = ([ray.put(dict(bundle.arrays))], dict(bundle.manifest))
        self.history.append(promoted)

    def current(self) -> tuple[list, dict]:
        """([ObjectRef of the arrays], manifest) of the serving model."""
        return self.models[self.history[-1]]

    def serving_version(self) -> str:
        return self.history[-1]

    def versions(self) -> list[dict[str, Any]]:
        return [{"version": v, "serving": v == self.history[-1]} for v in list_versions(self.model_dir)]

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Each bundle's manifest (offline check, fit, counts), for the console."""
        import json

        out = {}
        for version in list_versions(self.model_dir):
            try:
                out[version] = json.loads((Path(self.model_dir) / version / "manifest.json").read_text())
            except (OSError, ValueError):
                out[version] = {}
        return out

    def metrics_samples(self) -> dict:
        return registry_samples(self._metrics)

    async def _counted(self, action: str, change) -> dict[str, Any]:
        try:
            result = await change
        except ModelLoadFailed:
            self._changes.labels(action, "failed").inc()
            raise
        except InvalidArgument:
            self._changes.labels(action, "refused").inc()
            raise
        except Exception:
            self._changes.labels(action, "failed").inc()
            raise
        self._changes.labels(action, "ok").inc()
        return result

    async def promote(self, version: str, force: bool = False) -> dict[str, Any]:
        """Validate bundle ``version`` under model_dir, then swap every owner to it."""
        return await self._counted("promote", self._promote(version, force))

    async def rollback(self) -> dict[str, Any]:
        """Back to the model served before the current one (it is still in the object store)."""
        return await self._counted("rollback", self._rollback())

    async def _promote(self, version: str, force: bool) -> dict[str, Any]:
        started = time.perf_counter()
        path = self.model_dir / version
        if not path.exists():
            raise InvalidArgument(f"no model {version!r} in {self.model_dir}")
        bundle = load_bundle(path)  # checksum and shapes: raises InvalidArgument
        serving = self.models[self.history[-1]][1]
        check_promotion(bundle.manifest, serving, force=force)
        refs = self.models[version][0] if version in self.models else [ray.put(dict(bundle.arrays))]
        done = await self._swap(refs, dict(bundle.manifest))
        self.models[version] = (refs, dict(bundle.manifest))
        previous = self.history[-1]
        self.history.append(version)
        set_current(self.model_dir, version)
        await self._catch_up(done)
        return {"version": version, "previous": previous, "seconds": round(time.perf_counter() - started, 3)}

    async def _rollback(self) -> dict[str, Any]:
        if len(self.history) < 2:
            raise InvalidArgument("nothing to roll back to: only one model has been served")
        started = time.perf_counter()
        current, previous = self.history[-1], self.history[-2]
        refs, manifest = self.models[previous]
        done = await self._swap(refs, manifest)
        self.history.pop()
        if (self.model_dir / previous).exists():
            set_current(self.model_dir, previous)
        await self._catch_up(done)
        return {"version": previous, "previous": current, "seconds": round(time.perf_counter() - started, 3)}

    async def _swap(self, refs: list, manifest: dict) -> set[str]:
        """Prepare on every owner the placement runs, then commit on all; returns their names."""
        names = await find_placement().owner_names.remote()
        owners = [find(n) for n in names]
        version = str(manifest["version"])
        try:
            await _gather([o.prepare_model.remote(refs, manifest) for o in owners])
        except Exception as exc:
            await _gather([o.abort_model.remote(version) for o in owners], ignore_errors=True)
            raise ModelLoadFailed(f"model {version} failed to load on an owner; nothing changed: {exc}") from exc
        await _gather([o.commit_model.remote(version) for o in owners])
        return set(names)

    async def _catch_up(self, done: set[str]) -> None:
        """Owners started while the swap ran may have read the model served before it: bring
        each one the placement runs now to the current model. (It is the current one from here on,
        so owners starting later read it themselves.)"""
        refs, manifest = self.current()
        version = str(manifest["version"])
        for _ in range(CATCH_UP_PASSES):
            names = set(await find_placement().owner_names.remote())
            owners = []
            for name in names - done:
                owner = find(name)
                if await owner.model_version.remote() != version:
                    owners.append(owner)
            done |= names
            if not owners:
                return
            await _gather([o.prepare_model.remote(refs, manifest) for o in owners], ignore_errors=True)
            await _gather([o.commit_model.remote(version) for o in owners], ignore_errors=True)


async def _gather(refs: list, ignore_errors: bool = False) -> list:
    import asyncio

    return await asyncio.gather(*refs, return_exceptions=ignore_errors)
