"""Triggered actions out to webhooks: every outbox action POSTed to each configured receiver.

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <action_id>              the same on every attempt and every redelivery
    X-Recsys-Webhook: <name>
    X-Recsys-Attempt: <n>                     1, 2, ...
    X-Recsys-Signature: t=<ms>,v1=<hex>       HMAC-SHA256(secret, "<ms>." + body)
    <the action as JSON: action_id, customer_id, kind, created_ms, ...>

A receiver checks the signature (and that ``t`` is recent), answers 2xx once it has the action,
and drops a repeated ``Idempotency-Key``. Delivery is at least once, in outbox order, per webhook:

- the webhook's position in the outbox is stored (meta ``webhook_cursor:<name>``) after each
  action is taken or dead-lettered, so a restarted dispatcher goes on from there (an action taken
  just before a crash is sent again: the idempotency key is for that);
- a failure (no answer within ``timeout_s``, a connection error, any status but 2xx) is retried
  after ``backoff_s``, doubling up to ``max_backoff_s``; after ``max_attempts`` failures the action
  is kept as a dead letter with the last error, and delivery goes on with the next one;
- an erased customer's actions are not delivered (the outbox read leaves them out, and each attempt
  checks again, so one erased while its action is being retried gets no further attempt) and their
  dead letters are erased with them (one failing after the erasure is not kept).

``WebhookDelivery`` is the loop for one webhook (no Ray: the unit tests run it against a real
store and a real HTTP receiver); ``WebhookDispatcher`` is the actor `recsys serve` starts when
webhooks are configured, one loop per webhook.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any, Awaitable, Callable

import orjson
import ray

from engine.config import WebhookConfig

log = logging.getLogger("recsys.webhooks")

PAGE = 100
IDLE_POLL_S = 0.5


def signature(secret: bytes, timestamp_ms: int, body: bytes) -> str:
    """The ``X-Recsys-Signature`` value of ``body`` sent at ``timestamp_ms``."""
    digest = hmac.new(secret, str(timestamp_ms).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp_ms},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, now_ms: int, tolerance_ms: int = 300_000) -> bool:
    """What a receiver does with the header: the signature matches and was made recently."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    expected = signature(secret, timestamp, body)
    return hmac.compare_digest(expected, header) and abs(now_ms - timestamp) <= tolerance_ms


def cursor_key(name: str) -> str:
    return f"webhook_cursor:{name}"


class WebhookDelivery:
    """Delivers one webhook's actions from ``store``'s outbox. Store calls are blocking (SQLite,
    PostgreSQL): they run in a thread, off the event loop."""

    def __init__(self, config: WebhookConfig, store, session, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.config = config
        self.store = store
        self.session = session  # an aiohttp.ClientSession
        self.secret = config.signing_secret()
        self.sleep = sleep
        self.delivered = 0
        self.dead = 0

    async def _io(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def position(self) -> int:
        value = await self._io(self.store.get_meta, cursor_key(self.config.name))
        return int(value) if value else 0

    async def attempt(self, action: dict[str, Any], n: int) -> str | None:
        """One POST; None when the receiver took it, else what went wrong."""
        import aiohttp

        body = orjson.dumps(action)
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(action["action_id"]),
                   "X-Recsys-Webhook": self.config.name, "X-Recsys-Attempt": str(n),
                   "X-Recsys-Signature": signature(self.secret, int(time.time() * 1000), body)}
        try:
            async with self.session.post(self.config.url, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except asyncio.TimeoutError:
            return f"no answer within {self.config.timeout_s} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]

    async def deliver(self, seq: int, action: dict[str, Any]) -> bool:
        """Every attempt the webhook allows; a dead letter after the last failure. True: taken."""
        delay = self.config.backoff_s
        error = ""
        for n in range(1, self.config.max_attempts + 1):
            # erased since the page was read (while earlier attempts failed): send nothing more
            if await self._io(self.store.is_forgotten, action["customer_id"]):
                return False
            error = await self.attempt(action, n)
            if error is None:
                self.delivered += 1
                return True
            log.warning("webhook %s: action %s attempt %d failed: %s", self.config.name, action["action_id"], n, error)
            if n < self.config.max_attempts:
                await self.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff_s)
        await self._io(self.store.add_dead_letter, self.config.name, seq, action, self.config.max_attempts, error)
        self.dead += 1
        return False

    async def run_once(self) -> int:
        """Deliver up to a page of actions after the stored position; how many were read."""
        after = await self.position()
        rows = await self._io(self.store.actions_after, after, PAGE)
        for seq, action in rows:
            if not self.config.kinds or action.get("kind") in self.config.kinds:
                await self.deliver(seq, action)
            await self._io(self.store.set_meta, cursor_key(self.config.name), str(seq))
        return len(rows)

    async def run_forever(self) -> None:
        while True:
            try:
                if await self.run_once() < PAGE:
                    await self.sleep(IDLE_POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store away: try again, never stop delivering
                log.warning("webhook %s: %s; retrying", self.config.name, type(exc).__name__)
                await self.sleep(IDLE_POLL_S)


# restarted if it dies; it goes on from each webhook's stored position (the loops start in
# __init__, in a thread of their own, so a restart resumes delivery with nobody asking)
@ray.remote(num_cpus=0, max_restarts=-1)
class WebhookDispatcher:
    def __init__(self, store_url: str, webhooks: tuple[WebhookConfig, ...]):
        import threading

        from actors.store import open_store

        self.store = open_store(store_url)
        self.deliveries: list[WebhookDelivery] = []
        self._failed: BaseException | None = None
        self._ready = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._main(webhooks),), name="webhooks", daemon=True).start()
        # a loop that cannot start (a secret missing in this process's environment: every node of the
        # service needs the variable) fails the actor's creation, with its message, instead of idling
        if not self._ready.wait(30) or self._failed is not None:
            raise RuntimeError(f"webhook delivery did not start: {self._failed or 'timed out'}")

    async def _main(self, webhooks) -> None:
        import aiohttp

        try:
            async with aiohttp.ClientSession() as session:
                self.deliveries = [WebhookDelivery(w, self.store, session) for w in webhooks]
                self._ready.set()
                await asyncio.gather(*(d.run_forever() for d in self.deliveries))
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            raise

    def status(self) -> dict:
        """Per webhook: actions taken and dead-lettered since this process started, the position."""
        return {d.config.name: {"delivered": d.delivered, "dead_letters": d.dead,
                                "position": int(self.store.get_meta(cursor_key(d.config.name)) or 0)}
                for d in self.deliveries}


def start_webhooks(store_url: str, webhooks: tuple[WebhookConfig, ...], name: str, namespace: str, **options):
    """The dispatcher actor, started and delivering (None when no webhook is configured). Every
    webhook's secret is checked here, so a missing one stops the start with its message."""
    if not webhooks:
        return None
    for webhook in webhooks:
        webhook.signing_secret()
    dispatcher = WebhookDispatcher.options(name=name, namespace=namespace, **options).remote(store_url, webhooks)
    ray.get(dispatcher.status.remote())
    return dispatcher
