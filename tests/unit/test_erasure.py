"""Erasure is complete and final, for a customer the model was trained on (c7 of the synthetic
shop bought in every basket of its training data)."""
import sqlite3

import pytest

from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.config import RankingConfig
from engine.errors import NotFound
from engine.events import parse_event
from engine.queries import RecommendQuery
from engine.state import segment
from recommenders.runtime import ModelRuntime

NOW = 1_800_000_000_000
TRAINED = "c7"
MARKER = "erase-me-4f1c2a"


def event(n, customer, kind="view", item="i0001"):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": "web", "timestamp_ms": NOW - 1000,
                        "session_id": f"{MARKER}-{n}" if customer == TRAINED else f"kept-{n}"}, NOW)


@pytest.fixture
def fresh_model(synthetic_bundle):
    """A model of its own per test: an erasure unmaps rows in the process's model."""
    return lambda: ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest)


@pytest.fixture
def make_shard(tmp_path, fresh_model):
    def make(snapshot_every=10_000):
        logic = CustomerShardLogic(0, fresh_model(), RankingConfig(), SqliteEventStore(tmp_path / "store.db"),
                                   snapshot_every)
        logic.recover()
        return logic
    return make


def answer(logic, customer=TRAINED):
    return logic.recommend(RecommendQuery(customer_id=customer, channel="web", k=10), NOW)


def test_the_trained_customer_is_personalised_before(make_shard):
    logic = make_shard()
    result = answer(logic)
    assert result.personalized
    assert logic.model.customer_summary(TRAINED) is not None
    exported = logic.export(TRAINED, principal="admin")
    assert exported["state"] is None and exported["events"] == []
    assert exported["model"]["history"] and len(exported["model"]["factors"]) == logic.model.dim
    # their training baskets, as the similar-sessions source holds them
    bought = {h["item_id"] for h in exported["model"]["history"]}
    assert exported["model"]["sessions"] and all(set(s) <= bought for s in exported["model"]["sessions"])
    assert segment(None, NOW, logic.model.customer_summary(TRAINED)) != "new"


def test_forget_reaches_the_model_bundle_and_stays_after_a_restart(make_shard):
    logic = make_shard()
    row = logic.model.user_index[TRAINED]
    sessions = logic.model.sess_user == row
    assert sessions.any()  # the customer's training baskets are similar-sessions neighbours
    logic.track([event(1, TRAINED, "add_to_cart", "i0002")])
    logic.forget(TRAINED, principal="admin")
    for shard in (logic, make_shard()):  # the same process, and a restarted shard with its model reloaded
        result = answer(shard)
        assert not result.personalized and result.reasons == ("unknown_customer",)
        assert not shard.model.session_alive[sessions].any() and shard.model.session_alive[~sessions].all()
        assert shard.model.customer_summary(TRAINED) is None
        assert shard.model.purchased_item_ids(TRAINED) == frozenset()
        with pytest.raises(NotFound):
            shard.export(TRAINED, principal="admin")


def test_a_crash_right_after_the_erasure_commit_cannot_bring_the_customer_back(make_shard):
    logic = make_shard(snapshot_every=1)
    logic.track([event(n, TRAINED, "add_to_cart", f"i{n:04d}") for n in range(3)])
    logic.track([event(9, "other", "view", "i0009")])
    assert logic.store.latest_snapshot(0) is not None  # a snapshot holding the customer
    # the erasure's one transaction commits; then the process dies before anything else
    logic.erase_stored(TRAINED, principal="admin")
    restarted = make_shard()
    assert TRAINED not in restarted.customers and "other" in restarted.customers
    assert not answer(restarted).personalized


def test_a_new_record_after_the_erasure_is_kept_but_the_old_one_is_not(make_shard):
    logic = make_shard(snapshot_every=1)
    logic.track([event(1, TRAINED, "add_to_cart", "i0003")])
    logic.forget(TRAINED, principal="admin")
    logic.track([event(2, TRAINED, "view", "i0004")])
    restarted = make_shard()
    state = restarted.customers[TRAINED]
    assert state.event_count == 1 and not state.cart
    assert restarted.model.customer_summary(TRAINED) is None


def test_erased_payloads_are_not_left_readable_in_the_database_files(tmp_path, make_shard):
    logic = make_shard(snapshot_every=10_000)
    logic.track([event(n, TRAINED) for n in range(200)])
    logic.track([event(n, "stays") for n in range(5)])
    # part of it checkpointed into the main file, part still in the WAL
    sqlite3.connect(tmp_path / "store.db").execute("PRAGMA wal_checkpoint(FULL)").fetchall()
    logic.track([event(n, TRAINED) for n in range(200, 260)])
    logic.forget(TRAINED, principal="admin")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert b"kept-4" in raw  # the files are plain enough to find a payload in
    assert MARKER.encode() not in raw


def test_training_leaves_erased_customers_out(tmp_path, synthetic_dataset):
    from recommenders.loaders import write_events_csv
    from scripts.cli import main

    store = SqliteEventStore(tmp_path / "recsys.db")
    store.forget_customer(TRAINED, principal="admin")
    store.close()
    csv = tmp_path / "events.csv"
    write_events_csv(synthetic_dataset, csv)
    assert main(["train", "--data", str(csv), "--format", "events", "--model-dir", str(tmp_path / "models"),
                 "--store", f"sqlite:///{tmp_path / 'recsys.db'}", "--no-eval", "--quiet", "--factors", "8",
                 "--iterations", "2"]) == 0
    from recommenders.bundle import load_bundle, resolve_bundle_path

    bundle = load_bundle(resolve_bundle_path(tmp_path / "models", None))
    users = set(bundle.arrays["user_ids"].tolist())
    assert TRAINED not in users and "c8" in users


def test_a_model_prepared_before_an_erasure_does_not_bring_the_customer_back(make_shard, fresh_model):
    logic = make_shard()
    prepared = fresh_model()  # a promotion's model, built while the erasure was on its way
    assert prepared.customer_summary(TRAINED) is not None
    logic.forget(TRAINED, principal="admin")
    logic.switch_model(prepared)
    assert logic.model is prepared and not answer(logic).personalized
