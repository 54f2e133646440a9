"""`recsys export-events`: stored events out in the generic format, forgotten customers left out,
and the file trains."""
from actors.store import SqliteEventStore
from engine.events import parse_event
from recommenders.loaders import load_events_csv
from scripts.cli import main

NOW = 1_800_000_000_000


def test_export_leaves_out_forgotten_and_round_trips(tmp_path):
    store = SqliteEventStore(tmp_path / "s.db")
    events = [parse_event({"event_id": f"e{n}", "customer_id": f"c{n % 3}", "event_type": "purchase",
                           "item_id": f"i{n % 4}", "channel": "pos", "price": 1.5, "quantity": 2,
                           "timestamp_ms": NOW - n}, NOW) for n in range(12)]
    store.append(0, events)
    store.forget_customer("c1")
    store.close()
    out = tmp_path / "events.csv"
    assert main(["export-events", "--store", f"sqlite:///{tmp_path}/s.db", "--output", str(out)]) == 0
    loaded = load_events_csv(out)
    assert set(loaded.events["customer_id"]) == {"c0", "c2"}
    assert len(loaded.events) == 8
    row = loaded.events.iloc[0]
    assert row["channel"] == "pos" and row["quantity"] == 2.0 and row["price"] == 1.5
    assert main(["train", "--data", str(out), "--format", "events", "--model-dir", str(tmp_path / "m"),
                 "--no-eval", "--quiet", "--factors", "2", "--iterations", "2"]) == 0
