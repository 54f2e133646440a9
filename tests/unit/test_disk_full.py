"""A full disk, for real: the store on a small tmpfs filled to the last byte.

Writes that cannot be made durable fail with Unavailable (UNAVAILABLE / 503 at the edge) and a
message, health says the shard cannot take writes, nothing acknowledged is lost, and ingest and
health come back by themselves once space returns. Needs root to mount the tmpfs (the CI
machine runs as root)."""
import asyncio
import os
import subprocess

import pytest

from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.errors import Unavailable
from engine.events import parse_event

NOW = 1_800_000_000_000

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk) -> list:
    """Write filler files until the disk refuses another byte."""
    fillers, n = [], 0
    while True:
        path = disk / f"filler-{n}"
        try:
            with open(path, "wb") as handle:
                handle.write(b"\0" * 65536)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            # the last one may be partial; keep it (every byte is taken)
            fillers.append(path)
            break
        fillers.append(path)
        n += 1
    while True:  # the last few bytes too
        try:
            with open(disk / "filler-tail", "ab") as handle:
                handle.write(b"\0" * 512)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            break
    fillers.append(disk / "filler-tail")
    return fillers


def event(n, customer="c1"):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": "add_to_cart",
                        "item_id": f"i{n % 60:04d}", "channel": "pos", "timestamp_ms": NOW - 1000,
                        "session_id": "x" * 100}, NOW)


def test_disk_full_fails_writes_loses_nothing_and_resumes_by_itself(small_disk, synthetic_bundle, monkeypatch,
                                                                    writer_of):
    from recommenders.runtime import ModelRuntime

    monkeypatch.setattr("actors.shard_writer.PROBE_EVERY_S", 0.0)
    monkeypatch.setattr("actors.shard_writer.SNAPSHOT_RETRY_S", 0.0)
    store = SqliteEventStore(small_disk / "recsys.db")
    logic = CustomerShardLogic(0, ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest), RankingConfig(),
                               store, snapshot_every=50)
    logic.recover()
    writer = writer_of(logic)
    acked: list[str] = []

    async def scenario():
        n = 0
        for _ in range(20):
            batch = [event(n + i) for i in range(10)]
            n += 10
            assert (await writer.submit(batch))[0] == 10
            acked.extend(e.event_id for e in batch)
        fillers = fill(small_disk)
        refused = 0
        for _ in range(30):
            batch = [event(n + i) for i in range(20)]
            n += 20
            try:
                result = await writer.submit(batch)
                acked.extend(e.event_id for e in batch if result[0])
            except Unavailable as exc:
                assert "full" in exc.message or "space" in exc.message, exc.message
                refused += 1
        assert refused > 0, "the disk never filled up"
        health = await writer.health()
        assert health["writable"] is False and health["write_error"]
        # an erasure that cannot be stored erases nothing and says so (DELETE: 503, not a 500)
        with pytest.raises(Unavailable, match="nothing was erased"):
            await writer.forget("c1", "admin")
        assert logic.customers.get("c1") is not None
        for path in fillers:
            path.unlink()
        assert (await writer.health())["writable"] is True  # came back with no client write
        batch = [event(n + i) for i in range(10)]
        assert (await writer.submit(batch))[0] == 10
        acked.extend(e.event_id for e in batch)
    asyncio.run(asyncio.wait_for(scenario(), 60))
    stored = {e.event_id for e in store.customer_events("c1")}
    assert set(acked) <= stored
    assert logic.customers["c1"].event_count == len(stored)
    store.close()
    # and a restart from these files has every acknowledged event
    again = CustomerShardLogic(0, ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest), RankingConfig(),
                               SqliteEventStore(small_disk / "recsys.db"))
    again.recover()
    assert again.customers["c1"].event_count == len(stored)
