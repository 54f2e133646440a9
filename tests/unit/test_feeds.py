"""The per-replica shared pollers (gateway/feeds.py) against an in-memory outbox."""
import asyncio
import contextlib

from gateway.feeds import ActionFeed, SharedValue


class Outbox:
    def __init__(self):
        self.rows: list[tuple[int, dict]] = []
        self.calls = 0

    def add(self, n: int = 1) -> None:
        for _ in range(n):
            seq = len(self.rows) + 1
            self.rows.append((seq, {"seq": seq}))

    async def fetch(self, after: int, limit: int) -> list:
        self.calls += 1
        await asyncio.sleep(0)
        return [r for r in self.rows if r[0] > after][:limit]


async def _take(feed: ActionFeed, after: int, n: int) -> list[int]:
    got = []
    async with contextlib.aclosing(feed.rows_after(after)) as rows:
        async for seq, _ in rows:
            got.append(seq)
            if len(got) == n:
                return got
    return got


def test_every_row_in_order_across_pages_and_new_arrivals():
    async def main():
        outbox = Outbox()
        outbox.add(250)
        feed = ActionFeed(outbox.fetch, page=100, interval_s=0.01)
        reader = asyncio.create_task(_take(feed, 0, 400))
        for _ in range(15):
            await asyncio.sleep(0.02)
            outbox.add(10)
        assert await asyncio.wait_for(reader, 5) == list(range(1, 401))
        assert feed.subscribers == 0
    asyncio.run(main())


def test_hundreds_of_idle_streams_make_one_poll_a_tick_and_none_once_gone():
    async def main():
        outbox = Outbox()
        outbox.add(5)
        feed = ActionFeed(outbox.fetch, page=100, interval_s=0.05)
        streams = [asyncio.create_task(_take(feed, 0, 10_000)) for _ in range(300)]
        await asyncio.sleep(0.3)
        assert feed.subscribers == 300
        before = outbox.calls
        await asyncio.sleep(0.5)
        # about 10 ticks in 0.5 s: one poll each, not one per stream
        assert outbox.calls - before <= 15, outbox.calls - before
        # news wakes every stream, which reads it
        outbox.add(1)
        await asyncio.sleep(0.3)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        assert feed.subscribers == 0
        idle = outbox.calls
        await asyncio.sleep(0.3)
        assert outbox.calls == idle
    asyncio.run(main())


def test_a_position_past_the_end_does_not_hold_back_the_others():
    async def main():
        outbox = Outbox()
        outbox.add(3)
        feed = ActionFeed(outbox.fetch, page=100, interval_s=0.01)
        ahead = asyncio.create_task(_take(feed, 1_000_000, 1))
        behind = asyncio.create_task(_take(feed, 3, 2))
        await asyncio.sleep(0.05)
        outbox.add(2)
        assert await asyncio.wait_for(behind, 2) == [4, 5]
        ahead.cancel()
    asyncio.run(main())


def test_shared_value_gives_the_current_value_then_changes_and_forgets_when_unwatched():
    async def main():
        state = {"value": "up", "reads": 0}

        async def read():
            state["reads"] += 1
            return state["value"]

        shared = SharedValue(read, interval_s=0.02)

        async def watch(n):
            out = []
            async with contextlib.aclosing(shared.changes()) as changes:
                async for value in changes:
                    out.append(value)
                    if len(out) == n:
                        return out
        watchers = [asyncio.create_task(watch(3)) for _ in range(50)]
        await asyncio.sleep(0.1)
        state["value"] = "down"
        await asyncio.sleep(0.1)
        state["value"] = "up"
        assert all(w == ["up", "down", "up"] for w in await asyncio.wait_for(asyncio.gather(*watchers), 2))
        assert shared.watchers == 0
        reads = state["reads"]
        assert reads < 30  # one read a tick for all fifty
        await asyncio.sleep(0.1)
        assert state["reads"] == reads  # no watcher, no reads
        state["value"] = "down"
        assert await asyncio.wait_for(watch(1), 2) == ["down"]  # a fresh read, not the stale "up"
    asyncio.run(main())
