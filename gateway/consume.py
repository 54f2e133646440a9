"""`recsys consume`: customer events from a message broker into the engine, at least once.

Each broker message carries one event as JSON (the fields of docs/events-format.md, as Track takes
them). The consumer takes up to ``batch_max`` messages (the broker hands it at most ``prefetch``
unacknowledged ones: that bound is the backpressure, nothing is buffered beyond it), validates each
with the engine's own parser, sends the valid ones to the service in one Track call (which returns once
they are durably committed), then moves the invalid ones to the dead-letter queue with their
validation message, and only then acknowledges the batch to the broker. So:

- a crash of the consumer before the acknowledgement leaves the messages with the broker, which hands
  them out again; their event ids make the repeats duplicates the engine applies once;
- the engine down or slow (UNAVAILABLE, DEADLINE_EXCEEDED): the batch is kept and retried with
  backoff, nothing acknowledged meanwhile;
- a message that is not an event (bad JSON, a missing event id, an unknown channel ...) goes to the
  dead-letter queue with the message, and the rest of its batch goes on.

The source is a small interface (``EventSource``); ``RabbitMQSource`` is the first (AMQP 0-9-1 via pika,
durable queues, persistent dead letters published with confirms).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import orjson

from engine.errors import InvalidArgument
from engine.events import Event, parse_event

log = logging.getLogger("recsys.consume")

# Track call errors that are the engine's state, not the batch's: keep the batch and try again.
RETRIED = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})
# A fault of the service (or of the consumer's call) may be an event it cannot take: retried this
# many times, then the batch is split and what still fails alone is dead-lettered with the error.
FAULTS = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS"})
MAX_FAULT_RETRIES = 5


@dataclass(frozen=True)
class Message:
    """One message as the source handed it: its body and the source's handle for acknowledging it."""

    body: bytes
    tag: int
    # when the producer sent it (the AMQP timestamp property), ms; 0: not given
    sent_ms: int = 0


class EventSource(Protocol):
    def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``wait_s`` for the first."""

    def dead_letter(self, message: Message, reason: str) -> None:
        """Store ``message`` with ``reason`` in the dead-letter queue, durably (returns once it is)."""

    def ack(self, messages: Sequence[Message]) -> None:
        """Tell the broker these are done."""

    def wait(self, seconds: float) -> None:
        """Sleep while keeping the connection alive (heartbeats)."""

    def close(self) -> None: ...


@dataclass
class ConsumeStats:
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    recent_errors: list[str] = field(default_factory=list)


def decode(message: Message, now_ms: int) -> Event:
    """The event in ``message``, validated as Track validates it; InvalidArgument says what is wrong.
    An event without a timestamp takes the message's (when the producer sent it), else now."""
    try:
        raw = orjson.loads(message.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"message: not JSON ({exc.msg})") from None
    if isinstance(raw, dict) and not raw.get("timestamp_ms") and message.sent_ms:
        raw = {**raw, "timestamp_ms": message.sent_ms}
    return parse_event(raw, now_ms, "message")


class Consumer:
    """Moves events from ``source`` to ``send`` (a Track call: events -> (accepted, duplicates), raising
    an exception with a gRPC ``code`` name on failure)."""

    def __init__(self, source: EventSource, send: Callable[[list[Event]], tuple[int, int]], *, batch_max: int = 500,
                 wait_s: float = 0.05, backoff_s: float = 0.1, max_backoff_s: float = 5.0,
                 clock: Callable[[], float] = time.time):
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        self.source, self.send = source, send
        self.batch_max, self.wait_s = batch_max, wait_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.clock = clock
        self.stats = ConsumeStats()
        # set to stop: a batch being retried is left unacknowledged (the broker hands it out again)
        self.stopping = threading.Event()

    def step(self) -> int:
        """One batch: fetch, validate, commit, dead-letter, acknowledge. Returns the messages handled."""
        messages = self.source.fetch(self.batch_max, self.wait_s)
        if not messages:
            return 0
        now_ms = int(self.clock() * 1000)
        good: list[tuple[Message, Event]] = []
        bad: list[tuple[Message, str]] = []
        for message in messages:
            try:
                good.append((message, decode(message, now_ms)))
            except InvalidArgument as exc:
                bad.append((message, str(exc)))
        try:
            bad += self._commit(good)
        except _Stopped:
            return 0
        for message, reason in bad:
            self.source.dead_letter(message, reason)
        self.source.ack(messages)
        self.stats.messages += len(messages)
        self.stats.dead_lettered += len(bad)
        self.stats.batches += 1
        return len(messages)

    def _commit(self, good: list[tuple[Message, Event]]) -> list[tuple[Message, str]]:
        """Send the events until the service has them; returns the ones it refused, with why."""
        if not good:
            return []
        delay = self.backoff_s
        faults = 0
        while True:
            try:
                accepted, duplicates = self.send([event for _, event in good])
                self.stats.accepted += accepted
                self.stats.duplicates += duplicates
                return []
            except Exception as exc:  # noqa: BLE001 - sorted by its gRPC code below
                code = getattr(exc, "code", "UNKNOWN")
                code = code() if callable(code) else code
                code = getattr(code, "name", str(code))
                if code not in RETRIED | FAULTS:
                    # refused (INVALID_ARGUMENT and the like: all or none): find which events it refuses alone
                    return self._isolate(good) if len(good) > 1 else [(good[0][0], f"{code}: {_message(exc)}")]
                if code in FAULTS:
                    faults += 1
                    if faults > MAX_FAULT_RETRIES:
                        return self._isolate(good) if len(good) > 1 else [(good[0][0], f"{code}: {_message(exc)}")]
                self.stats.retries += 1
                self._note(f"{code}: {_message(exc)}")
                self._pause(delay)
                delay = min(delay * 2, self.max_backoff_s)

    def _pause(self, seconds: float) -> None:
        """Back off, the source's connection kept alive meanwhile; raises _Stopped when asked to stop."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.source.wait(min(left, 0.2))
        raise _Stopped()

    def _isolate(self, good: list[tuple[Message, Event]]) -> list[tuple[Message, str]]:
        refused = []
        for pair in good:
            refused += self._commit([pair])
        return refused

    def _note(self, line: str) -> None:
        log.warning("consume: %s", line)
        self.stats.recent_errors = (self.stats.recent_errors + [line])[-10:]

    def run(self) -> ConsumeStats:
        """Batches until ``stopping`` is set."""
        while not self.stopping.is_set():
            self.step()
        return self.stats


class _Stopped(Exception):
    pass


def _message(exc: Exception) -> str:
    details = getattr(exc, "message", None) or getattr(exc, "details", None)
    details = details() if callable(details) else details
    return str(details or exc)


class RabbitMQSource:
    """A durable RabbitMQ queue (declared if missing) and its dead-letter queue ``<queue>.dead-letter``.
    Messages are fetched with basic.get under a prefetch bound, acknowledged together after the batch;
    a dead letter is the original body, persistent, with the reason in the ``x-recsys-error`` header,
    published with publisher confirms (so it is the broker's before the original is acknowledged)."""

    def __init__(self, url: str, queue: str, prefetch: int = 1000, dead_letter_queue: str | None = None):
        import pika

        self._pika = pika
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue or f"{queue}.dead-letter"
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue=queue, durable=True)
        self.channel.queue_declare(queue=self.dead_letter_queue, durable=True)
        self.channel.confirm_delivery()
        self.channel.basic_qos(prefetch_count=prefetch)
        self._pending: list = []
        self._tag = None
        self.prefetch = prefetch

    def _on_message(self, _channel, method, properties, body) -> None:
        sent = getattr(properties, "timestamp", None)  # AMQP: seconds
        self._pending.append(Message(body, method.delivery_tag, int(sent) * 1000 if sent else 0))

    def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        if self._tag is None:
            self._tag = self.channel.basic_consume(self.queue, self._on_message)
        deadline = time.monotonic() + wait_s
        while len(self._pending) < max_messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.connection.process_data_events(time_limit=left)
        taken, self._pending = self._pending[:max_messages], self._pending[max_messages:]
        return taken

    def dead_letter(self, message: Message, reason: str) -> None:
        properties = self._pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                                headers={"x-recsys-error": reason[:1000]})
        self.channel.basic_publish("", self.dead_letter_queue, message.body, properties, mandatory=True)

    def wait(self, seconds: float) -> None:
        self.connection.sleep(seconds)

    def ack(self, messages: Sequence[Message]) -> None:
        if messages:
            # every delivery up to the batch's last is done (deliveries come in order on one channel)
            self.channel.basic_ack(max(m.tag for m in messages), multiple=True)

    def close(self) -> None:
        try:
            if self._tag is not None:
                self.channel.basic_cancel(self._tag)
            self.connection.close()
        except Exception:  # noqa: BLE001 - closing a connection that is already gone
            pass
