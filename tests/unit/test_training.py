"""Known-answer tests: data where the right recommendation is known exactly."""
import json

import numpy as np
import pandas as pd
import pytest

from engine.config import RankingConfig
from engine.errors import InvalidArgument
from engine.queries import Filters, RecommendQuery, SimilarQuery
from recommenders.bundle import list_versions, load_bundle, current_version, save_bundle
from recommenders.loaders import Dataset
from recommenders.recommend import recommend, similar_items
from recommenders.runtime import ModelRuntime
from recommenders.training import TrainParams, train

NOW = 1_800_000_000_000


def checkerboard() -> Dataset:
    """Even customers buy items a0..a4, odd ones b0..b4; each customer misses exactly one."""
    rows = []
    for c in range(40):
        side = "a" if c % 2 == 0 else "b"
        missing = c % 5
        for j in range(5):
            if j != missing:
                rows.append((f"e{c}-{j}", 1_700_000_000_000 + c * 1000 + j, f"u{c}", f"s{c}", f"{side}{j}",
                             "purchase", 1.0, 1.0, "web", "", ""))
    events = pd.DataFrame(rows, columns=["event_id", "timestamp_ms", "customer_id", "session_id", "item_id",
                                         "event_type", "quantity", "price", "channel", "store_id", "country"])
    items = pd.DataFrame({"item_id": sorted(events["item_id"].unique())})
    items["name"] = items["item_id"]
    items["recommendable"] = True
    return Dataset(events, items, "checkerboard")


@pytest.fixture(scope="module")
def board_model():
    bundle = train(checkerboard(), TrainParams(factors=2, regularization=0.5, iterations=20, evaluate=False, threads=1), progress=False)
    return ModelRuntime(bundle.arrays, bundle.manifest)


@pytest.mark.parametrize("customer", range(0, 40, 3))
def test_top1_is_the_missing_item(board_model, customer):
    side = "a" if customer % 2 == 0 else "b"
    query = RecommendQuery(customer_id=f"u{customer}", channel="web", k=1,
                           filters=Filters(repurchase_policy="exclude_always"))
    result = recommend(board_model, None, query, RankingConfig(), NOW)
    assert [i.item_id for i in result.items] == [f"{side}{customer % 5}"]
    assert result.personalized and "als" in result.items[0].reasons


def test_similar_items_stay_on_their_side(board_model):
    result = similar_items(board_model, SimilarQuery(item_id="a0", k=4), None)
    assert {i.item_id for i in result.items} == {"a1", "a2", "a3", "a4"}


def test_groups_in_synthetic_shop(synthetic_model, synthetic_dataset):
    per_group = 20
    for customer in ("c0", "c1", "c2"):
        group = int(customer[1:]) % 3
        query = RecommendQuery(customer_id=customer, channel="web", k=5)
        result = recommend(synthetic_model, None, query, RankingConfig(), NOW)
        groups = [int(i.item_id[1:]) // per_group for i in result.items]
        assert groups.count(group) >= 4, (customer, groups)


def test_manifest_records_what_was_done(synthetic_bundle):
    manifest = synthetic_bundle.manifest
    for key in ("version", "data_fingerprint", "params", "counts", "training_seconds", "offline_metrics"):
        assert key in manifest
    metrics = manifest["offline_metrics"]
    assert metrics["customers"] > 0
    # the planted group structure is easy: the engine must beat popularity on its own holdout
    assert metrics["hr@10"] > metrics["popularity_hr@10"]


def test_bundle_round_trip_and_immutability(tmp_path, synthetic_bundle):
    path = save_bundle(synthetic_bundle, tmp_path)
    assert current_version(tmp_path) == synthetic_bundle.version
    assert list_versions(tmp_path) == [synthetic_bundle.version]
    loaded = load_bundle(path)
    for name, array in synthetic_bundle.arrays.items():
        assert np.array_equal(loaded.arrays[name], array, equal_nan=array.dtype.kind == "f"), name
    with pytest.raises(InvalidArgument, match="immutable"):
        save_bundle(synthetic_bundle, tmp_path)


def test_corrupt_bundle_is_refused(tmp_path, synthetic_bundle):
    path = save_bundle(synthetic_bundle, tmp_path)
    data = bytearray((path / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(InvalidArgument, match="checksum"):
        load_bundle(path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidArgument, match="JSON"):
        load_bundle(path)
    assert manifest["version"] == synthetic_bundle.version


def test_same_data_same_fingerprint(synthetic_dataset):
    from recommenders.training import fingerprint, usable_events

    events = usable_events(synthetic_dataset)
    assert fingerprint(events) == fingerprint(events.sample(frac=1.0, random_state=1))
    assert fingerprint(events) != fingerprint(events.iloc[1:])


def test_the_offline_check_says_when_it_covers_too_few_customers_to_mean_anything():
    bundle = train(checkerboard(), TrainParams(factors=2, iterations=5, threads=1), progress=False)
    check = bundle.manifest["offline_metrics"]
    assert check["customers"] < 200 and check["sufficient"] is False and check["minimum_customers"] == 200


def test_the_offline_check_covers_a_ratings_log_per_customer_and_leaves_seen_films_out(data_dir):
    from recommenders.loaders import load_movielens

    dataset = load_movielens(data_dir / "movielens-100k")
    check = train(dataset, TrainParams(factors=16, iterations=5, threads=1), progress=False).manifest["offline_metrics"]
    # the last 10% of ratings in time belong to few users, who rated in one sitting: a random 10% of each user's ratings is held out
    assert check["protocol"].startswith("per-customer random holdout")
    # half of the held-out customers: the other half chose the fit (recommenders/fitting.py)
    assert check["sufficient"] and check["customers"] >= 450
    # nobody rates a film twice: what they rated is left out, and the model beats popularity by far
    assert check["repeat_share"] == 0 and check["repurchase_policy"] == "exclude_always"
    assert check["hr@10"] > check["popularity_hr@10"] + 0.1
