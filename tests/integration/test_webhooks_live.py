"""An abandoned cart reaches a real HTTP receiver by webhook, through the running service: events
over gRPC -> the owner's trigger -> the durable outbox -> the dispatcher actor -> POST (the receiver
fails the first two attempts)."""
import asyncio
import threading
import time
import uuid

import orjson
import ray
from aiohttp import web

from actors.names import NAMESPACE
from actors.webhooks import start_webhooks, verify
from engine.config import WebhookConfig
from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import CART_ABANDON_MINUTES

SECRET = "live-secret"


class ThreadedReceiver:
    def __init__(self, failures: int):
        self.failures = failures
        self.attempts: dict[str, int] = {}
        self.taken: dict[str, dict] = {}
        self.bad_signatures = 0
        self._started = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._serve, daemon=True).start()
        assert self._started.wait(10)

    async def handle(self, request):
        body = await request.read()
        key = request.headers["Idempotency-Key"]
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] <= self.failures:
            return web.Response(status=503)
        if not verify(SECRET.encode(), request.headers["X-Recsys-Signature"], body, int(time.time() * 1000)):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.taken.setdefault(key, orjson.loads(body))
        return web.Response(status=200)

    def _serve(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"
        self._started.set()
        self.loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_an_abandoned_cart_is_posted_to_a_webhook_that_fails_at_first(stub, service):
    receiver = ThreadedReceiver(failures=2)
    webhook = WebhookConfig(name="crm-live", url=receiver.url, secret=SECRET, kinds=("cart_abandonment",),
                            backoff_s=0.2, max_backoff_s=0.4)
    dispatcher = start_webhooks(service.config.store_url, (webhook,), "recsys-webhooks-live", NAMESPACE)
    try:
        customer = f"w-{uuid.uuid4().hex[:10]}"
        stub.TrackEvents(pb.TrackEventsRequest(events=[
            pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type="consent", channel="web",
                     attributes={"marketing": "granted"}),
            pb.Event(event_id=uuid.uuid4().hex, customer_id=customer, event_type="add_to_cart", item_id="i0011",
                     channel="web")]))
        deadline = time.monotonic() + CART_ABANDON_MINUTES * 60 + 60
        mine = []
        while time.monotonic() < deadline and not mine:
            time.sleep(0.5)
            mine = [a for a in list(receiver.taken.values()) if a["customer_id"] == customer]
        assert len(mine) == 1 and mine[0]["kind"] == "cart_abandonment" and mine[0]["item_ids"] == ["i0011"]
        assert receiver.attempts[mine[0]["action_id"]] == 3 and receiver.bad_signatures == 0
        status = ray.get(dispatcher.status.remote())["crm-live"]
        assert status["delivered"] >= 1 and status["position"] > 0
    finally:
        ray.kill(dispatcher, no_restart=True)
        receiver.stop()
