"""`recsys publish-actions`: triggered actions (cart abandonment, cross-sell, ...) from the service's
durable outbox to a RabbitMQ queue, at least once, in outbox order (issue 19, item 3).

It reads the outbox a page at a time over the HTTP API (`GET /v1/actions?after=SEQ`, the same pages
SubscribeActions and the webhooks read), publishes each action as a persistent JSON message with
publisher confirms (``message_id`` = the action's ``action_id``, ``type`` = its kind, so a receiver
drops repeats by id), and only once the broker has confirmed the page writes the page's last
sequence to its cursor file (atomically: a temporary file renamed over it). A publisher that crashes
between the confirm and the cursor publishes that page again after a restart: repeats, never gaps.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import orjson


def read_cursor(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def write_cursor(path: Path, seq: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(str(seq))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ActionPublisher:
    def __init__(self, http, url: str, queue: str, cursor: Path, page: int = 200, kinds: tuple[str, ...] = ()):
        import pika

        self._pika = pika
        self.http, self.queue, self.cursor, self.page, self.kinds = http, queue, cursor, page, kinds
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue=queue, durable=True)
        self.channel.confirm_delivery()
        self.after = read_cursor(cursor)
        self.published = 0

    def step(self) -> int:
        """One outbox page published and confirmed, then the cursor moved; returns actions published."""
        params = {"after": self.after, "limit": self.page}
        if self.kinds:
            params["kind"] = list(self.kinds)
        reply = self.http.get("/v1/actions", params=params)
        reply.raise_for_status()
        body = reply.json()
        for action in body["actions"]:
            properties = self._pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                                    message_id=action["action_id"], type=action["kind"])
            # confirm_delivery: each publish returns once the broker has the message (raises otherwise)
            self.channel.basic_publish("", self.queue, orjson.dumps(action), properties, mandatory=True)
        if body["next_after"] != self.after:
            write_cursor(self.cursor, body["next_after"])
            self.after = body["next_after"]
        self.published += len(body["actions"])
        return len(body["actions"])

    def run(self, stop: Callable[[], bool], idle_s: float = 0.5) -> None:
        while not stop():
            if self.step() == 0:
                self.connection.sleep(idle_s)  # keeps the broker connection's heartbeats going

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:  # noqa: BLE001 - already gone
            pass
