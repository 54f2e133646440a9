"""Experiments measure one outcome for every arm: per exposed customer, a purchase of a target item
(and revenue) within a window after their first exposure. On simulated data with a known effect
the read-out recovers it within its interval, an A/A split reports none, and the control arm gets
outcomes; end to end through the shard, the stored events and the CLI. No Ray."""
import json
import random
import subprocess
import sys

import numpy as np
import pytest

from actors.shard import CustomerShardLogic
from actors.shard_offers import MAX_EXPOSURE_TARGETS, catalog_from_toml
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.decisioning import (CustomerOutcome, assign_arm, decide, experiment_report, format_report,
                                BanditState, DecisionContext, OfferHistory)
from engine.errors import InvalidArgument
from engine.events import Event, parse_event
from engine.offer_log import experiment_outcomes
from engine.offers import DAY_MS, parse_catalog
from engine.queries import parse_offer_query

NOW = 1_800_000_000_000
CATALOG = """
version = "exp-1"
[[offers]]
id = "treat"
name = "Treat"
value = 2.0
target_items = ["i0005"]
target_categories = ["group-1"]
[offers.eligibility]
consent_required = false
[[experiments]]
id = "treat-test"
[[experiments.arms]]
name = "bandit"
share = 0.5
strategy = "bandit"
[[experiments.arms]]
name = "holdout"
share = 0.5
strategy = "control"
"""


def outcome(arm, customer, converted, revenue=0.0, **fields):
    return CustomerOutcome(experiment_id="e", arm=arm, customer_id=customer, converted=converted,
                           revenue=revenue, **fields)


# --- the statistics ---------------------------------------------------------------------------

def test_rates_intervals_and_differences():
    rows = [outcome("treat", f"t{i}", i < 56, revenue=5.0 if i < 10 else 0.0, exposures=2,
                    acceptances=int(i < 7)) for i in range(70)]
    rows += [outcome("control", f"c{i}", i < 48, control=True) for i in range(80)]
    control, treat = experiment_report(rows)
    assert (control.arm, control.control, control.baseline, control.acceptance_rate) == ("control", True, "", None)
    assert (treat.customers, treat.conversions, treat.baseline) == (70, 56, "control")
    assert treat.conversion_rate == pytest.approx(0.8)
    assert treat.conversion_ci == pytest.approx((0.69183, 0.87695), abs=1e-5)  # Wilson 56/70 (as scipy binomtest)
    # Newcombe (1998), method 10, his example 56/70 vs 48/80: 0.0524 to 0.3339
    assert treat.conversion_diff == pytest.approx(0.2)
    assert treat.conversion_diff_ci == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert treat.revenue == 50.0 and treat.revenue_per_customer == pytest.approx(50 / 70)
    mean, n = 50 / 70, 70
    var = (10 * (5 - mean) ** 2 + 60 * mean ** 2) / (n - 1)
    half = 1.959964 * (var / n) ** 0.5
    assert treat.revenue_per_customer_ci == pytest.approx((mean - half, mean + half), abs=1e-5)
    # control revenue is all 0: the difference's interval is the treated arm's own
    assert treat.revenue_diff == pytest.approx(mean)
    assert treat.revenue_diff_ci == pytest.approx((mean - half, mean + half), abs=1e-5)
    assert (treat.exposures, treat.acceptances, treat.acceptance_rate) == (140, 7, 0.05)
    table = format_report([control, treat], window_days=14)
    assert "0.800 [0.692, 0.877]" in table and "+0.200 [+0.052, +0.334]" in table
    assert "(baseline)" in table and "within 14 days" in table


def test_the_baseline_is_the_control_arm_or_the_one_named():
    rows = [outcome("a", "1", True), outcome("a", "2", False), outcome("z", "3", False, control=True),
            outcome("z", "4", False, control=True)]
    assert {r.arm: r.baseline for r in experiment_report(rows)} == {"a": "z", "z": ""}
    assert {r.arm: r.baseline for r in experiment_report(rows, baseline="a")} == {"a": "", "z": "a"}
    no_control = [outcome("b", "1", True), outcome("a", "2", False)]
    assert {r.arm: r.baseline for r in experiment_report(no_control)} == {"a": "", "b": "a"}


def test_report_edge_cases():
    assert experiment_report([]) == []
    one, = experiment_report([outcome("a", "c", True, revenue=2.0)])
    assert np.isnan(one.revenue_per_customer_ci[0]) and "n/a" in format_report([one])
    with pytest.raises(InvalidArgument, match="appears twice"):
        experiment_report([outcome("a", "c", True), outcome("b", "c", False)])
    with pytest.raises(InvalidArgument, match=r"outcomes\[0\]: unknown field"):
        experiment_report([{"experiment_id": "e", "arm": "a", "customer_id": "c", "converted": 1, "revenue": 0,
                            "kind": "accepted"}])
    assert experiment_report([{"experiment_id": "e", "arm": "a", "customer_id": "c", "converted": True,
                               "revenue": 1.0}])[0].conversions == 1


def test_the_difference_interval_covers_zero_95_percent_of_the_time_under_a_and_a():
    rng = random.Random(11)
    covered = 0
    trials = 400
    for _ in range(trials):
        rows = [outcome(arm, f"{arm}{i}", rng.random() < 0.2, revenue=rng.expovariate(0.1) * (rng.random() < 0.2))
                for arm in ("a", "b") for i in range(300)]
        _, b = experiment_report(rows)
        covered += b.conversion_diff_ci[0] <= 0 <= b.conversion_diff_ci[1]
    assert 0.92 <= covered / trials <= 0.98


# --- simulated experiments through the stored events -------------------------------------------

TARGETS = json.dumps(["T1", "T2"])


def exposure(n, customer, arm, ts, experiment="sim", control=False, targets=TARGETS):
    return Event(event_id=f"x{n}", customer_id=customer, event_type="offer_control" if control else "offer_shown",
                 item_id="", channel="web", timestamp_ms=ts,
                 attributes=tuple(sorted({"experiment_id": experiment, "arm": arm, "decision_id": f"d{n}",
                                          "offer_id": "o", "targets": targets, "value": "2.0"}.items())))


def purchase(n, customer, item, ts, price):
    return Event(event_id=f"p{n}", customer_id=customer, event_type="purchase", item_id=item, channel="web",
                 timestamp_ms=ts, price=price, quantity=1.0)


def simulate(arms, rates, customers=20_000, seed=5):
    """Customers split by assign_arm; each converts (buys a target within 14 days of exposure) with
    its arm's rate. Noise that must not count: other items in the window, target items before the
    exposure or after the window, a second exposure later on."""
    catalog = parse_catalog({"version": "s", "offers": [{"id": "o", "value": 1.0}], "experiments": [
        {"id": "sim", "arms": [{"name": name, "share": 1 / len(arms), "strategy": strategy}
                               for name, strategy in arms]}]})
    rng = random.Random(seed)
    events, n = [], 0
    for c in range(customers):
        customer = f"c{c}"
        arm = assign_arm(customer, catalog.experiment)
        start = NOW + rng.randrange(0, 30 * DAY_MS)
        control = arm.strategy == "control"
        events.append(exposure(n, customer, arm.name, start, control=control))
        events.append(exposure(n + 1, customer, arm.name, start + 3 * DAY_MS, control=control))
        if rng.random() < rates[arm.name]:
            events.append(purchase(n, customer, rng.choice(["T1", "T2"]), start + rng.randrange(0, 14 * DAY_MS), 10.0))
        if rng.random() < 0.3:
            events.append(purchase(n + 1, customer, "other", start + rng.randrange(0, 14 * DAY_MS), 5.0))
        if rng.random() < 0.3:
            events.append(purchase(n + 2, customer, "T1", start - rng.randrange(1, 20 * DAY_MS), 10.0))
        if rng.random() < 0.3:
            events.append(purchase(n + 3, customer, "T2", start + 14 * DAY_MS + rng.randrange(0, DAY_MS), 10.0))
        n += 4
    rng.shuffle(events)  # the log's order is not the clock's
    return experiment_outcomes(events, window_days=14)


def test_a_known_lift_is_recovered_within_its_interval():
    outcomes = simulate([("treated", "bandit"), ("control", "control")], {"treated": 0.13, "control": 0.10})
    control, treated = experiment_report(outcomes)
    assert control.control and control.customers + treated.customers == 20_000
    assert control.conversions > 0  # the control arm has outcomes
    for arm, rate in ((control, 0.10), (treated, 0.13)):
        assert arm.conversion_ci[0] <= rate <= arm.conversion_ci[1]
        # revenue: 10 per conversion plus 5 with probability 0.3, in the window
        assert arm.revenue_per_customer_ci[0] <= 10 * rate + 1.5 <= arm.revenue_per_customer_ci[1]
    low, high = treated.conversion_diff_ci
    assert 0 < low <= 0.03 <= high
    assert treated.revenue_diff_ci[0] <= 0.3 <= treated.revenue_diff_ci[1]
    assert treated.exposures == 2 * treated.customers  # decisions, not customers


def test_an_a_a_split_reports_no_difference():
    outcomes = simulate([("a", "bandit"), ("b", "bandit")], {"a": 0.12, "b": 0.12}, seed=8)
    a, b = experiment_report(outcomes)
    assert b.baseline == "a"
    assert b.conversion_diff_ci[0] <= 0 <= b.conversion_diff_ci[1]
    assert b.revenue_diff_ci[0] <= 0 <= b.revenue_diff_ci[1]


def test_window_and_targets_are_applied_per_customer():
    events = [
        exposure(1, "k", "arm", NOW), exposure(2, "k", "arm", NOW + 5 * DAY_MS),  # second: same targets
        purchase(1, "k", "T1", NOW - 1, 10.0),  # before the first exposure: no
        purchase(2, "k", "other", NOW + DAY_MS, 4.0),  # in the window, not a target: revenue only
        purchase(3, "late", "T1", NOW + 20 * DAY_MS, 10.0),
        exposure(3, "late", "arm", NOW), purchase(4, "late", "T2", NOW + 14 * DAY_MS, 7.0),  # window end excluded
        exposure(4, "yes", "arm", NOW), purchase(5, "yes", "T2", NOW + 14 * DAY_MS - 1, 3.0),
        Event(event_id="a1", customer_id="yes", event_type="offer_accepted", item_id="", channel="web",
              timestamp_ms=NOW + 1, attributes=(("decision_id", "d4"), ("offer_id", "o"))),
        # a later exposure's targets count from that exposure on, and only inside the first one's window
        exposure(5, "then", "arm", NOW), exposure(6, "then", "arm", NOW + 5 * DAY_MS, targets='["X"]'),
        exposure(7, "then", "arm", NOW + 20 * DAY_MS, targets='["Y"]'),
        purchase(6, "then", "X", NOW + 2 * DAY_MS, 1.0), purchase(7, "then", "Y", NOW + 6 * DAY_MS, 1.0),
        exposure(8, "now", "arm", NOW), exposure(9, "now", "arm", NOW + 5 * DAY_MS, targets='["X"]'),
        purchase(8, "now", "X", NOW + 6 * DAY_MS, 1.0),
    ]
    by_customer = {o.customer_id: o for o in experiment_outcomes(events, window_days=14, as_of_ms=NOW + 20 * DAY_MS)}
    assert (by_customer["k"].converted, by_customer["k"].revenue, by_customer["k"].exposures) == (False, 4.0, 2)
    assert (by_customer["late"].converted, by_customer["late"].revenue) == (False, 0.0)
    assert (by_customer["yes"].converted, by_customer["yes"].revenue, by_customer["yes"].acceptances) == (True, 3.0, 1)
    assert (by_customer["then"].converted, by_customer["then"].exposures) == (False, 2)
    assert by_customer["now"].converted
    assert not any(o.window_open for o in by_customer.values())
    assert all(o.window_open for o in experiment_outcomes(events, window_days=14, as_of_ms=NOW + DAY_MS))


# --- through the engine: decide, the shard's exposure events, the CLI --------------------------

def test_a_control_decision_withholds_what_the_treated_arm_would_offer():
    cat = parse_catalog({"version": "t", "offers": [{"id": "a", "value": 1.0}, {"id": "b", "value": 3.0}],
                         "experiments": [{"id": "e", "arms": [{"name": "s", "share": 0.5, "strategy": "static_priority"},
                                                              {"name": "c", "share": 0.5, "strategy": "control"}]}]})
    customer = next(f"c{i}" for i in range(100) if assign_arm(f"c{i}", cat.experiment).name == "c")
    ctx = DecisionContext(customer_id=customer, channel="web", now_ms=NOW, marketing_consent=True)
    decision = decide(cat, ctx, OfferHistory(), BanditState(), None, None, 1, np.random.default_rng(0))
    assert decision.offers == () and decision.reason == "control_arm"
    assert [o.offer_id for o in decision.withheld] == ["b"]  # as static_priority, the treated arm, would


def test_arms_exposures_and_outcomes_reach_the_report(tmp_path, synthetic_model):
    store = SqliteEventStore(tmp_path / "s.db")
    shard = CustomerShardLogic(0, synthetic_model, RankingConfig(), store,
                               offer_catalog=catalog_from_toml(CATALOG, "test"))
    rng = np.random.default_rng(1)
    arms = {}
    for c in range(200):
        customer = f"x{c}"
        reply, events = shard.offer_decision(parse_offer_query({"customer_id": customer, "channel": "pos"}), NOW, rng)
        shard.track(events)
        arms[customer] = reply["arm"]
        exposures = [e for e in events if e.event_type in ("offer_shown", "offer_control")]
        assert len(exposures) == 1 and dict(exposures[0].attributes)["offer_id"] == "treat"
        targets = json.loads(dict(exposures[0].attributes)["targets"])
        assert targets[0] == "i0005" and "i0020" in targets and len(targets) <= MAX_EXPOSURE_TARGETS
        if reply["offers"] and c % 4 == 0:  # a quarter of the treated accept
            shard.track([parse_event({"event_id": f"acc-{c}", "customer_id": customer, "event_type": "offer_accepted",
                                      "channel": "pos", "timestamp_ms": NOW + 1,
                                      "attributes": {"decision_id": reply["decision_id"], "offer_id": "treat"}},
                                     NOW + 1)])
        if c % 2 == 0:  # half of every arm buys a target item a day later
            shard.track([parse_event({"event_id": f"buy-{c}", "customer_id": customer, "event_type": "purchase",
                                      "item_id": "i0021", "channel": "web", "price": 4.0,
                                      "timestamp_ms": NOW + DAY_MS}, NOW + DAY_MS)])
    assert set(arms.values()) == {"bandit", "holdout"}
    treated = sum(a == "bandit" for a in arms.values())
    assert 60 < treated < 140
    bandit, holdout = experiment_report(experiment_outcomes(store.export_events()))
    assert (holdout.arm, holdout.control, bandit.arm, bandit.baseline) == ("holdout", True, "bandit", "holdout")
    assert holdout.customers == 200 - treated and bandit.customers == treated
    assert holdout.conversions == sum(1 for c, a in arms.items() if a == "holdout" and int(c[1:]) % 2 == 0) > 0
    assert bandit.acceptances == sum(1 for c, a in arms.items() if a == "bandit" and int(c[1:]) % 4 == 0)
    out = subprocess.run([sys.executable, "-m", "scripts.cli", "experiments", "report", "--window-days", "7",
                          "--store", f"sqlite:///{tmp_path / 's.db'}"], capture_output=True, text=True, check=True).stdout
    bandit_line = next(line for line in out.splitlines() if " bandit " in f" {line} ")
    holdout_line = next(line for line in out.splitlines() if "holdout" in line)
    assert str(treated) in bandit_line and str(200 - treated) in holdout_line and "(baseline)" in holdout_line
    assert "within 7 days" in out


def test_a_customer_known_from_training_is_segmented_and_filtered_by_that_history(synthetic_model, tmp_path):
    from engine.state import segment

    # c0 of the synthetic shop bought in six baskets before the model was trained
    trained = synthetic_model.customer_summary("c0")
    assert trained is not None and trained[0] == 6 and trained[1] > 0
    now = int(synthetic_model.manifest["counts"]["data_end_ms"]) + 86_400_000
    assert segment(None, now) == "new" and segment(None, now, trained) == "regular"
    bought = sorted(synthetic_model.purchased_item_ids("c0"))
    catalog = catalog_from_toml(f"""
version = "t"
[[offers]]
id = "again"
name = "Again"
value = 1.0
[offers.eligibility]
consent_required = false
has_bought_items = ["{bought[0]}"]
""", "test")
    shard = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "t.db"),
                               offer_catalog=catalog)
    reply, _ = shard.offer_decision(parse_offer_query({"customer_id": "c0", "channel": "pos"}), now,
                                    np.random.default_rng(0))
    assert [o["offer_id"] for o in reply["offers"]] == ["again"] and reply["segment"] == "regular"


def test_the_consoles_experiments_page_shows_each_arm_with_its_interval_and_difference():
    from dataclasses import asdict

    from gateway import console

    outcomes = simulate([("treated", "bandit"), ("control", "control")], {"treated": 0.13, "control": 0.10})
    rows = [asdict(r) for r in experiment_report(outcomes)]
    page = console.experiments(rows, 14)
    control, treated = rows
    assert page.count("<svg") == 2 and "(control)" in page
    low, high = treated["conversion_ci"]
    assert f"{treated['conversion_rate']:.3f} [{low:.3f}, {high:.3f}]" in page
    d_low, d_high = treated["conversion_diff_ci"]
    assert f"{treated['conversion_diff']:+.3f} [{d_low:+.3f}, {d_high:+.3f}] vs control" in page
    assert str(treated["exposures"]) in page
    assert "No experiment exposures" in console.experiments([], 14)
