"""Coalescing of concurrent calls to one shard into fewer, larger actor calls.

Each Recommend is a small amount of scoring (about a millisecond) behind a Ray actor call whose
own cost (serialising, two gRPC messages between core workers, two event-loop turns) is of the
same order. Under load, many requests for one shard are waiting at the same moment: sending them
as one call pays that cost once.

No added wait: a request goes out at once while fewer than ``max_in_flight`` calls to the shard
are outstanding; otherwise it joins the queue, and when a call returns, everything queued (up to
``max_batch``) goes out as the next call. An idle service therefore answers each request with a
call of its own, as before; a busy one sends batches whose size follows the load. A call still
outstanding after ``slow_after_s`` (50 ms) stops counting: the queue then goes out in a call of its
own, so one slow request (an owner forwarding during a move waits up to seconds) delays only the
requests that went in its call, never the ones after it.

A failure of the call (the shard died, timed out) fails every request in it, each with the same
error, as separate calls would have; an error for one request (returned in its place in the
result list) fails that request only. A caller that gives up (a deadline around ``submit``) cancels
its request: if still queued, it is not sent.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generic, TypeVar

Item = TypeVar("Item")


# A call outstanding this long no longer holds back the queue: a slow call (an owner forwarding
# during a move waits up to seconds) must not make every later request to that owner wait for it.
SLOW_AFTER_S = 0.05


class Coalescer(Generic[Item]):
    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Any]]], max_batch: int, max_in_flight: int,
                 slow_after_s: float = SLOW_AFTER_S):
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be >= 1")
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._slow_after = slow_after_s
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._started: dict[int, float] = {}  # calls outstanding: id -> when sent (loop time)
        self._next_id = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    def _busy(self) -> int:
        """Outstanding calls that still count against max_in_flight (the ones not yet slow)."""
        now = asyncio.get_running_loop().time()
        return sum(1 for sent in self._started.values() if now - sent < self._slow_after)

    async def submit(self, item: Item) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._drain()
        return await future

    def _drain(self) -> None:
        """Send what is queued while fewer than max_in_flight calls are outstanding and not slow;
        if requests stay queued, look again when the oldest outstanding call turns slow."""
        while self._queue and self._busy() < self._max_in_flight:
            self._launch()
        if self._queue and self._timer is None:
            loop = asyncio.get_running_loop()
            young = [sent for sent in self._started.values() if loop.time() - sent < self._slow_after]
            if young:  # (none young: nothing holds the queue, the loop above sent it all)
                self._timer = loop.call_at(min(young) + self._slow_after + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._drain()

    def _launch(self) -> None:
        batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
        # requests whose caller has gone (cancelled) are not sent
        batch = [(item, future) for item, future in batch if not future.done()]
        if not batch:
            return
        call, self._next_id = self._next_id, self._next_id + 1
        self._started[call] = asyncio.get_running_loop().time()
        task = asyncio.ensure_future(self._run(call, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: int, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} answered with {len(results)} results")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every caller in the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(_raisable(result))
                else:
                    future.set_result(result)
        finally:
            del self._started[call]
            self._drain()


class PerOwner:
    """One Coalescer per owner for calls of one kind, made as owners appear: ``submit(name,
    handle, item)`` sends ``item`` in a call of the owner's ``method`` (which takes a list and
    answers a list). The handle of the latest submit is the one used (an owner the routes replaced
    under the same name gets the new one). ``observe(n)``: told the size of each call sent."""

    def __init__(self, method: str, max_batch: int, max_in_flight: int,
                 observe: Callable[[int], None] | None = None):
        self._method = method
        self._max_batch, self._max_in_flight = max_batch, max_in_flight
        self._observe = observe
        self._coalescers: dict[str, Coalescer] = {}
        self._handles: dict[str, Any] = {}

    def submit(self, name: str, handle: Any, item: Any) -> Awaitable[Any]:
        self._handles[name] = handle
        coalescer = self._coalescers.get(name)
        if coalescer is None:
            async def send(items: list) -> list:
                if self._observe is not None:
                    self._observe(len(items))
                return await getattr(self._handles[name], self._method).remote(items)
            coalescer = self._coalescers[name] = Coalescer(send, self._max_batch, self._max_in_flight)
        return coalescer.submit(item)


def _raisable(error: BaseException) -> Exception:
    """An error a future can carry (asyncio refuses StopIteration, and a BaseException that is not
    an Exception would escape the caller's error handling)."""
    if isinstance(error, Exception) and not isinstance(error, StopIteration):
        return error
    return RuntimeError(f"{type(error).__name__}: {error}")
