"""Unit tests never start Ray: any attempt fails the test."""
import pytest


@pytest.fixture(autouse=True)
def _forbid_ray(monkeypatch):
    import ray

    def refuse(*_args, **_kwargs):
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")

    monkeypatch.setattr(ray, "init", refuse)
