"""Simulated shoppers for experiments: what a customer does with a list they are shown.

The model (an assumption, stated so a read-out can be judged by it): a customer sees the top
``shown`` items of a list (one impression each), looks at position p with probability 1/log2(p+1),
and clicks a looked-at item with probability ``p_like`` if it is to their taste, else ``p_other``;
a clicked item goes into the cart with probability ``p_cart`` (the add-to-cart names the list) and a
carted one is bought with probability ``p_buy`` at its price (the purchase does not name the list:
the engine credits it through the click, as a checkout that forgot the id would be). Their taste is given (for example
the items they bought in the data: `recsys experiments simulate`), so a strategy that shows more
of it is known to be better, and two identical strategies are known to be equal.

``shopper_events`` is the one copy of the model: `recsys experiments simulate` (scripts/cli.py)
drives a running service with it, the tests drive owners with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class ClickModel:
    shown: int = 5
    p_like: float = 0.35
    p_other: float = 0.03
    p_cart: float = 0.5
    p_buy: float = 0.6


def shopper_events(customer_id: str, recommendation_id: str, items: Sequence[tuple[str, float]],
                   likes: Callable[[str], bool], model: ClickModel, rng: np.random.Generator, event_prefix: str,
                   channel: str = "web", now_ms: int = 0) -> list[dict[str, Any]]:
    """The events (JSON shape) of one customer shown one list: ``items`` is (item id, price) in the
    list's order. Impressions, clicks, add-to-carts (naming the list) and purchases (not naming it)."""
    out: list[dict[str, Any]] = []

    def event(kind: str, item: str, **extra: Any) -> None:
        named = {"attributes": {"recommendation_id": recommendation_id}} if kind != "purchase" else {}
        out.append({"event_id": f"{event_prefix}-{len(out)}", "customer_id": customer_id, "event_type": kind,
                    "item_id": item, "channel": channel, "timestamp_ms": now_ms, **named, **extra})

    for position, (item, price) in enumerate(items[:model.shown], start=1):
        event("impression", item)
        looked = rng.random() < 1.0 / math.log2(position + 1)
        if looked and rng.random() < (model.p_like if likes(item) else model.p_other):
            event("click", item)
            if rng.random() < model.p_cart:
                event("add_to_cart", item)
                if rng.random() < model.p_buy:
                    event("purchase", item, price=float(price), quantity=1.0)
    return out
