"""Shared fixtures: where the real data sets are, and small trained models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RECSYS_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def synthetic_dataset():
    from recommenders.loaders import synthetic_retail

    return synthetic_retail(n_customers=300, n_items=60, n_groups=3, seed=3)


@pytest.fixture(scope="session")
def synthetic_bundle(synthetic_dataset):
    from recommenders.training import TrainParams, train

    params = TrainParams(factors=8, iterations=12, covis_neighbours=20, threads=1)
    return train(synthetic_dataset, params, progress=False)


@pytest.fixture(scope="session")
def synthetic_model(synthetic_bundle):
    from recommenders.runtime import ModelRuntime

    return ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL server (binaries from the pgserver wheel), for the session."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    uri = server.get_uri()
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE DATABASE recsys_test")
    yield uri.replace("/postgres?", "/recsys_test?")
    server.cleanup()
