"""Next-best-offer decisioning: eligibility, contact policy, Thompson-sampling propensities,
arbitration between offers, and experiment read-outs. All pure: the clock comes in the
context (``now_ms``), randomness as ``rng``; the actors own the state and call these.

``rng`` is a ``numpy.random.Generator`` or a ``random.Random``.
"""
from __future__ import annotations

import bisect
import hashlib
import math
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Sequence

from engine.errors import InvalidArgument
from engine.events import CHANNELS
from engine.offers import DAY_MS, SEGMENTS, STRATEGIES, Arm, BanditSettings, Experiment, Offer, OfferCatalog
from engine.validation import require_choice, require_id, require_int

__all__ = [
    "SEGMENTS", "STRATEGIES", "HISTORY_KINDS", "NO_OFFER_REASONS", "OfferHistory", "DecisionContext",
    "segment_of", "check_eligibility", "caps_left", "BanditState", "counts_to_rows", "counts_from_rows",
    "assign_arm", "ScoredOffer", "Decision", "decide", "ArmReport", "experiment_report", "format_report",
]

HISTORY_KINDS = frozenset({"shown", "accepted", "declined"})
# Decision.reason when no offer is returned: a small fixed set, fit for a metrics label.
NO_OFFER_REASONS = frozenset({"no_offers", "no_eligible_offer", "no_marketing_consent", "contact_capped",
                              "control_arm"})
MAX_OFFERS_PER_DECISION = 100
# A customer's offer history is kept short: it lives in memory for every customer of a shard.
MAX_HISTORY_ENTRIES = 50
_CAP_RULES = frozenset({"cap_per_channel", "cooldown_after_decline", "global_budget"})
_Z95 = 1.959963984540054

# Segment thresholds, read off UCI Online Retail (4,339 known customers, Dec 2010 - Dec 2011):
# the median customer has 2 orders and spent ~GBP 670; the top 5% spent over ~GBP 5,800 or
# placed 13+ orders; a quarter had not ordered for 140+ days at the end of the data.
LAPSED_AFTER_DAYS = 120.0
VIP_MIN_SPEND = 5000.0
VIP_MIN_ORDERS = 15
REGULAR_MIN_ORDERS = 5

# Interned once, so a million histories share one string object per kind.
_KINDS = {kind: sys.intern(kind) for kind in HISTORY_KINDS}

HistoryEntry = tuple[str, str, str, int]


@dataclass(slots=True)
class OfferHistory:
    """One customer's recent offer contacts: (offer_id, channel, kind, ts_ms), oldest first.

    Mutable and compact on purpose: a shard keeps one per customer. Entries beyond the last
    ``MAX_HISTORY_ENTRIES``, or older than the catalogue's longest cap period, are dropped,
    since no cap can look at them any more."""

    entries: list[HistoryEntry] = field(default_factory=list)

    def record(self, offer_id: str, channel: str, kind: str, ts_ms: int, *, horizon_ms: int | None = None) -> None:
        """Add one contact. ``horizon_ms`` (``OfferCatalog.history_horizon_ms``) trims old entries."""
        entry = (sys.intern(require_id(offer_id, "offer_id")),
                 sys.intern(require_choice(channel, "channel", CHANNELS)),
                 _KINDS[require_choice(kind, "kind", HISTORY_KINDS)],
                 require_int(ts_ms, "ts_ms", low=0, high=2**62))
        entries = self.entries
        if not entries or entries[-1][3] <= ts_ms:
            entries.append(entry)
        else:
            # events from several channels can arrive out of order; keep time order for trimming
            bisect.insort(entries, entry, key=lambda e: e[3])
        if len(entries) > MAX_HISTORY_ENTRIES:
            del entries[:len(entries) - MAX_HISTORY_ENTRIES]
        if horizon_ms is not None:
            self.trim(entries[-1][3], horizon_ms)

    def trim(self, now_ms: int, horizon_ms: int) -> None:
        """Drop entries older than ``now_ms - horizon_ms``."""
        cutoff = now_ms - horizon_ms
        entries = self.entries
        if entries and entries[0][3] < cutoff:
            keep = bisect.bisect_left(entries, cutoff, key=lambda e: e[3])
            del entries[:keep]

    def shown_count(self, offer_id: str, channel: str, since_ms: int) -> int:
        """How many times the offer was shown in this channel at or after ``since_ms``."""
        return sum(1 for o, c, k, ts in self.entries
                   if ts >= since_ms and o == offer_id and c == channel and k == "shown")

    def last_declined_ms(self, offer_id: str) -> int | None:
        """When the customer last declined this offer, in any channel."""
        for o, _, k, ts in reversed(self.entries):
            if o == offer_id and k == "declined":
                return ts
        return None

    def to_list(self) -> list[list[Any]]:
        """JSON-ready snapshot."""
        return [list(entry) for entry in self.entries]

    @classmethod
    def from_list(cls, raw: Any, where: str = "offer_history") -> OfferHistory:
        """Rebuild from ``to_list`` output, validating every entry."""
        if not isinstance(raw, (list, tuple)):
            raise InvalidArgument(f"{where}: must be a list")
        history = cls()
        for i, entry in enumerate(raw):
            if not isinstance(entry, (list, tuple)) or len(entry) != 4:
                raise InvalidArgument(f"{where}[{i}]: must be [offer_id, channel, kind, ts_ms]")
            try:
                history.record(*entry)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{where}[{i}].{exc.message}") from None
        return history


@dataclass(frozen=True, kw_only=True, slots=True)
class DecisionContext:
    """What is known about the customer and the moment when an offer is asked for.

    ``basket`` holds (item_id, quantity, unit_price or None); ``item_categories`` maps item id to
    category for the basket-category rule; ``now_ms`` is the decision clock."""

    customer_id: str
    channel: str
    now_ms: int
    store_id: str = ""
    country: str = ""
    segment: str = "new"
    basket: tuple[tuple[str, float, float | None], ...] = ()
    basket_value: float = 0.0
    purchased_items: frozenset[str] = frozenset()
    item_categories: Mapping[str, str] = field(default_factory=dict)
    marketing_consent: bool = False


def segment_of(purchase_count: int, total_spend: float, days_since_last_purchase: float | None) -> str:
    """The customer's lifecycle segment, first rule that matches:

    - no purchase yet -> "new"
    - last purchase more than LAPSED_AFTER_DAYS (120) days ago -> "lapsed" (even a former VIP:
      a win-back offer is what fits them now)
    - total spend >= VIP_MIN_SPEND (5000) or >= VIP_MIN_ORDERS (15) orders -> "vip"
    - >= REGULAR_MIN_ORDERS (5) orders -> "regular"
    - exactly one order -> "new"
    - otherwise (2-4 orders) -> "occasional"
    """
    if purchase_count <= 0:
        return "new"
    if days_since_last_purchase is not None and days_since_last_purchase > LAPSED_AFTER_DAYS:
        return "lapsed"
    if total_spend >= VIP_MIN_SPEND or purchase_count >= VIP_MIN_ORDERS:
        return "vip"
    if purchase_count >= REGULAR_MIN_ORDERS:
        return "regular"
    if purchase_count == 1:
        return "new"
    return "occasional"


def _budget(offer: Offer, budget_left: Mapping[str, int] | None) -> int | None:
    if budget_left is None:
        return None
    return budget_left.get(offer.id)


def _rules(offer: Offer, ctx: DecisionContext, history: OfferHistory,
           budget_left: Mapping[str, int] | None) -> Iterator[tuple[str, bool]]:
    """(rule, passed) for every rule the offer configures, cheapest first. A generator, so a
    rule after the first failure is never evaluated."""
    rules, caps = offer.eligibility, offer.caps
    if offer.valid_from_ms is not None or offer.valid_until_ms is not None:
        yield "validity_window", ((offer.valid_from_ms is None or ctx.now_ms >= offer.valid_from_ms)
                                  and (offer.valid_until_ms is None or ctx.now_ms < offer.valid_until_ms))
    if offer.channels:
        yield "channel", ctx.channel in offer.channels
    if rules.consent_required:
        yield "marketing_consent", ctx.marketing_consent
    if rules.segments:
        yield "segment", ctx.segment in rules.segments
    if rules.countries:
        yield "country", ctx.country in rules.countries
    if rules.min_basket_value > 0:
        yield "min_basket_value", ctx.basket_value >= rules.min_basket_value
    if rules.basket_contains_items:
        yield "basket_contains_items", any(item in rules.basket_contains_items for item, _, _ in ctx.basket)
    if rules.basket_contains_categories:
        yield "basket_contains_categories", any(ctx.item_categories.get(item) in rules.basket_contains_categories
                                                for item, _, _ in ctx.basket)
    if rules.has_bought_items:
        yield "has_bought_items", not rules.has_bought_items.isdisjoint(ctx.purchased_items)
    if rules.has_not_bought_items:
        yield "has_not_bought_items", rules.has_not_bought_items.isdisjoint(ctx.purchased_items)
    if caps.per_customer_per_channel is not None:
        since = ctx.now_ms - caps.period_days * DAY_MS
        yield "cap_per_channel", history.shown_count(offer.id, ctx.channel, since) < caps.per_customer_per_channel
    if caps.cooldown_after_decline_days > 0:
        declined = history.last_declined_ms(offer.id)
        yield "cooldown_after_decline", (declined is None
                                         or ctx.now_ms - declined >= caps.cooldown_after_decline_days * DAY_MS)
    left = _budget(offer, budget_left)
    if left is not None:
        yield "global_budget", left > 0


def check_eligibility(offer: Offer, ctx: DecisionContext, history: OfferHistory,
                      budget_left: Mapping[str, int] | None = None) -> tuple[bool, list[str], str | None]:
    """(eligible, rules passed, first rule failed). Only rules the offer configures are listed:
    an offer with no segment restriction does not report "segment" as a reason.
    ``budget_left`` maps offer id -> shows this shard may still make; missing = unlimited."""
    passed = []
    for rule, ok in _rules(offer, ctx, history, budget_left):
        if not ok:
            return False, passed, rule
        passed.append(rule)
    return True, passed, None


def caps_left(offer: Offer, ctx: DecisionContext, history: OfferHistory,
              budget_left: Mapping[str, int] | None = None) -> dict[str, int]:
    """What the contact policy still allows, for the response's reasons: shows left in this
    channel's window, seconds of decline cool-down left, shows left in this shard's budget.
    Only configured caps appear."""
    caps = offer.caps
    out: dict[str, int] = {}
    if caps.per_customer_per_channel is not None:
        shown = history.shown_count(offer.id, ctx.channel, ctx.now_ms - caps.period_days * DAY_MS)
        out["per_customer_per_channel"] = max(0, caps.per_customer_per_channel - shown)
    if caps.cooldown_after_decline_days > 0:
        declined = history.last_declined_ms(offer.id)
        remaining_ms = 0 if declined is None else declined + caps.cooldown_after_decline_days * DAY_MS - ctx.now_ms
        out["cooldown_seconds_left"] = max(0, math.ceil(remaining_ms / 1000))
    left = _budget(offer, budget_left)
    if left is not None:
        out["global_budget"] = max(0, int(left))
    return out


BanditCounts = dict[tuple[str, str], tuple[int, int]]


class BanditState:
    """Beta-Bernoulli posteriors of acceptance per (offer_id, segment), kept as counts
    (shown, accepted) over the prior in ``BanditSettings``.

    Several shards learn together through one aggregator, without double counting:

        # shard, periodically
        delta = state.delta_since_last()          # local increments not yet sent; cleared
        try:
            totals = aggregator.add_counts(delta)  # aggregator: agg_state.add_counts(delta);
        except Exception:                          #             return agg_state.counts()
            state.restore_delta(delta)             # nothing lost: sent again next time
        else:
            state.merge(totals)                    # global totals + what happened meanwhile

    ``merge`` replaces this state's totals by the global ones plus the increments recorded
    since the delta was taken, so a shard's own observations are counted exactly once.
    """

    __slots__ = ("settings", "_totals", "_pending")

    def __init__(self, settings: BanditSettings | None = None,
                 counts: Mapping[tuple[str, str], Sequence[int]] | None = None):
        self.settings = settings or BanditSettings()
        self._totals: dict[tuple[str, str], list[int]] = {}
        self._pending: dict[tuple[str, str], list[int]] = {}
        if counts:
            self.add_counts(counts)

    def update(self, offer_id: str, segment: str, kind: str) -> None:
        """One observation: "shown" is a trial, "accepted" a success; "declined" adds nothing
        (the show that preceded it already counted the trial)."""
        require_choice(kind, "kind", HISTORY_KINDS)
        if kind == "declined":
            return
        slot = 0 if kind == "shown" else 1
        key = (offer_id, segment)
        self._totals.setdefault(key, [0, 0])[slot] += 1
        self._pending.setdefault(key, [0, 0])[slot] += 1

    def alpha_beta(self, offer_id: str, segment: str) -> tuple[float, float]:
        shown, accepted = self._totals.get((offer_id, segment), (0, 0))
        # an acceptance can be logged on a shard that never saw the show; never a negative failure
        failures = max(shown - accepted, 0)
        return self.settings.prior_alpha + accepted, self.settings.prior_beta + failures

    def mean(self, offer_id: str, segment: str) -> float:
        """Posterior mean acceptance probability."""
        a, b = self.alpha_beta(offer_id, segment)
        return a / (a + b)

    def sample(self, offer_id: str, segment: str, rng: Any) -> float:
        """One Thompson draw from the posterior."""
        a, b = self.alpha_beta(offer_id, segment)
        draw = getattr(rng, "beta", None)
        return float(draw(a, b)) if draw is not None else float(rng.betavariate(a, b))

    def counts(self) -> BanditCounts:
        """Totals as {(offer_id, segment): (shown, accepted)}."""
        return {key: (v[0], v[1]) for key, v in self._totals.items()}

    def delta_since_last(self) -> BanditCounts:
        """Increments recorded here since the last call; they are handed over and cleared."""
        delta = {key: (v[0], v[1]) for key, v in self._pending.items()}
        self._pending = {}
        return delta

    def restore_delta(self, delta: Mapping[tuple[str, str], Sequence[int]]) -> None:
        """Put back a delta that could not be sent (totals already include it)."""
        for key, (shown, accepted) in _checked(delta):
            pending = self._pending.setdefault(key, [0, 0])
            pending[0] += shown
            pending[1] += accepted

    def add_counts(self, counts: Mapping[tuple[str, str], Sequence[int]]) -> None:
        """Add increments to the totals: what an aggregator does with each shard's delta, and how
        a snapshot is loaded. They are not pending: this state will not send them on."""
        for key, (shown, accepted) in _checked(counts):
            total = self._totals.setdefault(key, [0, 0])
            total[0] += shown
            total[1] += accepted

    def merge(self, global_counts: Mapping[tuple[str, str], Sequence[int]]) -> None:
        """Adopt the aggregator's totals (which include every delta this state has sent),
        keeping the increments recorded here since, which the aggregator has not seen yet."""
        totals = {key: [shown, accepted] for key, (shown, accepted) in _checked(global_counts)}
        for key, (shown, accepted) in self._pending.items():
            total = totals.setdefault(key, [0, 0])
            total[0] += shown
            total[1] += accepted
        self._totals = totals


def _checked(counts: Mapping[tuple[str, str], Sequence[int]]) -> Iterator[tuple[tuple[str, str], tuple[int, int]]]:
    if not isinstance(counts, Mapping):
        raise InvalidArgument("bandit counts: must be a mapping (offer_id, segment) -> (shown, accepted)")
    for key, value in counts.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
            raise InvalidArgument(f"bandit counts: key {key!r} must be (offer_id, segment)")
        if not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise InvalidArgument(f"bandit counts[{key!r}]: must be (shown, accepted)")
        shown = require_int(value[0], f"bandit counts[{key!r}].shown", low=0, high=2**62)
        accepted = require_int(value[1], f"bandit counts[{key!r}].accepted", low=0, high=2**62)
        yield key, (shown, accepted)


def counts_to_rows(counts: Mapping[tuple[str, str], Sequence[int]]) -> list[list[Any]]:
    """[[offer_id, segment, shown, accepted], ...]: JSON has no tuple keys."""
    return [[o, s, shown, accepted] for (o, s), (shown, accepted) in sorted(_checked(counts))]


def counts_from_rows(rows: Iterable[Sequence[Any]]) -> BanditCounts:
    out: BanditCounts = {}
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise InvalidArgument(f"bandit rows[{i}]: must be [offer_id, segment, shown, accepted]")
        key = (require_id(row[0], f"bandit rows[{i}].offer_id"), require_id(row[1], f"bandit rows[{i}].segment"))
        out[key] = (require_int(row[2], f"bandit rows[{i}].shown", low=0, high=2**62),
                    require_int(row[3], f"bandit rows[{i}].accepted", low=0, high=2**62))
    return out


def assign_arm(customer_id: str, experiment: Experiment) -> Arm:
    """The customer's arm: a stable hash of (experiment id, customer id) into [0, 1), cut by the
    arms' shares. Stable across processes and restarts (unlike ``hash()``), and independent
    between experiments."""
    digest = hashlib.blake2b(f"{experiment.id}\x00{customer_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2.0**64
    edge = 0.0
    for arm in experiment.arms:
        edge += arm.share
        if point < edge:
            return arm
    # shares sum to 1 within rounding; the point can land in the sliver past the last edge
    return next(arm for arm in reversed(experiment.arms) if arm.share > 0)


@dataclass(frozen=True)
class ScoredOffer:
    """One offer in a decision, with everything needed to explain it."""

    offer_id: str
    name: str
    score: float
    propensity: float  # posterior mean acceptance probability
    sample: float | None  # the Thompson draw (None for static_priority)
    value: float
    affinity: float
    passed_rules: tuple[str, ...]
    caps_left: Mapping[str, int]


@dataclass(frozen=True)
class Decision:
    """The outcome of ``decide``: offers best first (possibly none, then ``reason`` says why),
    the strategy used, the experiment arm (empty when none applied) and why each rejected
    offer was rejected (its first failed rule)."""

    offers: tuple[ScoredOffer, ...]
    reason: str
    strategy: str
    experiment_id: str
    arm: str
    rejected: Mapping[str, str]


def _affinity(affinity: Mapping[str, float] | None, offer_id: str) -> float:
    value = affinity.get(offer_id, 0.0) if affinity else 0.0
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    # a model's score can stray outside [0, 1]; the formula assumes that range
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0


def _no_offer_reason(rejected: Mapping[str, str]) -> str:
    if not rejected:
        return "no_offers"
    rules = set(rejected.values())
    if rules == {"marketing_consent"}:
        return "no_marketing_consent"
    if rules <= _CAP_RULES:
        return "contact_capped"
    return "no_eligible_offer"


def decide(catalog: OfferCatalog, ctx: DecisionContext, history: OfferHistory, bandit: BanditState,
           affinity: Mapping[str, float] | None, budget_left: Mapping[str, int] | None, n: int, rng: Any,
           strategy: str | None = None) -> Decision:
    """Pick up to ``n`` offers for this customer now, best first.

    The strategy is ``strategy`` when given, else the customer's arm of the catalogue's first
    experiment, else "bandit":

    - bandit: score = Thompson draw * (1 + affinity_weight * affinity) * value * weight
    - static_priority: score = weight * value (no randomness; ties by offer id)
    - control: no offer. Eligibility is still evaluated, and reason is "control_arm" only when
      an offer would have been made, so the caller logs a control exposure exactly when a
      treated customer would have had one (otherwise the arms are not comparable).
    """
    n = require_int(n, "n", low=1, high=MAX_OFFERS_PER_DECISION)
    experiment_id = arm_name = ""
    if strategy is None:
        experiment = catalog.experiment
        if experiment is not None:
            arm = assign_arm(ctx.customer_id, experiment)
            strategy, experiment_id, arm_name = arm.strategy, experiment.id, arm.name
        else:
            strategy = "bandit"
    else:
        require_choice(strategy, "strategy", STRATEGIES)

    eligible: list[tuple[Offer, tuple[str, ...]]] = []
    rejected: dict[str, str] = {}
    for offer in catalog.offers:
        ok, passed, failed = check_eligibility(offer, ctx, history, budget_left)
        if ok:
            eligible.append((offer, tuple(passed)))
        else:
            rejected[offer.id] = failed

    def result(offers: tuple[ScoredOffer, ...], reason: str) -> Decision:
        return Decision(offers, reason, strategy, experiment_id, arm_name, rejected)

    if not eligible:
        return result((), _no_offer_reason(rejected))
    if strategy == "control":
        return result((), "control_arm")

    weight_of_affinity = catalog.bandit.affinity_weight
    scored = []
    for offer, passed in eligible:
        aff = _affinity(affinity, offer.id)
        if strategy == "bandit":
            sample = bandit.sample(offer.id, ctx.segment, rng)
            score = sample * (1.0 + weight_of_affinity * aff) * offer.value * offer.weight
        else:
            sample = None
            score = offer.weight * offer.value
        scored.append((score, offer, passed, aff, sample))
    scored.sort(key=lambda s: (-s[0], s[1].id))
    offers = tuple(
        ScoredOffer(offer_id=offer.id, name=offer.name, score=score,
                    propensity=bandit.mean(offer.id, ctx.segment), sample=sample, value=offer.value,
                    affinity=aff, passed_rules=passed,
                    caps_left=MappingProxyType(caps_left(offer, ctx, history, budget_left)))
        for score, offer, passed, aff, sample in scored[:n])
    return result(offers, "")


@dataclass(frozen=True)
class ArmReport:
    """An experiment arm's read-out. Intervals are 95%: Wilson for the acceptance rate, normal
    approximation over customers for revenue per customer (NaN with fewer than 2 customers)."""

    experiment_id: str
    arm: str
    customers: int
    exposures: int
    acceptances: int
    acceptance_rate: float
    acceptance_ci: tuple[float, float]
    revenue: float
    revenue_per_customer: float
    revenue_per_customer_ci: tuple[float, float]


_ROW_FIELDS = ("experiment_id", "arm", "customer_id", "kind", "value")


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = _Z95 * _Z95
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = _Z95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def experiment_report(rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> list[ArmReport]:
    """Per (experiment, arm) read-out from exposure/outcome rows: mappings with keys
    experiment_id, arm, customer_id, kind ("shown"/"accepted"/"declined"), value (the value
    realised on "accepted"), or tuples in that order. For a control arm, log "shown" when the
    decision said "control_arm" and "accepted" when the customer took up the target anyway."""
    arms: dict[tuple[str, str], dict[str, Any]] = {}
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            experiment_id, arm, customer_id, kind, value = (row.get(f) for f in _ROW_FIELDS)
        elif isinstance(row, (list, tuple)) and len(row) in (4, 5):
            experiment_id, arm, customer_id, kind, value = (*row, None)[:5]
        else:
            raise InvalidArgument(f"rows[{i}]: must be a mapping or (experiment_id, arm, customer_id, kind, value)")
        require_choice(kind, f"rows[{i}].kind", HISTORY_KINDS)
        stats = arms.setdefault((str(experiment_id), str(arm)), {"revenue": {}, "exposures": 0, "acceptances": 0})
        per_customer = stats["revenue"]
        per_customer.setdefault(customer_id, 0.0)
        if kind == "shown":
            stats["exposures"] += 1
        elif kind == "accepted":
            stats["acceptances"] += 1
            per_customer[customer_id] += float(value or 0.0)
    reports = []
    for (experiment_id, arm), stats in sorted(arms.items()):
        revenues = list(stats["revenue"].values())
        customers = len(revenues)
        total = math.fsum(revenues)
        mean = total / customers if customers else 0.0
        if customers >= 2:
            variance = math.fsum((r - mean) ** 2 for r in revenues) / (customers - 1)
            half = _Z95 * math.sqrt(variance / customers)
            interval = (mean - half, mean + half)
        else:
            interval = (math.nan, math.nan)
        exposures, acceptances = stats["exposures"], stats["acceptances"]
        reports.append(ArmReport(
            experiment_id=experiment_id, arm=arm, customers=customers, exposures=exposures,
            acceptances=acceptances, acceptance_rate=acceptances / exposures if exposures else 0.0,
            acceptance_ci=_wilson(acceptances, exposures), revenue=total,
            revenue_per_customer=mean, revenue_per_customer_ci=interval))
    return reports


def format_report(reports: Sequence[ArmReport]) -> str:
    """A plain-text table of ``experiment_report`` output."""
    header = ("experiment", "arm", "customers", "exposures", "accepted", "accept rate [95% CI]",
              "revenue", "revenue/customer [95% CI]")
    lines = [header]
    for r in reports:
        low, high = r.revenue_per_customer_ci
        rev_ci = "n/a" if math.isnan(low) else f"{low:.2f}, {high:.2f}"
        lines.append((r.experiment_id, r.arm, str(r.customers), str(r.exposures), str(r.acceptances),
                      f"{r.acceptance_rate:.3f} [{r.acceptance_ci[0]:.3f}, {r.acceptance_ci[1]:.3f}]",
                      f"{r.revenue:.2f}", f"{r.revenue_per_customer:.2f} [{rev_ci}]"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        # names left-aligned, numbers right-aligned
        out.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
