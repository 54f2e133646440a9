"""The placement actor crashes and Ray restarts it: it rebuilds who owns what from the store's
leases and the named owners (Placement._adopt), keeps every partition where it was, and the
service goes on answering; the routes it hands out are newer than any handed out before."""
import time

import ray

from recsys.v1 import recsys_pb2 as pb


def test_a_restarted_placement_adopts_the_running_owners(stub, service):
    from actors.names import find_placement

    placement = find_placement()
    version_before, routes_before = ray.get(placement.routes.remote())
    owners_before = ray.get(placement.owner_names.remote())
    ray.kill(placement, no_restart=False)
    # the kill is asynchronous: wait for the restarted instance (it says it adopted the owners)
    deadline = time.monotonic() + 60
    while True:
        try:
            status = ray.get(find_placement().status.remote(), timeout=10)
            if any(h["event"] == "adopted" for h in status["history"]):
                version_after, routes_after = ray.get(find_placement().routes.remote(), timeout=10)
                break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ValueError):
            pass
        assert time.monotonic() < deadline, "the placement did not come back"
        time.sleep(0.2)
    assert routes_after == routes_before, "a partition changed owner across the restart"
    assert version_after > version_before, "routes after the restart must be newer than any before"
    assert ray.get(find_placement().owner_names.remote()) == owners_before
    # and requests still reach their owners, writes included
    reply = stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(
        event_id="after-placement-restart", customer_id="c42", event_type="view", item_id="i0001",
        channel="web")]), timeout=30)
    assert reply.accepted + reply.duplicates == 1
    assert stub.Recommend(pb.RecommendRequest(customer_id="c42", k=3), timeout=30).items
