"""The contact-frequency cap (OffersConfig.contact_cap_per_channel): at most N marketing contacts
per customer per channel in the period, across every offer and every triggered action, exactly,
also for decisions made at the same moment and after a restart. Real owners (OwnerCore) over a
real SQLite store, no Ray."""
from __future__ import annotations

import asyncio
import time

import pytest

from actors.names import OFFER_CATALOG_META
from actors.owner import OwnerSettings
from engine.config import OffersConfig
from engine.events import parse_event
from engine.queries import OfferQuery
from engine.sharding import partition_for

PARTITIONS = 4
CATALOG = """
version = "cap-test"
[[offers]]
id = "coupon-a"
name = "A"
value = 3.0
[[offers]]
id = "coupon-b"
name = "B"
value = 2.0
[[offers]]
id = "till-treat"
name = "a service offer at the till, not marketing"
channels = ["pos"]
value = 1.0
[offers.eligibility]
consent_required = false
"""


@pytest.fixture
def owner(tmp_path, new_owner_core):
    """owner(): an OwnerCore holding every partition, cap 3 contacts a week per channel. Called
    again: a new owner over the same store (a restart), every partition rebuilt from it."""
    url = f"sqlite:///{tmp_path / 'cap.db'}"
    config = OffersConfig(catalog_path=None, default_marketing_consent=True, contact_cap_per_channel=3,
                          cart_abandon_minutes=0.001)
    made = []

    async def make():
        made.append(1)
        core = new_owner_core(f"recsys-owner-{len(made)}", OwnerSettings(store_url=url, partitions=PARTITIONS,
                                                                         offers=config),
                              {OFFER_CATALOG_META: CATALOG})
        for p in range(PARTITIONS):
            await core.acquire(p)
        return core
    return make


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario, 60))


def shown(reply):
    return [o["offer_id"] for o in reply["offers"]]


def test_decisions_at_once_across_offers_never_exceed_the_cap(owner):
    async def scenario():
        core = await owner()
        replies = await asyncio.gather(*[core.next_best_offer(OfferQuery("c-1", "web", n=2)) for _ in range(8)])
        made = [o for r in replies for o in shown(r)]
        assert len(made) == 3 and set(made) == {"coupon-a", "coupon-b"}  # three contacts, over both offers
        assert all(r["rejected"]["coupon-a"] == "contact_cap" for r in replies if not r["offers"])
        capped = await core.next_best_offer(OfferQuery("c-1", "web", n=2))
        assert capped["rejected"] == {"coupon-a": "contact_cap", "coupon-b": "contact_cap", "till-treat": "channel"}
        # another channel has its own cap; a service offer at the till is not a marketing contact
        assert len(shown(await core.next_best_offer(OfferQuery("c-1", "app", n=3)))) == 2
        for _ in range(5):
            assert "till-treat" in shown(await core.next_best_offer(OfferQuery("c-1", "pos", n=3)))

        core = await owner()  # a restart: the contacts are in the store
        assert shown(await core.next_best_offer(OfferQuery("c-1", "web", n=2))) == []
        assert len(shown(await core.next_best_offer(OfferQuery("c-1", "app", n=3)))) == 1
    run(scenario())


def test_actions_count_as_contacts_and_are_held_back_by_the_cap(owner):
    """A cart-abandonment reminder goes out by e-mail (OffersConfig.action_channel): it is a
    contact there, like an offer shown in the e-mail; past the cap it is not sent."""
    def add_to_cart(n, customer):
        now = int(time.time() * 1000)
        return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": "add_to_cart",
                            "item_id": "i0003", "channel": "web", "timestamp_ms": now - 1000}, now)

    async def scenario():
        core = await owner()
        for customer, emails in (("c-2", 2), ("c-3", 3)):
            for _ in range(emails):
                assert shown(await core.next_best_offer(OfferQuery(customer, "email", n=1)))
            await core.track({partition_for(customer, PARTITIONS): [add_to_cart(1, customer)]})
        await asyncio.sleep(0.1)
        await core.fire_triggers(int(time.time() * 1000) + 60_000)
        sent = [a for _, a in core.store.actions_after(0, 100)]
        assert [a["customer_id"] for a in sent] == ["c-2"]  # c-3 had had its three e-mails
        assert sum(h.logic.capped_actions for h in core.held.values()) == 1
        # the reminder was c-2's third e-mail contact: no e-mail offer now, nor after a restart
        assert (await core.next_best_offer(OfferQuery("c-2", "email", n=1)))["rejected"]["coupon-a"] == "contact_cap"
        core = await owner()
        assert (await core.next_best_offer(OfferQuery("c-2", "email", n=1)))["rejected"]["coupon-a"] == "contact_cap"
        assert shown(await core.next_best_offer(OfferQuery("c-2", "web", n=1)))
    run(scenario())


def test_an_action_going_out_and_an_offer_decided_at_once_share_the_last_contact(owner):
    """The reminder is being stored when an e-mail offer is asked for: the offer sees the
    reminder's contact as taken (ShardOffers.pending_contacts), so the cap holds exactly."""
    async def scenario():
        core = await owner()
        customer = "c-4"
        for _ in range(2):
            assert shown(await core.next_best_offer(OfferQuery(customer, "email", n=1)))
        now = int(time.time() * 1000)
        cart = parse_event({"event_id": "cart-1", "customer_id": customer, "event_type": "add_to_cart",
                            "item_id": "i0003", "channel": "web", "timestamp_ms": now - 1000}, now)
        await core.track({partition_for(customer, PARTITIONS): [cart]})
        fired, offer = await asyncio.gather(core.fire_triggers(now + 60_000),
                                            core.next_best_offer(OfferQuery(customer, "email", n=1)))
        assert fired == 1 and shown(offer) == []
        state = core.held[partition_for(customer, PARTITIONS)].logic.live_state(customer)
        assert len(state["contacts"]["email"]) == 3
    run(scenario())
