"""The stored events read back as experiment outcomes, one per exposed customer.

The engine writes an exposure for every decision of an experiment's customer: ``offer_shown``
per offer it made (treated arms) and ``offer_control`` per offer it would have made (control
arm: ``engine.decisioning.Decision.withheld``). Both carry experiment_id, arm, decision_id,
offer_id and ``targets``, the offer's target item ids resolved when the decision was made
(actors.shard_offers.outcome_targets: a JSON list of at most MAX_EXPOSURE_TARGETS ids). The
outcome is then the same in every arm, and needs nothing but the log: neither the catalogue nor
the model of the day, which may have changed since.

Unit of analysis: the customer, from their first exposure in the experiment (their arm is that
exposure's arm). Over the following ``window_days``:

- converted: a purchase of one of the target items of the customer's exposures made at or before it;
- revenue: every purchase (price x quantity; a purchase without a price adds 0);
- exposures: decisions; acceptances: offer_accepted answering one of them (the shard stores only
  genuine, first responses: actors.shard.CustomerShardLogic.screen_events).

Exposures recorded before exposure events carried ``targets`` cannot convert (revenue still counts).
"""
from __future__ import annotations

import json
from typing import Iterable

from engine.decisioning import CustomerOutcome
from engine.events import Event
from engine.offers import DAY_MS

EXPOSURE_TYPES = frozenset({"offer_shown", "offer_control"})
DEFAULT_WINDOW_DAYS = 14.0


def exposure_targets(raw: str | None) -> frozenset[str]:
    """The ``targets`` attribute of an exposure event (a JSON list of item ids) as a set."""
    if not raw:
        return frozenset()
    try:
        items = json.loads(raw)
    except ValueError:
        return frozenset()
    return frozenset(i for i in items if isinstance(i, str)) if isinstance(items, list) else frozenset()


def experiment_outcomes(events: Iterable[Event], window_days: float = DEFAULT_WINDOW_DAYS,
                        as_of_ms: int | None = None) -> list[CustomerOutcome]:
    """One CustomerOutcome per (experiment, exposed customer), for engine.decisioning.experiment_report.
    ``as_of_ms`` (default: the latest timestamp in ``events``) marks windows not yet over."""
    window_ms = int(window_days * DAY_MS)
    # (experiment, customer) -> [(ts, arm, decision_id, targets, control)]
    exposures: dict[tuple[str, str], list[tuple[int, str, str, frozenset[str], bool]]] = {}
    purchases: dict[str, list[tuple[int, str, float]]] = {}
    accepted: dict[str, list[tuple[int, str]]] = {}
    latest = 0
    for event in events:
        latest = max(latest, event.timestamp_ms)
        kind = event.event_type
        if kind == "purchase":
            revenue = event.price * event.quantity if event.price is not None else 0.0
            purchases.setdefault(event.customer_id, []).append((event.timestamp_ms, event.item_id, revenue))
        elif kind in EXPOSURE_TYPES:
            attributes = dict(event.attributes)
            experiment = attributes.get("experiment_id", "")
            if experiment:
                exposures.setdefault((experiment, event.customer_id), []).append(
                    (event.timestamp_ms, attributes.get("arm", ""), attributes.get("decision_id", ""),
                     exposure_targets(attributes.get("targets")), kind == "offer_control"))
        elif kind == "offer_accepted":
            accepted.setdefault(event.customer_id, []).append(
                (event.timestamp_ms, dict(event.attributes).get("decision_id", "")))
    as_of = latest if as_of_ms is None else as_of_ms

    outcomes = []
    for (experiment, customer), seen in sorted(exposures.items()):
        seen.sort(key=lambda e: e[0])
        start, arm, _, _, control = seen[0]
        end = start + window_ms
        # a customer stays in the arm of their first exposure (a later catalogue may re-split arms)
        mine = [e for e in seen if e[0] < end and e[1] == arm]
        decisions = {e[2] for e in mine}
        converted = False
        revenue = 0.0
        for ts, item, amount in purchases.get(customer, ()):
            if start <= ts < end:
                revenue += amount
                converted = converted or any(ts >= e[0] and item in e[3] for e in mine)
        acceptances = sum(1 for ts, decision in accepted.get(customer, ()) if decision in decisions and ts < end)
        outcomes.append(CustomerOutcome(
            experiment_id=experiment, arm=arm, customer_id=customer, converted=converted, revenue=revenue,
            control=control, exposures=len(decisions), acceptances=acceptances, window_open=end > as_of))
    return outcomes
