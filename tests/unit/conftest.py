"""Unit tests never start Ray: any attempt fails the test."""
import pytest


@pytest.fixture(autouse=True)
def _forbid_ray(monkeypatch):
    import ray

    def refuse(*_args, **_kwargs):
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture
def writer_of():
    """writer_of(logic[, on_fenced]): the ShardWriter the owner runs, over a real one-thread
    store executor (the owner's), so tests drive the production write path without Ray."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from actors.shard_writer import ShardWriter

    executors = []

    def make(logic, on_fenced=None):
        io = ThreadPoolExecutor(max_workers=1)
        executors.append(io)

        async def io_call(fn, *args):
            return await asyncio.get_running_loop().run_in_executor(io, fn, *args)
        return ShardWriter(logic, io_call, on_fenced=on_fenced)
    yield make
    for io in executors:
        io.shutdown(wait=True)


@pytest.fixture
def new_owner_core(tmp_path, synthetic_bundle):
    """new_owner_core(name, settings[, meta]): a real OwnerCore (no Ray) over the store at
    ``settings.store_url`` (opened with ``settings.partitions``; ``meta`` written to it first), serving
    the synthetic model, with a one-thread store executor as the owner actor has. Each call is a new
    owner process over the same store; executors and stores are closed after the test."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from actors.owner import OwnerCore
    from actors.store import open_store
    from recommenders.runtime import ModelRuntime

    pools, stores = [], []

    def make(name, settings, meta=None):
        pool = ThreadPoolExecutor(max_workers=1)

        async def io(fn, *args):
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        store = open_store(settings.store_url, settings.partitions)
        for key, value in (meta or {}).items():
            store.set_meta(key, value)
        pools.append(pool)
        stores.append(store)
        return OwnerCore(name, settings, ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest), io, store)
    yield make
    for pool in pools:
        pool.shutdown(wait=True)
    for store in stores:
        store.close()
