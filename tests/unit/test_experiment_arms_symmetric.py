"""Both arms of an experiment move through the catalogue the same way: a control exposure counts
as a contact for the caps, so a capped offer is withheld from control customers no more often
than it is shown to treated ones, and identical behaviour reads as no lift."""
import numpy as np

from actors.shard import CustomerShardLogic
from actors.shard_offers import catalog_from_toml
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.events import parse_event
from engine.offer_log import experiment_outcomes
from engine.queries import parse_offer_query

NOW = 1_800_000_000_000
CATALOG = """
version = "t1"
[[offers]]
id = "A"
value = 1.0
weight = 2.0
target_items = ["i0001"]
[offers.caps]
per_customer_per_channel = 1
period_days = 30
[[offers]]
id = "B"
value = 1.0
target_items = ["i0002"]
[[experiments]]
id = "exp"
[[experiments.arms]]
name = "static"
share = 0.5
strategy = "static_priority"
[[experiments.arms]]
name = "control"
share = 0.5
strategy = "control"
"""


def event(customer, n, kind, item="", **extra):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": "web", **extra}, NOW)


def test_identical_behaviour_in_both_arms_reads_as_no_lift(tmp_path, synthetic_model):
    logic = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "s.db"),
                               offer_catalog=catalog_from_toml(CATALOG, "test"))
    logic.recover()
    rng = np.random.default_rng(0)
    for n in range(40):
        customer = f"new{n}"
        logic.track([event(customer, 0, "consent", attributes={"marketing": "granted"}, timestamp_ms=NOW)])
        for k in range(3):  # A first (capped at one), then B, in either arm
            _, events = logic.offer_decision(parse_offer_query({"customer_id": customer, "channel": "web"}),
                                             NOW + k * 1000, rng)
            logic.track(events)
        # whatever the arm, every customer buys B's target
        logic.track([event(customer, 9, "purchase", "i0002", price=1.0, timestamp_ms=NOW + 10_000)])
    by_arm: dict[str, list[bool]] = {}
    for outcome in experiment_outcomes(logic.store.export_events()):
        by_arm.setdefault(outcome.arm, []).append(outcome.converted)
    assert set(by_arm) == {"static", "control"}
    assert all(all(converted) for converted in by_arm.values()), {a: sum(c) for a, c in by_arm.items()}
