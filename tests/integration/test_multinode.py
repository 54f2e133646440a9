"""Multi-node: the service on a 3-node cluster answers over gRPC; remove the node that holds a
shard and it comes back elsewhere with its state (the store is a shared PostgreSQL server)."""
import json
import subprocess
import sys

from tests.conftest import ROOT


def test_shard_moves_to_another_node_with_its_state(postgres_url):
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "integration" / "multinode_scenario.py"),
                             postgres_url], capture_output=True, text=True, timeout=480, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert report["served_before"] == [5, 5, 5]
    assert len(report["shard_nodes_before"]) == 2, "the two shards should sit on two nodes (SPREAD)"
    assert report["seconds_to_answer"] is not None, "the API never answered after the node was removed"
    assert report["node_after"] != report["node_before"]
    assert report["recovery"]["customers"] >= report["customers"]
    assert report["state_equal"]
    assert report["seconds_to_answer"] < 120
    print(report)
