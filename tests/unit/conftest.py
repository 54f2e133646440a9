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
