"""Actions out by webhook (actors/webhooks.py), against a real store and a real HTTP receiver."""
import asyncio
import time

import aiohttp
import orjson
import pytest
from aiohttp import web

from actors.store import open_store
from actors.webhooks import WebhookDelivery, cursor_key, verify
from engine.config import WebhookConfig, load_serve_config
from engine.errors import InvalidArgument

SECRET = "s3cret"


def action(n: int, customer: str = "c1", kind: str = "cart_abandonment") -> dict:
    return {"action_id": f"a{n}", "customer_id": customer, "kind": kind, "created_ms": 1_700_000_000_000 + n,
            "items": [f"i{n}"]}


class Receiver:
    """A real HTTP server that fails the first ``failures`` requests for each action."""

    def __init__(self, failures: int = 0, status: int = 503):
        self.failures, self.status = failures, status
        self.requests: list[tuple[dict, bytes]] = []
        self.taken: dict[str, dict] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        key = request.headers["Idempotency-Key"]
        tries = sum(1 for h, _ in self.requests if h["Idempotency-Key"] == key)
        if tries <= self.failures:
            return web.Response(status=self.status, text="not now")
        if not verify(SECRET.encode(), request.headers["X-Recsys-Signature"], body, int(time.time() * 1000)):
            return web.Response(status=401)
        self.taken.setdefault(key, orjson.loads(body))  # a repeat is dropped
        return web.Response(status=204)

    async def __aenter__(self):
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/recsys.db", 4)
    yield s
    s.close()


def run(coro):
    return asyncio.run(coro)


async def deliver(store, config, rounds=1):
    delays = []

    async def sleep(seconds):
        delays.append(seconds)

    async with aiohttp.ClientSession() as session:
        delivery = WebhookDelivery(config, store, session, sleep=sleep)
        for _ in range(rounds):
            await delivery.run_once()
    return delivery, delays


def hook(url, **kw) -> WebhookConfig:
    return WebhookConfig(name="crm", url=url, secret=SECRET, **kw)


def test_a_receiver_that_fails_at_first_gets_every_action_once_signed_and_in_order(store):
    store.append_actions([action(n) for n in range(3)])

    async def scenario():
        async with Receiver(failures=2) as receiver:
            delivery, delays = await deliver(store, hook(receiver.url, max_attempts=4, backoff_s=0.5, max_backoff_s=0.75))
            return receiver, delivery, delays

    receiver, delivery, delays = run(scenario())
    assert list(receiver.taken) == ["a0", "a1", "a2"] and receiver.taken["a1"] == action(1)
    assert len(receiver.requests) == 9  # two failures then a success, per action
    attempts = [(h["Idempotency-Key"], h["X-Recsys-Attempt"]) for h, _ in receiver.requests[:3]]
    assert attempts == [("a0", "1"), ("a0", "2"), ("a0", "3")]
    assert all(h["X-Recsys-Webhook"] == "crm" and h["Content-Type"] == "application/json" for h, _ in receiver.requests)
    assert delays == [0.5, 0.75] * 3  # doubling backoff, capped
    assert delivery.delivered == 3 and store.dead_letters() == []
    assert store.get_meta(cursor_key("crm")) == str(store.actions_after(0)[-1][0])


def test_an_action_refused_every_time_is_a_dead_letter_and_the_rest_still_go(store):
    store.append_actions([action(1), action(2, customer="c2")])

    class OnlyC2(Receiver):
        async def handle(self, request):
            if orjson.loads(await request.read())["customer_id"] == "c1":
                self.requests.append((dict(request.headers), b""))
                return web.Response(status=500)
            return await super().handle(request)

    async def scenario():
        async with OnlyC2() as receiver:
            delivery, delays = await deliver(store, hook(receiver.url, max_attempts=3))
            return receiver, delivery, delays

    receiver, delivery, delays = run(scenario())
    assert list(receiver.taken) == ["a2"]
    dead = store.dead_letters("crm")
    assert [(d["action"]["action_id"], d["attempts"], d["error"]) for d in dead] == [("a1", 3, "HTTP 500")]
    assert delivery.dead == 1 and delays == [0.5, 1.0]
    # the dead letter is erased with its customer
    store.forget_customer("c1")
    assert store.dead_letters() == []


def test_a_new_dispatcher_goes_on_from_the_stored_position(store):
    store.append_actions([action(1)])

    async def scenario():
        async with Receiver() as receiver:
            await deliver(store, hook(receiver.url))
            store.append_actions([action(2)])
            await deliver(store, hook(receiver.url))  # a restarted dispatcher
            return receiver

    receiver = run(scenario())
    assert [h["Idempotency-Key"] for h, _ in receiver.requests] == ["a1", "a2"]


def test_kinds_filter_and_an_unreachable_receiver(store):
    store.append_actions([action(1, kind="cross_sell"), action(2)])

    async def scenario():
        async with Receiver() as receiver:
            await deliver(store, hook(receiver.url, kinds=("cart_abandonment",)))
            return receiver

    assert list(run(scenario()).taken) == ["a2"]
    # nothing listens on port 9 (discard): a connection error, retried, then a dead letter
    store.append_actions([action(3)])
    run(deliver(store, hook("http://127.0.0.1:9/hook", max_attempts=2, timeout_s=2)))
    [dead] = store.dead_letters()
    assert dead["action"]["action_id"] == "a3" and dead["attempts"] == 2 and "Client" in dead["error"]


def test_erased_customers_actions_are_not_delivered(store):
    store.append_actions([action(1, customer="gone"), action(2)])
    store.forget_customer("gone")

    async def scenario():
        async with Receiver() as receiver:
            await deliver(store, hook(receiver.url))
            return receiver

    assert list(run(scenario()).taken) == ["a2"]


def test_webhook_config_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "serve.toml"
    path.write_text('[[webhooks]]\nname = "crm"\nurl = "https://crm.example/hooks"\nsecret_env = "CRM_SECRET"\n'
                    'kinds = ["cart_abandonment"]\nmax_attempts = 8\n')
    [webhook] = load_serve_config(path).webhooks
    assert webhook.kinds == ("cart_abandonment",) and webhook.max_attempts == 8
    with pytest.raises(InvalidArgument, match="CRM_SECRET is not set"):
        monkeypatch.delenv("CRM_SECRET", raising=False)
        webhook.signing_secret()
    monkeypatch.setenv("CRM_SECRET", "x")
    assert webhook.signing_secret() == b"x"
    for bad, message in (('url = "ftp://x"\nsecret = "s"', "http:// or https://"), ('url = "http://x"', "one of secret_env"),
                         ('url = "http://x"\nsecret = "s"\nmax_attempts = 0', "max_attempts"),
                         ('url = "http://x"\nsecret = "s"\nkinds = ["spam"]', "kinds: a list of")):
        path.write_text(f'[[webhooks]]\nname = "crm"\n{bad}\n')
        with pytest.raises(InvalidArgument, match=message):
            load_serve_config(path)
    path.write_text('[[webhooks]]\nname = "a"\nurl = "http://x"\nsecret = "s"\n[[webhooks]]\nname = "a"\n'
                    'url = "http://y"\nsecret = "s"\n')
    with pytest.raises(InvalidArgument, match="names must differ"):
        load_serve_config(path)


def test_the_cli_lists_dead_letters(store, tmp_path, capsys):
    from scripts.cli import main

    store.append_actions([action(1)])
    store.add_dead_letter("crm", 1, action(1), 6, "HTTP 500")
    url = f"sqlite:///{tmp_path}/recsys.db"
    assert main(["webhooks", "dead-letters", "--store", url]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    letter = orjson.loads(line)
    assert letter["webhook"] == "crm" and letter["error"] == "HTTP 500" and letter["action"]["action_id"] == "a1"
    assert main(["webhooks", "dead-letters", "--store", url, "--webhook", "other"]) == 0
    assert capsys.readouterr().out.strip() == ""


def test_a_customer_erased_while_their_action_is_retried_gets_no_more_attempts_and_no_dead_letter(store):
    store.append_actions([action(1, customer="leaving")])

    async def scenario():
        async with Receiver(failures=100) as receiver:
            async def sleep(_seconds):
                store.forget_customer("leaving")  # the erasure lands between two attempts

            async with aiohttp.ClientSession() as session:
                delivery = WebhookDelivery(hook(receiver.url, max_attempts=5), store, session, sleep=sleep)
                await delivery.run_once()
            return receiver, delivery

    receiver, delivery = run(scenario())
    assert len(receiver.requests) == 1 and delivery.dead == 0
    assert store.dead_letters() == []
    # and the store itself keeps no dead letter of a forgotten customer, whoever asks
    store.add_dead_letter("crm", 1, action(1, customer="leaving"), 5, "HTTP 503")
    assert store.dead_letters() == []


def test_an_inline_secret_is_never_printed_with_the_config():
    assert "topsecret" not in repr(WebhookConfig(name="a", url="http://x", secret="topsecret"))
