"""Events from a real RabbitMQ into the real service (issue 19, item 2): acknowledged to the broker only
after the engine committed them, repeats applied once, invalid messages dead-lettered with the reason
without blocking the rest, a bounded number in flight, and nothing lost when the consumer is killed."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pika
import pytest

from gateway.consume import Consumer, RabbitMQSource
from recsys.client import Client, Event, RecsysClientError
from scripts.rabbitmq import LocalRabbitMQ
from tests.integration.conftest import KEYS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with LocalRabbitMQ(tmp_path_factory.mktemp("rabbitmq")) as node:
        yield node


@pytest.fixture(scope="module")
def client(service):
    with Client(service.grpc_target, api_key=KEYS["admin"], timeout=10, retries=0) as c:
        yield c


def publish(broker, queue: str, bodies) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    connection.close()


def ready(broker, queue: str) -> int:
    """Messages waiting in ``queue`` (not handed out, or handed out and given back)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    count = connection.channel().queue_declare(queue=queue, passive=True).method.message_count
    connection.close()
    return count


def drain_dead_letters(broker, queue: str) -> list[tuple[bytes, str]]:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    out = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((body, properties.headers["x-recsys-error"]))
    connection.close()
    return out


def sender(client):
    def send(events):
        result = client.track([Event(e.event_id, e.customer_id, e.event_type, e.item_id, e.channel,
                                     timestamp_ms=e.timestamp_ms) for e in events])
        return result.accepted, result.duplicates
    return send


def view(customer: str, n: int, event_id: str | None = None) -> bytes:
    return orjson.dumps({"event_id": event_id or f"{customer}-{n}", "customer_id": customer, "event_type": "view",
                         "item_id": f"i{n % 60:04d}", "channel": "app"})


def stored(client, customer: str) -> list[str]:
    return [e["event_id"] for e in client.export(customer)["events"]]


def drain(broker, queue, client, prefetch, batch_max, timeout=60) -> Consumer:
    """A consumer into the service run until ``queue`` is empty; returns it (its stats)."""
    source = RabbitMQSource(broker.url, queue, prefetch=prefetch)
    consumer = Consumer(source, sender(client), batch_max=batch_max)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if consumer.step() == 0 and ready(broker, queue) == 0:
                return consumer
        raise AssertionError("the queue did not drain")
    finally:
        source.close()


def test_events_commit_once_and_bad_messages_go_to_the_dead_letter_queue_with_the_reason(broker, client):
    queue = f"events-{uuid.uuid4().hex[:6]}"
    customers = [f"mq-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    good = [view(c, n) for c in customers for n in range(40)]
    bad = [b"{not json", orjson.dumps({"customer_id": customers[0], "event_type": "view", "item_id": "i0001"}),
           orjson.dumps({"event_id": "x1", "customer_id": customers[0], "event_type": "view", "item_id": "i0001",
                         "channel": "carrier-pigeon"}), orjson.dumps([1, 2])]
    repeats = good[:10]  # a producer that sent some twice
    bodies = good[:50] + bad[:2] + repeats + good[50:] + bad[2:]
    publish(broker, queue, bodies)
    consumer = drain(broker, queue, client, prefetch=100, batch_max=50)
    for customer in customers:
        assert sorted(stored(client, customer)) == sorted(f"{customer}-{n}" for n in range(40))
    # an event without a timestamp takes its message's: a backlog keeps the times events happened
    late = f"mq-{uuid.uuid4().hex[:8]}"
    sent_s = int(time.time()) - 3600
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    connection.channel().basic_publish("", queue, view(late, 1), pika.BasicProperties(delivery_mode=2, timestamp=sent_s))
    connection.close()
    drain(broker, queue, client, prefetch=10, batch_max=10)
    assert [e["timestamp_ms"] for e in client.export(late)["events"]] == [sent_s * 1000]
    assert consumer.stats.accepted == len(good) and consumer.stats.duplicates == len(repeats)
    dead = drain_dead_letters(broker, f"{queue}.dead-letter")
    assert [body for body, _ in dead] == bad
    reasons = [reason for _, reason in dead]
    assert "not JSON" in reasons[0] and "event_id" in reasons[1] and "channel" in reasons[2]
    assert "object" in reasons[3]
    assert ready(broker, queue) == 0


def test_with_the_engine_down_nothing_is_acknowledged_and_at_most_prefetch_are_held(broker, service, client):
    queue = f"events-{uuid.uuid4().hex[:6]}"
    customer = f"mq-{uuid.uuid4().hex[:8]}"
    publish(broker, queue, [view(customer, n) for n in range(100)])
    down = Client("127.0.0.1:9", api_key=KEYS["admin"], timeout=0.5, retries=0)  # nobody listens there
    source = RabbitMQSource(broker.url, queue, prefetch=20)
    consumer = Consumer(source, sender(down), batch_max=20, backoff_s=0.05, max_backoff_s=0.2)
    worker = threading.Thread(target=consumer.step, daemon=True)
    worker.start()
    time.sleep(2.0)
    # the consumer keeps retrying its one batch: 20 handed to it, unacknowledged; 80 still waiting
    assert worker.is_alive() and consumer.stats.retries >= 2 and consumer.stats.messages == 0
    assert ready(broker, queue) == 80
    consumer.stopping.set()  # stopped while the engine is down: its 20 go back unacknowledged
    worker.join(timeout=10)
    assert not worker.is_alive() and consumer.stats.messages == 0
    source.close()
    down.close()
    deadline = time.monotonic() + 10
    while ready(broker, queue) != 100 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready(broker, queue) == 100
    with pytest.raises(RecsysClientError) as err:
        client.export(customer)  # nothing of theirs reached the engine
    assert err.value.code == "NOT_FOUND"
    drain(broker, queue, client, prefetch=20, batch_max=20)
    assert len(stored(client, customer)) == 100


def test_a_consumer_killed_mid_stream_loses_nothing_and_applies_nothing_twice(broker, service, client, tmp_path):
    queue = f"events-{uuid.uuid4().hex[:6]}"
    customers = [f"mq-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    publish(broker, queue, [view(c, n) for n in range(400) for c in customers])
    config = tmp_path / "consume.toml"
    config.write_text(f'[consume]\nurl = "{broker.url}"\nqueue = "{queue}"\ntarget = "{service.grpc_target}"\n'
                      'prefetch = 200\nbatch_max = 50\n')
    env = {**os.environ, "RECSYS_API_KEY": KEYS["admin"]}
    process = subprocess.Popen([str(Path(sys.executable).with_name("recsys")), "consume", "--config", str(config),
                                "--report-every", "0.2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until it is part-way through
            line = process.stdout.readline().decode()
            if line.startswith("{") and json.loads(line)["accepted"] >= 300:
                break
            assert line or process.poll() is None, "the consumer stopped before it was killed"
        os.killpg(process.pid, signal.SIGKILL)  # no goodbye: what it held unacknowledged goes back
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    time.sleep(0.5)
    consumer = drain(broker, queue, client, prefetch=200, batch_max=50)
    for customer in customers:
        ids = stored(client, customer)
        assert len(ids) == len(set(ids)) == 400, customer
    # the second consumer got the rest, and back what the first had committed but not acknowledged:
    # those are repeats, applied once
    assert consumer.stats.accepted <= 2000 - 300 and consumer.stats.accepted + consumer.stats.duplicates <= 2000


def test_actions_are_published_to_the_broker_once_each_in_outbox_order(broker, service, client, tmp_path):
    """Issue 19, item 3: a triggered action reaches a broker queue, with its action id as message id,
    after the broker confirmed it; a restarted publisher goes on from its cursor."""
    import httpx

    from gateway.publish_actions import ActionPublisher
    from tests.integration.conftest import CART_ABANDON_MINUTES

    customer = f"pa-{uuid.uuid4().hex[:8]}"
    client.track([Event(uuid.uuid4().hex, customer, "consent", channel="web", attributes={"marketing": "granted"}),
                  Event(uuid.uuid4().hex, customer, "add_to_cart", item_id="i0011", channel="web")])
    queue, cursor = f"actions-{uuid.uuid4().hex[:6]}", tmp_path / "cursor"
    with httpx.Client(base_url=service.http, timeout=30, headers={"authorization": f"Bearer {KEYS['admin']}"}) as http:
        publisher = ActionPublisher(http, broker.url, queue, cursor)
        deadline = time.monotonic() + CART_ABANDON_MINUTES * 60 + 30
        mine = []
        while time.monotonic() < deadline and not mine:
            publisher.step()
            connection = pika.BlockingConnection(pika.URLParameters(broker.url))
            channel = connection.channel()
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                action = orjson.loads(body)
                if action["customer_id"] == customer:
                    mine.append((properties.message_id, properties.type, action))
            connection.close()  # unacknowledged: back in the queue
            time.sleep(0.3)
        publisher.close()
        assert len(mine) == 1, mine
        message_id, kind, action = mine[0]
        assert message_id == action["action_id"] and kind == "cart_abandonment" and action["item_ids"] == ["i0011"]
        assert int(cursor.read_text()) == publisher.after > 0
        again = ActionPublisher(http, broker.url, queue, cursor)  # a restart: from the cursor on
        again.step()
        again.close()
        assert again.after >= publisher.after
    # the restart did not publish this customer's action again
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    copies = 0
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        copies += orjson.loads(body)["customer_id"] == customer
    connection.close()
    assert copies == 1
