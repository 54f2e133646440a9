"""Recommendation ids (engine/attribution.py): every answer carries one; impressions, clicks,
add-to-carts and purchases are credited to the list, position, strategy and arm that made them, only
for lists the engine really made for that customer, once each, also after a move; erasure forgets the
lists. Real owners (OwnerCore) over a real SQLite store, no Ray."""
from __future__ import annotations

import asyncio
import time

import pytest

from actors.names import OFFER_CATALOG_META
from actors.owner import OwnerSettings
from engine.config import AttributionConfig, OffersConfig, RecArm, RecExperiment
from engine.errors import InvalidArgument
from engine.events import parse_event
from engine.queries import OfferQuery, RecommendQuery, SimilarQuery

PARTITIONS = 4
CATALOG = """
version = "attr-test"
[[offers]]
id = "coupon-a"
name = "A"
value = 3.0
[offers.eligibility]
consent_required = false
"""


@pytest.fixture
def owner(tmp_path, new_owner_core):
    """owner(**settings): an OwnerCore holding every partition over one store. Called again: a new
    owner over the same store (``previous`` releases its partitions to it first: a move)."""
    url = f"sqlite:///{tmp_path / 'attr.db'}"
    made = []

    async def make(experiment=None, attribution=AttributionConfig(), previous=None):
        if previous is not None:
            for p in range(PARTITIONS):
                await previous.release(p)
        settings = OwnerSettings(store_url=url, partitions=PARTITIONS, recommend_experiment=experiment,
                                 attribution=attribution, offers=OffersConfig(catalog_path=None))
        made.append(1)
        core = new_owner_core(f"recsys-owner-{len(made)}", settings, {OFFER_CATALOG_META: CATALOG})
        for p in range(PARTITIONS):
            await core.acquire(p)
        return core
    return make


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario, 60))


_n = [0]


def ev(customer, kind, item, rec_id=None, price=None, **extra):
    now = int(time.time() * 1000)
    _n[0] += 1
    raw = {"event_id": f"e-{_n[0]}", "customer_id": customer, "event_type": kind, "item_id": item,
           "channel": extra.pop("channel", "web"), "timestamp_ms": now}
    if rec_id:
        raw["attributes"] = {"recommendation_id": rec_id}
    if price is not None:
        raw["price"] = price
    return parse_event(raw, now)


async def track(core, *events):
    groups = {}
    for e in events:
        groups.setdefault(core.partition_of(e.customer_id), []).append(e)
    results = await core.track(groups)
    return [r for r in results.values()]


def stored(core, customer):
    return [e for e in core.store.customer_events(customer) if e.event_type in
            ("impression", "click", "add_to_cart", "purchase")]


def credit_of(event):
    a = dict(event.attributes)
    return a.get("attributed_to"), a.get("rec_position"), a.get("rec_via")


def recommend(core, customer, placement="home", channel="web"):
    return core.recommend_many([(RecommendQuery(customer, channel, 5, placement=placement), 0)])[0]


def outcome_counts(core):
    out = {}
    for (name, _kind, _doc, sample, labels), value in core.serving.outcomes.samples().items():
        if sample == "recsys_recommendation_outcomes_total":
            d = dict(labels)
            key = (d["outcome"], d["list"], d["placement"], d["strategy"])
            out[key] = out.get(key, 0) + value
    return out


def test_impressions_clicks_and_purchases_are_credited_to_the_list_once_each(owner):
    async def scenario():
        core = await owner()
        answer = recommend(core, "c1")  # c1: a customer the model was trained on
        assert answer.recommendation_id.startswith("r") and answer.strategy == "blend"
        items = [i.item_id for i in answer.items]
        rec = answer.recommendation_id
        assert await track(core, *[ev("c1", "impression", item, rec) for item in items]) == [(5, 0, 0)]
        assert await track(core, ev("c1", "impression", items[0], rec),  # the same item of the same list again
                           ev("c1", "click", items[2], rec)) == [(2, 0, 0)]
        # a click and the purchase after it in one batch (an app that sends its events in bulk)
        await track(core, ev("c1", "click", items[3], rec), ev("c1", "purchase", items[3], price=1.5),
                    ev("c1", "purchase", items[3], price=1.5))
        # bought at the till later, without the id: credited to the web click, once
        await track(core, ev("c1", "add_to_cart", items[2], rec), ev("c1", "purchase", items[2], price=4.0,
                                                                      channel="pos"))
        await track(core, ev("c1", "purchase", items[2], price=4.0, channel="pos"))
        got = stored(core, "c1")
        credits = [(e.event_type, e.item_id, *credit_of(e)) for e in got]
        assert credits[:5] == [("impression", item, rec, str(n + 1), "id") for n, item in enumerate(items)]
        assert credits[5] == ("impression", items[0], None, None, "repeat")
        assert credits[6] == ("click", items[2], rec, "3", "id")
        assert credits[7:10] == [("click", items[3], rec, "4", "id"), ("purchase", items[3], rec, "4", "click"),
                                 ("purchase", items[3], None, None, None)]
        assert credits[10] == ("add_to_cart", items[2], rec, "3", "id")
        assert credits[11] == ("purchase", items[2], rec, "3", "click")
        assert credits[12] == ("purchase", items[2], None, None, None)  # a second purchase earns nothing more
        labels = dict(got[11].attributes)
        assert (labels["rec_list"], labels["rec_channel"], labels["rec_placement"], labels["rec_model"]) == (
            "recommend", "web", "home", answer.model_version)
        counts = outcome_counts(core)
        assert counts[("impression", "recommend", "home", "blend")] == 5
        assert counts[("click", "recommend", "home", "blend")] == 2
        assert counts[("purchase", "recommend", "home", "blend")] == 2
        revenue = sum(v for k, v in core.serving.outcomes.samples().items()
                      if k[3] == "recsys_recommendation_revenue_total")
        assert revenue == 5.5
    run(scenario())


def test_only_lists_the_engine_made_for_that_customer_earn_credit(owner):
    async def scenario():
        core = await owner(attribution=AttributionConfig(window_minutes=0.001))
        mine = recommend(core, "c1")
        # another customer of the same partition (its lists are in the same log)
        other = next(f"c{n}" for n in range(2, 300) if core.partition_of(f"c{n}") == core.partition_of("c1"))
        theirs = recommend(core, other)
        item = mine.items[0].item_id
        not_listed = next(f"i{i:04d}" for i in range(60) if f"i{i:04d}" not in {x.item_id for x in mine.items})
        await track(core, ev("c1", "click", theirs.items[0].item_id, theirs.recommendation_id),  # another's list
                    ev("c1", "click", item, "r0123456789abcdef"),  # a list never made
                    ev("c1", "click", not_listed, mine.recommendation_id))  # not in the list
        await asyncio.sleep(0.1)  # past the (here 60 ms) window
        await track(core, ev("c1", "click", item, mine.recommendation_id))
        assert [credit_of(e) for e in stored(core, "c1")] == [(None, None, "unknown")] * 4
        # the credit is the engine's to write: a client cannot send it
        for forged in ({"attributed_to": mine.recommendation_id}, {"rec_arm": "b"}, {"rec_via": "id"}):
            with pytest.raises(InvalidArgument, match="the engine's own record"):
                parse_event({"event_id": "x", "customer_id": "c1", "event_type": "click", "item_id": item,
                             "channel": "web", "attributes": forged}, int(time.time() * 1000))
    run(scenario())


def test_lists_move_with_their_partition_and_a_replay_does_not_credit_twice(owner):
    async def scenario():
        core = await owner()
        answer = recommend(core, "c4")
        items = [i.item_id for i in answer.items]
        rec = answer.recommendation_id
        await track(core, ev("c4", "impression", items[0], rec), ev("c4", "click", items[0], rec))
        core = await owner(previous=core)  # every partition handed over to a new owner
        await track(core, ev("c4", "impression", items[0], rec), ev("c4", "impression", items[1], rec),
                    ev("c4", "purchase", items[0], price=2.0))
        got = [credit_of(e) for e in stored(core, "c4")]
        assert got == [(rec, "1", "id"), (rec, "1", "id"), (None, None, "repeat"), (rec, "2", "id"),
                       (rec, "1", "click")]
    run(scenario())


def test_erasure_forgets_the_lists_made_for_the_customer(owner):
    async def scenario():
        core = await owner()
        answer = recommend(core, "c5")
        exported = await core.export("c5", "test")
        assert [r["recommendation_id"] for r in exported["state"]["recommendations"]] == [answer.recommendation_id]
        await core.forget("c5", "test")
        core = await owner(previous=core)
        await track(core, ev("c5", "click", answer.items[0].item_id, answer.recommendation_id))
        assert [credit_of(e) for e in stored(core, "c5")] == [(None, None, "unknown")]
    run(scenario())


def test_similar_items_and_offers_carry_ids_and_earn_credit(owner):
    async def scenario():
        core = await owner()
        similar = core.similar(SimilarQuery("i0003", 5, customer_id="c7", placement="product"))
        assert similar.recommendation_id and similar.strategy == "similar_items"
        anonymous = core.similar(SimilarQuery("i0003", 5))
        assert anonymous.recommendation_id and anonymous.recommendation_id != similar.recommendation_id
        decision = await core.next_best_offer(OfferQuery("c7", "web", placement="checkout"))
        assert decision["recommendation_id"] == decision["decision_id"] and decision["offers"]
        await track(core, ev("c7", "click", similar.items[1].item_id, similar.recommendation_id),
                    ev("c7", "impression", "coupon-a", decision["recommendation_id"]),
                    ev("c7", "click", similar.items[0].item_id, anonymous.recommendation_id))
        got = stored(core, "c7")
        assert [credit_of(e) for e in got] == [(similar.recommendation_id, "2", "id"),
                                                (decision["decision_id"], "1", "id"), (None, None, "unknown")]
        assert dict(got[1].attributes)["rec_list"] == "offer"
        assert dict(got[1].attributes)["rec_strategy"] == decision["strategy"]
    run(scenario())


EXPERIMENT = RecExperiment("blend-vs-holdout", (
    RecArm("blend", 0.5), RecArm("holdout", 0.25, strategy="popularity"),
    RecArm("no_repurchase", 0.25, ranking={"repurchase_policy": "exclude_always", "weights": {"session": 2.0}})),
    placements=("home",))


def test_experiment_arms_are_stable_per_customer_and_rank_as_configured(owner):
    async def scenario():
        core = await owner(experiment=EXPERIMENT)
        arms = {}
        for c in range(60):
            first, again = recommend(core, f"c{c}"), recommend(core, f"c{c}")
            assert (first.experiment_id, first.arm) == (again.experiment_id, again.arm) == ("blend-vs-holdout",
                                                                                          first.arm)
            arms.setdefault(first.arm, []).append((f"c{c}", first))
        assert set(arms) == {"blend", "holdout", "no_repurchase"}
        popular = [i.item_id for i in core.recommend_many([(RecommendQuery("nobody-at-all", "web", 5,
                                                                          placement="cart"), 0)])[0].items]
        for customer, answer in arms["holdout"]:
            assert answer.strategy == "popularity" and answer.reasons == ("holdout",) and not answer.personalized
            assert [i.item_id for i in answer.items] == popular
        for customer, answer in arms["no_repurchase"]:
            bought = {h["item_id"] for h in core.serving.model.customer_record(customer)["history"]}
            assert not bought & {i.item_id for i in answer.items}  # the arm's repurchase policy
        # off the experiment's placements: the served ranking, no arm
        other = recommend(core, arms["holdout"][0][0], placement="cart")
        assert (other.experiment_id, other.arm, other.strategy) == ("", "", "blend") and other.personalized
        await track(core, ev(arms["holdout"][0][0], "impression", arms["holdout"][0][1].items[0].item_id,
                             arms["holdout"][0][1].recommendation_id))
        assert dict(stored(core, arms["holdout"][0][0])[0].attributes)["rec_arm"] == "holdout"
    run(scenario())


def test_after_a_crash_the_log_replay_marks_what_was_credited(owner):
    """A list in the partition's snapshot, credited after it, then a crash (a new owner takes the
    partition without a hand-over): the replay of the stored events marks the credit again."""
    async def scenario():
        core = await owner()
        answer = recommend(core, "c8")
        rec, first = answer.recommendation_id, answer.items[0].item_id
        held = core.held[core.partition_of("c8")]
        held.logic.write_snapshot()  # as every snapshot_every events, or at a move
        await track(core, ev("c8", "impression", first, rec), ev("c8", "click", first, rec))
        core = await owner()  # the old owner is gone without writing anything more
        await track(core, ev("c8", "click", first, rec), ev("c8", "purchase", first, price=1.0),
                    ev("c8", "purchase", first, price=1.0))
        assert [credit_of(e) for e in stored(core, "c8")] == [(rec, "1", "id"), (rec, "1", "id"),
                                                               (None, None, "repeat"), (rec, "1", "click"),
                                                               (None, None, None)]
    run(scenario())


def test_purchases_after_the_list_window_still_count_through_the_click_not_before_it(owner):
    """A checkout that names the id after the list is forgotten is credited through the click, as
    one that does not name it; a purchase dated before the click is not."""
    async def scenario():
        core = await owner(attribution=AttributionConfig(window_minutes=0.002))  # 120 ms
        answer = recommend(core, "c9")
        rec, items = answer.recommendation_id, [i.item_id for i in answer.items]
        await track(core, ev("c9", "click", items[0], rec), ev("c9", "click", items[1], rec))
        await asyncio.sleep(0.2)
        earlier = ev("c9", "purchase", items[1], price=1.0)
        earlier = parse_event({"event_id": "backdated", "customer_id": "c9", "event_type": "purchase",
                               "item_id": items[1], "channel": "pos", "timestamp_ms": earlier.timestamp_ms - 3_600_000},
                              earlier.timestamp_ms)
        await track(core, ev("c9", "purchase", items[0], rec, price=2.0), earlier)
        got = [credit_of(e) for e in stored(core, "c9")]
        assert got == [(rec, "1", "id"), (rec, "2", "id"), (rec, "1", "click"), (None, None, None)]
        # the acknowledgement's bookkeeping holds nothing of the batch once it is answered
        assert all(not h.logic.annotated_from for h in core.held.values())
    run(scenario())


def test_one_customers_requests_cannot_push_out_the_others_lists(owner):
    async def scenario():
        core = await owner(attribution=AttributionConfig(lists_kept=1000))  # 250 per partition
        theirs = recommend(core, "c10")
        busy = next(f"c{n}" for n in range(11, 300) if core.partition_of(f"c{n}") == core.partition_of("c10"))
        for _ in range(300):
            recommend(core, busy)
        await track(core, ev("c10", "click", theirs.items[0].item_id, theirs.recommendation_id))
        assert [credit_of(e) for e in stored(core, "c10")] == [(theirs.recommendation_id, "1", "id")]
        held = core.held[core.partition_of("c10")]
        assert len(held.logic.made) == 17  # 16 of the busy customer's, 1 of c10's
    run(scenario())
