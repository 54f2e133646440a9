"""A partition's write side, without Ray: group commit, catch-up after a failed write,
snapshots that may fail without harm, erasure, the last flush before a move, and whether the
partition can take writes.

The owner actor (actors/owner.py) keeps one per partition it holds and hands it ``io``: a
coroutine function that runs a blocking store call on the owner's one store thread. Customer
state is only changed on the event loop. Tests drive this same class with a real store and an
executor. Every write is fenced by the partition's lease (actors/store.py): a write refused
because the partition was taken by another owner raises PartitionMoved, and ``on_fenced`` tells
the owner to drop the partition.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any, Awaitable, Callable

from actors.group_commit import GroupCommit
from engine.errors import PartitionMoved, Unavailable
from engine.events import Event

log = logging.getLogger(__name__)

# after a failed snapshot, the next try waits this long (a full disk is not rewritten every batch)
SNAPSHOT_RETRY_S = 5.0
# after a failed write, health probes the store at most this often
PROBE_EVERY_S = 1.0
# a store call that has not returned for this long makes health report the shard not writable
STUCK_AFTER_S = 10.0


def describe(exc: BaseException) -> str:
    """A store failure as a client or a health check may see it: what kind of trouble, in words,
    never the driver's message (it can name hosts, ports, files). The shard logs the detail."""
    text = str(exc).lower()
    if getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in text or "no space left" in text:
        kind = "the store's disk is full"
    elif isinstance(exc, Unavailable):
        kind = exc.message
    elif "locked" in text or "busy" in text:
        kind = "the store is busy"
    else:
        kind = "the store is unavailable"
    log.warning("store call failed (%s): %s: %s", kind, type(exc).__name__, str(exc)[:500])
    return kind


class ShardWriter:
    def __init__(self, logic, io: Callable[..., Awaitable[Any]], clock: Callable[[], float] = time.monotonic,
                 on_fenced: Callable[[int], None] | None = None,
                 append: Callable[[Any, list[Event]], Awaitable[list]] | None = None):
        self.logic = logic
        self._io = io
        # how a batch reaches the store: the partition's own transaction, or (an owner with many
        # partitions) one transaction shared with its other partitions' batches (OwnerAppends)
        self._append = append or (lambda logic, kept: self._io(logic.store_append, kept))
        self._clock = clock
        self._on_fenced = on_fenced or (lambda partition: None)
        self._writes = GroupCommit(self._commit_batch)
        # one write-side step at a time: a batch (with its snapshot), an erasure (with its
        # snapshot), a trigger tick's outbox append. Without it an erasure could run between a
        # batch's snapshot payload and its write, and a stale snapshot would hold the customer.
        self._exclusive = asyncio.Lock()
        # when the store call in progress started (None: none): one that hangs is a shard that
        # cannot take writes, though nothing has failed yet
        self._store_call_since: float | None = None
        # a write failed with an unknown outcome, or was stored but not applied: catch up first
        self._behind = False
        self._write_error: str | None = None
        self._write_error_at = 0.0
        self._snapshot_error: str | None = None
        self._snapshot_retry_at = 0.0
        self.apply_errors = 0

    async def submit(self, events: list[Event]) -> tuple[int, int, int]:
        """Store, apply, acknowledge: (accepted, duplicates, ignored) for these events."""
        return await self._writes.submit(events)

    async def _commit_batch(self, chunks: list[list[Event]]) -> list[tuple[int, int, int]]:
        async with self._exclusive:
            return await self._commit_batch_alone(chunks)

    async def _store(self, fn, *args):
        """A store call on the store thread, timed for health."""
        return await self._timed(self._io(fn, *args))

    async def _timed(self, call: Awaitable):
        self._store_call_since = self._clock()
        try:
            return await call
        finally:
            self._store_call_since = None

    async def _commit_batch_alone(self, chunks: list[list[Event]]) -> list[tuple[int, int, int]]:
        """One group commit: catch up first if a write failed before, screen, store, apply.

        Failing here fails the batch (GroupCommit answers its callers); nothing is lost that was
        acknowledged, and a commit whose outcome was unknown is found in the log by the catch-up
        before the next batch, so its retry is answered as duplicates and applied once."""
        logic = self.logic
        if self._behind:
            await self._catch_up()
        events = [e for chunk in chunks for e in chunk]
        kept, _ = logic.screen_events(events)
        try:
            seqs = await self._timed(self._append(logic, kept)) if kept else []
        except PartitionMoved:
            # nothing was stored: another owner holds the partition now (it gets the retry)
            logic.annotated_from = {}
            self._fenced()
            raise
        except Exception as exc:
            logic.annotated_from = {}
            # the outcome may be unknown (a connection lost during COMMIT): look in the log first
            self._behind = True
            self._note_write_failure(exc)
            raise Unavailable(f"store write failed, retry: {describe(exc)}") from None
        self._note_write_success()
        try:
            results = logic.acknowledge(chunks, kept, seqs)
        except Exception:
            # stored but not (all) applied: the catch-up applies the rest from the log
            log.exception("applying a committed batch failed on partition %d", logic.partition)
            self._behind = True
            raise Unavailable("the events are stored but applying them failed; retry is safe") from None
        if logic.since_snapshot >= logic.snapshot_every and self._clock() >= self._snapshot_retry_at:
            await self._snapshot_quietly()
        return results

    async def _catch_up(self) -> None:
        """Apply what the log holds beyond what memory has (a batch whose commit outcome was
        unknown, or whose apply failed part way). An event whose apply raises again is logged and
        skipped, so one bad event cannot stop the shard."""
        logic = self.logic
        try:
            stored = await self._io(logic.stored_since_memory)
        except Exception as exc:
            self._note_write_failure(exc)
            raise Unavailable(f"store unavailable, retry: {describe(exc)}") from None
        for seq, event in stored:
            try:
                logic.apply_committed([event], [seq])
            except Exception:
                log.exception("partition %d: skipping stored event %s (seq %d) that cannot be applied",
                              logic.partition, event.event_id, seq)
                self.apply_errors += 1
            logic.last_seq = max(logic.last_seq, seq)
        self._behind = False

    def _fenced(self) -> None:
        log.warning("partition %d: the lease moved to another owner (epoch %s is old); giving it up",
                    self.logic.partition, self.logic.epoch)
        self._on_fenced(self.logic.partition)

    def _note_write_failure(self, exc: Exception) -> None:
        self._write_error = describe(exc)
        self._write_error_at = self._clock()

    def _note_write_success(self) -> None:
        self._write_error = None

    async def _snapshot(self) -> None:
        # serialise on the loop (a consistent view), write on the store thread
        seq, payload = self.logic.snapshot_payload()
        await self._io(self.logic.store_snapshot, seq, payload)
        self.logic.since_snapshot = 0
        self._snapshot_error = None

    async def _snapshot_quietly(self) -> None:
        """A snapshot is an optimisation (the log is the truth): one that fails (a full disk) is
        logged and tried again later, and never fails the batch that triggered it."""
        try:
            await self._snapshot()
        except PartitionMoved:
            self._fenced()
        except Exception as exc:  # noqa: BLE001
            self._snapshot_error = describe(exc)
            self._snapshot_retry_at = self._clock() + SNAPSHOT_RETRY_S
            log.warning("partition %d: snapshot failed, will retry: %s", self.logic.partition, self._snapshot_error)

    async def health(self) -> dict[str, Any]:
        """Whether this shard can take writes now. After a failed write, the store is probed
        (at most every PROBE_EVERY_S), so health recovers when the cause goes away even if no
        client writes meanwhile."""
        if self._write_error is not None and self._clock() - self._write_error_at >= PROBE_EVERY_S:
            try:
                await self._io(self.logic.store.probe_write)
                self._note_write_success()
            except Exception as exc:  # noqa: BLE001
                self._note_write_failure(exc)
        since = self._store_call_since
        if since is not None and self._clock() - since >= STUCK_AFTER_S:
            self._write_error = f"a store call has not returned for {self._clock() - since:.0f} s"
            self._write_error_at = self._clock()
        return {"partition": self.logic.partition, "model_version": self.logic.model.version,
                "writable": self._write_error is None,
                "write_error": self._write_error, "snapshot_error": self._snapshot_error,
                "writer_starts": self._writes.writer_starts, "failed_batches": self._writes.failed_batches,
                "apply_errors": self.apply_errors}

    async def forget(self, customer_id: str, principal: str) -> dict[str, Any]:
        """Erase: the store's one transaction first (nothing is erased if it fails), then memory,
        then a fresh snapshot (which may fail: the erasure already dropped the old one)."""
        async with self._exclusive:
            try:
                report = await self._store(self.logic.erase_stored, customer_id, principal)
            except PartitionMoved:
                self._fenced()
                raise
            except Exception as exc:
                raise Unavailable(f"erasure could not be stored, nothing was erased; retry: {describe(exc)}") from None
            self.logic.forget_live(customer_id)
            await self._snapshot_quietly()
            return report

    async def fire_triggers(self, now_ms: int) -> int:
        """Actions whose time has come into the outbox; returns how many were stored. Taken and
        stored with no erasure in between, so an erased customer's action is never written."""
        async with self._exclusive:
            actions = self.logic.due_actions(now_ms)
            if not actions:
                return 0
            try:
                # with a contact cap, the actions' contacts are stored and applied first: a crash
                # between the two counts a contact that was not sent, never the other way round
                contacts = self.logic.offers.action_contacts(actions, now_ms)
                if contacts:
                    try:
                        seqs = await self._store(self.logic.store_append, contacts)
                    except PartitionMoved:
                        self._fenced()
                        return 0
                    except Exception as exc:  # noqa: BLE001 - the store is away: the actions wait
                        describe(exc)
                        self._behind = True  # the outcome may be unknown: catch up before the next batch
                        self.logic.new_actions.extend(actions)
                        return 0
                    self.logic.apply_committed(contacts, seqs)
                    self.logic.contacted.update(a["action_id"] for a in actions)
                stored = await self._store_actions(actions)
                if contacts:
                    waiting = {a["action_id"] for a in self.logic.new_actions}
                    self.logic.contacted.intersection_update(waiting)
                return stored
            finally:
                self.logic.release_action_contacts(actions)

    async def _store_actions(self, actions: list) -> int:
        try:
            return await self._store(self.logic.store_actions, actions)
        except PartitionMoved:
            # the new owner restored the armed triggers and fires them itself
            self._fenced()
            return 0
        except Exception as exc:  # noqa: BLE001 - the store is away: keep them for the next tick
            describe(exc)
            self.logic.new_actions.extend(actions)
            return 0

    async def hand_over(self) -> dict[str, Any]:
        """The partition's last writes before its lease is released (a move): queued batches
        are committed, pending actions stored, and a snapshot written, so the next owner starts
        from it instead of replaying the log. The owner stops sending requests here first.
        Returns how it went; a failed snapshot does not stop the move (the log is the truth)."""
        await self._writes.drain()
        async with self._exclusive:
            pending, self.logic.new_actions = self.logic.new_actions, []
            if pending:
                await self._store_actions(pending)
            if self._behind:
                await self._catch_up()
            started = self._clock()
            try:
                await self._snapshot()
                snapshot_error = None
            except PartitionMoved:
                self._fenced()
                raise
            except Exception as exc:  # noqa: BLE001
                snapshot_error = describe(exc)
            return {"snapshot_s": round(self._clock() - started, 4), "snapshot_error": snapshot_error}
