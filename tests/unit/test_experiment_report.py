"""Experiments end to end without Ray: decisions through the shard, outcomes as events, the CLI report."""
import subprocess
import sys

import numpy as np

from actors.shard import CustomerShardLogic
from actors.shard_offers import catalog_from_toml
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.events import parse_event
from engine.queries import parse_offer_query

NOW = 1_800_000_000_000
CATALOG = """
version = "exp-1"
[[offers]]
id = "treat"
name = "Treat"
value = 2.0
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
        if reply["offers"] and c % 4 == 0:  # a quarter of the treated accept
            shard.track([parse_event({"event_id": f"acc-{c}", "customer_id": customer, "event_type": "offer_accepted",
                                      "channel": "pos", "timestamp_ms": NOW,
                                      "attributes": {"decision_id": reply["decision_id"], "offer_id": "treat"}},
                                     NOW + 1)])
    assert set(arms.values()) == {"bandit", "holdout"}
    assert 60 < sum(a == "bandit" for a in arms.values()) < 140
    out = subprocess.run([sys.executable, "-m", "scripts.cli", "experiments", "report",
                          "--store", f"sqlite:///{tmp_path / 's.db'}"], capture_output=True, text=True, check=True).stdout
    bandit_line = next(line for line in out.splitlines() if " bandit " in f" {line} ")
    holdout_line = next(line for line in out.splitlines() if "holdout" in line)
    treated = sum(a == "bandit" for a in arms.values())
    assert str(treated) in bandit_line and str(200 - treated) in holdout_line


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
