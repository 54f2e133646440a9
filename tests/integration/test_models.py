"""Promote a new model into the running service under load; refuse broken ones; roll back."""
import os
import shutil
import signal
import threading
import time

import grpc
import numpy as np
import pytest
import ray

from actors.names import find_registry
from engine.errors import InvalidArgument
from recommenders.bundle import save_bundle
from recommenders.loaders import synthetic_retail
from recommenders.training import TrainParams, train
from recsys.v1 import recsys_pb2 as pb

RATE_PER_S = 40
P99_BOUND_S = 1.0


class ConstantLoad(threading.Thread):
    """Open-loop: requests start on a fixed schedule, whatever the previous ones did."""

    def __init__(self, stub):
        super().__init__(daemon=True)
        self.stub, self.stop, self.results = stub, threading.Event(), []

    def run(self):
        interval, n = 1.0 / RATE_PER_S, 0
        start = time.perf_counter()
        while not self.stop.is_set():
            due = start + n * interval
            time.sleep(max(0.0, due - time.perf_counter()))
            customer = "c0" if n % 2 == 0 else f"c{n % 50}"
            try:
                reply = self.stub.Recommend(pb.RecommendRequest(customer_id=customer, k=5), timeout=10)
                self.results.append((customer, reply.model_version, time.perf_counter() - due, None))
            except grpc.RpcError as error:
                self.results.append((customer, None, time.perf_counter() - due, error.code()))
            n += 1


@pytest.fixture(scope="module")
def second_bundle(service, synthetic_dataset):
    # the same shop retrained (another ALS seed): a new version that is as good offline
    bundle = train(synthetic_dataset, TrainParams(factors=8, iterations=12, covis_neighbours=20, threads=1, seed=7),
                   progress=False)
    save_bundle(bundle, service.config.model_dir, make_current=False)
    return bundle


def test_promotion_under_load_and_rollback(stub, service, synthetic_bundle, second_bundle):
    registry = find_registry()
    assert ray.get(registry.serving_version.remote()) == synthetic_bundle.version
    load = ConstantLoad(stub)
    load.start()
    time.sleep(2)
    result = ray.get(registry.promote.remote(second_bundle.version))
    time.sleep(2)
    load.stop.set()
    load.join()
    assert result["version"] == second_bundle.version
    errors = [r for r in load.results if r[3] is not None]
    assert not errors, errors[:3]
    versions_c0 = [v for c, v, _, _ in load.results if c == "c0"]
    switch = versions_c0.index(second_bundle.version)
    assert set(versions_c0[:switch]) == {synthetic_bundle.version}
    assert set(versions_c0[switch:]) == {second_bundle.version}, "a customer went back to the old model"
    latencies = sorted(r[2] for r in load.results)
    assert latencies[int(0.99 * (len(latencies) - 1))] < P99_BOUND_S
    print(f"promotion in {result['seconds']} s under {RATE_PER_S} req/s: {len(load.results)} requests, 0 failed, "
          f"p99 {1000 * latencies[int(0.99 * (len(latencies) - 1))]:.1f} ms")

    # an owner killed after the promotion is replaced by one that serves the promoted model, and
    # its customers come back with it
    from tests.integration.conftest import owner_of, owners

    victim = owner_of("c0")
    os.kill(ray.get(victim.stats.remote())["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            answered = stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3), timeout=15).model_version
            running = owners()
            if answered == second_bundle.version and len(running) == 2 and \
                    set(ray.get([o.model_version.remote() for o in running], timeout=10)) == {second_bundle.version}:
                break
        except (grpc.RpcError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ValueError):
            pass
        time.sleep(0.5)
    else:
        pytest.fail("the killed owner was not replaced by one serving the promoted model")

    back = ray.get(registry.rollback.remote())
    assert back["version"] == synthetic_bundle.version
    assert stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3)).model_version == synthetic_bundle.version


def test_broken_bundles_are_refused_and_serving_goes_on(stub, http, service, synthetic_bundle, second_bundle, tmp_path):
    registry = find_registry()
    serving = ray.get(registry.serving_version.remote())
    model_dir = service.config.model_dir

    corrupt = f"{second_bundle.version}-corrupt"
    shutil.copytree(os.path.join(model_dir, second_bundle.version), os.path.join(model_dir, corrupt))
    with open(os.path.join(model_dir, corrupt, "arrays.npz"), "r+b") as handle:
        handle.seek(2000)
        handle.write(b"\x00" * 64)
    with pytest.raises(InvalidArgument, match="checksum"):
        ray.get(registry.promote.remote(corrupt))

    mismatched = dict(second_bundle.arrays)
    mismatched["user_factors"] = np.zeros((len(mismatched["user_ids"]), 3), dtype=np.float32)
    from recommenders.bundle import ModelBundle
    bad = ModelBundle({**second_bundle.manifest, "version": "mismatched-dims"}, mismatched)
    save_bundle(bad, model_dir, make_current=False)
    with pytest.raises(InvalidArgument, match="dimension"):
        ray.get(registry.promote.remote("mismatched-dims"))

    unchecked = train(synthetic_retail(n_customers=100, n_items=60, n_groups=3, seed=5),
                      TrainParams(factors=4, iterations=2, evaluate=False, threads=1), progress=False)
    save_bundle(unchecked, model_dir, make_current=False)
    with pytest.raises(InvalidArgument, match="--force"):
        ray.get(registry.promote.remote(unchecked.version))
    with pytest.raises(InvalidArgument, match="no model"):
        ray.get(registry.promote.remote("no-such-version"))

    assert ray.get(registry.serving_version.remote()) == serving
    assert stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3)).model_version == serving
    forced = ray.get(registry.promote.remote(unchecked.version, True))
    assert forced["version"] == unchecked.version
    assert stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3)).model_version == unchecked.version
    ray.get(registry.rollback.remote())
    assert stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3)).model_version == serving

    # the refusals and the changes are counted, in the service's one scrape (deploy/prometheus/alerts.yml)
    from prometheus_client.parser import text_string_to_metric_families

    scrape = http.get("/metrics").text
    changes = {(s.labels["action"], s.labels["result"]): s.value for f in text_string_to_metric_families(scrape)
               for s in f.samples if s.name == "recsys_model_changes_total"}
    assert changes[("promote", "refused")] >= 4 and changes[("promote", "ok")] >= 1
    assert changes[("rollback", "ok")] >= 1
    assert "recsys_partitions 16.0" in scrape


def test_an_erased_customer_stays_erased_through_promotion_and_rollback(stub, service, synthetic_bundle,
                                                                        second_bundle):
    """c13 is in both bundles' training data; after ForgetCustomer no bundle may answer for them."""
    customer = "c13"
    registry = find_registry()
    assert stub.Recommend(pb.RecommendRequest(customer_id=customer, k=3)).personalized
    stub.ForgetCustomer(pb.ForgetCustomerRequest(customer_id=customer))

    def erased():
        reply = stub.Recommend(pb.RecommendRequest(customer_id=customer, k=3))
        offer = stub.NextBestOffer(pb.NextBestOfferRequest(customer_id=customer, channel="web"))
        return not reply.personalized and list(reply.reasons) == ["unknown_customer"] and offer.segment == "new"
    assert erased()
    promoted = ray.get(registry.promote.remote(second_bundle.version, True))
    assert promoted["version"] == second_bundle.version
    assert erased(), "the promoted bundle brought the customer back"
    back = ray.get(registry.rollback.remote())
    assert back["version"] == synthetic_bundle.version
    assert erased(), "rolling back brought the customer back"
