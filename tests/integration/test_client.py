"""recsys.client against the running service: typed results, the key, errors with the server's
message, retries on UNAVAILABLE for the calls a repeat cannot harm, and the asyncio client."""
import asyncio
import socket
import time
import uuid

import pytest

from recsys.client import AsyncClient, Client, Event, RecsysClientError
from tests.integration.conftest import KEYS


def uid() -> str:
    return f"cl-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def client(service):
    with Client(service.grpc_target, api_key=KEYS["admin"], timeout=10) as c:
        yield c


def test_track_then_recommend_reflects_the_event_with_typed_results(client):
    customer = uid()
    events = [Event(uuid.uuid4().hex, customer, "view", item_id=f"i{45 + n:04d}") for n in range(3)]
    assert client.track(events).accepted == 3
    assert client.track(events).duplicates == 3  # a repeated delivery is acknowledged, not applied again
    answer = client.recommend(customer, k=5)
    assert len(answer.items) == 5 and answer.personalized and answer.model_version
    assert all(isinstance(i.score, float) and i.reasons for i in answer.items)
    similar = client.similar_items("i0045", k=3, customer_id=customer)
    assert len(similar.items) == 3 and "i0045" not in {i.item_id for i in similar.items}
    exported = client.export(customer)
    assert len(exported["events"]) == 3
    assert client.forget(customer) == 3
    with pytest.raises(RecsysClientError) as err:
        client.export(customer)
    assert err.value.code == "NOT_FOUND"


def test_bad_input_and_a_bad_key_raise_with_the_servers_message(client, service):
    with pytest.raises(RecsysClientError) as err:
        client.recommend("", k=5)
    assert err.value.code == "INVALID_ARGUMENT" and "customer_id" in err.value.message and err.value.attempts == 1
    with Client(service.grpc_target, api_key="not-a-key") as stranger:
        with pytest.raises(RecsysClientError) as err:
            stranger.recommend("c1")
    assert err.value.code == "UNAUTHENTICATED"


def test_unavailable_is_retried_with_backoff_for_idempotent_calls_only():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"127.0.0.1:{port}", api_key="k", timeout=1, retries=2, backoff=0.1) as down:
        started = time.monotonic()
        with pytest.raises(RecsysClientError) as err:
            down.recommend("c1")
        assert err.value.code == "UNAVAILABLE" and err.value.attempts == 3
        assert time.monotonic() - started >= 0.05 + 0.1  # the two waits, each at least half its step
        with pytest.raises(RecsysClientError) as err:
            down.next_best_offer("c1")  # a repeat would be a second decision: not retried
        assert err.value.code == "UNAVAILABLE" and err.value.attempts == 1


def test_the_asyncio_client_makes_the_same_calls(service):
    customer = uid()

    async def scenario():
        async with AsyncClient(service.grpc_target, api_key=KEYS["admin"], timeout=10) as recsys:
            consent = Event(uuid.uuid4().hex, customer, "consent", attributes={"marketing": "granted"})
            tracked = await recsys.track([consent, Event(uuid.uuid4().hex, customer, "add_to_cart", item_id="i0021")])
            answers = await asyncio.gather(*(recsys.recommend(customer, k=4) for _ in range(5)))
            decision = await recsys.next_best_offer(customer, channel="web")
            return tracked, answers, decision

    tracked, answers, decision = asyncio.run(scenario())
    assert tracked.accepted == 2
    assert all(len(a.items) == 4 and a.personalized for a in answers)
    assert "i0021" not in {i.item_id for a in answers for i in a.items}  # the cart is left out
    assert decision.decision_id and (decision.offers or decision.reason)
