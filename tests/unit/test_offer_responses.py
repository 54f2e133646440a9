"""Offer responses count only for decisions the engine made for that customer, once each; the
engine's own exposures cannot be sent by a client. Through the shard's own code path
(CustomerShardLogic.track -> screen_events -> store -> apply -> learn), no Ray."""
import uuid

import numpy as np
import pytest

from actors.shard import CustomerShardLogic
from actors.shard_offers import catalog_from_toml
from actors.store import SqliteEventStore
from engine.config import OffersConfig, RankingConfig
from engine.errors import InvalidArgument
from engine.events import parse_batch, parse_event
from engine.offers import DAY_MS
from engine.queries import parse_offer_query

NOW = 1_800_000_000_000
CATALOG = """
version = "r-1"
[bandit]
prior_alpha = 1.0
prior_beta = 9.0
[[offers]]
id = "treat"
name = "Till treat"
value = 1.0
[offers.eligibility]
consent_required = false
[[offers]]
id = "coupon"
name = "Coupon"
value = 1.0
channels = ["app"]
[offers.eligibility]
consent_required = false
"""


@pytest.fixture
def make_shard(tmp_path, synthetic_model):
    def make(name="r.db", config=OffersConfig()):
        return CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / name),
                                  offers_config=config, offer_catalog=catalog_from_toml(CATALOG, "test"))
    return make


def decide(shard, customer, channel="pos", now=NOW):
    reply, events = shard.offer_decision(parse_offer_query({"customer_id": customer, "channel": channel}), now,
                                         np.random.default_rng(0))
    shard.track(events)
    return reply


def response(customer, decision_id, offer_id="treat", kind="offer_accepted", event_id=None, ts=NOW + 1000):
    return parse_event({"event_id": event_id or uuid.uuid4().hex, "customer_id": customer, "event_type": kind,
                        "channel": "pos", "timestamp_ms": ts,
                        "attributes": {"decision_id": decision_id, "offer_id": offer_id}}, max(ts, NOW) + 2000)


def learnt(shard, offer_id="treat"):
    """(shown, accepted) over every segment, and the posterior mean in the customers' segment."""
    counts = shard.offers.bandit.counts()
    shown = sum(s for (o, _), (s, _) in counts.items() if o == offer_id)
    accepted = sum(a for (o, _), (_, a) in counts.items() if o == offer_id)
    return shown, accepted, shard.offers.bandit.mean(offer_id, "new")


def test_clients_cannot_send_the_engines_exposures():
    for kind in ("offer_shown", "offer_control"):
        with pytest.raises(InvalidArgument, match=rf"events\[1\]\.event_type: {kind} is recorded by the engine itself"):
            parse_batch([{"event_id": "ok", "customer_id": "c", "event_type": "view", "item_id": "i0001",
                          "channel": "web"},
                         {"event_id": "x", "customer_id": "c", "event_type": kind, "channel": "web",
                          "attributes": {"decision_id": "d", "offer_id": "treat"}}], NOW, 100)
    # what channels do send still parses
    assert parse_batch([{"event_id": "y", "customer_id": "c", "event_type": "offer_declined", "channel": "web",
                         "attributes": {"decision_id": "d", "offer_id": "treat"}}], NOW, 100)


def test_the_poisoning_does_not_move_the_bandit_and_one_genuine_response_counts_once(make_shard):
    shard = make_shard()
    real = decide(shard, "victim")
    other = decide(shard, "bystander")
    assert [o["offer_id"] for o in real["offers"]] == ["treat"]
    before = learnt(shard)
    assert before == (2, 0, pytest.approx(1 / 12))  # prior Beta(1, 9), two shows
    # 1,000 acceptances with made-up decision ids, the README's placeholder among them, a real
    # decision id of another customer, a real decision with an offer it did not show, and an
    # offer_control-only style decision id
    fakes = ([response("victim", uuid.uuid4().hex) for _ in range(990)]
             + [response("victim", "<from the reply>", "<from the reply>") for _ in range(3)]
             + [response("victim", "<from the reply>") for _ in range(3)]
             + [response("victim", other["decision_id"]) for _ in range(2)]
             + [response("victim", real["decision_id"], offer_id="coupon") for _ in range(2)])
    assert len(fakes) == 1000
    for start in range(0, 1000, 100):
        assert shard.track(fakes[start:start + 100]) == (0, 0)
    assert learnt(shard) == before  # the acceptance estimate did not move
    assert shard.offers.ignored_responses == 1000
    # none of them was stored: they are not in the log a restart would replay
    assert [e.event_type for e in shard.store.customer_events("victim")] == ["offer_shown"]

    genuine = response("victim", real["decision_id"], event_id="genuine-1")
    assert shard.track([genuine]) == (1, 0)
    assert learnt(shard)[:2] == (2, 1)
    # replays of the genuine answer, with new event ids (and a decline after the accept): ignored
    replays = [response("victim", real["decision_id"]) for _ in range(200)]
    replays.append(response("victim", real["decision_id"], kind="offer_declined"))
    assert shard.track(replays) == (0, 0)
    # a re-delivery of the same event is the store's duplicate, not a second count
    assert shard.track([genuine]) == (0, 1)
    assert learnt(shard)[:2] == (2, 1)
    assert shard.offers.ignored_responses == 1201


def test_two_answers_to_one_decision_in_one_batch_count_once(make_shard):
    shard = make_shard()
    reply = decide(shard, "c1")
    first, second = response("c1", reply["decision_id"]), response("c1", reply["decision_id"], kind="offer_declined")
    kept, ignored = shard.screen_events([first, second, first])
    assert kept == [first, first] and ignored == 1  # the repeat of `first` is the store's duplicate
    assert shard.track([first, second]) == (1, 0)
    assert learnt(shard)[:2] == (1, 1)


def test_a_response_counts_only_within_the_window_and_for_recent_shows(make_shard):
    shard = make_shard(config=OffersConfig(answerable_shows=3, response_window_days=2))
    late = decide(shard, "c2")
    assert shard.track([response("c2", late["decision_id"], ts=NOW + 3 * DAY_MS)]) == (0, 0)  # too late
    replies = [decide(shard, "c2", now=NOW + k) for k in range(1, 5)]  # 4 more shows: keeps the last 3
    assert shard.track([response("c2", replies[0]["decision_id"])]) == (0, 0)  # forgotten
    assert shard.track([response("c2", replies[-1]["decision_id"])]) == (1, 0)
    assert len(shard.customers.get("c2").offers.decisions) == 3


def test_the_answered_mark_survives_a_restart(make_shard, tmp_path, synthetic_model):
    shard = make_shard("restart.db")
    reply = decide(shard, "c3")
    assert shard.track([response("c3", reply["decision_id"])]) == (1, 0)
    shard.write_snapshot()
    unanswered = decide(shard, "c3", now=NOW + 5)  # after the snapshot: rebuilt from the log
    again = make_shard("restart.db")
    again.recover()
    assert again.track([response("c3", reply["decision_id"])]) == (0, 0)
    assert again.track([response("c3", unanswered["decision_id"])]) == (1, 0)


def test_learning_itself_refuses_a_response_that_answers_no_show(make_shard):
    """Behind the screen, a second line: a stored response that names no show of that customer
    (a log written before screening existed, a path that forgot to screen) teaches nothing."""
    shard = make_shard()
    decide(shard, "c4")
    before = learnt(shard)
    fake = response("c4", "made-up")
    shard.apply_committed([fake], shard.store.append(shard.partition, [fake]))
    assert learnt(shard) == before


def test_a_backdated_response_cannot_reopen_an_old_show(make_shard):
    import time

    shard = make_shard(config=OffersConfig(response_window_days=2))
    long_ago = int(time.time() * 1000) - 60 * DAY_MS  # a show the engine made two months ago
    old = decide(shard, "c3", now=long_ago)
    # the client claims it answered the next day; the shard's clock says two months later
    backdated = response("c3", old["decision_id"], ts=long_ago + DAY_MS)
    assert shard.track([backdated]) == (0, 0)
    assert shard.offers.ignored_responses >= 1
