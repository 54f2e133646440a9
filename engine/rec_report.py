"""What recommendations earned, read back from the stored events, with confidence intervals.

The shard writes on each event it credited to a list what the list was (engine/attribution.py:
``attributed_to`` and the ``rec_*`` attributes), so the log alone is the record; nothing here
re-decides attribution. Rows are groups of lists: by experiment arm (an A/B test of ranking
strategies) or by surface (list kind, channel, placement, strategy).

Unit of analysis: the customer. An arm is assigned per customer, and one customer's impressions
are not independent of each other (a customer who clicks, clicks often), so every rate is a ratio
of per-customer sums (clicks over impressions, over the customers with an impression in the
group) and its interval comes from the delta method over customers:

    R = sum(y) / sum(x),   se(R) = sqrt(sum((y_i - R x_i)^2) / (n (n - 1))) / mean(x)

and a difference between two arms (different customers) has se = sqrt(se_a^2 + se_b^2). 95%
intervals: R +- 1.96 se. An A/A test on simulated traffic (tests/unit/test_rec_report.py) puts
the CTR difference's interval around 0 about 95% of the time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from engine.attribution import LABELS, credited_outcome
from engine.events import Event

Z95 = 1.959963984540054
GROUPINGS = {"arm": ("experiment", "arm"), "surface": ("list", "channel", "placement", "strategy")}
_LABEL_AT = {name[len("rec_"):]: i for i, name in enumerate(LABELS)}
# what each outcome counts, per customer: impressions, clicks, add-to-carts, purchases, revenue
_SLOT = {"impression": 0, "click": 1, "add_to_cart": 2, "purchase": 3}


@dataclass(frozen=True)
class Rate:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class GroupReport:
    key: tuple[str, ...]
    customers: int
    impressions: int
    clicks: int
    add_to_carts: int
    purchases: int
    revenue: float
    ctr: Rate
    add_to_cart_rate: Rate
    conversion_rate: Rate          # purchases credited per impression
    revenue_per_impression: Rate
    baseline: tuple[str, ...] | None = None  # the arm compared with (None: this is it, or no arms)
    ctr_diff: Rate | None = None
    revenue_diff: Rate | None = None


def customer_sums(events: Iterable[Event], by: str = "arm",
                  strategies: dict | None = None) -> dict[tuple[str, ...], dict[str, list[float]]]:
    """group key -> customer -> [impressions, clicks, add-to-carts, purchases, revenue] credited;
    ``strategies`` (when given) is filled with group key -> the strategies its lists were made by."""
    fields = GROUPINGS[by]
    out: dict[tuple[str, ...], dict[str, list[float]]] = {}
    for event in events:
        credit = credited_outcome(event)
        if credit is None:
            continue
        labels = credit[1]
        key = tuple(labels[_LABEL_AT[f]] for f in fields)
        if strategies is not None:
            strategies.setdefault(key, set()).add(labels[_LABEL_AT["strategy"]])
        sums = out.setdefault(key, {}).setdefault(event.customer_id, [0.0, 0.0, 0.0, 0.0, 0.0])
        slot = _SLOT[event.event_type]
        sums[slot] += 1
        if slot == 3:
            sums[4] += (event.price or 0.0) * event.quantity
    return out


def ratio(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(R, se) of sum(y) / sum(x) over customers' (y, x), by the delta method (se nan: < 2 customers)."""
    n = len(pairs)
    total_x = math.fsum(x for _, x in pairs)
    if n == 0 or total_x == 0:
        return math.nan, math.nan
    r = math.fsum(y for y, _ in pairs) / total_x
    if n < 2:
        return r, math.nan
    mean_x = total_x / n
    return r, math.sqrt(math.fsum((y - r * x) ** 2 for y, x in pairs) / (n * (n - 1))) / mean_x


def _rate(r: float, se: float) -> Rate:
    """A rate (never below 0) with its 95% interval, clipped at 0."""
    low = r - Z95 * se
    return Rate(r, low if math.isnan(low) else max(0.0, low), r + Z95 * se)


def _diff(a: tuple[float, float], b: tuple[float, float]) -> Rate:
    d = a[0] - b[0]
    se = math.sqrt(a[1] ** 2 + b[1] ** 2)
    return Rate(d, d - Z95 * se, d + Z95 * se)


def report(events: Iterable[Event], by: str = "arm", baseline: str | None = None) -> list[GroupReport]:
    """Per group of ``by`` ("arm": experiment and arm; "surface": list, channel, placement,
    strategy), sorted, over the customers with an impression credited in the group (outcomes of
    customers whose impressions were never sent are left out: they have no denominator). By arm,
    each arm of an experiment is compared with its ``baseline`` arm: the one named, else "control" if
    there is one, else the popularity holdout if there is one, else the first by name."""
    strategies: dict = {}
    groups = {key: {c: r for c, r in customers.items() if r[0] > 0}
              for key, customers in customer_sums(events, by, strategies).items()}
    groups = {key: customers for key, customers in groups.items() if customers}
    stats = {}
    for key, customers in groups.items():
        rows = list(customers.values())
        stats[key] = {"ctr": ratio([(r[1], r[0]) for r in rows]), "atc": ratio([(r[2], r[0]) for r in rows]),
                      "conv": ratio([(r[3], r[0]) for r in rows]), "rpi": ratio([(r[4], r[0]) for r in rows]),
                      "sums": [math.fsum(r[i] for r in rows) for i in range(5)], "n": len(rows)}
    bases: dict[str, tuple[str, ...]] = {}
    if by == "arm":
        for experiment in sorted({k[0] for k in groups if k[0]}):
            arms = sorted(k[1] for k in groups if k[0] == experiment)
            holdouts = [a for a in arms if strategies.get((experiment, a)) == {"popularity"}]
            name = (baseline if baseline in arms else "control" if "control" in arms
                    else holdouts[0] if holdouts else arms[0])
            bases[experiment] = (experiment, name)
    out = []
    for key in sorted(groups):
        s = stats[key]
        base = bases.get(key[0]) if by == "arm" else None
        compared = base is not None and base != key
        b = stats[base] if compared else None
        out.append(GroupReport(
            key=key, customers=s["n"], impressions=int(s["sums"][0]), clicks=int(s["sums"][1]),
            add_to_carts=int(s["sums"][2]), purchases=int(s["sums"][3]), revenue=s["sums"][4],
            ctr=_rate(*s["ctr"]), add_to_cart_rate=_rate(*s["atc"]), conversion_rate=_rate(*s["conv"]),
            revenue_per_impression=_rate(*s["rpi"]), baseline=base if compared else None,
            ctr_diff=_diff(s["ctr"], b["ctr"]) if compared else None,
            revenue_diff=_diff(s["rpi"], b["rpi"]) if compared else None))
    return out


def significant(rate: Rate | None) -> bool:
    """Whether a difference's 95% interval leaves out 0."""
    return rate is not None and (rate.low > 0 or rate.high < 0)


def _fmt(rate: Rate, digits: int, signed: bool = False) -> str:
    if math.isnan(rate.value):
        return "n/a"
    spec = f"{'+' if signed else ''}.{digits}f"
    interval = "n/a" if math.isnan(rate.low) else f"{rate.low:{spec}}, {rate.high:{spec}}"
    return f"{rate.value:{spec}} [{interval}]"


def format_report(reports: Sequence[GroupReport], by: str = "arm") -> str:
    """A plain-text table of ``report``'s rows."""
    names = {"arm": ("experiment", "arm"), "surface": ("list", "channel", "placement", "strategy")}[by]
    header = (*names, "customers", "impressions", "clicks", "CTR [95% CI]", "add-to-cart/imp", "purchases/imp",
              "revenue/imp [95% CI]", "CTR vs baseline", "revenue/imp vs baseline")
    lines = [header]
    for r in reports:
        key = tuple(k or "(none)" for k in r.key)
        if r.baseline is not None:
            mark = lambda d: "*" if significant(d) else ""  # noqa: E731
            vs = (_fmt(r.ctr_diff, 4, True) + mark(r.ctr_diff), _fmt(r.revenue_diff, 3, True) + mark(r.revenue_diff))
        else:
            vs = ("(baseline)", "(baseline)") if by == "arm" and r.key[0] else ("", "")
        lines.append((*key, str(r.customers), str(r.impressions), str(r.clicks), _fmt(r.ctr, 4),
                      _fmt(r.add_to_cart_rate, 4), _fmt(r.conversion_rate, 4), _fmt(r.revenue_per_impression, 3),
                      *vs))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i < len(names) else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("\nper customer with an impression credited to the group; rates are credited outcomes per "
               "impression, 95% intervals by the delta method over customers; * the interval of the "
               "difference leaves out 0.")
    return "\n".join(out)
