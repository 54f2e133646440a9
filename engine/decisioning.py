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
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Sequence

from scipy.stats import binomtest

from engine.errors import InvalidArgument
from engine import events as _events
from engine.offers import DAY_MS, SEGMENTS, STRATEGIES, Arm, BanditSettings, Experiment, Offer, OfferCatalog
from engine.validation import require_choice, require_id, require_int

__all__ = [
    "SEGMENTS", "STRATEGIES", "HISTORY_KINDS", "NO_OFFER_REASONS", "OfferHistory", "DecisionContext",
    "segment_of", "check_eligibility", "caps_left", "BanditState", "counts_to_rows", "counts_from_rows",
    "assign_arm", "ScoredOffer", "Decision", "decide", "CustomerOutcome", "ArmReport", "experiment_report",
    "format_report", "DIRECT_MARKETING_CHANNELS", "TRIM_SLACK_MS",
]

HISTORY_KINDS = frozenset({"shown", "accepted", "declined"})
# Decision.reason when no offer is returned: a small fixed set, fit for a metrics label.
NO_OFFER_REASONS = frozenset({"no_offers", "no_eligible_offer", "no_marketing_consent", "contact_capped",
                              "control_arm"})
MAX_OFFERS_PER_DECISION = 100
# Direct marketing by law (ePrivacy art. 13, PECR reg. 22): in these channels an offer needs the
# customer's marketing consent even when its catalogue entry says consent_required = false.
DIRECT_MARKETING_CHANNELS = frozenset({"email", "push", "sms"})
# How far a later decision's clock may lag the clock of the show that trimmed a history (several
# ingress replicas stamp decisions): trimming keeps this much more than a window needs, so caps
# stay exact for such a decision too. Keeping more never changes a count (the cap bounds memory).
TRIM_SLACK_MS = DAY_MS
# Responses are screened against a customer's recent shows (engine.config.OffersConfig:
# answerable_shows, response_window_days); these are the defaults for OfferHistory.trim.
DEFAULT_ANSWERABLE_SHOWS = 32
DEFAULT_RESPONSE_WINDOW_MS = 30 * DAY_MS
_CAP_RULES = frozenset({"cap_per_channel", "cooldown_after_decline", "global_budget", "contact_cap"})
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
_SNAPSHOT_VERSION = 2


@dataclass(slots=True)
class OfferHistory:
    """One customer's offer contacts, kept as the contact policy and the response screening need
    them, and no more (a shard keeps one per customer who was ever offered something):

    - ``shows``: (offer_id, channel) -> show timestamps, ascending. ``trim`` keeps, per key, at most
      the offer's ``per_customer_per_channel`` latest ones, none older than its window (plus
      TRIM_SLACK_MS); offers without that cap keep none. The latest K timestamps are enough to say
      exactly how many of them fall in any window that ends after them, up to K: so the cap check
      and ``caps_left`` are exact whatever the volume of history, and memory is at most the sum of
      the caps (per channel used).
    - ``declines``: offer_id -> the latest decline, in any channel; kept only for offers with a
      cool-down, and only while it can still block.
    - ``decisions``: (decision_id, offer_id) -> [shown_ms, the event id of its first response or ""],
      in the order shown: the shows a response may answer (``answerable``), at most the last
      ``keep_decisions``, none older than ``decision_window_ms``.

    Records come in any order (several channels, late arrivals); ``record`` keeps everything and
    ``trim`` (which needs the catalogue) drops what no rule can look at any more. Checks are exact
    on a trimmed or an untrimmed history alike."""

    shows: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    declines: dict[str, int] = field(default_factory=dict)
    decisions: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def record(self, offer_id: str, channel: str, kind: str, ts_ms: int, *, decision_id: str = "",
               event_id: str = "") -> None:
        """Add one contact. With ``decision_id``, a show becomes answerable and a response marks
        its show answered (by ``event_id``)."""
        offer_id = sys.intern(require_id(offer_id, "offer_id"))
        channel = sys.intern(require_choice(channel, "channel", _events.CHANNELS))
        kind = _KINDS[require_choice(kind, "kind", HISTORY_KINDS)]
        ts_ms = require_int(ts_ms, "ts_ms", low=0, high=2**62)
        if kind == "shown":
            times = self.shows.setdefault((offer_id, channel), [])
            if not times or times[-1] <= ts_ms:
                times.append(ts_ms)
            else:  # out of order: keep time order, the counts bisect it
                bisect.insort(times, ts_ms)
            if decision_id:
                self.decisions.setdefault((decision_id, offer_id), [ts_ms, ""])
            return
        if kind == "declined":
            self.declines[offer_id] = max(ts_ms, self.declines.get(offer_id, ts_ms))
        if decision_id:
            shown = self.decisions.get((decision_id, offer_id))
            if shown is not None and not shown[1]:
                shown[1] = event_id or "?"

    def trim(self, catalog: OfferCatalog, now_ms: int | None = None, *,
             keep_decisions: int = DEFAULT_ANSWERABLE_SHOWS,
             decision_window_ms: int = DEFAULT_RESPONSE_WINDOW_MS) -> None:
        """Drop what no rule of ``catalog`` can look at for a decision at ``now_ms - TRIM_SLACK_MS``
        or later. ``now_ms`` None: trim by count only (a client's clock must not age the history)."""
        for key in list(self.shows):
            offer = catalog.by_id.get(key[0])
            cap = offer.caps.per_customer_per_channel if offer is not None else None
            if cap is None:
                del self.shows[key]
                continue
            times = self.shows[key]
            if now_ms is not None:
                old = bisect.bisect_left(times, now_ms - offer.caps.period_days * DAY_MS - TRIM_SLACK_MS)
                if old:
                    del times[:old]
            if len(times) > cap:
                del times[:len(times) - cap]
            if not times:
                del self.shows[key]
        for offer_id, declined in list(self.declines.items()):
            offer = catalog.by_id.get(offer_id)
            cooldown = offer.caps.cooldown_after_decline_days if offer is not None else 0.0
            if cooldown <= 0 or (now_ms is not None and declined + cooldown * DAY_MS <= now_ms - TRIM_SLACK_MS):
                del self.declines[offer_id]
        decisions = self.decisions
        if now_ms is not None:
            for key in [k for k, (shown, _) in decisions.items() if shown < now_ms - decision_window_ms]:
                del decisions[key]
        while len(decisions) > keep_decisions:
            del decisions[next(iter(decisions))]

    def answerable(self, decision_id: str, offer_id: str, event_id: str, ts_ms: int,
                   window_ms: int = DEFAULT_RESPONSE_WINDOW_MS) -> bool:
        """Whether a response (accept/decline) counts: it names a show made to this customer, within
        ``window_ms`` after it, and is that show's first response. A re-delivery of the first
        response (same event id) passes, for the store to answer it as a duplicate."""
        shown = self.decisions.get((decision_id, offer_id))
        if shown is None:
            return False
        if shown[1]:
            return shown[1] == event_id
        return ts_ms <= shown[0] + window_ms

    def entry_count(self) -> int:
        """Timestamps kept for the contact policy (what the caps bound)."""
        return sum(len(times) for times in self.shows.values()) + len(self.declines)

    def shown_count(self, offer_id: str, channel: str, since_ms: int) -> int:
        """How many times the offer was shown in this channel at or after ``since_ms``."""
        times = self.shows.get((offer_id, channel))
        return len(times) - bisect.bisect_left(times, since_ms) if times else 0

    def last_declined_ms(self, offer_id: str) -> int | None:
        """When the customer last declined this offer, in any channel."""
        return self.declines.get(offer_id)

    def to_list(self) -> dict[str, Any]:
        """JSON-ready snapshot (a mapping since version 2; ``from_list`` also reads the version-1
        list of [offer_id, channel, kind, ts_ms] entries)."""
        return {"v": _SNAPSHOT_VERSION,
                "shows": [[o, c, list(times)] for (o, c), times in self.shows.items()],
                "declines": [[o, ts] for o, ts in self.declines.items()],
                "decisions": [[d, o, shown, answered] for (d, o), (shown, answered) in self.decisions.items()]}

    @classmethod
    def from_list(cls, raw: Any, where: str = "offer_history") -> OfferHistory:
        """Rebuild from ``to_list`` output (either version), validating every entry."""
        history = cls()
        if isinstance(raw, (list, tuple)):  # version 1: every contact, oldest first
            for i, entry in enumerate(raw):
                if not isinstance(entry, (list, tuple)) or len(entry) != 4:
                    raise InvalidArgument(f"{where}[{i}]: must be [offer_id, channel, kind, ts_ms]")
                try:
                    history.record(*entry)
                except InvalidArgument as exc:
                    raise InvalidArgument(f"{where}[{i}].{exc.message}") from None
            return history
        if not isinstance(raw, Mapping) or raw.get("v") != _SNAPSHOT_VERSION:
            raise InvalidArgument(f"{where}: must be a list (version 1) or a mapping with v = {_SNAPSHOT_VERSION}")
        part = "shows"
        try:
            for offer_id, channel, times in raw.get("shows", ()):
                for ts in times:
                    history.record(offer_id, channel, "shown", ts)
            part = "declines"
            for offer_id, ts in raw.get("declines", ()):
                history.declines[sys.intern(require_id(offer_id, "offer_id"))] = require_int(
                    ts, "ts_ms", low=0, high=2**62)
            part = "decisions"
            for decision_id, offer_id, shown, answered in raw.get("decisions", ()):
                key = (require_id(decision_id, "decision_id"), sys.intern(require_id(offer_id, "offer_id")))
                history.decisions[key] = [require_int(shown, "shown_ms", low=0, high=2**62),
                                          require_id(answered, "answered", required=False)]
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}.{part}.{exc.message}") from None
        except (TypeError, ValueError):
            raise InvalidArgument(f"{where}.{part}: malformed (version {_SNAPSHOT_VERSION})") from None
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
    # marketing contacts the customer may still get in this channel now (the contact-frequency cap,
    # OffersConfig.contact_cap_per_channel); None: no cap
    contacts_left: int | None = None


def is_marketing(offer: Offer, channel: str) -> bool:
    """Whether showing ``offer`` in ``channel`` is a marketing contact: it needs marketing consent,
    or the channel is direct marketing. A service offer at the till is not."""
    return offer.eligibility.consent_required or channel in DIRECT_MARKETING_CHANNELS


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
    # consent_required = false declares a service offer, not marketing (a treat at the till for a
    # customer who is there); where the channel itself is direct marketing, consent still applies
    marketing = is_marketing(offer, ctx.channel)
    if marketing:
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
    if marketing and ctx.contacts_left is not None:
        yield "contact_cap", ctx.contacts_left > 0


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
    offer was rejected (its first failed rule). For a control-arm customer ``offers`` is empty
    and ``withheld`` holds what would have been offered (the control exposure records it, so
    that every arm's outcome is measured on the same offers' target items)."""

    offers: tuple[ScoredOffer, ...]
    reason: str
    strategy: str
    experiment_id: str
    arm: str
    rejected: Mapping[str, str]
    withheld: tuple[ScoredOffer, ...] = ()


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
      treated customer would have had one (otherwise the arms are not comparable). The offers
      that would have been made are in ``Decision.withheld``, ranked by the strategy of the
      experiment's first treated arm (bandit when there is none).
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

    if not eligible:
        return Decision((), _no_offer_reason(rejected), strategy, experiment_id, arm_name, rejected)
    if strategy == "control":
        treated = next((a.strategy for a in catalog.experiment.arms if a.strategy != "control"), "bandit") \
            if catalog.experiment is not None else "bandit"
        withheld = _rank(catalog, ctx, history, bandit, affinity, budget_left, n, rng, treated, eligible)
        return Decision((), "control_arm", strategy, experiment_id, arm_name, rejected, withheld)
    offers = _rank(catalog, ctx, history, bandit, affinity, budget_left, n, rng, strategy, eligible)
    return Decision(offers, "", strategy, experiment_id, arm_name, rejected)


def _rank(catalog: OfferCatalog, ctx: DecisionContext, history: OfferHistory, bandit: BanditState,
          affinity: Mapping[str, float] | None, budget_left: Mapping[str, int] | None, n: int, rng: Any,
          strategy: str, eligible: list[tuple[Offer, tuple[str, ...]]]) -> tuple[ScoredOffer, ...]:
    """The eligible offers scored by ``strategy`` ("bandit" or "static_priority"), best ``n``."""
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
    if ctx.contacts_left is not None:
        # each marketing offer shown is a contact: no more of them than the cap still allows
        room, kept = ctx.contacts_left, []
        for entry in scored:
            if is_marketing(entry[1], ctx.channel):
                if room <= 0:
                    continue
                room -= 1
            kept.append(entry)
        scored = kept
    return tuple(
        ScoredOffer(offer_id=offer.id, name=offer.name, score=score,
                    propensity=bandit.mean(offer.id, ctx.segment), sample=sample, value=offer.value,
                    affinity=aff, passed_rules=passed,
                    caps_left=MappingProxyType(caps_left(offer, ctx, history, budget_left)))
        for score, offer, passed, aff, sample in scored[:n])


@dataclass(frozen=True)
class CustomerOutcome:
    """One exposed customer in one experiment, the unit of analysis (engine.offer_log builds these
    from the stored events). From the customer's first exposure, ``converted`` says whether they
    bought one of the exposures' target items within the outcome window, ``revenue`` is what they
    spent in it (price x quantity, every item). ``control``: the exposures were control ones (the
    offer withheld). ``exposures`` / ``acceptances`` count decisions and genuine acceptances (a
    secondary figure, for treated arms). ``window_open``: the window had not ended at the
    read-out's clock, so the outcome may still change."""

    experiment_id: str
    arm: str
    customer_id: str
    converted: bool
    revenue: float
    control: bool = False
    exposures: int = 1
    acceptances: int = 0
    window_open: bool = False


@dataclass(frozen=True)
class ArmReport:
    """An experiment arm's read-out over its exposed customers. Intervals are 95%: Wilson for the
    conversion rate, normal approximation for revenue per customer (NaN with fewer than 2
    customers); the differences to the ``baseline`` arm (empty for the baseline itself) use
    Newcombe's hybrid score interval for the rates and Welch's normal interval for revenue.
    ``acceptance_rate`` is acceptances per exposure, None for a control arm (nothing was shown)."""

    experiment_id: str
    arm: str
    control: bool
    customers: int
    conversions: int
    conversion_rate: float
    conversion_ci: tuple[float, float]
    revenue: float
    revenue_per_customer: float
    revenue_per_customer_ci: tuple[float, float]
    baseline: str
    conversion_diff: float
    conversion_diff_ci: tuple[float, float]
    revenue_diff: float
    revenue_diff_ci: tuple[float, float]
    exposures: int
    acceptances: int
    acceptance_rate: float | None
    acceptance_ci: tuple[float, float] | None
    open_windows: int


_OUTCOME_FIELDS = tuple(f.name for f in fields(CustomerOutcome))
_NAN2 = (math.nan, math.nan)


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (scipy's; no trials: the whole range)."""
    if trials == 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return max(0.0, float(interval.low)), min(1.0, float(interval.high))


def _newcombe(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float]:
    """95% interval of p1 - p0 (Newcombe 1998, method 10: from the two Wilson intervals)."""
    if n1 == 0 or n0 == 0:
        return _NAN2
    p1, p0 = x1 / n1, x0 / n0
    (l1, u1), (l0, u0) = _wilson(x1, n1), _wilson(x0, n0)
    d = p1 - p0
    return d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n if n else 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n >= 2 else math.nan
    return mean, var


def _as_outcome(row: Any, i: int) -> CustomerOutcome:
    if isinstance(row, CustomerOutcome):
        return row
    if isinstance(row, Mapping):
        unknown = set(row) - set(_OUTCOME_FIELDS)
        if unknown:
            raise InvalidArgument(f"outcomes[{i}]: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        try:
            return CustomerOutcome(**row)
        except TypeError as exc:
            raise InvalidArgument(f"outcomes[{i}]: {exc}") from None
    raise InvalidArgument(f"outcomes[{i}]: must be a CustomerOutcome or a mapping of its fields")


def experiment_report(outcomes: Iterable[CustomerOutcome | Mapping[str, Any]],
                      baseline: str | None = None) -> list[ArmReport]:
    """Per (experiment, arm) read-out of customer outcomes (one per exposed customer and
    experiment), sorted by experiment and arm. Each arm is compared with the experiment's
    ``baseline`` arm: the one named, else its control arm (the one whose exposures were control
    exposures, when exactly one is), else the first arm by name."""
    arms: dict[tuple[str, str], list[CustomerOutcome]] = {}
    seen: dict[tuple[str, str], str] = {}
    for i, row in enumerate(outcomes):
        outcome = _as_outcome(row, i)
        key = (outcome.experiment_id, outcome.customer_id)
        if key in seen:
            raise InvalidArgument(f"outcomes[{i}]: customer {outcome.customer_id!r} appears twice in experiment "
                                  f"{outcome.experiment_id!r} (arms {seen[key]!r}, {outcome.arm!r}); "
                                  "the unit of analysis is the customer")
        seen[key] = outcome.arm
        if not math.isfinite(float(outcome.revenue)):
            raise InvalidArgument(f"outcomes[{i}].revenue: must be a finite number")
        arms.setdefault((outcome.experiment_id, outcome.arm), []).append(outcome)

    stats = {}
    for key, rows in arms.items():
        revenues = [float(r.revenue) for r in rows]
        mean, var = _mean_var(revenues)
        stats[key] = {"n": len(rows), "x": sum(bool(r.converted) for r in rows), "mean": mean, "var": var,
                      "revenue": math.fsum(revenues), "control": any(r.control for r in rows),
                      "exposures": sum(r.exposures for r in rows), "acceptances": sum(r.acceptances for r in rows),
                      "open": sum(bool(r.window_open) for r in rows)}
    bases = {}
    for experiment in sorted({e for e, _ in arms}):
        names = sorted(a for e, a in arms if e == experiment)
        controls = [a for a in names if stats[(experiment, a)]["control"]]
        bases[experiment] = (baseline if baseline in names else controls[0] if len(controls) == 1 else names[0])

    reports = []
    for (experiment, arm), s in sorted(stats.items()):
        base_name = bases[experiment]
        b = stats[(experiment, base_name)]
        n, x = s["n"], s["x"]
        half = _Z95 * math.sqrt(s["var"] / n) if n >= 2 else math.nan
        if arm == base_name:
            diff, diff_ci, rdiff, rdiff_ci = 0.0, (0.0, 0.0), 0.0, (0.0, 0.0)
        else:
            diff = x / n - b["x"] / b["n"]
            diff_ci = _newcombe(x, n, b["x"], b["n"])
            rdiff = s["mean"] - b["mean"]
            se = math.sqrt(s["var"] / n + b["var"] / b["n"]) if n >= 2 and b["n"] >= 2 else math.nan
            rdiff_ci = (rdiff - _Z95 * se, rdiff + _Z95 * se)
        treated = not s["control"]
        reports.append(ArmReport(
            experiment_id=experiment, arm=arm, control=s["control"], customers=n, conversions=x,
            conversion_rate=x / n, conversion_ci=_wilson(x, n), revenue=s["revenue"],
            revenue_per_customer=s["mean"], revenue_per_customer_ci=(s["mean"] - half, s["mean"] + half),
            baseline="" if arm == base_name else base_name, conversion_diff=diff, conversion_diff_ci=diff_ci,
            revenue_diff=rdiff, revenue_diff_ci=rdiff_ci, exposures=s["exposures"], acceptances=s["acceptances"],
            acceptance_rate=(s["acceptances"] / s["exposures"] if s["exposures"] else 0.0) if treated else None,
            acceptance_ci=_wilson(s["acceptances"], s["exposures"]) if treated else None,
            open_windows=s["open"]))
    return reports


def _ci(low: float, high: float, digits: int, signed: bool = False) -> str:
    if math.isnan(low):
        return "n/a"
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"{low:{spec}}, {high:{spec}}"


def format_report(reports: Sequence[ArmReport], window_days: float | None = None) -> str:
    """A plain-text table of ``experiment_report`` output."""
    header = ("experiment", "arm", "customers", "converted", "conversion [95% CI]", "vs baseline [95% CI]",
              "revenue/customer [95% CI]", "vs baseline [95% CI]", "exposures", "accepted", "accept rate")
    lines = [header]
    for r in reports:
        if r.baseline:
            conv_diff = f"{r.conversion_diff:+.3f} [{_ci(*r.conversion_diff_ci, 3, True)}]"
            rev_diff = f"{r.revenue_diff:+.2f} [{_ci(*r.revenue_diff_ci, 2, True)}]"
        else:
            conv_diff = rev_diff = "(baseline)"
        accept = "control" if r.acceptance_rate is None else f"{r.acceptance_rate:.3f}"
        lines.append((r.experiment_id, r.arm, str(r.customers), str(r.conversions),
                      f"{r.conversion_rate:.3f} [{_ci(*r.conversion_ci, 3)}]", conv_diff,
                      f"{r.revenue_per_customer:.2f} [{_ci(*r.revenue_per_customer_ci, 2)}]", rev_diff,
                      str(r.exposures), str(r.acceptances), accept))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        # names left-aligned, numbers right-aligned
        out.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    window = f" within {window_days:g} days" if window_days is not None else ""
    out.append(f"\nper exposed customer, from their first exposure: converted = bought one of the exposures' "
               f"target items{window}; revenue = everything they bought{window}.")
    still_open = sum(r.open_windows for r in reports)
    if still_open:
        out.append(f"{still_open} customer(s) are still inside their window: their outcome may still grow.")
    return "\n".join(out)
