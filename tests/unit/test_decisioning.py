"""Next-best-offer decisioning: segments, eligibility and contact policy rule by rule, the bandit's
counts and their exchange between shards, experiment assignment, arbitration, read-outs."""
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.decisioning import (
    BanditState, DecisionContext, OfferHistory, assign_arm, caps_left, check_eligibility, counts_from_rows,
    counts_to_rows, decide, segment_of,
)
from engine.errors import InvalidArgument
from engine.events import CHANNELS
from engine.offers import DAY_MS, BanditSettings, Experiment, parse_catalog

NOW = 1_321_000_000_000  # Nov 2011


def catalog(*offers, experiments=(), bandit=None):
    data = {"version": "t", "offers": [{"value": 1.0, **o} for o in offers], "experiments": list(experiments)}
    if bandit:
        data["bandit"] = bandit
    return parse_catalog(data)


def offer(**fields):
    return catalog({"id": "o", **fields}).offers[0]


def ctx(**fields):
    base = dict(customer_id="c1", channel="web", now_ms=NOW, country="United Kingdom", segment="regular",
                marketing_consent=True)
    return DecisionContext(**{**base, **fields})


# --- segments -------------------------------------------------------------------------------

@pytest.mark.parametrize("count, spend, days, expected", [
    (0, 0.0, None, "new"),
    (1, 100.0, 10.0, "new"),
    (1, 100.0, 200.0, "lapsed"),
    (3, 500.0, 30.0, "occasional"),
    (5, 900.0, 30.0, "regular"),
    (15, 900.0, 30.0, "vip"),
    (2, 6000.0, 5.0, "vip"),
    (40, 90000.0, 121.0, "lapsed"),
    (3, 500.0, None, "occasional"),
])
def test_segment_of(count, spend, days, expected):
    assert segment_of(count, spend, days) == expected


# --- offer history --------------------------------------------------------------------------

def test_history_records_in_time_order_and_round_trips():
    history = OfferHistory()
    history.record("a", "web", "shown", 300, decision_id="d2")
    history.record("a", "web", "shown", 100, decision_id="d1")  # late arrival from another channel
    history.record("a", "pos", "declined", 200, decision_id="d1", event_id="e1")
    history.record("a", "pos", "declined", 150)  # an older decline does not replace the latest
    assert history.shows == {("a", "web"): [100, 300]}
    assert history.declines == {"a": 200}
    assert history.decisions == {("d2", "a"): [300, ""], ("d1", "a"): [100, "e1"]}
    again = OfferHistory.from_list(history.to_list())
    assert (again.shows, again.declines, again.decisions) == (history.shows, history.declines, history.decisions)


def test_version_1_snapshots_still_load():
    old = [["a", "web", "shown", 100], ["a", "web", "declined", 150], ["b", "pos", "accepted", 200]]
    history = OfferHistory.from_list(old)
    assert history.shows == {("a", "web"): [100]} and history.declines == {"a": 150}
    assert history.decisions == {}  # version 1 kept no decision ids: those shows cannot be answered


def test_trim_keeps_the_caps_worth_and_what_a_window_can_still_see():
    cat = catalog({"id": "capped", "caps": {"per_customer_per_channel": 3, "period_days": 7,
                                             "cooldown_after_decline_days": 2}},
                  {"id": "free"})
    history = OfferHistory()
    for ts in range(0, 10 * DAY_MS, DAY_MS // 4):  # 40 shows, 4 a day
        history.record("capped", "web", "shown", NOW + ts)
        history.record("free", "web", "shown", NOW + ts)
    history.record("capped", "web", "declined", NOW)
    history.record("free", "web", "declined", NOW)
    history.trim(cat, None)  # by count only
    assert history.shows == {("capped", "web"): [NOW + 9 * DAY_MS + k * DAY_MS // 4 for k in (1, 2, 3)]}
    assert history.declines == {"capped": NOW}  # no cool-down configured: nothing to keep
    history.trim(cat, NOW + 30 * DAY_MS)  # everything is older than the window and the cool-down
    assert history.shows == {} and history.declines == {} and history.entry_count() == 0
def test_history_rejects_bad_entries():
    with pytest.raises(InvalidArgument, match="kind"):
        OfferHistory().record("a", "web", "clicked", 1)
    with pytest.raises(InvalidArgument, match="channel"):
        OfferHistory().record("a", "fax", "shown", 1)
    with pytest.raises(InvalidArgument, match=r"offer_history\[1\]\.kind"):
        OfferHistory.from_list([["a", "web", "shown", 1], ["a", "web", "seen", 2]])
    with pytest.raises(InvalidArgument, match=r"offer_history\[0\]"):
        OfferHistory.from_list([["a", "web", "shown"]])


# --- eligibility ----------------------------------------------------------------------------

@pytest.mark.parametrize("fields, context, rule", [
    ({"valid_from": "2011-12-01"}, {}, "validity_window"),
    ({"valid_until": "2011-10-01"}, {}, "validity_window"),
    ({"channels": ["pos"]}, {}, "channel"),
    ({}, {"marketing_consent": False}, "marketing_consent"),
    ({"eligibility": {"segments": ["vip"]}}, {}, "segment"),
    ({"eligibility": {"countries": ["France"]}}, {}, "country"),
    ({"eligibility": {"min_basket_value": 50}}, {"basket_value": 49.99}, "min_basket_value"),
    ({"eligibility": {"basket_contains_items": ["22423"]}}, {"basket": (("85123A", 1.0, 2.55),)},
     "basket_contains_items"),
    ({"eligibility": {"basket_contains_categories": ["TIER"]}},
     {"basket": (("85123A", 1.0, None),), "item_categories": {"85123A": "HOLDER"}}, "basket_contains_categories"),
    ({"eligibility": {"has_bought_items": ["22423"]}}, {"purchased_items": frozenset({"85123A"})},
     "has_bought_items"),
    ({"eligibility": {"has_not_bought_items": ["22423"]}}, {"purchased_items": frozenset({"22423"})},
     "has_not_bought_items"),
])
def test_each_rule_can_fail(fields, context, rule):
    ok, passed, failed = check_eligibility(offer(**fields), ctx(**context), OfferHistory(), None)
    assert (ok, failed) == (False, rule)
    assert rule not in passed


def test_everything_passes_and_only_configured_rules_are_listed():
    everything = offer(
        channels=["web"], valid_from="2011-01-01", valid_until="2011-12-31",
        eligibility={"segments": ["regular"], "countries": ["United Kingdom"], "min_basket_value": 10,
                     "basket_contains_items": ["21212"], "basket_contains_categories": ["CASE"],
                     "has_bought_items": ["22423"], "has_not_bought_items": ["47566"]},
        caps={"per_customer_per_channel": 1, "period_days": 7, "cooldown_after_decline_days": 3})
    context = ctx(basket=(("21212", 24.0, 0.55),), basket_value=13.2, item_categories={"21212": "CASE"},
                  purchased_items=frozenset({"22423"}))
    ok, passed, failed = check_eligibility(everything, context, OfferHistory(), {"o": 5})
    assert ok and failed is None
    assert passed == ["validity_window", "channel", "marketing_consent", "segment", "country", "min_basket_value",
                      "basket_contains_items", "basket_contains_categories", "has_bought_items",
                      "has_not_bought_items", "cap_per_channel", "cooldown_after_decline", "global_budget"]
    bare = offer(eligibility={"consent_required": False})
    assert check_eligibility(bare, ctx(marketing_consent=False), OfferHistory()) == (True, [], None)


def test_validity_window_bounds():
    o = offer(valid_from="2011-11-01T00:00:00Z", valid_until="2011-11-02T00:00:00Z")
    assert check_eligibility(o, ctx(now_ms=o.valid_from_ms), OfferHistory())[0]
    assert not check_eligibility(o, ctx(now_ms=o.valid_until_ms), OfferHistory())[0]
    assert check_eligibility(o, ctx(now_ms=o.valid_until_ms - 1), OfferHistory())[0]


def test_cap_per_channel_counts_this_channel_in_the_window():
    o = offer(caps={"per_customer_per_channel": 2, "period_days": 7})
    history = OfferHistory()
    history.record("o", "web", "shown", NOW - 8 * DAY_MS)  # outside the window
    history.record("o", "email", "shown", NOW - DAY_MS)  # another channel
    history.record("other", "web", "shown", NOW - DAY_MS)  # another offer
    history.record("o", "web", "shown", NOW - DAY_MS)
    assert check_eligibility(o, ctx(), history)[0]
    assert caps_left(o, ctx(), history) == {"per_customer_per_channel": 1}
    history.record("o", "web", "shown", NOW - 1)
    assert check_eligibility(o, ctx(), history)[2] == "cap_per_channel"
    assert caps_left(o, ctx(), history) == {"per_customer_per_channel": 0}
    assert check_eligibility(o, ctx(channel="email"), history)[0]


def test_cooldown_after_decline_applies_across_channels():
    o = offer(caps={"cooldown_after_decline_days": 2})
    history = OfferHistory()
    history.record("o", "email", "declined", NOW - DAY_MS)
    assert check_eligibility(o, ctx(channel="web"), history)[2] == "cooldown_after_decline"
    assert caps_left(o, ctx(), history) == {"cooldown_seconds_left": 86_400}
    assert check_eligibility(o, ctx(now_ms=NOW + DAY_MS), history)[0]
    assert caps_left(o, ctx(now_ms=NOW + 2 * DAY_MS), history) == {"cooldown_seconds_left": 0}


def test_global_budget():
    o = offer(caps={"global_budget": 100})
    assert check_eligibility(o, ctx(), OfferHistory(), {"o": 0})[2] == "global_budget"
    assert check_eligibility(o, ctx(), OfferHistory(), {"o": 3})[0]
    assert check_eligibility(o, ctx(), OfferHistory(), {})[0]  # missing = unlimited
    assert check_eligibility(o, ctx(), OfferHistory(), None)[0]
    assert caps_left(o, ctx(), OfferHistory(), {"o": 3}) == {"global_budget": 3}
    assert caps_left(o, ctx(), OfferHistory(), None) == {}


# --- bandit ---------------------------------------------------------------------------------

def test_bandit_counts_and_posterior():
    bandit = BanditState(BanditSettings(prior_alpha=1, prior_beta=9))
    assert bandit.mean("a", "vip") == pytest.approx(0.1)
    for kind in ["shown", "accepted", "shown", "declined", "shown"]:
        bandit.update("a", "vip", kind)
    assert bandit.counts() == {("a", "vip"): (3, 1)}
    assert bandit.alpha_beta("a", "vip") == (2, 11)
    assert bandit.mean("a", "vip") == pytest.approx(2 / 13)
    assert bandit.mean("a", "new") == pytest.approx(0.1)  # segments learn separately
    with pytest.raises(InvalidArgument):
        bandit.update("a", "vip", "clicked")


def test_bandit_sample_is_reproducible_and_accepts_either_rng():
    bandit = BanditState(counts={("a", "vip"): (100, 30)})
    first = [bandit.sample("a", "vip", np.random.default_rng(1)) for _ in range(3)]
    assert len(set(first)) == 1 and 0 < first[0] < 1
    draws = [bandit.sample("a", "vip", random.Random(i)) for i in range(2000)]
    assert np.mean(draws) == pytest.approx(31 / 102, abs=0.01)


def test_accepted_without_shown_never_makes_negative_failures():
    bandit = BanditState(counts={("a", "s"): (0, 2)})
    alpha, beta = bandit.alpha_beta("a", "s")
    assert (alpha, beta) == (3, 1)


def test_failed_send_is_restored():
    shard, aggregator = BanditState(), BanditState()
    shard.update("a", "s", "shown")
    delta = shard.delta_since_last()
    shard.restore_delta(delta)  # the call to the aggregator failed
    shard.update("a", "s", "accepted")
    aggregator.add_counts(shard.delta_since_last())
    shard.merge(aggregator.counts())
    assert aggregator.counts() == shard.counts() == {("a", "s"): (1, 1)}


def test_counts_rows_round_trip():
    counts = {("a", "vip"): (10, 2), ("b", "new"): (3, 0)}
    rows = counts_to_rows(counts)
    assert rows == [["a", "vip", 10, 2], ["b", "new", 3, 0]]
    assert counts_from_rows(rows) == counts
    with pytest.raises(InvalidArgument):
        counts_from_rows([["a", "vip", -1, 0]])
    with pytest.raises(InvalidArgument):
        BanditState().merge({("a",): (1, 0)})


# shard index, offer, kind; or a sync of one shard with the aggregator
operations = st.lists(st.one_of(
    st.tuples(st.just("update"), st.integers(0, 2), st.sampled_from(["a", "b"]),
              st.sampled_from(["shown", "accepted", "declined"])),
    st.tuples(st.just("sync"), st.integers(0, 2)),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_shards_exchanging_deltas_count_every_observation_exactly_once(ops):
    shards = [BanditState() for _ in range(3)]
    aggregator = BanditState()
    truth = Counter()
    for op in ops:
        if op[0] == "update":
            _, i, offer_id, kind = op
            shards[i].update(offer_id, "s", kind)
            if kind != "declined":
                truth[(offer_id, kind)] += 1
            # a shard's own view includes what it saw, before any sync
            shown, accepted = shards[i].counts().get((offer_id, "s"), (0, 0))
            assert shown >= 0 and accepted >= 0 and (shown or accepted or kind == "declined")
        else:
            shard = shards[op[1]]
            aggregator.add_counts(shard.delta_since_last())
            shard.merge(aggregator.counts())
    for shard in shards:  # final round: everyone sends, then everyone receives
        aggregator.add_counts(shard.delta_since_last())
    for shard in shards:
        shard.merge(aggregator.counts())
    expected = {(o, "s"): (truth[(o, "shown")], truth[(o, "accepted")])
                for o in ("a", "b") if truth[(o, "shown")] or truth[(o, "accepted")]}
    assert aggregator.counts() == expected
    assert all(shard.counts() == expected for shard in shards)


# --- experiments ----------------------------------------------------------------------------

EXPERIMENT = {"id": "exp1", "arms": [{"name": "bandit", "share": 0.7, "strategy": "bandit"},
                                     {"name": "static", "share": 0.2, "strategy": "static_priority"},
                                     {"name": "control", "share": 0.1, "strategy": "control"}]}


def test_assign_arm_is_deterministic_and_proportional():
    experiment = catalog(experiments=[EXPERIMENT]).experiment
    arms = [assign_arm(f"cust-{i}", experiment).name for i in range(20_000)]
    assert arms == [assign_arm(f"cust-{i}", experiment).name for i in range(20_000)]
    counts = Counter(arms)
    assert counts["bandit"] / 20_000 == pytest.approx(0.7, abs=0.015)
    assert counts["static"] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert counts["control"] / 20_000 == pytest.approx(0.1, abs=0.015)


def test_assignment_is_independent_between_experiments():
    first = catalog(experiments=[EXPERIMENT]).experiment
    second = catalog(experiments=[{**EXPERIMENT, "id": "exp2"}]).experiment
    same = sum(assign_arm(f"c{i}", first).name == assign_arm(f"c{i}", second).name for i in range(5000))
    # independent: P(same) = 0.7^2 + 0.2^2 + 0.1^2 = 0.54
    assert same / 5000 == pytest.approx(0.54, abs=0.03)


@given(st.text(min_size=1, max_size=30), st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_assign_arm_never_picks_a_zero_share_arm(customer_id, raw):
    from engine.offers import Arm

    total = sum(raw)
    if total == 0:
        raw, total = [0.0] * (len(raw) - 1) + [1.0], 1.0
    shares = [r / total for r in raw]
    experiment = Experiment("e", tuple(Arm(f"a{i}", s, "bandit") for i, s in enumerate(shares)))
    arm = assign_arm(customer_id, experiment)
    assert arm.share > 0


# --- decide ---------------------------------------------------------------------------------

THREE = [{"id": "cheap", "value": 2.0}, {"id": "dear", "value": 10.0}, {"id": "mid", "value": 5.0, "weight": 1.5}]


def test_static_priority_orders_by_weight_times_value_and_breaks_ties_by_id():
    cat = catalog(*THREE, {"id": "also-dear", "value": 10.0})
    decision = decide(cat, ctx(), OfferHistory(), BanditState(), None, None, 3, np.random.default_rng(0),
                      strategy="static_priority")
    assert [o.offer_id for o in decision.offers] == ["also-dear", "dear", "mid"]
    assert [o.score for o in decision.offers] == [10.0, 10.0, 7.5]
    assert decision.reason == "" and decision.strategy == "static_priority"
    assert decision.offers[0].sample is None and decision.offers[0].propensity == pytest.approx(0.5)
    assert decision.experiment_id == "" and decision.arm == ""


def test_bandit_prefers_what_was_learnt_and_reports_its_numbers():
    cat = catalog(*THREE, bandit={"prior_alpha": 1, "prior_beta": 1, "affinity_weight": 0.5})
    bandit = BanditState(cat.bandit, counts={("cheap", "regular"): (1000, 900), ("dear", "regular"): (1000, 10),
                                             ("mid", "regular"): (1000, 50)})
    decision = decide(cat, ctx(), OfferHistory(), bandit, {"cheap": 1.0, "dear": 7.0, "mid": float("nan")},
                      None, 2, np.random.default_rng(0), strategy="bandit")
    top = decision.offers[0]
    assert [o.offer_id for o in decision.offers] == ["cheap", "mid"]
    assert top.propensity == pytest.approx(901 / 1002)
    assert top.score == pytest.approx(top.sample * (1 + 0.5 * 1.0) * 2.0)
    assert decision.offers[1].affinity == 0.0  # NaN affinity counts as none
    # other segments have learnt nothing
    assert bandit.mean("cheap", "vip") == 0.5


def test_decide_reports_rejections_and_caps():
    cat = catalog({"id": "web-only", "channels": ["web"], "caps": {"per_customer_per_channel": 2, "period_days": 7}},
                  {"id": "pos-only", "channels": ["pos"]})
    decision = decide(cat, ctx(), OfferHistory(), BanditState(), None, None, 5, np.random.default_rng(0),
                      strategy="bandit")
    assert [o.offer_id for o in decision.offers] == ["web-only"]
    assert decision.offers[0].passed_rules == ("channel", "marketing_consent", "cap_per_channel")
    assert dict(decision.offers[0].caps_left) == {"per_customer_per_channel": 2}
    assert decision.rejected == {"pos-only": "channel"}


@pytest.mark.parametrize("offers, context, history, reason", [
    ([], {}, [], "no_offers"),
    ([{"id": "a"}, {"id": "b"}], {"marketing_consent": False}, [], "no_marketing_consent"),
    ([{"id": "a", "channels": ["pos"]}, {"id": "b"}], {"marketing_consent": False}, [], "no_eligible_offer"),
    ([{"id": "a", "caps": {"cooldown_after_decline_days": 3}}], {}, [["a", "web", "declined", NOW - 1]],
     "contact_capped"),
])
def test_reasons_when_nothing_is_offered(offers, context, history, reason):
    decision = decide(catalog(*offers), ctx(**context), OfferHistory.from_list(history), BanditState(), None,
                      None, 1, np.random.default_rng(0), strategy="bandit")
    assert decision.offers == () and decision.reason == reason


def test_experiment_arm_chooses_the_strategy_unless_overridden():
    cat = catalog(*THREE, experiments=[EXPERIMENT])
    by_arm = {}
    for i in range(300):
        decision = decide(cat, ctx(customer_id=f"c{i}"), OfferHistory(), BanditState(), None, None, 1,
                          np.random.default_rng(i))
        by_arm.setdefault(decision.arm, decision)
        assert decision.experiment_id == "exp1"
        assert decision.strategy == {"bandit": "bandit", "static": "static_priority",
                                     "control": "control"}[decision.arm]
    assert set(by_arm) == {"bandit", "static", "control"}
    control = by_arm["control"]
    assert control.offers == () and control.reason == "control_arm"
    customer = next(f"c{i}" for i in range(300) if assign_arm(f"c{i}", cat.experiment).name == "control")
    forced = decide(cat, ctx(customer_id=customer), OfferHistory(), BanditState(), None, None, 1,
                    np.random.default_rng(0), strategy="static_priority")
    assert forced.offers and forced.experiment_id == "" and forced.arm == ""


def test_control_arm_without_any_eligible_offer_is_not_an_exposure():
    cat = catalog(*THREE, experiments=[{"id": "e", "arms": [{"name": "c", "share": 1.0, "strategy": "control"}]}])
    decision = decide(cat, ctx(marketing_consent=False), OfferHistory(), BanditState(), None, None, 1,
                      np.random.default_rng(0))
    assert decision.reason == "no_marketing_consent" and decision.arm == "c"


def test_decide_validates_its_arguments():
    cat = catalog(*THREE)
    with pytest.raises(InvalidArgument, match="n"):
        decide(cat, ctx(), OfferHistory(), BanditState(), None, None, 0, np.random.default_rng(0))
    with pytest.raises(InvalidArgument, match="strategy"):
        decide(cat, ctx(), OfferHistory(), BanditState(), None, None, 1, np.random.default_rng(0), strategy="greedy")


offer_specs = st.lists(st.fixed_dictionaries({
    "value": st.floats(0, 100),
    "weight": st.floats(0.01, 10),
    "channels": st.lists(st.sampled_from(sorted(CHANNELS)), max_size=2, unique=True),
    "eligibility": st.fixed_dictionaries({"segments": st.lists(st.sampled_from(["new", "vip", "regular"]),
                                                               max_size=2, unique=True),
                                          "min_basket_value": st.floats(0, 100)}),
    "caps": st.fixed_dictionaries({"global_budget": st.integers(0, 3)}),
}), max_size=8)


@settings(max_examples=150, deadline=None)
@given(offer_specs, st.integers(1, 5), st.sampled_from(["bandit", "static_priority"]),
       st.sampled_from(sorted(CHANNELS)), st.floats(0, 150), st.integers(0, 2**32 - 1),
       st.dictionaries(st.integers(0, 7), st.integers(0, 2)))
def test_decide_properties(specs, n, strategy, channel, basket_value, seed, budget_idx):
    cat = catalog(*[{"id": f"o{i}", **spec} for i, spec in enumerate(specs)])
    budget = {f"o{i}": left for i, left in budget_idx.items()}
    context = ctx(channel=channel, basket_value=basket_value)
    decision = decide(cat, context, OfferHistory(), BanditState(), {f"o{i}": 0.5 for i in range(8)}, budget, n,
                      np.random.default_rng(seed), strategy=strategy)
    ids = [o.offer_id for o in decision.offers]
    scores = [o.score for o in decision.offers]
    assert len(ids) <= n and len(ids) == len(set(ids))
    assert scores == sorted(scores, reverse=True)
    assert not set(ids) & set(decision.rejected)
    eligible = [o.id for o in cat.offers if check_eligibility(o, context, OfferHistory(), budget)[0]]
    assert set(decision.rejected) == {o.id for o in cat.offers} - set(eligible)
    assert len(ids) == min(n, len(eligible))
    assert set(ids) <= set(eligible)
    assert (decision.reason == "") == bool(ids)
    for o in decision.offers:
        assert 0 <= o.propensity <= 1 and o.score >= 0


def test_a_malformed_snapshot_is_refused_with_the_part_named():
    with pytest.raises(InvalidArgument, match=r"offer_history\.shows\.channel"):
        OfferHistory.from_list({"v": 2, "shows": [["a", "fax", [1]]]})
    with pytest.raises(InvalidArgument, match=r"offer_history\.decisions: malformed"):
        OfferHistory.from_list({"v": 2, "decisions": [["d", "a"]]})
    with pytest.raises(InvalidArgument, match="version 1"):
        OfferHistory.from_list({"v": 7})


# --- experiment read-out: tests/unit/test_experiment_report.py ------------------------------
