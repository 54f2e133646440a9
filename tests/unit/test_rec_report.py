"""The recommendation experiment read-out (engine/rec_report.py) on simulated traffic: its
intervals hold their 95% on A/A tests, an A/A test run through real owners shows no difference, and
a known better arm (the blend against the popularity holdout, for shoppers whose taste is their own
group of the synthetic shop) is found. The traffic is recommenders/traffic_simulation.py's shoppers,
through the production path: OwnerCore.recommend_many, TrackEvents' owner step, the stored log."""
from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from actors.owner import OwnerSettings
from engine.attribution import ATTRIBUTED_TO, LABELS, REC_VIA
from engine.config import RecArm, RecExperiment
from engine.events import Event, parse_event
from engine.queries import RecommendQuery
from engine.rec_report import format_report, ratio, report, significant
from recommenders.traffic_simulation import ClickModel, shopper_events

PARTITIONS = 4
NOW = 1_800_000_000_000


def credited(customer, kind, experiment, arm, n, price=None):
    labels = ("recommend", "1", "blend", experiment, arm, "m1", "web", "home")
    attributes = {**dict(zip(LABELS, labels)), ATTRIBUTED_TO: f"r{n}", REC_VIA: "id"}
    return Event(f"e{n}", customer, kind, "i1", "web", NOW, price=price, attributes=tuple(sorted(attributes.items())))


def test_a_over_a_intervals_cover_the_truth_about_95_percent_of_the_time():
    """160 A/A experiments of 200 customers whose click rates differ from customer to customer (what
    makes per-impression intervals too narrow): the CTR difference's interval leaves out 0 in about
    5% of them; a naive binomial interval over impressions would in far more."""
    rng = np.random.default_rng(7)
    excluded = naive_excluded = 0
    for run in range(160):
        events, n = [], 0
        for c in range(200):
            arm = "a" if c % 2 else "b"
            rate = rng.beta(0.5, 8.0)  # heterogeneous customers, the same in both arms
            for _ in range(int(rng.integers(1, 12))):
                n += 1
                events.append(credited(f"c{c}", "impression", "aa", arm, n))
                if rng.random() < rate:
                    n += 1
                    events.append(credited(f"c{c}", "click", "aa", arm, n))
        rows = {r.key[1]: r for r in report(events)}
        excluded += significant(rows["b"].ctr_diff)
        a, b = rows["a"], rows["b"]
        pa, pb = a.clicks / a.impressions, b.clicks / b.impressions
        se = math.sqrt(pa * (1 - pa) / a.impressions + pb * (1 - pb) / b.impressions)
        naive_excluded += abs(pb - pa) > 1.96 * se
    assert 2 <= excluded <= 16, excluded  # 8 expected of 160
    assert naive_excluded > 2 * excluded


def test_ratio_is_the_delta_method_estimate():
    r, se = ratio([(1, 10), (3, 10), (0, 5)])
    assert r == pytest.approx(4 / 25)
    # sum((y - r x)^2) = (1-1.6)^2 + (3-1.6)^2 + (0-0.8)^2 = 2.96; / (3 * 2); sqrt; / mean x (25/3)
    assert se == pytest.approx(math.sqrt(2.96 / 6) / (25 / 3))


@pytest.fixture
def shop(tmp_path, new_owner_core):
    async def make(experiment):
        core = new_owner_core("recsys-owner-0", OwnerSettings(store_url=f"sqlite:///{tmp_path / 'x.db'}",
                                                              partitions=PARTITIONS, recommend_experiment=experiment))
        for p in range(PARTITIONS):
            await core.acquire(p)
        return core
    return make


def simulate(core, customers, rounds, seed):
    """Every customer shown ``rounds`` lists on the home page; their taste: the synthetic shop's
    group they buy from (customer c<n> buys group n % 3, items i<20g>..i<20g+19>)."""
    rng = np.random.default_rng(seed)
    model = core.serving.model

    async def go():
        for r in range(rounds):
            groups = {}
            for c in customers:
                answer = core.recommend_many([(RecommendQuery(c, "web", 10, placement="home"), 0)])[0]
                group = int(c[1:]) % 3
                items = [(i.item_id, float(model.item_index.get(i.item_id, 0) % 17 + 1)) for i in answer.items]
                raw = shopper_events(c, answer.recommendation_id, items,
                                     lambda item: int(item[1:]) // 20 == group, ClickModel(), rng, f"{c}-{r}")
                for e in raw:
                    groups.setdefault(core.partition_of(c), []).append(parse_event({**e, "timestamp_ms": 0},
                                                                                   NOW))
            await core.track(groups)
    asyncio.run(asyncio.wait_for(go(), 120))
    return report(core.store.export_events())


def test_an_a_over_a_test_through_the_owners_shows_no_difference(shop):
    core = asyncio.run(shop(RecExperiment("aa", (RecArm("a", 0.5), RecArm("b", 0.5)))))
    rows = simulate(core, [f"c{n}" for n in range(300)], rounds=2, seed=11)
    assert [r.key for r in rows] == [("aa", "a"), ("aa", "b")]
    assert rows[0].impressions + rows[1].impressions == 300 * 2 * 5
    b = rows[1]
    assert not significant(b.ctr_diff) and not significant(b.revenue_diff)
    assert "(baseline)" in format_report(rows)


def test_a_known_better_arm_is_found(shop):
    """The blend ranks each shopper's own group first; the holdout shows what is popular overall."""
    core = asyncio.run(shop(RecExperiment("lift", (RecArm("control", 0.5, strategy="popularity"),
                                                   RecArm("personal", 0.5)))))
    rows = {r.key[1]: r for r in simulate(core, [f"c{n}" for n in range(300)], rounds=2, seed=12)}
    personal = rows["personal"]
    assert personal.baseline == ("lift", "control")
    assert significant(personal.ctr_diff) and personal.ctr_diff.low > 0
    assert significant(personal.revenue_diff) and personal.revenue_diff.low > 0
    text = format_report(list(rows.values()))
    assert "*" in text.splitlines()[-3] or "*" in text


def test_the_consoles_experiments_page_shows_the_lists_arms_with_their_intervals(shop):
    from dataclasses import asdict

    from gateway import console

    core = asyncio.run(shop(RecExperiment("lift", (RecArm("control", 0.5, strategy="popularity"),
                                                   RecArm("personal", 0.5)))))
    rows = [asdict(r) for r in simulate(core, [f"c{n}" for n in range(120)], rounds=1, seed=13)]
    page = console.experiments([], 14, rows)
    personal = next(r for r in rows if r["key"] == ("lift", "personal"))
    ctr, diff = personal["ctr"], personal["ctr_diff"]
    assert f"{ctr['value']:.4f} [{ctr['low']:.4f}, {ctr['high']:.4f}]" in page
    assert f"{diff['value']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}] vs control" in page
    assert page.count("<svg") == 2 and "No experiment exposures" in page  # no offer experiment
    assert "No impressions credited" in console.experiments([], 14, [])


def test_one_customer_or_none_gives_no_interval_rather_than_nan():
    from dataclasses import asdict

    from gateway import console

    rows = report([credited("c1", "impression", "e", "a", 1)])
    assert rows[0].ctr.value == 0.0 and math.isnan(rows[0].ctr.low)
    assert "[n/a]" in console.experiments([], 14, [asdict(r) for r in rows]) and "nan" not in format_report(rows)


def test_the_report_counts_customers_with_impressions_and_compares_with_the_holdout():
    def labelled(customer, kind, arm, strategy, n):
        labels = ("recommend", "1", strategy, "x", arm, "m1", "web", "home")
        attributes = {**dict(zip(LABELS, labels)), ATTRIBUTED_TO: f"r{n}", REC_VIA: "id"}
        return Event(f"e{n}", customer, kind, "i1", "web", NOW, attributes=tuple(sorted(attributes.items())))
    events = [labelled("a1", "impression", "blend", "blend", 1), labelled("a1", "click", "blend", "blend", 2),
              labelled("a2", "click", "blend", "blend", 3),  # its impression never sent: no denominator
              labelled("h1", "impression", "holdout", "popularity", 4)]
    rows = {r.key[1]: r for r in report(events)}
    assert rows["blend"].customers == 1 and rows["blend"].ctr.value == 1.0
    assert rows["blend"].baseline == ("x", "holdout") and rows["holdout"].baseline is None
