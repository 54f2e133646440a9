"""Train on the whole UCI Online Retail file from ../shared/data, as `recsys train` does."""
import json
import subprocess
import sys

import pytest

from tests.conftest import DATA_DIR, ROOT

RETAIL = DATA_DIR / "online-retail" / "online_retail.csv.gz"


@pytest.fixture(scope="module")
def retail_path():
    assert RETAIL.exists(), f"the real data set is expected at {RETAIL} (set RECSYS_DATA_DIR)"
    return RETAIL


@pytest.mark.slow
def test_full_online_retail_loads_as_documented(retail_path):
    from recommenders.loaders import load_online_retail

    data = load_online_retail(retail_path)
    events = data.events
    registered = events[~events["customer_id"].str.startswith("guest-")]
    assert registered["customer_id"].nunique() == 4372
    guests = events[events["customer_id"].str.startswith("guest-")]
    # a guest is one invoice, never one giant customer
    assert guests.groupby("customer_id")["session_id"].nunique().max() == 1
    assert (events["event_type"] == "return").sum() > 0
    not_products = set(data.items.loc[~data.items["recommendable"], "item_id"])
    assert {"POST", "M", "DOT", "BANK CHARGES", "AMAZONFEE"} <= not_products


@pytest.mark.slow
def test_train_command_on_full_online_retail(retail_path, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "train", "--data", str(retail_path), "--format", "online-retail",
         "--model-dir", str(tmp_path), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["counts"]["items"] > 3800
    metrics = report["offline_metrics"]
    # half of the ~990 held-out customers: the other half chose the fit (recorded beside it)
    assert metrics["customers"] > 450 and metrics["sufficient"]
    assert report["fitted"]["customers"] > 450 and "validation_chosen" in report["fitted"]
    assert metrics["hr@10"] > metrics["popularity_hr@10"]
    assert metrics["recall@10"] > metrics["popularity_recall@10"]

    from recommenders.bundle import load_bundle
    from recommenders.runtime import ModelRuntime
    from recommenders.recommend import recommend
    from engine.config import RankingConfig
    from engine.queries import RecommendQuery

    bundle = load_bundle(report["bundle"])
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    result = recommend(model, None, RecommendQuery(customer_id="17850", channel="web", k=10), RankingConfig(),
                       bundle.manifest["counts"]["data_end_ms"])
    assert len(result.items) == 10 and result.personalized
    assert not {"POST", "M", "DOT"} & {i.item_id for i in result.items}
