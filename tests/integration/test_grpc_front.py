"""The gRPC port as `recsys serve` runs it (gateway/grpc_front.py): bound to the configured host
only; Health's Check, Watch and List; garbage and unknown methods answered cleanly, without
internals; streams that clients drop release their work at once."""
import socket
import threading
import time

import grpc
import psutil
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc

from actors.names import NAMESPACE
from recsys.v1 import recsys_pb2 as pb
from tests.integration.conftest import KEYS, authed_stub
from tests.integration.leaks import assert_no_internals

SERVING = health_pb2.HealthCheckResponse.SERVING
AUTH = (("authorization", f"Bearer {KEYS['admin']}"),)


def _listening(port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if len(address) == 8:
                    found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))
                    text = socket.inet_ntop(socket.AF_INET6, raw)
                    # an IPv4 address on a dual-stack socket reads as ::ffff:a.b.c.d
                    found.append(text.removeprefix("::ffff:") if "." in text else text)
    return found


def _non_loopback_addresses() -> list[tuple[int, str]]:
    out = []
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                out.append((socket.AF_INET, a.address))
            elif a.family == socket.AF_INET6 and a.address != "::1" and not a.address.lower().startswith("fe80"):
                out.append((socket.AF_INET6, a.address.split("%")[0]))
    return out


def _refused(family: int, address: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sock.connect((address, port))
        except (ConnectionRefusedError, socket.timeout, OSError):
            return True
        return False


def test_grpc_and_http_listen_on_the_configured_host_only(service, channel):
    assert service.config.http_host == "127.0.0.1"
    for port in (service.config.grpc_port, service.config.http_port):
        # the kernel's own table: one listener, on loopback (not 0.0.0.0, not ::)
        assert _listening(port) == ["127.0.0.1"], (port, _listening(port))
        others = _non_loopback_addresses()
        for family, address in others:
            assert _refused(family, address, port), f"port {port} answers on {address}"
    # and it does answer where it should
    assert not _refused(socket.AF_INET, "127.0.0.1", service.config.grpc_port)


def test_health_check_list_and_watch(channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == SERVING
    listed = health.List(health_pb2.HealthListRequest())
    assert {name: s.status for name, s in listed.statuses.items()} == {"": SERVING, "recsys.v1.Personalization": SERVING}
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service" + "x" * 500))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and len(info.value.details()) < 200
    # Watch: the status now, then the stream stays open (no change) until the client's deadline
    for service_name in ("", "recsys.v1.Personalization"):
        watch = health.Watch(health_pb2.HealthCheckRequest(service=service_name), timeout=3)
        assert next(watch).status == SERVING
        with pytest.raises(grpc.RpcError) as info:
            next(watch)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # an unknown service: SERVICE_UNKNOWN, and the call is not ended (the health protocol)
    watch = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=2)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    with pytest.raises(grpc.RpcError) as info:
        next(watch)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


CORRUPT = [b"\xff\xff\xff", b"\x28" + b"\x80" * 11]  # no message at all: a bad tag, a varint too long
BAD_UTF8 = b"\x0a\x03\xff\xfe\xfd"  # field 1 as a string that is not UTF-8 (field 1 is a string here)


@pytest.mark.parametrize("method,streaming,payload", [
    *[(m, s, p) for m, s in [("/grpc.health.v1.Health/Check", False), ("/grpc.health.v1.Health/List", False),
                             ("/grpc.health.v1.Health/Watch", True),
                             ("/recsys.v1.Personalization/SubscribeActions", True),
                             ("/recsys.v1.Personalization/Recommend", False)] for p in CORRUPT],
    ("/grpc.health.v1.Health/Check", False, BAD_UTF8), ("/grpc.health.v1.Health/Watch", True, BAD_UTF8),
    ("/recsys.v1.Personalization/Recommend", False, BAD_UTF8),
])
def test_garbage_is_invalid_argument_with_a_short_message(channel, method, streaming, payload):
    if streaming:
        call = channel.unary_stream(method)
        with pytest.raises(grpc.RpcError) as info:
            list(call(payload, metadata=AUTH, timeout=10))
    else:
        call = channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as info:
            call(payload, metadata=AUTH, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (info.value.code(), info.value.details())
    details = info.value.details()
    assert details.startswith("malformed ") and len(details) < 300
    assert_no_internals(details)


@pytest.mark.parametrize("method", ["/recsys.v1.Personalization/Nope", "/grpc.health.v1.Health/Nope",
                                    "/no.Such/Method"])
def test_unknown_method_is_unimplemented(channel, method):
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(method)(b"", metadata=AUTH, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_no_internals(info.value.details() or "")


def _ingress():
    from ray import serve

    from gateway.server import APP_NAME

    return serve.get_app_handle(APP_NAME)


def _stats() -> dict:
    return _ingress().feed_stats.remote().result(timeout_s=30)


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.2)
    return time.monotonic() - started


STREAMS, WATCHES = 300, 100
RELEASE_BOUND_S = 5.0
IDLE_CPU_CORES = 0.05


def test_dropped_streams_release_their_work(service, channel):
    """Hundreds of SubscribeActions and Health/Watch streams opened, then dropped (half cancelled by
    the client, half by closing their connection): the replica's streams are gone within a bound,
    and the owner and the ingress go back to idle."""
    baseline = _stats()
    from tests.integration.conftest import owners

    shard_pid = ray.get(owners()[0].stats.remote())["pid"]
    ingress_pid = baseline["pid"]
    other = grpc.insecure_channel(service.grpc_target)
    calls = []
    for n in range(STREAMS):
        target = channel if n % 2 else other
        calls.append(authed_stub(target, KEYS["admin"]).SubscribeActions(
            pb.SubscribeActionsRequest(after_seq=2**40), timeout=120))
    for n in range(WATCHES):
        target = channel if n % 2 else other
        calls.append(health_pb2_grpc.HealthStub(target).Watch(health_pb2.HealthCheckRequest(), timeout=120))
    # the watches start by sending the status; read it in the background so they are truly open
    for call in calls[STREAMS:]:
        threading.Thread(target=lambda c=call: next(c, None), daemon=True).start()
    _wait_for(lambda: (s := _stats())["action_streams"] >= STREAMS + baseline["action_streams"]
              and s["health_watchers"] >= WATCHES + baseline["health_watchers"], 60)

    # while they are open (and no action comes: they asked for seqs past any there is), one outbox
    # read a tick serves all of them, not one per stream
    before, t0 = _stats(), time.monotonic()
    time.sleep(2.0)
    after, elapsed = _stats(), time.monotonic() - t0
    from gateway.ingress import ACTIONS_POLL_S, HEALTH_WATCH_S

    assert after["outbox_reads"] - before["outbox_reads"] <= elapsed / ACTIONS_POLL_S + 2, (before, after)
    assert after["health_reads"] - before["health_reads"] <= elapsed / HEALTH_WATCH_S + 2

    for n, call in enumerate(calls):
        if (n % 2) if n < STREAMS else (n - STREAMS) % 2:
            call.cancel()
    other.close()  # the other half: the client's connection goes away under them
    released = _wait_for(lambda: (s := _stats())["action_streams"] == baseline["action_streams"]
                         and s["health_watchers"] == baseline["health_watchers"], RELEASE_BOUND_S)

    # idle: no more polls, and neither process spends CPU on them
    time.sleep(0.5)
    quiet, cpu = _stats(), {pid: _cpu_seconds(pid) for pid in (shard_pid, ingress_pid)}
    time.sleep(3.0)
    later = _stats()
    used = {pid: (_cpu_seconds(pid) - cpu[pid]) / 3.0 for pid in cpu}
    if baseline["action_streams"] == 0:
        assert later["outbox_reads"] == quiet["outbox_reads"]
    if baseline["health_watchers"] == 0:
        assert later["health_reads"] == quiet["health_reads"]
    assert used[shard_pid] < IDLE_CPU_CORES and used[ingress_pid] < IDLE_CPU_CORES, used
    print(f"{STREAMS} streams + {WATCHES} watches dropped: released in {released:.2f} s; "
          f"idle CPU owner {used[shard_pid]:.3f}, ingress {used[ingress_pid]:.3f} cores")


FRONT_RECOVERY_BOUND_S = 30.0


def test_a_front_whose_process_dies_listens_again(service, stub):
    """Ray restarts the front actor; it binds the port again by itself, with no one calling start()."""
    import os
    import signal

    from gateway.server import GRPC_FRONT_NAME

    front = ray.get_actor(GRPC_FRONT_NAME, namespace=NAMESPACE)
    pid = ray.get(front.pid.remote())
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while True:
        try:
            assert stub.Recommend(pb.RecommendRequest(customer_id="c0", k=3), timeout=5).items
            break
        except grpc.RpcError:
            assert time.monotonic() - killed_at < FRONT_RECOVERY_BOUND_S, "the gRPC port did not come back"
            time.sleep(0.2)
    assert ray.get(front.pid.remote()) != pid
    assert _listening(service.config.grpc_port) == ["127.0.0.1"]
    print(f"gRPC front killed: answers again after {time.monotonic() - killed_at:.2f} s")
