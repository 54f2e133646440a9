"""What an answer to a client must never show: tracebacks, processes, addresses, Ray internals."""
import re

INTERNALS = re.compile(
    r"Traceback|File \"|\.py\b|ray::|\bray\.|ServeReplica|Actor(?:Id|ID|Died|Error|Unavailable)|actor_id|"
    r"node_id|\bpid\b|\b\d{1,3}(?:\.\d{1,3}){3}\b|0x[0-9a-fA-F]{6,}|\.remote\(|RayTaskError|grpc_context")


def assert_no_internals(text: str) -> None:
    found = INTERNALS.search(text or "")
    assert found is None, f"internals leaked ({found.group(0)!r}): {text[:500]!r}"
