"""`recsys batch-recommend` against the real service: the owners rank a campaign's customers as they
rank them online (live state, consent), on Ray tasks, to CSV or Parquet (issue 20, item 5)."""
import csv
import uuid

import pyarrow.parquet as pq
import pytest

from engine.decisioning import SEGMENTS
from recsys.client import Client, Event
from scripts.cli import main
from tests.integration.conftest import KEYS


@pytest.fixture(scope="module")
def client(service):
    with Client(service.grpc_target, api_key=KEYS["admin"], timeout=10) as c:
        yield c


def rows_of(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def by_customer(rows):
    out = {}
    for row in rows:
        out.setdefault(row["customer_id"], []).append(row)
    return out


def test_a_campaign_list_is_ranked_as_online_with_live_state_and_consent(tmp_path, client, service):
    live = f"bt-{uuid.uuid4().hex[:8]}"      # a new customer with a live session only
    private = f"bt-{uuid.uuid4().hex[:8]}"   # withdrew personalisation, allows marketing
    client.track([Event(uuid.uuid4().hex, live, "view", item_id=f"i{n:04d}", channel="web") for n in (3, 4, 5)])
    client.track([Event(uuid.uuid4().hex, private, "consent", channel="app",
                        attributes={"personalization": "denied", "marketing": "granted"}),
                  Event(uuid.uuid4().hex, private, "view", item_id="i0007", channel="app")])
    trained = ["c1", "c2", "c17"]
    listing = tmp_path / "customers.txt"
    listing.write_text("\n".join(trained + [live, private, "c1", ""]) + "\n")  # a repeat and a blank line
    out = tmp_path / "campaign.csv"
    assert main(["batch-recommend", "--customers", str(listing), "--output", str(out), "--k", "5",
                 "--channel", "email", "--workers", "2", "--chunk", "2", "--quiet"]) == 0
    got = by_customer(rows_of(out))
    assert set(got) == set(trained + [live, private])
    for customer in trained + [live, private]:
        online = client.recommend(customer, k=5, channel="email")
        rows = got[customer]
        assert [r["item_id"] for r in rows] == [i.item_id for i in online.items], customer
        assert [int(r["rank"]) for r in rows] == list(range(1, 6)) and not any(r["error"] for r in rows)
        assert {r["model_version"] for r in rows} == {online.model_version}
        assert {r["personalized"] for r in rows} == {str(online.personalized)}
        assert {(r["strategy"], r["experiment_id"], r["arm"]) for r in rows} == {
            (online.strategy, online.experiment_id, online.arm)}
    # the live session counts (its items are left out, as online), consent is the customer's own
    assert {r["item_id"] for r in got[live]}.isdisjoint({"i0003", "i0004", "i0005"})
    assert got[private][0]["personalized"] == "False" and got[private][0]["marketing_consent"] == "True"
    assert got["c1"][0]["marketing_consent"] == "False"  # never said: the default (opt-in) is no
    # a campaign that needs marketing consent keeps only those who gave it
    consented = tmp_path / "consented.parquet"
    assert main(["batch-recommend", "--customers", str(listing), "--output", str(consented), "--k", "5",
                 "--consented-only", "--quiet"]) == 0
    table = pq.read_table(consented).to_pylist()
    assert {r["customer_id"] for r in table} == {private}
    assert [r["item_id"] for r in table] == [r["item_id"] for r in got[private]]


def test_a_segment_is_every_known_customer_in_it_and_no_erased_one(tmp_path, client, service):
    gone = f"bt-{uuid.uuid4().hex[:8]}"
    client.track([Event(uuid.uuid4().hex, gone, "purchase", item_id="i0001", channel="pos", price=3.0)])
    everyone = tmp_path / "all.csv"
    assert main(["batch-recommend", "--segment", "all", "--output", str(everyone), "--k", "2", "--quiet"]) == 0
    known = set(by_customer(rows_of(everyone)))
    # the model's 300 trained customers (less any another test erased) and the live ones
    assert gone in known and len(known & {f"c{n}" for n in range(300)}) >= 280
    parts = set()
    for segment in sorted(SEGMENTS):
        out = tmp_path / f"{segment}.csv"
        assert main(["batch-recommend", "--segment", segment, "--output", str(out), "--k", "1", "--quiet"]) == 0
        members = set(by_customer(rows_of(out)))
        assert not members & parts, segment  # a customer is in one segment
        parts |= members
    assert parts == known
    client.forget(gone)
    again = tmp_path / "again.csv"
    assert main(["batch-recommend", "--segment", "all", "--output", str(again), "--k", "1", "--quiet"]) == 0
    assert gone not in set(by_customer(rows_of(again)))


def test_bad_arguments_are_refused_with_a_message(tmp_path, capsys, service):
    out = str(tmp_path / "x.csv")
    assert main(["batch-recommend", "--segment", "whales", "--output", out]) == 2
    assert "--segment: one of" in capsys.readouterr().err
    assert main(["batch-recommend", "--segment", "all", "--output", str(tmp_path / "x.xlsx")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
    assert main(["batch-recommend", "--output", out]) == 2
    assert main(["batch-recommend", "--segment", "all", "--channel", "fax", "--output", out]) == 2
