"""The offer catalogue: what the next-best-offer engine may propose, to whom, how often.

A catalogue is a TOML file (see config/offers.toml) read once at the edge by ``load_catalog``
and validated completely: every problem raises InvalidArgument naming the offer and the field
(``offers[2] (id 'xmas10').caps.period_days: ...``). Unknown keys are errors, because a
misspelt ``min_basket_valu`` that was silently ignored would show an offer to everyone.
The result is frozen; a new catalogue version is a new object with a new checksum.
"""
from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from engine.errors import InvalidArgument
from engine import events as _events
from engine.rules import DAY_MS
from engine.validation import require_choice, require_id, require_int, require_number


# Customer segments an offer may target; ``engine.decisioning.segment_of`` returns one of these.
SEGMENTS = frozenset({"new", "occasional", "regular", "lapsed", "vip"})
STRATEGIES = frozenset({"bandit", "static_priority", "control"})

MAX_OFFERS = 10_000
MAX_LIST = 10_000
MAX_NAME_LENGTH = 256
MAX_VALUE = 1e9
MAX_WEIGHT = 1e6
MAX_PERIOD_DAYS = 3650
SHARE_TOLERANCE = 1e-6

_TOP_KEYS = frozenset({"version", "offers", "experiments", "bandit"})
_OFFER_KEYS = frozenset({"id", "name", "channels", "valid_from", "valid_until", "target_items",
                         "target_categories", "value", "weight", "eligibility", "caps"})
_ELIGIBILITY_KEYS = frozenset({"segments", "countries", "min_basket_value", "basket_contains_items",
                               "basket_contains_categories", "has_bought_items",
                               "has_not_bought_items", "consent_required"})
_CAPS_KEYS = frozenset({"per_customer_per_channel", "period_days", "cooldown_after_decline_days",
                        "global_budget"})
_EXPERIMENT_KEYS = frozenset({"id", "arms"})
_ARM_KEYS = frozenset({"name", "share", "strategy"})
_BANDIT_KEYS = frozenset({"prior_alpha", "prior_beta", "affinity_weight"})


@dataclass(frozen=True)
class Eligibility:
    """Who may get an offer. An empty set means "no restriction"; the item/category lists are
    any-of (one match is enough), ``has_not_bought_items`` is none-of."""

    segments: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    min_basket_value: float = 0.0
    basket_contains_items: frozenset[str] = frozenset()
    basket_contains_categories: frozenset[str] = frozenset()
    has_bought_items: frozenset[str] = frozenset()
    has_not_bought_items: frozenset[str] = frozenset()
    # Offers are marketing: without the customer's "marketing" consent they are not made.
    consent_required: bool = True


@dataclass(frozen=True)
class Caps:
    """Contact policy: how often one customer may see an offer, and how often anyone may."""

    # At most this many "shown" per customer in one channel within ``period_days``; None = no cap.
    per_customer_per_channel: int | None = None
    period_days: int | None = None
    # After a decline (in any channel) the offer rests this long for that customer.
    cooldown_after_decline_days: float = 0.0
    # Total shows across all customers; the caller splits it into per-shard budgets.
    global_budget: int | None = None

    @property
    def horizon_ms(self) -> int:
        """How far back in a customer's offer history these caps look."""
        days = max(self.period_days or 0, self.cooldown_after_decline_days)
        return int(days * DAY_MS)


@dataclass(frozen=True)
class Offer:
    """One proposable offer/action. ``value`` is the expected margin or benefit, in currency,
    when it is accepted; ``weight`` is a business priority multiplier (1 = neutral)."""

    id: str
    name: str
    value: float
    weight: float = 1.0
    # Empty = every channel.
    channels: frozenset[str] = frozenset()
    # Epoch ms UTC; from inclusive, until exclusive; None = open.
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None
    target_items: tuple[str, ...] = ()
    target_categories: tuple[str, ...] = ()
    eligibility: Eligibility = field(default_factory=Eligibility)
    caps: Caps = field(default_factory=Caps)


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: the share of customers it gets and the strategy it runs."""

    name: str
    share: float
    strategy: str


@dataclass(frozen=True)
class Experiment:
    """A split of customers into arms; assignment is a stable hash of experiment and customer id."""

    id: str
    arms: tuple[Arm, ...]


@dataclass(frozen=True)
class BanditSettings:
    """Beta prior of every offer's acceptance probability, and how much item affinity lifts it."""

    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    affinity_weight: float = 0.5


@dataclass(frozen=True)
class OfferCatalog:
    """A validated, immutable catalogue version. ``checksum`` is derived from the content (not
    the file's formatting), so two shards can cheaply confirm they run the same catalogue."""

    version: str
    offers: tuple[Offer, ...]
    experiments: tuple[Experiment, ...] = ()
    bandit: BanditSettings = field(default_factory=BanditSettings)
    checksum: str = ""
    source: str = ""
    by_id: Mapping[str, Offer] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", MappingProxyType({o.id: o for o in self.offers}))

    @property
    def experiment(self) -> Experiment | None:
        """The experiment that applies to decisions: the first one."""
        return self.experiments[0] if self.experiments else None

    @property
    def history_horizon_ms(self) -> int:
        """The longest look-back of any cap: offer history older than this can be dropped."""
        return max((o.caps.horizon_ms for o in self.offers), default=0)


def load_catalog(path: str | Path) -> OfferCatalog:
    """Read and validate a catalogue TOML file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read offer catalogue ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{path}: not valid TOML ({exc})") from exc
    return parse_catalog(data, source=str(path))


def parse_catalog(data: Any, source: str = "<catalog>") -> OfferCatalog:
    """Validate a catalogue given as a mapping (the parsed TOML)."""
    _table(data, source, _TOP_KEYS)
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise InvalidArgument(f"{source}: version: is required (a non-empty string)")
    raw_offers = data.get("offers", [])
    if not isinstance(raw_offers, list):
        raise InvalidArgument(f"{source}: offers: must be a list of tables ([[offers]])")
    if len(raw_offers) > MAX_OFFERS:
        raise InvalidArgument(f"{source}: offers: at most {MAX_OFFERS}, got {len(raw_offers)}")
    offers = []
    first_index: dict[str, int] = {}
    for i, raw in enumerate(raw_offers):
        offer = _parse_offer(raw, i)
        if offer.id in first_index:
            raise InvalidArgument(f"offers[{i}] (id '{offer.id}').id: duplicate of offers[{first_index[offer.id]}]")
        first_index[offer.id] = i
        offers.append(offer)
    raw_experiments = data.get("experiments", [])
    if not isinstance(raw_experiments, list):
        raise InvalidArgument(f"{source}: experiments: must be a list of tables ([[experiments]])")
    experiments = tuple(_parse_experiment(raw, i) for i, raw in enumerate(raw_experiments))
    seen = [e.id for e in experiments]
    if len(set(seen)) != len(seen):
        raise InvalidArgument(f"{source}: experiments: duplicate id(s) "
                              f"{sorted({s for s in seen if seen.count(s) > 1})}")
    return OfferCatalog(
        version=version,
        offers=tuple(offers),
        experiments=experiments,
        bandit=_parse_bandit(data.get("bandit")),
        checksum=_checksum(data),
        source=source,
    )


def _checksum(data: Mapping[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _json_default(value: Any) -> str:
    if isinstance(value, (date, time)):
        return value.isoformat()
    raise TypeError(f"not serialisable: {type(value).__name__}")


def _table(raw: Any, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: must be a table")
    unknown = set(raw) - allowed
    if unknown:
        raise InvalidArgument(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                              f"allowed: {', '.join(sorted(allowed))}")
    return raw


def _parse_offer(raw: Any, index: int) -> Offer:
    where = f"offers[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: must be a table")
    offer_id = require_id(raw.get("id"), f"{where}.id")
    where = f"{where} (id '{offer_id}')"
    _table(raw, where, _OFFER_KEYS)
    name = raw.get("name", offer_id)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{where}.name: must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
    if "value" not in raw:
        raise InvalidArgument(f"{where}.value: is required (the margin/benefit in currency, >= 0)")
    valid_from = _instant(raw.get("valid_from"), f"{where}.valid_from", end_of_day=False)
    valid_until = _instant(raw.get("valid_until"), f"{where}.valid_until", end_of_day=True)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise InvalidArgument(f"{where}.valid_until: must be after valid_from")
    return Offer(
        id=offer_id,
        name=name,
        value=require_number(raw["value"], f"{where}.value", low=0.0, high=MAX_VALUE),
        weight=require_number(raw.get("weight", 1.0), f"{where}.weight", low=0.0, high=MAX_WEIGHT,
                              low_inclusive=False),
        channels=frozenset(_channels(raw.get("channels"), f"{where}.channels")),
        valid_from_ms=valid_from,
        valid_until_ms=valid_until,
        target_items=_strings(raw.get("target_items"), f"{where}.target_items"),
        target_categories=_strings(raw.get("target_categories"), f"{where}.target_categories"),
        eligibility=_parse_eligibility(raw.get("eligibility"), f"{where}.eligibility"),
        caps=_parse_caps(raw.get("caps"), f"{where}.caps"),
    )


def _parse_eligibility(raw: Any, where: str) -> Eligibility:
    if raw is None:
        return Eligibility()
    _table(raw, where, _ELIGIBILITY_KEYS)
    segments = _strings(raw.get("segments"), f"{where}.segments")
    for i, segment in enumerate(segments):
        require_choice(segment, f"{where}.segments[{i}]", SEGMENTS)
    consent = raw.get("consent_required", True)
    if not isinstance(consent, bool):
        raise InvalidArgument(f"{where}.consent_required: must be true or false")
    return Eligibility(
        segments=frozenset(segments),
        countries=frozenset(_strings(raw.get("countries"), f"{where}.countries")),
        min_basket_value=require_number(raw.get("min_basket_value", 0.0), f"{where}.min_basket_value",
                                        low=0.0, high=MAX_VALUE),
        basket_contains_items=frozenset(_strings(raw.get("basket_contains_items"),
                                                 f"{where}.basket_contains_items")),
        basket_contains_categories=frozenset(_strings(raw.get("basket_contains_categories"),
                                                      f"{where}.basket_contains_categories")),
        has_bought_items=frozenset(_strings(raw.get("has_bought_items"), f"{where}.has_bought_items")),
        has_not_bought_items=frozenset(_strings(raw.get("has_not_bought_items"),
                                                f"{where}.has_not_bought_items")),
        consent_required=consent,
    )


def _parse_caps(raw: Any, where: str) -> Caps:
    if raw is None:
        return Caps()
    _table(raw, where, _CAPS_KEYS)
    per_channel = _optional_int(raw.get("per_customer_per_channel"), f"{where}.per_customer_per_channel",
                                low=1, high=1_000_000)
    period = _optional_int(raw.get("period_days"), f"{where}.period_days", low=1, high=MAX_PERIOD_DAYS)
    # A count without a window (or a window without a count) is a half-written rule.
    if (per_channel is None) != (period is None):
        raise InvalidArgument(f"{where}: per_customer_per_channel and period_days go together; set both or neither")
    return Caps(
        per_customer_per_channel=per_channel,
        period_days=period,
        cooldown_after_decline_days=require_number(
            raw.get("cooldown_after_decline_days", 0.0), f"{where}.cooldown_after_decline_days",
            low=0.0, high=float(MAX_PERIOD_DAYS)),
        global_budget=_optional_int(raw.get("global_budget"), f"{where}.global_budget", low=0, high=10**12),
    )


def _parse_experiment(raw: Any, index: int) -> Experiment:
    where = f"experiments[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where}: must be a table")
    experiment_id = require_id(raw.get("id"), f"{where}.id")
    where = f"{where} (id '{experiment_id}')"
    _table(raw, where, _EXPERIMENT_KEYS)
    raw_arms = raw.get("arms")
    if not isinstance(raw_arms, list) or not raw_arms:
        raise InvalidArgument(f"{where}.arms: must be a non-empty list of tables")
    arms = []
    for i, arm in enumerate(raw_arms):
        arm_where = f"{where}.arms[{i}]"
        _table(arm, arm_where, _ARM_KEYS)
        arms.append(Arm(
            name=require_id(arm.get("name"), f"{arm_where}.name"),
            share=require_number(arm.get("share"), f"{arm_where}.share", low=0.0, high=1.0),
            strategy=require_choice(arm.get("strategy"), f"{arm_where}.strategy", STRATEGIES),
        ))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{where}.arms: arm names must be unique, got {names}")
    total = math.fsum(a.share for a in arms)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise InvalidArgument(f"{where}.arms: shares must sum to 1, got {total:.9g}")
    return Experiment(id=experiment_id, arms=tuple(arms))


def _parse_bandit(raw: Any) -> BanditSettings:
    if raw is None:
        return BanditSettings()
    _table(raw, "bandit", _BANDIT_KEYS)
    return BanditSettings(
        prior_alpha=require_number(raw.get("prior_alpha", 1.0), "bandit.prior_alpha", low=0.0, high=1e6,
                                   low_inclusive=False),
        prior_beta=require_number(raw.get("prior_beta", 1.0), "bandit.prior_beta", low=0.0, high=1e6,
                                  low_inclusive=False),
        affinity_weight=require_number(raw.get("affinity_weight", 0.5), "bandit.affinity_weight",
                                       low=0.0, high=100.0),
    )


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidArgument(f"{where}: must be a list of strings")
    if len(raw) > MAX_LIST:
        raise InvalidArgument(f"{where}: at most {MAX_LIST} entries, got {len(raw)}")
    values = tuple(require_id(v, f"{where}[{i}]") for i, v in enumerate(raw))
    # duplicates are harmless but keep the stored tuple clean (order kept: targets are ranked)
    return tuple(dict.fromkeys(values))


def _channels(raw: Any, where: str) -> tuple[str, ...]:
    values = _strings(raw, where)
    for i, channel in enumerate(values):
        require_choice(channel, f"{where}[{i}]", _events.CHANNELS)
    return values


def _optional_int(raw: Any, where: str, *, low: int, high: int) -> int | None:
    return None if raw is None else require_int(raw, where, low=low, high=high)


def _instant(raw: Any, where: str, *, end_of_day: bool) -> int | None:
    """A TOML date/datetime or an ISO-8601 string -> epoch ms UTC. A bare date as ``valid_until``
    means the end of that day, which is what a person writing "until 2011-12-24" means."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = date.fromisoformat(raw) if len(raw) <= 10 else datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidArgument(f"{where}: not an ISO-8601 date or datetime: {raw!r}") from None
    if isinstance(raw, datetime):
        moment = raw if raw.tzinfo is not None else raw.replace(tzinfo=timezone.utc)
    elif isinstance(raw, date):
        day = raw + timedelta(days=1) if end_of_day else raw
        moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    else:
        raise InvalidArgument(f"{where}: must be a date or datetime (TOML or ISO-8601 string)")
    return int(moment.timestamp() * 1000)
