"""Routes from the ingress to the partition owners, kept fresh across moves.

The ingress holds the placement's routes (owner name per partition, with a version) and sends
each request straight to the owner of its customer's partition: one hop. When that owner
answers PartitionMoved (the partition moved or is moving) or is gone (died, its node removed),
the routes are read again from the placement and the request is sent again, with a short
backoff, until the request's deadline: a move is invisible to clients but as latency.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

import ray

from actors.names import find, find_placement
from engine.errors import PartitionMoved, Unavailable

log = logging.getLogger("ray.serve")

RETRYABLE = (PartitionMoved, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
BACKOFF_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
# routes are read again at least this often even when nothing failed (new owners, metrics)
REFRESH_EVERY_S = 2.0
# a call unanswered this long makes the routes be read again: has its partition moved meanwhile?
WATCH_S = 0.5


class Routes:
    def __init__(self, partitions: int, placement=None):
        self.partitions = partitions
        self._placement = placement
        self.version = -1
        self.owner_of: list[str | None] = [None] * partitions
        self._handles: dict[str, Any] = {}
        self._refreshing: asyncio.Future | None = None
        self._read_at = 0.0
        self.refreshes = 0
        self.retries = 0

    def _placement_handle(self):
        if self._placement is None:
            self._placement = find_placement()
        return self._placement

    async def refresh(self) -> None:
        """Read the routes again (one read at a time per replica; concurrent callers share it)."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        self._refreshing = asyncio.get_running_loop().create_future()
        try:
            version, owners = await asyncio.wait_for(self._placement_handle().routes.remote(), 5.0)
            if version >= self.version:
                self.version, self.owner_of = version, list(owners)
            self._read_at = time.monotonic()
            self.refreshes += 1
            self._refreshing.set_result(None)
        except Exception as exc:  # noqa: BLE001 - callers retry with what they have
            self._refreshing.set_result(None)
            log.warning("routes: placement did not answer: %s", type(exc).__name__)
        finally:
            self._refreshing = None

    async def ensure(self) -> None:
        if self.version < 0 or time.monotonic() - self._read_at > REFRESH_EVERY_S:
            await self.refresh()

    def handle(self, name: str):
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = find(name)
        return handle

    def owner(self, partition: int) -> tuple[str, Any] | None:
        name = self.owner_of[partition]
        if name is None:
            return None
        try:
            return name, self.handle(name)
        except ValueError:  # a stopped owner whose name is gone
            return None

    def owners(self) -> dict[str, Any]:
        """Every owner named in the routes (for what goes to all: health, catalogue)."""
        out = {}
        for name in dict.fromkeys(n for n in self.owner_of if n is not None):
            try:
                out[name] = self.handle(name)
            except ValueError:
                continue
        return out

    def forget_handle(self, name: str) -> None:
        self._handles.pop(name, None)

    async def call(self, partition: int, send: Callable[[str, Any], Awaitable[Any]], deadline: float) -> Any:
        """``send(owner name, handle)`` to the partition's owner, again after each move, until
        ``deadline`` (monotonic seconds). A call that has not answered within WATCH_S while its
        owner has meanwhile left the routes (it died without a word, its node removed) is given
        up and sent to the partition's new owner: a write sent twice is answered as duplicates the
        second time."""
        await self.ensure()
        attempt = 0
        while True:
            target = self.owner(partition)
            error: BaseException | None = None
            if target is not None:
                try:
                    return await self._watched(partition, target, send(*target), deadline)
                except RETRYABLE as exc:
                    error = exc
                    if not isinstance(exc, PartitionMoved):
                        self.forget_handle(target[0])
                except asyncio.TimeoutError:
                    raise Unavailable("customer partition owner did not answer in time, retry") from None
            if time.monotonic() >= deadline:
                log.warning("routes: partition %d still unavailable at the deadline (%s)", partition,
                            type(error).__name__ if error else "no owner")
                raise Unavailable("customer partition unavailable (moving), retry")
            self.retries += 1
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1
            await self.refresh()

    async def _watched(self, partition: int, target: tuple[str, Any], call: Awaitable, deadline: float) -> Any:
        task = asyncio.ensure_future(call)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise asyncio.TimeoutError
                done, _ = await asyncio.wait({task}, timeout=min(WATCH_S, left))
                if done:
                    return task.result()
                if time.monotonic() - self._read_at >= WATCH_S:
                    await self.refresh()
                # given up only when the owner has left the routes (dead, its node removed): an
                # owner still running finishes the call itself (it answers PartitionMoved, or
                # forwards it once), and a resend beside it would decide a NextBestOffer twice
                if target[0] not in self.owner_of:
                    raise PartitionMoved(partition)
        finally:
            if not task.done():
                task.cancel()
