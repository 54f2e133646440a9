"""Recommendations that prove their worth, over the real service (Ray, Serve, gRPC and HTTP): every
answer carries a recommendation id; impressions and clicks sent over HTTP are credited to the list,
shown in /metrics; an A/B test of the served blend against the popularity holdout (the shared
service's experiment, on its own placement) with simulated shoppers (`recsys experiments simulate`,
the real client over gRPC), read out by `recsys experiments report`."""
import subprocess
import sys
import uuid

import grpc
import orjson
import pytest

from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import EXPERIMENT_PLACEMENT, KEYS


def test_answers_carry_ids_and_impressions_and_clicks_are_credited(service, stub, http):
    customer = "c61"  # trained; its arm is fixed by the experiment's hash
    answer = stub.Recommend(pb.RecommendRequest(customer_id=customer, channel="web", k=5,
                                                placement=EXPERIMENT_PLACEMENT))
    assert answer.recommendation_id.startswith("r") and answer.experiment_id == "it-arms"
    assert answer.arm in ("control", "personal")
    assert answer.strategy == ("popularity" if answer.arm == "control" else "blend")
    again = http.post("/v1/recommend", json={"customer_id": customer, "k": 5, "placement": EXPERIMENT_PLACEMENT}).json()
    assert again["arm"] == answer.arm and again["recommendation_id"] != answer.recommendation_id
    plain = http.post("/v1/recommend", json={"customer_id": customer, "k": 5, "placement": "home"}).json()
    assert (plain["experiment_id"], plain["arm"], plain["strategy"]) == ("", "", "blend")
    similar = stub.SimilarItems(pb.SimilarItemsRequest(item_id="i0003", k=3, customer_id=customer))
    offer = stub.NextBestOffer(pb.NextBestOfferRequest(customer_id=customer, channel="web"))
    assert similar.recommendation_id and offer.recommendation_id == offer.decision_id

    items = [i.item_id for i in answer.items]
    events = [{"event_id": uuid.uuid4().hex, "customer_id": customer, "event_type": "impression", "item_id": item,
               "channel": "web", "attributes": {"recommendation_id": answer.recommendation_id}} for item in items]
    events.append({**events[1], "event_id": uuid.uuid4().hex, "event_type": "click"})
    assert http.post("/v1/events", json={"events": events}).json()["accepted"] == 6
    stored = orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=customer)).export_json)
    click = [e for e in stored["events"] if e["event_type"] == "click"][-1]
    assert click["attributes"]["attributed_to"] == answer.recommendation_id
    assert (click["attributes"]["rec_position"], click["attributes"]["rec_arm"]) == ("2", answer.arm)
    assert answer.recommendation_id in [r["recommendation_id"] for r in stored["state"]["recommendations"]]
    metrics = http.get("/metrics").text
    line = next(m for m in metrics.splitlines() if m.startswith("recsys_recommendation_outcomes_total{")
                and 'outcome="click"' in m and f'arm="it-arms/{answer.arm}"' in m)
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "recsys_recommendations_served_total{" in metrics

    # the credit is the engine's to write, the placement a name
    forged = [{**events[0], "event_id": uuid.uuid4().hex, "attributes": {"attributed_to": "r1"}}]
    bad = http.post("/v1/events", json={"events": forged})
    assert bad.status_code == 400 and "engine's own record" in bad.json()["error"]["message"]
    bad = http.post("/v1/recommend", json={"customer_id": customer, "placement": "Home Page!"})
    assert bad.status_code == 400 and "placement" in bad.json()["error"]["message"]
    with pytest.raises(grpc.RpcError) as caught:
        stub.Recommend(pb.RecommendRequest(customer_id=customer, placement="x" * 40))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_simulated_shoppers_find_the_better_arm(service, tmp_path):
    from recommenders.bundle import save_bundle

    save_bundle(service.bundle, tmp_path / "models")
    cli = [sys.executable, "-m", "scripts.cli", "experiments"]
    simulated = subprocess.run(
        [*cli, "simulate", "--target", service.grpc_target, "--key", KEYS["admin"], "--model-dir",
         str(tmp_path / "models"), "--customers", "200", "--rounds", "2", "--placement", EXPERIMENT_PLACEMENT,
         "--seed", "5"], capture_output=True, text=True, timeout=300)
    assert simulated.returncode == 0, simulated.stderr[-2000:]
    summary = orjson.loads(simulated.stdout.strip().splitlines()[-1])
    assert summary["lists"] == 400 and set(summary["lists_per_arm"]) == {"it-arms/control", "it-arms/personal"}
    read = subprocess.run([*cli, "report", "--store", service.config.store_url, "--of", "recommendations"],
                          capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-2000:]
    rows = {line.split()[1]: line for line in read.stdout.splitlines() if line.startswith("it-arms")}
    assert set(rows) == {"control", "personal"} and "(baseline)" in rows["control"] and "*" in rows["personal"]
    # what the table says, from the same stored log: personalisation's lift, its interval clear of 0
    from actors.store import open_store
    from engine.rec_report import report, significant

    store = open_store(service.config.store_url)
    try:
        arms = {r.key[1]: r for r in report(store.export_events()) if r.key[0] == "it-arms"}
    finally:
        store.close()
    assert arms["personal"].baseline == ("it-arms", "control")
    assert significant(arms["personal"].ctr_diff) and arms["personal"].ctr_diff.value > 0
