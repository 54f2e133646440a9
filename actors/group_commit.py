"""Group commit for a shard's writes: callers queue, one writer commits what is queued together.

Plain asyncio (no Ray), so the writer's failure behaviour is tested without a cluster. The
promises it keeps:

- the writer never silently stops: a caller that has gone (its future cancelled), a batch that
  raises anywhere, or a bug in the code after the commit fails at most that batch; the next
  ``submit`` finds a running writer (a writer task that ended for any reason is started again);
- every caller of a batch gets an answer: its result, or the batch's error;
- callers are answered in the order they queued.

The batch function gets one list per caller and returns one result per caller; what a batch
means (store, apply, acknowledge) is the shard's business.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Sequence

from engine.errors import RecsysError, Unavailable

log = logging.getLogger(__name__)

BatchFn = Callable[[list[Sequence[Any]]], Awaitable[list[Any]]]


class GroupCommit:
    def __init__(self, run_batch: BatchFn, *, max_items: int = 10_000):
        self._run_batch = run_batch
        self._max_items = max_items
        self._pending: list[tuple[Sequence[Any], asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task | None = None
        self._busy = False
        self.batches = 0
        self.failed_batches = 0
        self.writer_starts = 0

    def running(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until nothing is queued or being committed (callers that gave up included: their
        items may still be committed). A partition's move waits for this before its snapshot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self._pending or self._busy) and loop.time() < deadline:
            await asyncio.sleep(0.002)
        if self._pending or self._busy:
            raise Unavailable("writes did not drain in time; retry")

    async def submit(self, items: Sequence[Any]) -> Any:
        """Queue ``items`` for the next batch and wait for their result. If this caller is
        cancelled, the items still go with their batch (they may be committed): a retry with the
        same event ids is then answered as duplicates."""
        self._ensure_writer()
        future = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        self._wake.set()
        return await future

    def _ensure_writer(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if not self.running():
            if self._writer is not None and not self._writer.cancelled() and self._writer.exception() is not None:
                log.error("shard writer had stopped (%r); starting it again", self._writer.exception())
            self._writer = asyncio.create_task(self._write_loop())
            self.writer_starts += 1

    def _take_batch(self) -> list[tuple[Sequence[Any], asyncio.Future]]:
        """Everything queued, up to max_items (a single oversized caller still goes alone)."""
        taken, size = 0, 0
        for items, _ in self._pending:
            if taken and size + len(items) > self._max_items:
                break
            taken += 1
            size += len(items)
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return batch

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take_batch()
            # callers that gave up before their batch started: nothing of theirs was written
            live = [(items, future) for items, future in batch if not future.done()]
            if not live:
                continue
            self.batches += 1
            self._busy = True
            try:
                results = await self._run_batch([items for items, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} callers")
            except asyncio.CancelledError:
                # the actor is shutting down: answer everyone, then stop
                self._fail(live, Unavailable("shard is stopping, retry"))
                raise
            except Exception as exc:  # noqa: BLE001 - any failure fails this batch only
                self.failed_batches += 1
                if not isinstance(exc, RecsysError):
                    log.exception("a shard write batch failed")
                self._fail(live, exc if isinstance(exc, RecsysError)
                           else Unavailable("the write failed on the shard (logged there); retry"))
                continue
            finally:
                self._busy = False
            for (_, future), result in zip(live, results):
                if future.done():  # a caller that went away mid-batch is simply not answered
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    @staticmethod
    def _fail(batch, error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)
