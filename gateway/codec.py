"""Edge mapping: protobuf messages and JSON bodies <-> plain mappings and domain values.

Requests become plain mappings (the shape of the JSON body, snake_case as in the .proto) so
that one parser in engine/ validates gRPC and HTTP alike. Responses are built from domain
values here, never in engine/.
"""
from __future__ import annotations

from typing import Any

from recsys.v1 import recsys_pb2 as pb
from recommenders.recommend import Recommendations


def _filters(msg: pb.Filters) -> dict[str, Any]:
    out: dict[str, Any] = {
        "exclude_item_ids": list(msg.exclude_item_ids),
        "include_item_ids": list(msg.include_item_ids),
        "repurchase_policy": msg.repurchase_policy,
        "include_categories": list(msg.include_categories),
        "exclude_categories": list(msg.exclude_categories),
        "boost_item_ids": list(msg.boost_item_ids),
    }
    if msg.max_per_category:
        out["max_per_category"] = msg.max_per_category
    for name in ("min_price", "max_price", "repurchase_window_days"):
        if msg.HasField(name):
            out[name] = getattr(msg, name)
    return out


def recommend_request(msg: pb.RecommendRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"customer_id": msg.customer_id, "channel": msg.channel,
                           "store_id": msg.store_id, "request_id": msg.request_id, "placement": msg.placement}
    if msg.k != 0:  # proto3 cannot tell 0 from unset: 0 means "the default"
        out["k"] = msg.k
    if msg.HasField("context"):
        ctx = msg.context
        out["context"] = {"current_item_id": ctx.current_item_id, "cart_item_ids": list(ctx.cart_item_ids),
                          "session_id": ctx.session_id, "country": ctx.country}
    if msg.HasField("filters"):
        out["filters"] = _filters(msg.filters)
    return out


def similar_request(msg: pb.SimilarItemsRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"item_id": msg.item_id, "channel": msg.channel, "customer_id": msg.customer_id,
                           "request_id": msg.request_id, "placement": msg.placement}
    if msg.k != 0:
        out["k"] = msg.k
    if msg.HasField("filters"):
        out["filters"] = _filters(msg.filters)
    return out


def event(msg: pb.Event) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": msg.event_id, "customer_id": msg.customer_id, "session_id": msg.session_id,
        "event_type": msg.event_type, "item_id": msg.item_id, "channel": msg.channel,
        "store_id": msg.store_id, "timestamp_ms": msg.timestamp_ms,
    }
    for name in ("quantity", "price"):
        if msg.HasField(name):
            out[name] = getattr(msg, name)
    if msg.attributes:
        out["attributes"] = dict(msg.attributes)
    return out


def catalog_update(msg: pb.CatalogUpdate) -> dict[str, Any]:
    out: dict[str, Any] = {"item_id": msg.item_id, "timestamp_ms": msg.timestamp_ms}
    for name in ("name", "category", "price", "in_stock"):
        if msg.HasField(name):
            out[name] = getattr(msg, name)
    return out


def offer_request(msg: pb.NextBestOfferRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"customer_id": msg.customer_id, "channel": msg.channel, "store_id": msg.store_id,
                           "country": msg.country, "request_id": msg.request_id, "placement": msg.placement}
    if msg.n != 0:
        out["n"] = msg.n
    basket = []
    for line in msg.basket:
        entry: dict[str, Any] = {"item_id": line.item_id}
        if line.HasField("quantity"):
            entry["quantity"] = line.quantity
        if line.HasField("unit_price"):
            entry["unit_price"] = line.unit_price
        basket.append(entry)
    if basket:
        out["basket"] = basket
    return out


def offer_proto(reply: dict[str, Any], request_id: str) -> pb.NextBestOfferResponse:
    return pb.NextBestOfferResponse(
        decision_id=reply["decision_id"], reason=reply["reason"], strategy=reply["strategy"],
        experiment_id=reply["experiment_id"], arm=reply["arm"], segment=reply["segment"],
        catalog_version=reply["catalog_version"], request_id=request_id, rejected=reply["rejected"],
        recommendation_id=reply.get("recommendation_id", ""),
        offers=[pb.Offer(offer_id=o["offer_id"], name=o["name"], score=o["score"], propensity=o["propensity"],
                         value=o["value"], affinity=o["affinity"], passed_rules=o["passed_rules"],
                         caps_left={k: int(v) for k, v in o["caps_left"].items()})
                for o in reply["offers"]])


def action_proto(seq: int, action: dict[str, Any]) -> pb.Action:
    return pb.Action(seq=seq, action_id=action["action_id"], kind=action["kind"], customer_id=action["customer_id"],
                     channel=action.get("channel", ""), store_id=action.get("store_id", ""),
                     created_ms=action["created_ms"], item_ids=action.get("item_ids", []),
                     trigger_item_id=action.get("trigger_item_id", ""))


def recommendations_proto(result: Recommendations, request_id: str) -> pb.RecommendResponse:
    return pb.RecommendResponse(
        items=[pb.ScoredItem(item_id=i.item_id, score=i.score, reasons=list(i.reasons), name=i.name)
               for i in result.items],
        model_version=result.model_version, personalized=result.personalized,
        reasons=list(result.reasons), request_id=request_id, recommendation_id=result.recommendation_id,
        strategy=result.strategy, experiment_id=result.experiment_id, arm=result.arm)


def similar_proto(result: Recommendations, request_id: str) -> pb.SimilarItemsResponse:
    return pb.SimilarItemsResponse(
        items=[pb.ScoredItem(item_id=i.item_id, score=i.score, reasons=list(i.reasons), name=i.name)
               for i in result.items],
        model_version=result.model_version, request_id=request_id, recommendation_id=result.recommendation_id)


def recommendations_json(result: Recommendations, request_id: str, *, similar: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [{"item_id": i.item_id, "score": i.score, "reasons": list(i.reasons), "name": i.name}
                  for i in result.items],
        "model_version": result.model_version,
        "request_id": request_id,
        "recommendation_id": result.recommendation_id,
    }
    if not similar:
        body["personalized"] = result.personalized
        body["reasons"] = list(result.reasons)
        body["strategy"] = result.strategy
        body["experiment_id"] = result.experiment_id
        body["arm"] = result.arm
    return body
