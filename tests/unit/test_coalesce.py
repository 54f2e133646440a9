"""The ingress's coalescing of concurrent shard calls (gateway/coalesce.py)."""
import asyncio

import pytest

from engine.errors import InvalidArgument, Unavailable
from gateway.coalesce import Coalescer


class Shard:
    """Stands in for the actor call: records each batch, answers after the test releases it."""

    def __init__(self, fail_with: Exception | None = None):
        self.batches: list[list] = []
        self.release = asyncio.Event()
        self.fail_with = fail_with

    async def send(self, items: list) -> list:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [InvalidArgument(f"bad {i}") if i < 0 else i * 10 for i in items]


def run(coro):
    return asyncio.run(coro)


async def settle():
    """Let every ready task run (submissions, then the calls they started)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_idle_requests_go_out_at_once_and_a_busy_queue_goes_out_together():
    async def scenario():
        shard = Shard()
        coalescer = Coalescer(shard.send, max_batch=32, max_in_flight=2)
        tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(10)]
        await settle()
        # the first two went out alone (nothing outstanding), the other eight wait
        assert shard.batches == [[0], [1]]
        shard.release.set()
        results = await asyncio.gather(*tasks)
        assert results == [i * 10 for i in range(10)]
        # when a call returned, everything queued went out as one call
        assert shard.batches[2] == list(range(2, 10)) and len(shard.batches) == 3
    run(scenario())


def test_batches_are_capped():
    async def scenario():
        shard = Shard()
        coalescer = Coalescer(shard.send, max_batch=3, max_in_flight=1)
        tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(8)]
        await settle()
        shard.release.set()
        assert await asyncio.gather(*tasks) == [i * 10 for i in range(8)]
        assert [len(b) for b in shard.batches] == [1, 3, 3, 1]
    run(scenario())


def test_an_error_for_one_request_fails_that_request_only():
    async def scenario():
        shard = Shard()
        coalescer = Coalescer(shard.send, max_batch=32, max_in_flight=1)
        tasks = [asyncio.create_task(coalescer.submit(i)) for i in (1, -2, 3, 4)]
        await settle()
        shard.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] == 10 and results[2:] == [30, 40]
        assert isinstance(results[1], InvalidArgument) and results[1].message == "bad -2"
    run(scenario())


def test_a_failed_call_fails_every_request_in_it_and_the_next_ones_still_go():
    async def scenario():
        shard = Shard(fail_with=Unavailable("customer shard unavailable, retry: ActorDiedError"))
        coalescer = Coalescer(shard.send, max_batch=32, max_in_flight=1)
        tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(5)]
        await settle()
        shard.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in results)
        shard.fail_with = None
        assert await coalescer.submit(7) == 70
        assert not coalescer._started
    run(scenario())


def test_a_cancelled_caller_is_not_sent_and_does_not_block_the_others():
    async def scenario():
        shard = Shard()
        coalescer = Coalescer(shard.send, max_batch=32, max_in_flight=1)
        first = asyncio.create_task(coalescer.submit(1))
        gone = asyncio.create_task(coalescer.submit(2))
        last = asyncio.create_task(coalescer.submit(3))
        await settle()
        gone.cancel()
        await settle()
        shard.release.set()
        assert await first == 10 and await last == 30
        assert shard.batches == [[1], [3]]
        with pytest.raises(asyncio.CancelledError):
            await gone
    run(scenario())


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        Coalescer(Shard().send, max_batch=0, max_in_flight=1)


def test_a_result_a_future_cannot_carry_still_fails_only_its_request():
    # asyncio refuses StopIteration as a future's exception; the rest of the batch must not hang
    async def send(items):
        return [StopIteration() if i == 1 else i * 10 for i in items]

    async def scenario():
        coalescer = Coalescer(send, max_batch=32, max_in_flight=1)
        tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(4)]
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert results[0] == 0 and results[2:] == [20, 30]
        assert isinstance(results[1], RuntimeError) and "StopIteration" in str(results[1])
    run(scenario())


def test_a_deadline_around_submit_counts_from_submission_and_an_expired_request_is_not_sent():
    # the ingress puts its shard timeout around submit (gateway/ingress.py), so time queued counts
    async def scenario():
        shard = Shard()
        # (a call never counts as slow here: the queued requests stay queued)
        coalescer = Coalescer(shard.send, max_batch=32, max_in_flight=1, slow_after_s=60)
        tasks = [asyncio.create_task(asyncio.wait_for(coalescer.submit(i), 0.2)) for i in range(3)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        # the shard never answered: each request gave up after its own 0.2 s, queued or not
        assert all(isinstance(r, asyncio.TimeoutError) for r in results)
        shard.release.set()
        await settle()
        # the two that were only queued never went to the shard
        assert shard.batches == [[0]]
        assert await coalescer.submit(5) == 50
    run(scenario())


class Handle:
    """Stands in for an owner's actor handle: ``batch.remote(items)`` records the call."""

    def __init__(self, name: str, release: asyncio.Event):
        self.name, self.calls, self._release = name, [], release

    @property
    def batch(self):
        handle = self

        class Method:
            @staticmethod
            def remote(items):
                async def answer():
                    handle.calls.append(list(items))
                    await handle._release.wait()
                    return [(handle.name, i) for i in items]
                return answer()
        return Method


def test_per_owner_coalesces_each_owner_apart_and_uses_the_latest_handle():
    from gateway.coalesce import PerOwner

    async def scenario():
        release = asyncio.Event()
        sizes: list[int] = []
        calls = PerOwner("batch", max_batch=32, max_in_flight=1, observe=sizes.append)
        a, b = Handle("a", release), Handle("b", release)
        first = [asyncio.create_task(calls.submit("a", a, i)) for i in range(5)]
        other = [asyncio.create_task(calls.submit("b", b, i)) for i in range(3)]
        await settle()
        # one call in flight per owner; the rest of each owner's requests wait together
        assert a.calls == [[0]] and b.calls == [[0]]
        # the owner "a" is replaced (the routes found a new handle under its name): the queued
        # requests go to the new one
        a2 = Handle("a2", release)
        late = asyncio.create_task(calls.submit("a", a2, 99))
        release.set()
        results = await asyncio.gather(*first, *other, late)
        assert a2.calls == [[1, 2, 3, 4, 99]] and b.calls == [[0], [1, 2]]
        assert results[:5] == [("a", 0), ("a2", 1), ("a2", 2), ("a2", 3), ("a2", 4)]
        assert results[5:] == [("b", 0), ("b", 1), ("b", 2), ("a2", 99)]
        assert sorted(sizes) == [1, 1, 2, 5]
    run(scenario())


def test_a_slow_call_does_not_hold_back_the_requests_after_it():
    """Two calls outstanding past slow_after (an owner forwarding during a move) no longer count:
    requests queued behind them go out in a call of their own and are answered at once."""
    async def scenario():
        slow = asyncio.Event()
        sent: list[list] = []

        async def send(items):
            sent.append(list(items))
            if items[0] < 0:
                await slow.wait()
            return list(items)
        coalescer = Coalescer(send, max_batch=32, max_in_flight=2, slow_after_s=0.05)
        stuck = [asyncio.create_task(coalescer.submit(-1)), asyncio.create_task(coalescer.submit(-2))]
        await settle()
        loop = asyncio.get_running_loop()
        started = loop.time()
        fast = await asyncio.wait_for(asyncio.gather(*[coalescer.submit(i) for i in range(5)]), 2.0)
        assert fast == [0, 1, 2, 3, 4] and loop.time() - started < 0.5
        assert sent[:2] == [[-1], [-2]] and sent[2] == [0, 1, 2, 3, 4]
        assert not any(t.done() for t in stuck)
        slow.set()
        assert await asyncio.gather(*stuck) == [-1, -2]
    run(scenario())
