"""The Serve application builder's arguments (gateway/app.py) and the KubeRay manifest that passes
them (deploy/rayservice.yaml). No Ray: only the parsing half of build_app runs here; the half that
starts actors is behind ensure_backend."""
import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from engine.auth import generate_key, hash_key
from engine.errors import InvalidArgument
from gateway.app import BUILD_ARGS, build_app, parse_app_args

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "rayservice.yaml"
STORE = "postgresql://recsys:secret@db.internal:5432/recsys"


def _key_entry() -> str:
    return f'\n[[auth.keys]]\nname = "storefront"\nsha256 = "{hash_key(generate_key())}"\nscopes = ["recommend"]\n'


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "recsys.toml"
    path.write_text("snapshot_every_events = 500\n[auth]\nenabled = true\n" + _key_entry())
    return path


def test_args_become_a_serve_config(config_file, tmp_path):
    parsed = parse_app_args({"config": str(config_file), "model_dir": str(tmp_path / "models"),
                             "store_url_env": "RECSYS_STORE_URL", "min_owners": 3, "max_owners": 6,
                             "partitions": 32, "model": "v1"},
                            environ={"RECSYS_STORE_URL": STORE})
    config = parsed.config
    assert config.owners.min_owners == 3 and config.owners.max_owners == 6 and config.partitions == 32
    assert config.store_url == STORE and config.snapshot_every_events == 500
    assert config.model_dir == str((tmp_path / "models").resolve()) and parsed.model == "v1"
    assert config.auth.enabled and len(config.auth.keys) == 1


def test_serve_run_command_line_strings_are_accepted(tmp_path):
    # `serve run gateway.app:build_app min_owners=3 partitions=16 store_url=...` passes every value as a string
    parsed = parse_app_args({"min_owners": "3", "max_owners": "5", "partitions": "16",
                             "store_url": "sqlite:///var/x.db", "model_dir": "models",
                             "config": str(_no_auth(tmp_path))}, environ={})
    assert parsed.config.owners.min_owners == 3 and parsed.config.owners.max_owners == 5
    assert parsed.config.partitions == 16 and parsed.config.store_url.startswith("sqlite:////")
    assert Path(parsed.config.model_dir).is_absolute()


def _no_auth(tmp_path):
    path = tmp_path / "open.toml"
    path.write_text("[auth]\nenabled = false\n")
    return path


@pytest.mark.parametrize("args, environ, message", [
    ({"shards": 2}, {}, "unknown key.*shards.*accepted: config, model_dir"),
    ({"min_owners": "two"}, {}, "args.min_owners: must be a whole number"),
    ({"max_owners": True}, {}, "args.max_owners: must be a whole number"),
    ({"partitions": 2.5}, {}, "args.partitions: must be a whole number"),
    ({"partitions": 0}, {}, "partitions: must be between 1 and 65536"),
    ({"min_owners": 3, "max_owners": 2}, {}, "max_owners: must be between min_owners"),
    ({"model_dir": ""}, {}, "args.model_dir: must be a non-empty string"),
    ({"config": "/nowhere/recsys.toml"}, {}, "args.config: no such file"),
    ({"store_url": STORE, "store_url_env": "X"}, {"X": STORE}, "give one, not both"),
    ({"store_url_env": "RECSYS_STORE_URL"}, {}, "RECSYS_STORE_URL is not set"),
    ({"store_url_env": "RECSYS_STORE_URL"}, {"RECSYS_STORE_URL": "  "}, "is not set"),
    ({"store_url": "mysql://x"}, {}, "expected sqlite:///PATH or postgresql"),
])
def test_bad_args_are_refused_with_the_key_named(args, environ, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_app_args(args, environ=environ)


def test_a_store_password_is_not_echoed_in_errors():
    with pytest.raises(InvalidArgument) as raised:
        parse_app_args({"store_url": "mysql://user:hunter2@db/x"}, environ={})
    assert "hunter2" not in str(raised.value)


def test_config_file_mistakes_are_invalid_arguments(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("partitions = \n")
    with pytest.raises(InvalidArgument, match="args.config"):
        parse_app_args({"config": str(bad)}, environ={})
    bad.write_text('partitions = "four"\n')
    with pytest.raises(InvalidArgument, match="args.config"):
        parse_app_args({"config": str(bad)}, environ={})
    bad.write_text("[auth]\nenabled = true\n")
    with pytest.raises(InvalidArgument, match="auth: on with no keys"):
        parse_app_args({"config": str(bad)}, environ={})
    bad.write_text('tls_certfile = "c.pem"\ntls_keyfile = "k.pem"\n[auth]\nenabled = false\n')
    with pytest.raises(InvalidArgument, match="terminate TLS"):
        parse_app_args({"config": str(bad)}, environ={})


def test_build_app_has_the_shape_serve_requires():
    # Serve calls an application builder with exactly one argument, the args dict.
    assert list(inspect.signature(build_app).parameters) == ["args"]
    with pytest.raises(InvalidArgument, match="unknown key"):
        build_app({"replicas": 3})  # refused before any Ray call


# --- the manifest ------------------------------------------------------------------------------

def _documents():
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def _serve_config():
    return yaml.safe_load(_documents()["RayService"]["spec"]["serveConfigV2"])


def _containers():
    cluster = _documents()["RayService"]["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_manifest_args_are_exactly_what_build_app_accepts(tmp_path):
    docs = _documents()
    assert docs["RayService"]["apiVersion"] == "ray.io/v1"
    (app,) = _serve_config()["applications"]
    assert app["name"] == "recsys" and app["import_path"] == "gateway.app:build_app"
    module, _, attr = app["import_path"].partition(":")
    assert getattr(importlib.import_module(module), attr) is build_app
    assert set(app["args"]) <= set(BUILD_ARGS)

    # The config file the args name is the ConfigMap's, mounted where the args say.
    config_path = Path(app["args"]["config"])
    mounts = {m["name"]: m["mountPath"] for c in _containers() for m in c["volumeMounts"]}
    assert str(config_path.parent) == mounts["config"] and app["args"]["model_dir"] == mounts["models"]
    toml = docs["ConfigMap"]["data"][config_path.name]
    local = tmp_path / config_path.name
    local.write_text(toml)
    with pytest.raises(InvalidArgument, match="no keys"):  # as shipped: refuses until a key is pasted in
        parse_app_args({**app["args"], "config": str(local)}, environ={app["args"]["store_url_env"]: STORE})
    local.write_text(toml + _key_entry())
    parsed = parse_app_args({**app["args"], "config": str(local)}, environ={app["args"]["store_url_env"]: STORE})
    assert parsed.config.owners.min_owners == app["args"]["min_owners"] and parsed.config.store_url == STORE
    assert parsed.config.offers.catalog_path == "/app/config/offers.toml"


def test_manifest_store_url_comes_from_a_secret_in_every_container():
    name = _serve_config()["applications"][0]["args"]["store_url_env"]
    for container in _containers():
        (env,) = [e for e in container["env"] if e["name"] == name]
        assert "secretKeyRef" in env["valueFrom"]


def test_manifest_grpc_and_deployment_names_match_the_code():
    from gateway.ingress import Ingress
    from gateway.server import GRPC_SERVICERS

    serve_config = _serve_config()
    assert serve_config["grpc_options"]["grpc_servicer_functions"] == GRPC_SERVICERS
    assert serve_config["grpc_options"]["port"] == 9000
    deployments = serve_config["applications"][0]["deployments"]
    assert [d["name"] for d in deployments] == [Ingress.name]
    scaling = deployments[0]["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    ports = {p["port"] for p in _documents()["RayService"]["spec"]["serveService"]["spec"]["ports"]}
    assert ports == {serve_config["http_options"]["port"], serve_config["grpc_options"]["port"]}
