"""The HTTP API described: typed request and response models, and the OpenAPI 3.1 document the
ingress serves at ``/openapi.json`` (with a page of interactive docs at ``/docs``).

The models describe; they do not validate. Every request is still validated by the engine's own
parsers (engine/queries.py, engine/events.py, engine/catalog.py), the same path gRPC takes, so the
error messages are those of the table in docs/guarantees.md. The document is made from the RPC table
(gateway/rpcs.py): a route added there is in it. tests/integration/test_openapi.py checks that every
route is documented, that each request model has exactly the fields its parser accepts, and that
every example in the document is accepted by the running service.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ID = Field(min_length=1, max_length=256)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(_Doc):
    """Business rules for one request (all optional)."""

    exclude_item_ids: list[str] = Field(default_factory=list, max_length=1000)
    include_item_ids: list[str] = Field(default_factory=list, max_length=1000,
                                        description="re-rank exactly these items (every one comes back unless k is set)")
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    repurchase_policy: Literal["exclude_always", "exclude_never", "exclude_within_window"] | None = None
    repurchase_window_days: int | None = Field(None, ge=0, le=3650)
    include_categories: list[str] = Field(default_factory=list, max_length=1000)
    exclude_categories: list[str] = Field(default_factory=list, max_length=1000)
    boost_item_ids: list[str] = Field(default_factory=list, max_length=1000)
    max_per_category: int | None = Field(None, ge=1, le=10_000)


class Context(_Doc):
    current_item_id: str | None = None
    cart_item_ids: list[str] = Field(default_factory=list, max_length=1000)
    session_id: str | None = None
    country: str | None = None


class RecommendRequest(_Doc):
    customer_id: str = ID
    channel: str = Field("web", description="web, app, pos, email, push, call_center, kiosk, sms, chatbot, social "
                                            "(and any the config adds)")
    store_id: str | None = None
    context: Context | None = None
    k: int | None = Field(None, ge=1, description="default 10; at most [ranking] max_k")
    filters: Filters | None = None
    request_id: str | None = None
    placement: str | None = Field(None, description="where the list is shown (home, product, cart, email, ...): "
                                                    "the online metrics' surface")


class Item(BaseModel):
    item_id: str
    score: float
    reasons: list[str]
    name: str


class RecommendResponse(BaseModel):
    items: list[Item]
    model_version: str
    request_id: str
    personalized: bool
    reasons: list[str]
    recommendation_id: str = Field(description="send with impression / click events (attribute recommendation_id)")
    strategy: str
    experiment_id: str
    arm: str


class SimilarItemsRequest(_Doc):
    item_id: str = ID
    k: int | None = Field(None, ge=1)
    filters: Filters | None = None
    channel: str = "web"
    customer_id: str | None = Field(None, description="leaves their cart out, and routes to their owner")
    request_id: str | None = None
    placement: str | None = Field(None, description="where the list is shown (home, product, cart, email, ...): "
                                                    "the online metrics' surface")


class SimilarItemsResponse(BaseModel):
    items: list[Item]
    model_version: str
    request_id: str
    recommendation_id: str


class Event(_Doc):
    event_id: str = Field(min_length=1, max_length=256, description="unique per customer: a repeat is a duplicate")
    customer_id: str = ID
    event_type: Literal["view", "add_to_cart", "remove_from_cart", "purchase", "return", "rate", "impression",
                        "click", "consent", "offer_accepted", "offer_declined", "identify"]
    item_id: str | None = Field(None, description="required for item events; none for consent and offer events")
    channel: str = "web"
    session_id: str | None = None
    store_id: str | None = None
    quantity: float | None = Field(None, gt=0)
    price: float | None = Field(None, ge=0)
    timestamp_ms: int | None = Field(None, description="epoch ms; absent or 0: now")
    attributes: dict[str, str] | None = Field(None, description="consent: personalization / marketing -> granted | "
                                                                "denied; offer responses: decision_id, offer_id; "
                                                                "identify: alias_id (another id of this customer), "
                                                                "alias_kind (cookie, device, card, ...); impression, "
                                                                "click, add_to_cart, purchase: recommendation_id")


class TrackEventsRequest(_Doc):
    events: list[Event] = Field(min_length=1, description="all or none: one bad event rejects the batch")
    request_id: str | None = None


class TrackEventsResponse(BaseModel):
    accepted: int
    duplicates: int
    ignored: int
    request_id: str


class BasketLine(_Doc):
    item_id: str = ID
    quantity: float | None = Field(None, gt=0)
    unit_price: float | None = Field(None, ge=0)


class NextBestOfferRequest(_Doc):
    customer_id: str = ID
    channel: str = "web"
    store_id: str | None = None
    country: str | None = None
    basket: list[BasketLine] = Field(default_factory=list, description="empty: the customer's live cart")
    n: int | None = Field(None, ge=1, le=10)
    request_id: str | None = None
    placement: str | None = Field(None, description="where the list is shown (home, product, cart, email, ...): "
                                                    "the online metrics' surface")


class Offer(BaseModel):
    offer_id: str
    name: str
    score: float
    propensity: float
    value: float
    affinity: float
    passed_rules: list[str]
    caps_left: dict[str, Any]


class NextBestOfferResponse(BaseModel):
    decision_id: str
    reason: str
    strategy: str
    experiment_id: str
    arm: str
    segment: str
    catalog_version: str
    offers: list[Offer]
    rejected: dict[str, Any]
    request_id: str
    recommendation_id: str


class CatalogUpdate(_Doc):
    item_id: str = ID
    name: str | None = None
    category: str | None = None
    price: float | None = Field(None, ge=0)
    in_stock: bool | None = None
    timestamp_ms: int | None = None


class UpdateCatalogRequest(_Doc):
    updates: list[CatalogUpdate] = Field(min_length=1)
    request_id: str | None = None


class UpdateCatalogResponse(BaseModel):
    applied: int
    request_id: str


class ForgetResponse(BaseModel):
    customer_id: str
    events_deleted: int
    live_state_erased: bool
    linked_ids_erased: list[str] = []


class ErrorBody(BaseModel):
    code: Literal["invalid_argument", "unauthenticated", "permission_denied", "not_found", "failed_precondition",
                  "rate_limited",
                  "payload_too_large", "unavailable", "internal"]
    message: str


class Error(BaseModel):
    error: ErrorBody


# Per RPC of the table (gateway/rpcs.py): request model (None: no body), response model, an example
# request body the running service accepts, and a summary.
ROUTES: dict[str, tuple[type[BaseModel] | None, type[BaseModel] | None, dict | None, str]] = {
    "Recommend": (RecommendRequest, RecommendResponse,
                  {"customer_id": "c1", "channel": "web", "k": 5, "context": {"cart_item_ids": ["i0003"]},
                   "filters": {"exclude_item_ids": ["i0004"]}},
                  "Top k items for a customer now, from their live state (any channel)"),
    "SimilarItems": (SimilarItemsRequest, SimilarItemsResponse, {"item_id": "i0003", "k": 5},
                     "Items like one item"),
    "TrackEvents": (TrackEventsRequest, TrackEventsResponse,
                    {"events": [{"event_id": "doc-e-1", "customer_id": "c1", "event_type": "add_to_cart",
                                 "item_id": "i0003", "channel": "pos", "store_id": "s-12"}]},
                    "Store events durably, then apply them; answered after the commit"),
    "NextBestOffer": (NextBestOfferRequest, NextBestOfferResponse,
                      {"customer_id": "c1", "channel": "pos", "basket": [{"item_id": "i0003", "quantity": 2,
                                                                          "unit_price": 1.5}]},
                      "Which offer to make now (eligibility, caps, bandit); its shows are recorded"),
    "UpdateCatalog": (UpdateCatalogRequest, UpdateCatalogResponse,
                      {"updates": [{"item_id": "i0003", "price": 2.5, "in_stock": True}]},
                      "Change items live (stock, price, new items)"),
    "ForgetCustomer": (None, ForgetResponse, None, "Erase the customer everywhere (GDPR)"),
    "ExportCustomer": (None, None, None, "Everything held about the customer (GDPR): events, state, offers"),
}

SECURITY = [{"bearer": []}]
ERRORS = {"400": "invalid argument (the message names the field)", "401": "no or unknown API key",
          "403": "the key lacks the scope", "404": "no such customer or route",
          "409": "refused: it contradicts what is stored (an identify linking an id another customer holds)", "413": "body over the key's limit",
          "429": "over the key's rate", "503": "unavailable: retry"}


def document(rpcs, version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the RPC table ``rpcs`` and the ingress's own pages."""
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, schema)
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    errors = {code: {"description": text, "content": {"application/json": {"schema": ref(Error)}}}
              for code, text in ERRORS.items()}
    paths: dict[str, Any] = {}
    for rpc in rpcs:
        request, response, example, summary = ROUTES[rpc.name]
        operation: dict[str, Any] = {
            "operationId": rpc.name, "summary": summary, "security": SECURITY,
            "description": f"gRPC: recsys.v1.Personalization/{rpc.name}. API key scope: `{rpc.scope}`.",
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": ref(response) if response is not None else {"type": "object"}}}}, **errors},
        }
        if request is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": ref(request), "example": example}}}
        if "{customer_id}" in rpc.http_path:
            operation["parameters"] = [{"name": "customer_id", "in": "path", "required": True,
                                        "schema": {"type": "string"}, "example": "c1",
                                        "description": "percent-encoded (it may hold '/')"}]
        paths.setdefault(rpc.http_path, {})[rpc.http_method.lower()] = operation
    paths["/v1/actions"] = {"get": {
        "operationId": "ListActions", "summary": "One page of triggered actions (the outbox)", "security": SECURITY,
        "description": "API key scope: `offers`. The stream of the same is gRPC SubscribeActions.",
        "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "default": 0}},
                       {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100, "maximum": 1000}},
                       {"name": "kind", "in": "query", "schema": {"type": "string",
                                                                  "enum": ["cart_abandonment", "cross_sell"]}}],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                      **errors}}}
    paths["/healthz"] = {"get": {"operationId": "Health", "summary": "Serving or not (no key)", "security": [],
                                 "responses": {"200": {"description": "serving"},
                                               "503": {"description": "a partition is not answering or not writable"}}}}
    paths["/metrics"] = {"get": {"operationId": "Metrics", "summary": "Prometheus exposition (no key)",
                                 "security": [], "responses": {"200": {"description": "text/plain"}}}}
    paths["/openapi.json"] = {"get": {"operationId": "OpenAPI", "summary": "This document (no key)", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}}
    paths["/docs"] = {"get": {"operationId": "Docs", "summary": "Interactive docs (no key to read; calls need one)",
                              "security": [], "responses": {"200": {"description": "text/html"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "recsys", "version": version,
                     "description": "Real-time recommendations and next-best offers. Field names are the .proto's "
                                    "(snake_case). Send `authorization: Bearer <key>`."},
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>recsys API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}pre,textarea{font:12px monospace}
textarea{width:100%;height:9em}section{border-top:1px solid #ccc;padding:.5em 0}code{background:#f4f4f4}</style>
</head><body><h1>recsys HTTP API</h1>
<p>The schema: <a href="openapi.json">/openapi.json</a>. Calls need an API key:
<input id="key" size="50" placeholder="API key" autocomplete="off"></p>
<div id="routes">loading ...</div>
<script>
const esc = s => String(s).replace(/[&<>]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
fetch('openapi.json').then(r => r.json()).then(doc => {
  const out = [];
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) {
    const body = op.requestBody ? op.requestBody.content['application/json'] : null;
    const id = op.operationId;
    out.push(`<section><h3>${method.toUpperCase()} <code>${esc(path)}</code>: ${esc(op.summary)}</h3>
      <p>${esc(op.description || '')}</p>
      ${path.includes('{customer_id}') ? `<p>customer_id <input id="p-${id}" value="c1"></p>` : ''}
      ${body ? `<textarea id="b-${id}">${esc(JSON.stringify(body.example, null, 2))}</textarea>` : ''}
      <button data-id="${id}" data-path="${esc(path)}" data-method="${method}">Send</button>
      <pre id="r-${id}"></pre></section>`);
  }
  document.getElementById('routes').innerHTML = out.join('');
  for (const b of document.querySelectorAll('button')) b.onclick = async () => {
    const id = b.dataset.id, p = document.getElementById('p-' + id), t = document.getElementById('b-' + id);
    const path = b.dataset.path.replace('{customer_id}', p ? encodeURIComponent(p.value) : '');
    const key = document.getElementById('key').value;
    const r = await fetch(path, {method: b.dataset.method.toUpperCase(), body: t ? t.value : undefined,
      headers: key ? {'authorization': 'Bearer ' + key, 'content-type': 'application/json'} : {}});
    document.getElementById('r-' + id).textContent = r.status + ' ' + await r.text();
  };
});
</script></body></html>
"""
