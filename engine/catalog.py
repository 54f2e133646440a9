"""Live catalogue: new items, prices and stock as they change, without a retrain.

A catalogue update names one item and the fields that changed (name, category, price,
in_stock); absent fields keep their value. Updates are durable (the store keeps them in order)
and every shard applies every update, so out-of-stock items vanish from all answers at once.
The trained model knows a fixed set of items; an item it has never seen lives only here until
the next retrain, and is recommended from live co-visitation and its category (see
recommenders/recommend.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.errors import InvalidArgument
from engine.events import MAX_PRICE, MIN_TIMESTAMP_MS, MAX_FUTURE_SKEW_MS
from engine.validation import parse_whole_batch, reject_unknown, require_id, require_int, require_number

UPDATE_FIELDS = frozenset({"item_id", "name", "category", "price", "in_stock", "timestamp_ms"})
MAX_NAME_LENGTH = 256


@dataclass(frozen=True, slots=True)
class CatalogUpdate:
    """What changed about one item. None means "unchanged"."""

    item_id: str
    timestamp_ms: int
    name: str | None = None
    category: str | None = None
    price: float | None = None
    in_stock: bool | None = None


@dataclass(slots=True)
class CatalogItem:
    """The live view of one item: every field ever set by an update."""

    item_id: str
    name: str | None = None
    category: str | None = None
    price: float | None = None
    in_stock: bool | None = None
    updated_ms: int = 0


def _text(value: Any, where: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: must be a string, got {type(value).__name__}")
    if len(value) > limit or not value.isprintable():
        raise InvalidArgument(f"{where}: a printable string of at most {limit} characters")
    return value


def parse_update(raw: Any, now_ms: int, where: str = "update") -> CatalogUpdate:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: must be an object")
    reject_unknown(raw, UPDATE_FIELDS, where)
    in_stock = raw.get("in_stock")
    if in_stock is not None and not isinstance(in_stock, bool):
        raise InvalidArgument(f"{where}.in_stock: must be true or false")
    price = raw.get("price")
    if price is not None:
        price = require_number(price, f"{where}.price", low=0.0, high=MAX_PRICE)
    ts = raw.get("timestamp_ms")
    ts = now_ms if ts in (None, 0) else require_int(ts, f"{where}.timestamp_ms", low=MIN_TIMESTAMP_MS,
                                                   high=now_ms + MAX_FUTURE_SKEW_MS)
    update = CatalogUpdate(
        item_id=require_id(raw.get("item_id"), f"{where}.item_id"),
        timestamp_ms=ts,
        name=_text(raw.get("name"), f"{where}.name", MAX_NAME_LENGTH),
        category=_text(raw.get("category"), f"{where}.category", MAX_NAME_LENGTH),
        price=price,
        in_stock=in_stock,
    )
    if update.name is None and update.category is None and update.price is None and update.in_stock is None:
        raise InvalidArgument(f"{where}: names no change (give name, category, price or in_stock)")
    return update


def parse_updates(raw: Any, now_ms: int, max_updates: int) -> list[CatalogUpdate]:
    """A whole batch or nothing, like events.parse_batch."""
    return parse_whole_batch(raw, "updates", max_updates, lambda item, where: parse_update(item, now_ms, where))


def update_to_dict(update: CatalogUpdate) -> dict[str, Any]:
    return {"item_id": update.item_id, "timestamp_ms": update.timestamp_ms, "name": update.name,
            "category": update.category, "price": update.price, "in_stock": update.in_stock}


def update_from_dict(data: Mapping[str, Any]) -> CatalogUpdate:
    return CatalogUpdate(**data)


class LiveCatalog:
    """Items as the updates left them. Plain Python: the shard owns one and applies updates."""

    def __init__(self) -> None:
        self.items: dict[str, CatalogItem] = {}

    def apply(self, update: CatalogUpdate) -> CatalogItem | None:
        """Merge ``update``; an update older than what the item already reflects is ignored
        (channels deliver out of order), and then None is returned."""
        item = self.items.get(update.item_id)
        if item is None:
            item = self.items[update.item_id] = CatalogItem(update.item_id)
        elif update.timestamp_ms < item.updated_ms:
            return None
        for name in ("name", "category", "price", "in_stock"):
            value = getattr(update, name)
            if value is not None:
                setattr(item, name, value)
        item.updated_ms = update.timestamp_ms
        return item

    def __len__(self) -> int:
        return len(self.items)
