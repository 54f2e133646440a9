"""The contract: generated modules match the .proto files; the service has its RPCs."""
import subprocess
import sys

from tests.conftest import ROOT


def test_generated_modules_are_fresh():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_staleness_is_detected(tmp_path, monkeypatch):
    import scripts.gen_proto as gen

    fake = tmp_path / "recsys" / "v1"
    fake.mkdir(parents=True)
    proto = (gen.PACKAGE_DIR / "recsys.proto").read_text()
    (fake / "recsys.proto").write_text(proto.replace("string request_id = 7;", "string request_id = 7;\n  string added = 99;"))
    for path in gen.PACKAGE_DIR.glob("*_pb2*.py*"):
        (fake / path.name).write_text(path.read_text())
    monkeypatch.setattr(gen, "PROTO_ROOT", tmp_path)
    monkeypatch.setattr(gen, "PACKAGE_DIR", fake)
    assert "recsys_pb2.py" in gen.stale_files()


def test_service_shape():
    from recsys.v1 import recsys_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Personalization"]
    assert {"Recommend", "SimilarItems", "TrackEvents"} <= {m.name for m in service.methods}
    fields = {f.name for f in pb.RecommendRequest.DESCRIPTOR.fields}
    assert {"customer_id", "channel", "store_id", "context", "k", "filters"} <= fields
    assert {"item_id", "score", "reasons"} <= {f.name for f in pb.ScoredItem.DESCRIPTOR.fields}
    assert "model_version" in {f.name for f in pb.RecommendResponse.DESCRIPTOR.fields}
