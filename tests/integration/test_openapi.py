"""The HTTP API's OpenAPI document, served by the running service (issue 21, item 2): every route is
in it, each request model has exactly the fields the engine's parser accepts (one validation path),
every example in it is accepted, and every answer fits its response model."""
import copy
import json
import uuid

import httpx
import pytest

from engine.catalog import UPDATE_FIELDS
from engine.events import EVENT_FIELDS
from engine.queries import (BASKET_LINE_FIELDS, CONTEXT_FIELDS, FILTER_FIELDS, OFFER_FIELDS, RECOMMEND_FIELDS,
                            SIMILAR_FIELDS)
from gateway import openapi
from gateway.ingress import app
from tests.integration.conftest import KEYS


@pytest.fixture(scope="module")
def document(service):
    reply = httpx.get(service.http + "/openapi.json", timeout=30)  # no key needed
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    return reply.json()


def test_every_route_of_the_service_is_in_the_document(document):
    assert document["openapi"] == "3.1.0"
    served = set()

    def walk(routes):  # Serve's ingress wraps the app's router in one of its own
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)
            for method in getattr(route, "methods", None) or ():
                # the console's pages are HTML for people (gateway/console.py), not the API
                if method not in ("HEAD", "OPTIONS") and not route.path.startswith("/console"):
                    served.add((route.path.replace("{customer_id:path}", "{customer_id}"), method.lower()))
    walk(app.routes)
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served and served == documented
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and "200" in op["responses"], (path, method)
    # every $ref resolves
    text = json.dumps(document)
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in document["components"]["schemas"], name


def test_each_request_model_has_the_fields_its_parser_accepts():
    pairs = [(openapi.RecommendRequest, RECOMMEND_FIELDS), (openapi.Context, CONTEXT_FIELDS),
             (openapi.Filters, FILTER_FIELDS), (openapi.SimilarItemsRequest, SIMILAR_FIELDS),
             (openapi.NextBestOfferRequest, OFFER_FIELDS), (openapi.BasketLine, BASKET_LINE_FIELDS),
             (openapi.Event, EVENT_FIELDS), (openapi.CatalogUpdate, UPDATE_FIELDS),
             (openapi.TrackEventsRequest, {"events", "request_id"}),
             (openapi.UpdateCatalogRequest, {"updates", "request_id"})]
    for model, accepted in pairs:
        assert set(model.model_fields) == set(accepted), model.__name__


def _with_customer(example, customer: str):
    """The example with its customer ids replaced by a fresh one (the test service is shared)."""
    text = json.dumps(example).replace('"c1"', json.dumps(customer))
    return json.loads(text.replace('"doc-e-1"', json.dumps(uuid.uuid4().hex)))


def test_every_example_is_accepted_and_every_answer_fits_its_model(document, service):
    customer = f"oa-{uuid.uuid4().hex[:8]}"
    headers = {"authorization": f"Bearer {KEYS['admin']}"}
    order = ["TrackEvents", "Recommend", "SimilarItems", "NextBestOffer", "UpdateCatalog", "ExportCustomer",
             "ForgetCustomer"]
    operations = {op["operationId"]: (path, method, op) for path, ops in document["paths"].items()
                  for method, op in ops.items()}
    assert set(order) == set(openapi.ROUTES)
    with httpx.Client(base_url=service.http, timeout=30, headers=headers) as http:
        for name in order:
            path, method, op = operations[name]
            body = None
            if "requestBody" in op:
                body = _with_customer(copy.deepcopy(op["requestBody"]["content"]["application/json"]["example"]),
                                      customer)
            url = path.replace("{customer_id}", customer)
            reply = http.request(method.upper(), url, json=body)
            assert reply.status_code == 200, (name, reply.text)
            model = openapi.ROUTES[name][1]
            if model is not None:
                model.model_validate(reply.json())  # the documented answer is the real one
        reply = http.get("/v1/actions", params={"limit": 5})
        assert reply.status_code == 200 and "actions" in reply.json()


def test_bad_input_keeps_the_engines_message_and_the_docs_page_serves(service):
    headers = {"authorization": f"Bearer {KEYS['admin']}"}
    reply = httpx.post(service.http + "/v1/recommend", json={"customer_id": "c1", "k": 0}, headers=headers, timeout=30)
    assert reply.status_code == 400
    from engine.errors import InvalidArgument
    from engine.queries import parse_recommend

    with pytest.raises(InvalidArgument) as parsed:  # the parser's own message, unchanged
        parse_recommend({"customer_id": "c1", "k": 0}, service.config.ranking.max_k)
    assert reply.json()["error"] == {"code": "invalid_argument", "message": parsed.value.message}
    openapi.Error.model_validate(reply.json())  # the documented error shape
    page = httpx.get(service.http + "/docs", timeout=30)
    assert page.status_code == 200 and "openapi.json" in page.text and page.headers["content-type"].startswith("text/html")
