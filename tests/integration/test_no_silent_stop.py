"""A partition never silently stops taking writes: callers that give up (a 3 ms gRPC deadline), by
the hundred, leave it ingesting, deciding offers and reporting healthy."""
import time
import uuid

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.sharding import partition_for
from recsys.v1 import recsys_pb2 as pb

# how long the shard may take to answer normally again after the abandoned calls
BACK_WITHIN_S = 10.0


def customer_on(shard: int, num_shards: int) -> str:
    while True:
        candidate = f"g-{uuid.uuid4().hex[:8]}"
        if partition_for(candidate, num_shards) == shard:
            return candidate


def test_callers_that_give_up_leave_the_shard_taking_writes(stub, channel, service):
    customer = customer_on(0, service.config.partitions)
    codes = {}
    for n in range(200):
        event = pb.Event(event_id=f"{customer}-{n}", customer_id=customer, event_type="add_to_cart",
                         item_id=f"i{n % 60:04d}", channel="web")
        try:
            stub.TrackEvents(pb.TrackEventsRequest(events=[event]), timeout=0.003)
            codes["OK"] = codes.get("OK", 0) + 1
        except grpc.RpcError as error:
            codes[error.code().name] = codes.get(error.code().name, 0) + 1
    assert codes.get("DEADLINE_EXCEEDED", 0) > 0, codes
    started = time.monotonic()
    last = pb.Event(event_id=f"{customer}-last", customer_id=customer, event_type="view", item_id="i0001",
                    channel="web")
    while True:
        try:
            reply = stub.TrackEvents(pb.TrackEventsRequest(events=[last]), timeout=5)
            break
        except grpc.RpcError as error:
            assert time.monotonic() - started < BACK_WITHIN_S, f"shard still refusing writes: {error.details()}"
            time.sleep(0.2)
    assert reply.accepted + reply.duplicates == 1
    offer = stub.NextBestOffer(pb.NextBestOfferRequest(customer_id=customer, channel="web"), timeout=5)
    assert offer.decision_id
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # what was committed for the callers who left is applied once: memory agrees with the log
    held = orjson.loads(stub.ExportCustomer(pb.ExportCustomerRequest(customer_id=customer)).export_json)
    stored = [e for e in held["events"] if not e["event_type"].startswith("offer_")]
    assert held["state"]["event_count"] == len(held["events"])
    assert len(stored) >= 1
    print(f"\n200 calls with a 3 ms deadline: {codes}; next write acknowledged "
          f"{time.monotonic() - started:.2f} s later")
