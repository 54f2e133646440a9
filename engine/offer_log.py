"""The stored offer events read back as experiment exposures and outcomes.

The engine writes offer_shown (with experiment_id, arm, value) for each offer it makes and
offer_control when a control-arm customer would have had one; channels write offer_accepted /
offer_declined with the decision id. An outcome is joined to its decision to find the arm and
the value; an outcome whose decision is unknown (or that had no experiment) is left out.
"""
from __future__ import annotations

from typing import Iterable

from engine.events import Event


def experiment_rows(events: Iterable[Event]) -> list[tuple[str, str, str, str, float | None]]:
    """(experiment_id, arm, customer_id, kind, value) rows for engine.decisioning.experiment_report."""
    decisions: dict[tuple[str, str], tuple[str, str, float]] = {}
    rows: list[tuple[str, str, str, str, float | None]] = []
    outcomes: list[Event] = []
    for event in events:
        attributes = dict(event.attributes)
        if event.event_type in ("offer_shown", "offer_control"):
            experiment, arm = attributes.get("experiment_id", ""), attributes.get("arm", "")
            offer = attributes.get("offer_id", "")
            decisions[(attributes["decision_id"], offer)] = (experiment, arm, float(attributes.get("value", 0.0)))
            if experiment:
                rows.append((experiment, arm, event.customer_id, "shown", None))
        elif event.event_type in ("offer_accepted", "offer_declined"):
            outcomes.append(event)
    for event in outcomes:
        attributes = dict(event.attributes)
        found = decisions.get((attributes["decision_id"], attributes["offer_id"]))
        if found is None or not found[0]:
            continue
        experiment, arm, value = found
        kind = "accepted" if event.event_type == "offer_accepted" else "declined"
        realised = float(attributes["value"]) if "value" in attributes else value
        rows.append((experiment, arm, event.customer_id, kind, realised if kind == "accepted" else None))
    return rows
