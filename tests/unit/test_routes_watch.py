"""A call that is slow to answer while its partition moves (gateway/routing.py Routes._watched): the
caller waits for an owner that is still running (it answers or forwards once itself), and resends
only when the owner has left the routes (dead, its node removed)."""
import asyncio

import gateway.routing as routing
from gateway.routing import Routes


class _Remote:
    def __init__(self, fn):
        self._fn = fn

    def remote(self):
        return self._fn()


class _Placement:
    def __init__(self, owners):
        self.version, self.owners = 1, list(owners)
        self.routes = _Remote(self._routes)

    async def _routes(self):
        return self.version, list(self.owners)

    def move(self, owners):
        self.version += 1
        self.owners = list(owners)


def _run(placement, after_s, new_owners, answer_s=0.6):
    routing.WATCH_S = 0.05
    routes = Routes(2, placement)
    routes._handles = {"a": "handle-a", "b": "handle-b"}
    sent = []

    async def send(name, _handle):
        sent.append(name)
        await asyncio.sleep(answer_s if name == "a" else 0.0)
        return name

    async def main():
        await routes.ensure()

        async def moving():
            await asyncio.sleep(after_s)
            placement.move(new_owners)
        mover = asyncio.create_task(moving())
        result = await routes.call(0, send, asyncio.get_running_loop().time() + 5.0)
        await mover
        return result
    try:
        return asyncio.run(main()), sent
    finally:
        routing.WATCH_S = 0.5


def test_a_slow_call_to_an_owner_still_running_is_not_sent_again():
    # partition 0 moves from a to b while a still holds partition 1: a finishes the call
    result, sent = _run(_Placement(["a", "a"]), 0.1, ["b", "a"])
    assert result == "a" and sent == ["a"]


def test_a_call_to_an_owner_that_left_the_routes_is_sent_to_the_new_one():
    result, sent = _run(_Placement(["a", "a"]), 0.1, ["b", "b"])
    assert result == "b" and sent == ["a", "b"]
