"""Requests as domain values, parsed from plain mappings (JSON bodies and proto messages alike)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.config import REPURCHASE_POLICIES
from engine.errors import InvalidArgument
from engine import events as _events
from engine.validation import (reject_unknown, require_choice, require_id, require_id_list, require_int,
                               require_number)

MAX_LIST = 1_000
MAX_PRICE = 1_000_000_000.0


@dataclass(frozen=True, slots=True)
class Filters:
    """Per-request business rules on top of the configured defaults."""

    exclude_item_ids: tuple[str, ...] = ()
    include_item_ids: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    repurchase_policy: str | None = None       # None: the configured default
    repurchase_window_days: int | None = None
    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    boost_item_ids: tuple[str, ...] = ()       # promoted items
    max_per_category: int | None = None        # diversity cap


@dataclass(frozen=True, slots=True)
class RecommendQuery:
    customer_id: str
    channel: str
    k: int
    store_id: str = ""
    current_item_id: str = ""
    cart_item_ids: tuple[str, ...] = ()
    session_id: str = ""
    country: str = ""
    filters: Filters = Filters()
    request_id: str = ""
    # where on the channel the list is shown (home, product, cart, email, ...): the online metrics'
    # surface, and what an experiment may be scoped to
    placement: str = ""


@dataclass(frozen=True, slots=True)
class SimilarQuery:
    item_id: str
    k: int
    channel: str = "web"
    customer_id: str = ""
    filters: Filters = Filters()
    request_id: str = ""
    placement: str = ""


@dataclass(frozen=True, slots=True)
class OfferQuery:
    """NextBestOffer: which offers, if any, for this customer now, in this channel."""

    customer_id: str
    channel: str
    n: int = 1
    store_id: str = ""
    country: str = ""
    # (item_id, quantity, unit price or None); empty: the customer's live cart
    basket: tuple[tuple[str, float, float | None], ...] = ()
    request_id: str = ""
    placement: str = ""


MAX_OFFERS = 10


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: must be an object")
    return raw


# The fields each request body may have (the HTTP API's schema, gateway/openapi.py, is checked
# against these: tests/integration/test_openapi.py).
FILTER_FIELDS = frozenset({"exclude_item_ids", "include_item_ids", "min_price", "max_price", "repurchase_policy",
                           "repurchase_window_days", "include_categories", "exclude_categories", "boost_item_ids",
                           "max_per_category"})
RECOMMEND_FIELDS = frozenset({"customer_id", "channel", "store_id", "context", "k", "filters", "request_id",
                              "placement"})
CONTEXT_FIELDS = frozenset({"current_item_id", "cart_item_ids", "session_id", "country"})
SIMILAR_FIELDS = frozenset({"item_id", "k", "filters", "channel", "customer_id", "request_id", "placement"})
OFFER_FIELDS = frozenset({"customer_id", "channel", "store_id", "country", "basket", "n", "request_id", "placement"})
BASKET_LINE_FIELDS = frozenset({"item_id", "quantity", "unit_price"})


def parse_filters(raw: Any, where: str = "filters") -> Filters:
    raw = _mapping(raw, where)
    reject_unknown(raw, FILTER_FIELDS, where)
    policy = raw.get("repurchase_policy") or None
    if policy is not None:
        require_choice(policy, f"{where}.repurchase_policy", REPURCHASE_POLICIES)
    window = raw.get("repurchase_window_days")
    if window is not None:
        window = require_int(window, f"{where}.repurchase_window_days", low=0, high=3650)
    prices = {}
    for name in ("min_price", "max_price"):
        value = raw.get(name)
        prices[name] = None if value is None else require_number(value, f"{where}.{name}", low=0.0, high=MAX_PRICE)
    if prices["min_price"] is not None and prices["max_price"] is not None and prices["min_price"] > prices["max_price"]:
        raise InvalidArgument(f"{where}: min_price is greater than max_price")
    return Filters(
        exclude_item_ids=require_id_list(raw.get("exclude_item_ids"), f"{where}.exclude_item_ids", max_len=MAX_LIST),
        include_item_ids=require_id_list(raw.get("include_item_ids"), f"{where}.include_item_ids", max_len=MAX_LIST),
        repurchase_policy=policy, repurchase_window_days=window, **prices,
        include_categories=require_id_list(raw.get("include_categories"), f"{where}.include_categories",
                                           max_len=MAX_LIST),
        exclude_categories=require_id_list(raw.get("exclude_categories"), f"{where}.exclude_categories",
                                           max_len=MAX_LIST),
        boost_item_ids=require_id_list(raw.get("boost_item_ids"), f"{where}.boost_item_ids", max_len=MAX_LIST),
        max_per_category=None if raw.get("max_per_category") is None else require_int(
            raw.get("max_per_category"), f"{where}.max_per_category", low=1, high=10_000),
    )


DEFAULT_K = 10


def _placement(raw: Mapping[str, Any]) -> str:
    value = raw.get("placement") or ""
    if not isinstance(value, str) or (value and not _events.CHANNEL_PATTERN.match(value)):
        raise InvalidArgument("placement: a name (a-z, 0-9, _; up to 32, a letter first), e.g. home, product, cart")
    return value


def _k(raw: Mapping[str, Any], max_k: int) -> int:
    # Absent means the default. (gRPC cannot tell k=0 from unset, so its mapping leaves k
    # out when it is 0; JSON that says k=0 is rejected.)
    if raw.get("k") is None:
        return DEFAULT_K
    return require_int(raw.get("k"), "k", low=1, high=max_k)


def parse_recommend(raw: Any, max_k: int) -> RecommendQuery:
    raw = _mapping(raw, "request")
    reject_unknown(raw, RECOMMEND_FIELDS, "request")
    context = _mapping(raw.get("context"), "context")
    reject_unknown(context, CONTEXT_FIELDS, "context")
    filters = parse_filters(raw.get("filters"))
    # a list to re-rank comes back whole unless the caller asks for its top k
    k = len(set(filters.include_item_ids)) if filters.include_item_ids and raw.get("k") is None else _k(raw, max_k)
    return RecommendQuery(
        customer_id=require_id(raw.get("customer_id"), "customer_id"),
        channel=require_choice(raw.get("channel") or "web", "channel", _events.CHANNELS),
        k=k,
        store_id=require_id(raw.get("store_id"), "store_id", required=False),
        current_item_id=require_id(context.get("current_item_id"), "context.current_item_id", required=False),
        cart_item_ids=require_id_list(context.get("cart_item_ids"), "context.cart_item_ids", max_len=MAX_LIST),
        session_id=require_id(context.get("session_id"), "context.session_id", required=False),
        country=require_id(context.get("country"), "context.country", required=False),
        filters=filters,
        request_id=require_id(raw.get("request_id"), "request_id", required=False),
        placement=_placement(raw),
    )


def parse_similar(raw: Any, max_k: int) -> SimilarQuery:
    raw = _mapping(raw, "request")
    reject_unknown(raw, SIMILAR_FIELDS, "request")
    return SimilarQuery(
        item_id=require_id(raw.get("item_id"), "item_id"),
        k=_k(raw, max_k),
        channel=require_choice(raw.get("channel") or "web", "channel", _events.CHANNELS),
        customer_id=require_id(raw.get("customer_id"), "customer_id", required=False),
        filters=parse_filters(raw.get("filters")),
        request_id=require_id(raw.get("request_id"), "request_id", required=False),
        placement=_placement(raw),
    )


def parse_offer_query(raw: Any) -> OfferQuery:
    raw = _mapping(raw, "request")
    reject_unknown(raw, OFFER_FIELDS, "request")
    basket_raw = raw.get("basket") or []
    if not isinstance(basket_raw, (list, tuple)):
        raise InvalidArgument("basket: must be a list of {item_id, quantity, unit_price}")
    if len(basket_raw) > MAX_LIST:
        raise InvalidArgument(f"basket: at most {MAX_LIST} lines")
    basket = []
    for i, line in enumerate(basket_raw):
        where = f"basket[{i}]"
        line = _mapping(line, where)
        reject_unknown(line, BASKET_LINE_FIELDS, where)
        quantity = line.get("quantity")
        quantity = 1.0 if quantity in (None, 0) else require_number(quantity, f"{where}.quantity", low=0.0,
                                                                      high=1_000_000.0, low_inclusive=False)
        price = line.get("unit_price")
        price = None if price is None else require_number(price, f"{where}.unit_price", low=0.0, high=MAX_PRICE)
        basket.append((require_id(line.get("item_id"), f"{where}.item_id"), quantity, price))
    n = raw.get("n")
    return OfferQuery(
        customer_id=require_id(raw.get("customer_id"), "customer_id"),
        channel=require_choice(raw.get("channel") or "web", "channel", _events.CHANNELS),
        n=1 if n is None else require_int(n, "n", low=1, high=MAX_OFFERS),
        store_id=require_id(raw.get("store_id"), "store_id", required=False),
        country=require_id(raw.get("country"), "country", required=False),
        basket=tuple(basket),
        request_id=require_id(raw.get("request_id"), "request_id", required=False),
        placement=_placement(raw),
    )
