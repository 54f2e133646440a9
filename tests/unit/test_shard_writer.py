"""A shard's write side never silently stops (actors/shard_writer.py, actors/group_commit.py).

The same ShardWriter the actor runs, over a real SQLite store and a real store thread; faults
are injected by making the real store or apply step raise, the way a full disk, a lost
connection or a bug would.
"""
import asyncio

import pytest

from actors.group_commit import GroupCommit
from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.errors import Unavailable
from engine.events import parse_event

NOW = 1_800_000_000_000


def event(n, customer="c1", kind="view", item="i0001"):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": "web", "timestamp_ms": NOW - 1000}, NOW)


@pytest.fixture
def writer_for(tmp_path, synthetic_model, writer_of):
    def make(snapshot_every=10_000, name="store.db"):
        logic = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / name),
                                   snapshot_every)
        logic.recover()
        return writer_of(logic), logic
    return make


def run(scenario):
    """A wedged writer shows as a failure within seconds, not a hung suite."""
    asyncio.run(asyncio.wait_for(scenario, 30))


def stored_count(logic, customer):
    return len(logic.store.customer_events(customer))


def live_count(logic, customer):
    state = logic.customers.get(customer)
    return 0 if state is None else state.event_count


def test_hundreds_of_abandoned_callers_do_not_stop_the_writer(writer_for):
    writer, logic = writer_for()

    async def scenario():
        # callers that give up at once, while their batch is queued or being committed
        for n in range(300):
            with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                await asyncio.wait_for(writer.submit([event(n)]), timeout=0.0001 if n % 2 else 0)
        tasks = [asyncio.ensure_future(writer.submit([event(1000 + n)])) for n in range(100)]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # the next batch is committed and answered
        assert await writer.submit([event(5000)]) == (1, 0, 0)
        # a retry of everything is answered, and nothing is applied twice
        again = await writer.submit([event(n) for n in range(300)] + [event(1000 + n) for n in range(100)])
        assert again[0] + again[1] == 400
    run(scenario())
    assert live_count(logic, "c1") == stored_count(logic, "c1") == 401


def test_a_batch_whose_apply_raises_fails_alone_and_is_applied_once(writer_for, monkeypatch):
    writer, logic = writer_for()
    real = logic.apply_committed
    calls = {"n": 0}

    def flaky(events, seqs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("a bug after the commit")
        return real(events, seqs)
    monkeypatch.setattr(logic, "apply_committed", flaky)

    async def scenario():
        assert await writer.submit([event(1)]) == (1, 0, 0)
        with pytest.raises(Unavailable, match="stored but applying them failed"):
            await writer.submit([event(2), event(3)])
        # the next batch first catches up on the stored events, then commits its own
        assert await writer.submit([event(4)]) == (1, 0, 0)
        # the failed batch's retry is a duplicate: it was applied once, by the catch-up
        assert await writer.submit([event(2), event(3)]) == (0, 2, 0)
    run(scenario())
    assert live_count(logic, "c1") == stored_count(logic, "c1") == 4


def test_a_commit_whose_outcome_was_unknown_is_applied_exactly_once(writer_for, monkeypatch):
    writer, logic = writer_for()
    real = logic.store.append
    calls = {"n": 0}

    def commit_then_lose_the_answer(partition, events, epoch=None):
        calls["n"] += 1
        seqs = real(partition, events, epoch)
        if calls["n"] == 1:
            raise ConnectionError("connection lost during COMMIT")
        return seqs
    monkeypatch.setattr(logic.store, "append", commit_then_lose_the_answer)

    async def scenario():
        with pytest.raises(Unavailable, match="store write failed"):
            await writer.submit([event(1), event(2)])
        assert (await writer.health())["writable"] is False
        assert await writer.submit([event(1), event(2)]) == (0, 2, 0)
    run(scenario())
    assert live_count(logic, "c1") == stored_count(logic, "c1") == 2


def test_a_failing_snapshot_never_fails_ingest_and_is_retried(writer_for, monkeypatch):
    writer, logic = writer_for(snapshot_every=2)
    real = logic.store.write_snapshot
    failures = {"left": 1}

    def full_disk(*args):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(28, "No space left on device")
        return real(*args)
    monkeypatch.setattr(logic.store, "write_snapshot", full_disk)
    monkeypatch.setattr("actors.shard_writer.SNAPSHOT_RETRY_S", 0.0)

    async def scenario():
        assert await writer.submit([event(1), event(2)]) == (2, 0, 0)
        assert "disk is full" in (await writer.health())["snapshot_error"]
        assert await writer.submit([event(3), event(4)]) == (2, 0, 0)
        assert (await writer.health())["snapshot_error"] is None
    run(scenario())
    assert logic.store.latest_snapshot(0)[0] == logic.last_seq


def test_health_reports_a_shard_that_cannot_write_and_recovers_by_itself(writer_for, monkeypatch):
    writer, logic = writer_for()
    monkeypatch.setattr("actors.shard_writer.PROBE_EVERY_S", 0.0)
    broken = {"on": True}
    real_append, real_probe = logic.store.append, logic.store.probe_write

    def append(partition, events, epoch=None):
        if broken["on"]:
            raise OSError(28, "No space left on device")
        return real_append(partition, events, epoch)

    def probe():
        if broken["on"]:
            raise OSError(28, "No space left on device")
        return real_probe()
    monkeypatch.setattr(logic.store, "append", append)
    monkeypatch.setattr(logic.store, "probe_write", probe)

    async def scenario():
        assert (await writer.health())["writable"] is True
        with pytest.raises(Unavailable, match="disk is full"):
            await writer.submit([event(1)])
        report = await writer.health()
        assert report["writable"] is False and "disk is full" in report["write_error"]
        broken["on"] = False
        assert (await writer.health())["writable"] is True  # the probe found the store writable
        assert await writer.submit([event(1)]) == (1, 0, 0)
    run(scenario())


def test_group_commit_restarts_a_writer_that_died():
    async def scenario():
        async def batch(chunks):
            return [len(c) for c in chunks]
        commit = GroupCommit(batch)
        assert await commit.submit([1, 2]) == 2
        commit._writer.cancel()  # a writer killed by anything at all
        await asyncio.sleep(0)
        assert not commit.running()
        assert await commit.submit([1]) == 1
        assert commit.writer_starts == 2
    run(scenario())


def test_group_commit_answers_every_caller_of_a_failed_batch():
    async def scenario():
        async def batch(chunks):
            raise ValueError("boom")
        commit = GroupCommit(batch)
        results = await asyncio.gather(*[commit.submit([n]) for n in range(20)], return_exceptions=True)
        # every caller answered; the bug's own text stays in the shard's log, not in the answer
        assert all(isinstance(r, Unavailable) and "boom" not in r.message and "retry" in r.message
                   for r in results)
        assert commit.running()
    run(scenario())


def test_health_reports_a_store_call_that_hangs(writer_for, monkeypatch):
    import threading

    writer, logic = writer_for()
    monkeypatch.setattr("actors.shard_writer.STUCK_AFTER_S", 0.05)
    release = threading.Event()
    real = logic.store.append

    def hung(partition, events, epoch=None):  # a database that stops answering, then comes back
        release.wait(10)
        return real(partition, events, epoch)
    monkeypatch.setattr(logic.store, "append", hung)

    async def scenario():
        write = asyncio.ensure_future(writer.submit([event(1)]))
        await asyncio.sleep(0.2)
        report = await writer.health()
        assert report["writable"] is False and "has not returned" in report["write_error"]
        release.set()
        assert await write == (1, 0, 0)
        assert (await writer.health())["writable"] is True
    run(scenario())
