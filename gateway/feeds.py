"""Per-replica pollers shared by every open stream, so that an idle stream costs nothing.

A SubscribeActions or Health/Watch stream that waits for news must not poll a shard itself: 500
open streams would make 500 polls a tick (and a stream whose client went away would keep polling
until it is noticed). Instead each ingress replica runs one poll loop per feed, only while some
stream waits on it, and wakes the waiting streams when there is something to see. A stream that
ends (its client cancelled, disconnected, or its deadline passed) leaves at once; the loop stops
with the last one.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

log = logging.getLogger("ray.serve")


class _Waiters:
    """Streams parked until the next wake-up; the poll loop runs while there are any."""

    def __init__(self, loop_body: Callable[[], Awaitable[None]], interval_s: float,
                 on_start: Callable[[], None] = lambda: None):
        self._loop_body = loop_body
        self._on_start = on_start
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.count = 0

    def wake(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    @contextlib.asynccontextmanager
    async def joined(self):
        self.count += 1
        if self._task is None or self._task.done():
            self._on_start()
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0 and self._task is not None:
                self._task.cancel()
                self._task = None

    async def wait(self) -> None:
        await self._wake.wait()

    async def _run(self) -> None:
        while True:
            try:
                await self._loop_body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the streams find out themselves when they ask
                log.warning("feed poll failed: %s", type(exc).__name__)
                self.wake()
            await asyncio.sleep(self._interval_s)


class ActionFeed:
    """The outbox's news for every SubscribeActions stream of one replica.

    A stream reads its own rows (``fetch(after, page)``) while there are rows to read: that is
    delivery, not polling. Once it is caught up it parks here at its position. One loop asks the
    outbox for a single row after the lowest parked position every ``interval_s``; when there is
    one, every parked stream wakes and reads. Nothing is missed: the loop asks from the parked
    positions themselves, not from an event that a stream could have started waiting for too late.
    """

    def __init__(self, fetch: Callable[[int, int], Awaitable[list]], page: int, interval_s: float):
        self._fetch = fetch
        self._page = page
        self._positions: dict[int, int] = {}
        self._ids = itertools.count()
        self._waiters = _Waiters(self._poll, interval_s)
        self.polls = 0  # outbox reads made for parked streams (not deliveries)

    @property
    def subscribers(self) -> int:
        return self._waiters.count

    async def rows_after(self, after: int) -> AsyncIterator[tuple[int, Any]]:
        """Every outbox row after ``after``, then each new one as it comes; ends only when the
        caller stops iterating (or is cancelled)."""
        token = next(self._ids)
        async with self._waiters.joined():
            try:
                while True:
                    rows = await self._fetch(after, self._page)
                    for seq, action in rows:
                        after = seq
                        yield seq, action
                    if len(rows) < self._page:
                        self._positions[token] = after
                        await self._waiters.wait()
                        self._positions.pop(token, None)
            finally:
                self._positions.pop(token, None)

    async def _poll(self) -> None:
        if not self._positions:
            return
        self.polls += 1
        if await self._fetch(min(self._positions.values()), 1):
            self._waiters.wake()


class SharedValue:
    """A value (the serving status) that one loop refreshes every ``interval_s`` while any stream
    watches it; ``changes()`` gives the current value, then each different one."""

    def __init__(self, read: Callable[[], Awaitable[Any]], interval_s: float):
        self._read = read
        self._value: Any = None
        self._known = False
        # a value from before the last watcher left is stale: the next watcher waits for a fresh one
        self._waiters = _Waiters(self._refresh, interval_s, on_start=self._forget)
        self.reads = 0

    def _forget(self) -> None:
        self._known = False

    @property
    def watchers(self) -> int:
        return self._waiters.count

    async def changes(self) -> AsyncIterator[Any]:
        async with self._waiters.joined():
            last, first = None, True
            while True:
                if self._known and (first or self._value != last):
                    last, first = self._value, False
                    yield last
                await self._waiters.wait()

    async def _refresh(self) -> None:
        self.reads += 1
        value = await self._read()
        if not self._known or value != self._value:
            self._value, self._known = value, True
            self._waiters.wake()
