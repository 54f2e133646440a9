from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Context(_message.Message):
    __slots__ = ("current_item_id", "cart_item_ids", "session_id", "country")
    CURRENT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CART_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    current_item_id: str
    cart_item_ids: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    country: str
    def __init__(self, current_item_id: _Optional[str] = ..., cart_item_ids: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class Filters(_message.Message):
    __slots__ = ("exclude_item_ids", "include_item_ids", "min_price", "max_price", "repurchase_policy", "repurchase_window_days", "include_categories", "exclude_categories", "boost_item_ids", "max_per_category")
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    REPURCHASE_POLICY_FIELD_NUMBER: _ClassVar[int]
    REPURCHASE_WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BOOST_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    include_item_ids: _containers.RepeatedScalarFieldContainer[str]
    min_price: float
    max_price: float
    repurchase_policy: str
    repurchase_window_days: int
    include_categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_categories: _containers.RepeatedScalarFieldContainer[str]
    boost_item_ids: _containers.RepeatedScalarFieldContainer[str]
    max_per_category: int
    def __init__(self, exclude_item_ids: _Optional[_Iterable[str]] = ..., include_item_ids: _Optional[_Iterable[str]] = ..., min_price: _Optional[float] = ..., max_price: _Optional[float] = ..., repurchase_policy: _Optional[str] = ..., repurchase_window_days: _Optional[int] = ..., include_categories: _Optional[_Iterable[str]] = ..., exclude_categories: _Optional[_Iterable[str]] = ..., boost_item_ids: _Optional[_Iterable[str]] = ..., max_per_category: _Optional[int] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("customer_id", "channel", "store_id", "context", "k", "filters", "request_id", "placement")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    channel: str
    store_id: str
    context: Context
    k: int
    filters: Filters
    request_id: str
    placement: str
    def __init__(self, customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., request_id: _Optional[str] = ..., placement: _Optional[str] = ...) -> None: ...

class ScoredItem(_message.Message):
    __slots__ = ("item_id", "score", "reasons", "name")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    reasons: _containers.RepeatedScalarFieldContainer[str]
    name: str
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model_version", "personalized", "reasons", "request_id", "recommendation_id", "strategy", "experiment_id", "arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    model_version: str
    personalized: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    recommendation_id: str
    strategy: str
    experiment_id: str
    arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., personalized: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., recommendation_id: _Optional[str] = ..., strategy: _Optional[str] = ..., experiment_id: _Optional[str] = ..., arm: _Optional[str] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "k", "filters", "channel", "customer_id", "request_id", "placement")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    k: int
    filters: Filters
    channel: str
    customer_id: str
    request_id: str
    placement: str
    def __init__(self, item_id: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., channel: _Optional[str] = ..., customer_id: _Optional[str] = ..., request_id: _Optional[str] = ..., placement: _Optional[str] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("items", "model_version", "request_id", "recommendation_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    model_version: str
    request_id: str
    recommendation_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., request_id: _Optional[str] = ..., recommendation_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "customer_id", "session_id", "event_type", "item_id", "quantity", "price", "channel", "store_id", "timestamp_ms", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    customer_id: str
    session_id: str
    event_type: str
    item_id: str
    quantity: float
    price: float
    channel: str
    store_id: str
    timestamp_ms: int
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, event_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., session_id: _Optional[str] = ..., event_type: _Optional[str] = ..., item_id: _Optional[str] = ..., quantity: _Optional[float] = ..., price: _Optional[float] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TrackEventsRequest(_message.Message):
    __slots__ = ("events", "request_id")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    request_id: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class TrackEventsResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "request_id", "ignored")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    request_id: str
    ignored: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., request_id: _Optional[str] = ..., ignored: _Optional[int] = ...) -> None: ...

class ForgetCustomerRequest(_message.Message):
    __slots__ = ("customer_id", "request_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    request_id: str
    def __init__(self, customer_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ForgetCustomerResponse(_message.Message):
    __slots__ = ("customer_id", "events_deleted", "live_state_erased", "request_id", "linked_ids_erased")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    LIVE_STATE_ERASED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINKED_IDS_ERASED_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    events_deleted: int
    live_state_erased: bool
    request_id: str
    linked_ids_erased: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_id: _Optional[str] = ..., events_deleted: _Optional[int] = ..., live_state_erased: _Optional[bool] = ..., request_id: _Optional[str] = ..., linked_ids_erased: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportCustomerRequest(_message.Message):
    __slots__ = ("customer_id", "request_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    request_id: str
    def __init__(self, customer_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ExportCustomerResponse(_message.Message):
    __slots__ = ("customer_id", "export_json", "request_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    export_json: str
    request_id: str
    def __init__(self, customer_id: _Optional[str] = ..., export_json: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CatalogUpdate(_message.Message):
    __slots__ = ("item_id", "name", "category", "price", "in_stock", "timestamp_ms")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IN_STOCK_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    name: str
    category: str
    price: float
    in_stock: bool
    timestamp_ms: int
    def __init__(self, item_id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., in_stock: _Optional[bool] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class UpdateCatalogRequest(_message.Message):
    __slots__ = ("updates", "request_id")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[CatalogUpdate]
    request_id: str
    def __init__(self, updates: _Optional[_Iterable[_Union[CatalogUpdate, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateCatalogResponse(_message.Message):
    __slots__ = ("applied", "request_id")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    applied: int
    request_id: str
    def __init__(self, applied: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class BasketLine(_message.Message):
    __slots__ = ("item_id", "quantity", "unit_price")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    quantity: float
    unit_price: float
    def __init__(self, item_id: _Optional[str] = ..., quantity: _Optional[float] = ..., unit_price: _Optional[float] = ...) -> None: ...

class NextBestOfferRequest(_message.Message):
    __slots__ = ("customer_id", "channel", "store_id", "country", "basket", "n", "request_id", "placement")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    BASKET_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    channel: str
    store_id: str
    country: str
    basket: _containers.RepeatedCompositeFieldContainer[BasketLine]
    n: int
    request_id: str
    placement: str
    def __init__(self, customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., country: _Optional[str] = ..., basket: _Optional[_Iterable[_Union[BasketLine, _Mapping]]] = ..., n: _Optional[int] = ..., request_id: _Optional[str] = ..., placement: _Optional[str] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "name", "score", "propensity", "value", "affinity", "passed_rules", "caps_left")
    class CapsLeftEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    PASSED_RULES_FIELD_NUMBER: _ClassVar[int]
    CAPS_LEFT_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    name: str
    score: float
    propensity: float
    value: float
    affinity: float
    passed_rules: _containers.RepeatedScalarFieldContainer[str]
    caps_left: _containers.ScalarMap[str, int]
    def __init__(self, offer_id: _Optional[str] = ..., name: _Optional[str] = ..., score: _Optional[float] = ..., propensity: _Optional[float] = ..., value: _Optional[float] = ..., affinity: _Optional[float] = ..., passed_rules: _Optional[_Iterable[str]] = ..., caps_left: _Optional[_Mapping[str, int]] = ...) -> None: ...

class NextBestOfferResponse(_message.Message):
    __slots__ = ("decision_id", "offers", "reason", "strategy", "experiment_id", "arm", "segment", "catalog_version", "request_id", "rejected", "recommendation_id")
    class RejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    offers: _containers.RepeatedCompositeFieldContainer[Offer]
    reason: str
    strategy: str
    experiment_id: str
    arm: str
    segment: str
    catalog_version: str
    request_id: str
    rejected: _containers.ScalarMap[str, str]
    recommendation_id: str
    def __init__(self, decision_id: _Optional[str] = ..., offers: _Optional[_Iterable[_Union[Offer, _Mapping]]] = ..., reason: _Optional[str] = ..., strategy: _Optional[str] = ..., experiment_id: _Optional[str] = ..., arm: _Optional[str] = ..., segment: _Optional[str] = ..., catalog_version: _Optional[str] = ..., request_id: _Optional[str] = ..., rejected: _Optional[_Mapping[str, str]] = ..., recommendation_id: _Optional[str] = ...) -> None: ...

class SubscribeActionsRequest(_message.Message):
    __slots__ = ("after_seq", "kinds", "max_actions", "request_id")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    kinds: _containers.RepeatedScalarFieldContainer[str]
    max_actions: int
    request_id: str
    def __init__(self, after_seq: _Optional[int] = ..., kinds: _Optional[_Iterable[str]] = ..., max_actions: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("seq", "action_id", "kind", "customer_id", "channel", "store_id", "created_ms", "item_ids", "trigger_item_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    action_id: str
    kind: str
    customer_id: str
    channel: str
    store_id: str
    created_ms: int
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    trigger_item_id: str
    def __init__(self, seq: _Optional[int] = ..., action_id: _Optional[str] = ..., kind: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., created_ms: _Optional[int] = ..., item_ids: _Optional[_Iterable[str]] = ..., trigger_item_id: _Optional[str] = ...) -> None: ...
