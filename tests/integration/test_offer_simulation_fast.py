"""The offer simulation, short: on real Online Retail customers the bandit's regret is the lowest."""
from pathlib import Path

import pytest

from benchmarks.offer_simulation import load_customers, simulate
from engine.offers import load_catalog

CATALOG = Path(__file__).resolve().parents[2] / "config" / "offers.toml"


def test_bandit_regret_is_lowest_on_online_retail_customers(data_dir):
    if not (data_dir / "online-retail").exists():
        pytest.fail(f"the Online Retail data set is missing under {data_dir}")
    catalog = load_catalog(CATALOG)
    customers, categories = load_customers(data_dir, catalog)
    results = simulate(catalog, customers, categories, rounds=4000, seed=11)["results"]
    final = {policy: float(r["cumulative_regret"][-1]) for policy, r in results.items()}
    assert final["bandit"] < final["static_priority"] and final["bandit"] < final["random"], final
