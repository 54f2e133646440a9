"""Erasures, batches, snapshots and trigger ticks interleave on one shard without bringing an
erased customer back or applying anything twice (the write side is one step at a time)."""
import asyncio
import sqlite3

import pytest

from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.config import OffersConfig, RankingConfig
from engine.events import parse_event
from recommenders.runtime import ModelRuntime

NOW = 1_800_000_000_000


def event(n, customer, kind="view", item="i0001", **extra):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": extra.pop("channel", "web"), "timestamp_ms": NOW - 1000,
                        **extra}, NOW)


@pytest.fixture
def make(tmp_path, synthetic_bundle, writer_of):
    def build(snapshot_every=10_000, **kwargs):
        logic = CustomerShardLogic(0, ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest),
                                   RankingConfig(), SqliteEventStore(tmp_path / "s.db"), snapshot_every, **kwargs)
        logic.recover()
        return writer_of(logic), logic
    return build


def test_an_erasure_during_a_snapshotting_batch_leaves_no_stale_snapshot(make, monkeypatch):
    writer, logic = make(snapshot_every=1)
    real, calls = logic.store.write_snapshot, []

    def second_write_fails(*args):  # the erasure's own fresh snapshot fails (a full disk)
        calls.append(args[1])
        if len(calls) >= 2:
            raise OSError(28, "No space left on device")
        return real(*args)

    async def scenario():
        await writer.submit([event(1, "c7", "add_to_cart", "i0002")])
        monkeypatch.setattr(logic.store, "write_snapshot", second_write_fails)
        batch = asyncio.ensure_future(writer.submit([event(2, "other")]))
        await asyncio.sleep(0)  # the batch awaits its append; the erasure comes in now
        erasure = asyncio.ensure_future(writer.forget("c7", "admin"))
        await asyncio.gather(batch, erasure)
    asyncio.run(asyncio.wait_for(scenario(), 30))
    _, restarted = make()
    assert "c7" not in restarted.customers and "other" in restarted.customers


def test_a_trigger_tick_during_an_erasure_writes_no_action_of_the_erased(make, tmp_path):
    writer, logic = make(offers_config=OffersConfig(default_marketing_consent=True, cart_abandon_minutes=1))

    async def scenario():
        await writer.submit([event(1, "c7", "add_to_cart", "i0002")])
        erasure = asyncio.ensure_future(writer.forget("c7", "admin"))
        tick = asyncio.ensure_future(writer.fire_triggers(NOW + 10**9))
        await asyncio.gather(erasure, tick)
        await writer.fire_triggers(NOW + 10**9)
    asyncio.run(asyncio.wait_for(scenario(), 30))
    rows = sqlite3.connect(tmp_path / "s.db").execute("SELECT action_id FROM actions WHERE customer_id = 'c7'")
    assert rows.fetchall() == []


def test_a_follow_up_that_raises_never_applies_an_event_twice(make, monkeypatch):
    writer, logic = make(offers_config=OffersConfig(default_marketing_consent=True))
    failures = {"left": 1}
    real = logic._cross_sell

    def cross_sell_bug(event_):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("a bug in the cross-sell")
        return real(event_)
    monkeypatch.setattr(logic, "_cross_sell", cross_sell_bug)

    async def scenario():
        first = event(1, "c9", "purchase", "i0002", channel="pos", price=3.0)
        assert await writer.submit([first]) == (1, 0, 0)
        assert await writer.submit([event(2, "c9")]) == (1, 0, 0)
        assert await writer.submit([first]) == (0, 1, 0)
    asyncio.run(asyncio.wait_for(scenario(), 30))
    state = logic.customers["c9"]
    assert state.event_count == len(logic.store.customer_events("c9")) == 2
    assert state.spend == 3.0
