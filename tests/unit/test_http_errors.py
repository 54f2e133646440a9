"""Every HTTP error of the app is in the documented shape, Starlette's own and unexpected ones too."""
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway import http_errors


@pytest.fixture
def client():
    app = FastAPI()
    http_errors.install(app)

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("pid 4242 at 10.1.2.3 in CustomerShard.export")

    return TestClient(app, raise_server_exceptions=False)


def _error(response):
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


def test_unknown_route_and_method(client):
    response = client.get("/nothing/here")
    assert response.status_code == 404 and _error(response)["code"] == "not_found"
    response = client.post("/items/3")
    assert response.status_code == 405 and _error(response)["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET"


def test_a_parameter_that_does_not_validate_is_a_400(client):
    response = client.get("/items/three")
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_argument" and "item_id" in error["message"]


def test_an_unexpected_exception_is_a_json_500_without_internals(client):
    response = client.get("/boom", headers={"x-request-id": "req-77"})
    assert response.status_code == 500
    error = _error(response)
    assert error == {"code": "internal", "message": "internal error; request id req-77"}
    for leak in ("4242", "10.1.2.3", "CustomerShard", "RuntimeError", "Traceback"):
        assert leak not in response.text
