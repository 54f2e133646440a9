"""Typed configuration, frozen. Loaded once at the edge (CLI / TOML), validated, passed down."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from engine.auth import ApiKey, AuthConfig
from engine.errors import InvalidArgument
from engine.scaling import ScalingConfig
from engine.sharding import MAX_PARTITIONS

REPURCHASE_POLICIES = frozenset({"exclude_always", "exclude_never", "exclude_within_window"})


@dataclass(frozen=True)
class BlendWeights:
    """Weight of each candidate source in the blended score (each source is scaled to [0, 1]).

    These defaults are what `recsys evaluate` ranks Online Retail with, and what it chose on that
    data's validation month (docs/evaluation/evaluation.md; tests/unit/test_shipped_is_evaluated.py
    fails when the two differ): als, session, repurchase and popular for the next basket (no basket
    in progress), history off (the EASE item-item source lowered both tasks there). Catalogues where
    the item-item source carries the ranking (MovieLens) set `[ranking.weights] history = 1.0`."""

    als: float = 0.5
    history: float = 0.0
    session: float = 0.5
    repurchase: float = 6.0
    popular: float = 0.3
    # decayed popularity in the request's country (context.country), else its channel; what an
    # unknown customer gets in their country. Not tuned by `recsys evaluate` (its replay has only
    # known customers and no country), which ranks with this value as shipped.
    trending: float = 0.05
    # Items the catalogue added after training: live co-visitation and category affinity, on an
    # absolute [0, 1] scale. Weighted as much as the sources a new item cannot have yet (ALS,
    # history), so strong live evidence ranks it with established items.
    new_items: float = 2.0
    # items a request promotes (filters.boost_item_ids)
    promoted: float = 1.0
    # Session models, read from the live session's latest items (recommenders/sessions.py): what
    # followed them in training sessions (next-item transitions), and the items of the training
    # sessions most like this one (session-kNN). Chosen on validation by `recsys evaluate`.
    transitions: float = 0.0
    similar_sessions: float = 0.0
    # Items of the live session shown again, the most recent first (re-views). Off: Online Retail's
    # baskets never repeat an item, so `recsys evaluate` cannot choose it; on browsing data, where a
    # third of next clicks can be items already viewed, set it (for example 1.0).
    seen_again: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# The blend `recsys evaluate` chose for basket completion (a cart in progress) on the same
# validation month: the live session counts twice as much, the customer's own frequency a quarter,
# ALS half, popularity a sixth; then the session models (what comes next after the last item, the
# items of similar baskets), chosen after the others. Only these keys are chosen there; the other
# weights follow `[ranking.weights]`.
CART_TUNED = {"als": 0.25, "session": 1.0, "repurchase": 1.5, "popular": 0.05, "transitions": 2.0,
              "similar_sessions": 0.0}


def cart_blend(weights: BlendWeights, **overrides: float) -> BlendWeights:
    """The blend with a cart over ``weights``: the four keys chosen for completion, then ``overrides``."""
    return replace(weights, **{**CART_TUNED, **overrides})


# The blend for a visitor the model was not trained on (anonymous, or new since training) and who
# has bought nothing yet, once their live session has items: no history to go on, so what followed the session's last item carries it.
# Transitions weigh 1 and every other scaled source a `transitions_ratio`-th of its weight, so the
# other sources order and fill in behind transitions, while the sources on an absolute scale (a
# promoted item, a new one) keep their meaning. Chosen by `recsys evaluate` on Online Retail's guest
# baskets of the validation month (recommenders/session_evaluation.py).
ANONYMOUS_TUNED = {"transitions_ratio": 128.0, "session": 0.5, "similar_sessions": 0.0, "als": 0.25}


def anonymous_blend_of(weights: BlendWeights, transitions_ratio: float, session: float, similar_sessions: float,
                       als: float) -> BlendWeights:
    """The anonymous blend over ``weights`` (the next-basket blend) with these choices."""
    scale = 1.0 / transitions_ratio
    return replace(weights, transitions=1.0, session=session * scale, similar_sessions=similar_sessions * scale,
                   als=als * scale, popular=weights.popular * scale, trending=weights.trending * scale,
                   repurchase=weights.repurchase * scale, history=weights.history * scale,
                   seen_again=weights.seen_again * scale)


def anonymous_blend(weights: BlendWeights, **overrides: float) -> BlendWeights:
    """The blend for a visitor unknown to the model, over ``weights``: as chosen on guest sessions,
    then ``overrides``."""
    return replace(anonymous_blend_of(weights, **ANONYMOUS_TUNED), **overrides)


# How the repurchase source weighs an own purchase by its timing (RankingConfig.repurchase_timing).
REPURCHASE_TIMINGS = ("decay", "cycle", "frequency")


@dataclass(frozen=True)
class RankingConfig:
    """How the shard ranks: candidate pool sizes, blend weights, default business rules."""

    # The blend without a basket in progress (next basket: what will they buy next?) ...
    weights: BlendWeights = field(default_factory=BlendWeights)
    # ... and while one is (a cart in the request, or a live cart added to within
    # `cart_active_hours`: what completes it?). The two tasks want different mixes: the live
    # session carries a basket being filled, the customer's own buying frequency carries the next
    # one. Each is chosen on its own task by `recsys evaluate` (docs/evaluation/evaluation.md).
    # None: cart_blend(weights).
    cart_weights: BlendWeights | None = None
    # ... and for a visitor the model has no history of (anonymous or new) who has bought nothing
    # yet, once their live session has items (with a cart or not). None: anonymous_blend(weights).
    # In TOML, `[ranking.anonymous_weights]` keys are this blend's own weights (transitions 1, the
    # others already divided by ANONYMOUS_TUNED's ratio: session 0.5/128, not 0.5), set over it.
    anonymous_weights: BlendWeights | None = None
    # A live cart left alone longer than this (no add_to_cart among the customer's recent events
    # since) no longer counts as a basket in progress for the choice of blend; its items stay
    # excluded from answers.
    cart_active_hours: float = 24.0
    candidates_per_source: int = 200
    max_k: int = 100
    # Online Retail customers re-buy, soon and often: excluding everything they ever bought halves
    # the hit rate, and hiding even the last 14 days' purchases ("exclude_within_window") lowered
    # both tasks on the validation month, so by default nothing bought is hidden (`recsys evaluate`
    # chooses this on validation; docs/evaluation/evaluation.md). Per request: filters.repurchase_policy.
    repurchase_policy: str = "exclude_never"
    repurchase_window_days: int = 14
    # Recency decay of live session signals, in events: the newest view counts 1, one
    # `session_half_life` events older counts 0.5.
    session_half_life: float = 4.0
    # Consent for personalisation when a customer has never said: True treats it as
    # legitimate interest; set False where the law asks for opt-in.
    default_personalization_consent: bool = True
    # How the repurchase source times an item: "decay" (recent purchases first), "cycle" (when the
    # item's learnt repurchase cycle comes round; items without one fall back to decay) or "frequency"
    # (how often alone; popularity and the other sources order items bought equally often).
    # "frequency" won on Online Retail's validation month (best next-basket HR@10 + Recall@10 plus best
    # completion HR@10 + Recall@10 over the 36 blends tried: 1.684 against 1.663 for "cycle", 1.645 "decay").
    repurchase_timing: str = "frequency"
    # Diversity: at most this many items of one category per answer (None: no cap); per request too.
    max_per_category: int | None = None
    # The keys a config file set ("repurchase_policy", "weights.als", "cart_weights" ...): they win
    # over what `recsys train` fitted to its data (fitted_ranking). Filled in by the TOML loader.
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        if self.cart_weights is None:
            object.__setattr__(self, "cart_weights", cart_blend(self.weights))
        if self.anonymous_weights is None:
            object.__setattr__(self, "anonymous_weights", anonymous_blend(self.weights))
        if self.repurchase_policy not in REPURCHASE_POLICIES:
            raise InvalidArgument(f"ranking.repurchase_policy: one of {sorted(REPURCHASE_POLICIES)}")
        if not 1 <= self.max_k <= 10_000:
            raise InvalidArgument("ranking.max_k: must be between 1 and 10000")
        if self.repurchase_timing not in REPURCHASE_TIMINGS:
            raise InvalidArgument(f"ranking.repurchase_timing: one of {list(REPURCHASE_TIMINGS)}")
        if not self.cart_active_hours >= 0:
            raise InvalidArgument("ranking.cart_active_hours: must be >= 0")
        if self.candidates_per_source < 1:
            raise InvalidArgument("ranking.candidates_per_source: must be >= 1")


@dataclass(frozen=True)
class OffersConfig:
    """Next-best-offer: which catalogue, consent default, how shards learn together, triggers."""

    # The offer catalogue (TOML, engine/offers.py). None or a missing file: no offers.
    catalog_path: str | None = "config/offers.toml"
    # Marketing needs opt-in by default: a customer who never said gets no offer that requires it.
    default_marketing_consent: bool = False
    # How often each shard exchanges bandit counts with the others (through one aggregator).
    bandit_sync_seconds: float = 2.0
    # Cart abandonment: add_to_cart and no purchase for this long creates an action.
    cart_abandon_minutes: float = 30.0
    # A POS purchase creates a cross-sell action with this many items.
    cross_sell_items: int = 3
    # How often the trigger timer looks for due actions.
    trigger_tick_seconds: float = 1.0
    # An offer_accepted / offer_declined counts only if it answers one of the customer's last
    # `answerable_shows` shows (decision id + offer id), at most `response_window_days` after it,
    # and is the first answer to it; anything else is ignored (not stored, not learnt from).
    answerable_shows: int = 32
    response_window_days: float = 30.0
    # Experiments: a customer converts by buying an exposure's target item within this many days
    # of their first exposure (`recsys experiments report --window-days` overrides it).
    experiment_window_days: float = 14.0
    # The contact-frequency cap: at most this many marketing contacts per customer per channel in
    # `contact_cap_period_days`, across every offer (those that need marketing consent, or shown in a
    # direct-marketing channel) and every triggered action (0: no cap). An action with no channel of
    # its own (cart abandonment) counts in `action_channel`, the channel the receivers send it by.
    contact_cap_per_channel: int = 0
    contact_cap_period_days: float = 7.0
    action_channel: str = "email"

    def __post_init__(self) -> None:
        if not 0 <= self.contact_cap_per_channel <= 64:
            raise InvalidArgument("offers.contact_cap_per_channel: must be between 0 (no cap) and 64")
        if not 0 < self.contact_cap_period_days <= 366:
            raise InvalidArgument("offers.contact_cap_period_days: must be > 0 and at most 366")
        if not 1 <= self.answerable_shows <= 1000:
            raise InvalidArgument("offers.answerable_shows: must be between 1 and 1000")
        if not 0 < self.response_window_days <= 3650 or not 0 < self.experiment_window_days <= 3650:
            raise InvalidArgument("offers.response_window_days, offers.experiment_window_days: "
                                  "must be > 0 and at most 3650")
        if self.bandit_sync_seconds <= 0 or self.trigger_tick_seconds <= 0:
            raise InvalidArgument("offers.bandit_sync_seconds, offers.trigger_tick_seconds: must be > 0")
        if self.cart_abandon_minutes <= 0:
            raise InvalidArgument("offers.cart_abandon_minutes: must be > 0")
        if not 0 <= self.cross_sell_items <= 20:
            raise InvalidArgument("offers.cross_sell_items: must be between 0 and 20")


@dataclass(frozen=True)
class WebhookConfig:
    """One receiver of triggered actions (actors/webhooks.py): every action of the outbox, in order,
    POSTed as JSON, signed with HMAC-SHA256 (``X-Recsys-Signature``), with its action id as the
    ``Idempotency-Key``; retried with doubling backoff, and after ``max_attempts`` failures kept as a
    dead letter (`recsys webhooks dead-letters`) while delivery goes on with the next action."""

    name: str
    url: str
    # the signing secret: from this environment variable of the service (better), or inline
    secret_env: str | None = None
    secret: str | None = field(default=None, repr=False)  # never printed with the config
    # action kinds to deliver (cart_abandonment, cross_sell); empty: every kind
    kinds: tuple[str, ...] = ()
    max_attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum() or len(self.name) > 64:
            raise InvalidArgument("webhooks[].name: 1-64 letters, digits, - or _")
        if not self.url.startswith(("http://", "https://")):
            raise InvalidArgument(f"webhooks[{self.name}].url: an http:// or https:// URL")
        if (self.secret_env is None) == (self.secret is None):
            raise InvalidArgument(f"webhooks[{self.name}]: set one of secret_env, secret")
        if not 1 <= self.max_attempts <= 100:
            raise InvalidArgument(f"webhooks[{self.name}].max_attempts: between 1 and 100")
        if not (0 < self.backoff_s <= self.max_backoff_s and 0 < self.timeout_s <= 300):
            raise InvalidArgument(f"webhooks[{self.name}]: need 0 < backoff_s <= max_backoff_s, 0 < timeout_s <= 300")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        from engine.events import ACTION_KINDS

        if any(kind not in ACTION_KINDS for kind in self.kinds):
            raise InvalidArgument(f"webhooks[{self.name}].kinds: a list of {sorted(ACTION_KINDS)}")

    def signing_secret(self) -> bytes:
        import os

        value = self.secret if self.secret is not None else os.environ.get(self.secret_env or "")
        if not value:
            raise InvalidArgument(f"webhooks[{self.name}]: the environment variable {self.secret_env} is not set")
        return value.encode()


@dataclass(frozen=True)
class ConsumeConfig:
    """`recsys consume`: where events come from (a broker queue) and the service they go to
    (gateway/consume.py). TOML: [consume]."""

    # AMQP URL of the RabbitMQ broker, and the durable queue the events are published to; invalid
    # messages go to `dead_letter_queue` (default "<queue>.dead-letter") with the reason
    url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    queue: str = "recsys.events"
    dead_letter_queue: str | None = None
    # unacknowledged messages the broker hands the consumer at most (the backpressure), and the
    # events sent per Track call
    prefetch: int = 1000
    batch_max: int = 500
    # the service's gRPC address, and the environment variable holding an API key with the events scope
    target: str = "127.0.0.1:9000"
    api_key_env: str = "RECSYS_API_KEY"

    def __post_init__(self) -> None:
        if not self.url.startswith(("amqp://", "amqps://")):
            raise InvalidArgument("consume.url: an amqp:// or amqps:// URL")
        if not self.queue:
            raise InvalidArgument("consume.queue: must not be empty")
        if self.prefetch < 1 or not 1 <= self.batch_max <= self.prefetch:
            raise InvalidArgument("consume.prefetch, consume.batch_max: 1 <= batch_max <= prefetch")


# Placements (where on a channel a list is shown) the online metrics keep as their own label; any
# other placement a request names is counted as "other", so the label set stays small and fixed.
DEFAULT_PLACEMENTS = ("home", "product", "category", "search", "cart", "checkout", "email", "till", "app_feed")
ARM_STRATEGIES = ("blend", "popularity")
BLEND_KEYS = ("weights", "cart_weights", "anonymous_weights")


@dataclass(frozen=True)
class AttributionConfig:
    """What recommendation ids answer for (engine/attribution.py) and what the metrics label."""

    # an impression, click (or add-to-cart, purchase) naming a recommendation_id counts for that
    # list if the list was made at most this long before it reaches the engine
    window_minutes: float = 60.0
    # an add-to-cart or purchase without an id is credited to the customer's last click on that item
    # from a recommendation, if the click was at most this long before
    purchase_window_hours: float = 24.0
    # lists remembered for attribution across the whole customer tier (each partition keeps its
    # share, the oldest forgotten first; about 650 bytes each with 10 items: benchmarks/attribution_overhead.py)
    lists_kept: int = 200_000
    placements: tuple[str, ...] = DEFAULT_PLACEMENTS

    def __post_init__(self) -> None:
        from engine.events import CHANNEL_PATTERN

        object.__setattr__(self, "placements", tuple(self.placements))
        if not 0 < self.window_minutes <= 7 * 24 * 60:
            raise InvalidArgument("attribution.window_minutes: must be > 0 and at most a week")
        if not 0 <= self.purchase_window_hours <= 90 * 24:
            raise InvalidArgument("attribution.purchase_window_hours: must be between 0 and 2160")
        if not 1_000 <= self.lists_kept <= 100_000_000:
            raise InvalidArgument("attribution.lists_kept: must be between 1000 and 100000000")
        bad = [p for p in self.placements if not isinstance(p, str) or not CHANNEL_PATTERN.match(p) or p == "other"]
        if bad or len(self.placements) > 32:
            raise InvalidArgument("attribution.placements: at most 32 names (a-z, 0-9, _; a letter first; not 'other')")


@dataclass(frozen=True)
class RecArm:
    """One arm of a recommendation experiment: its share of customers and how it ranks."""

    name: str
    share: float
    # "blend": the served ranking with ``ranking`` set over it; "popularity": popular items only
    # (with the same rules, consent and caps), the holdout that measures personalisation itself
    strategy: str = "blend"
    # RankingConfig keys set over the served ranking for this arm's customers; [..ranking.weights],
    # cart_weights and anonymous_weights set keys of that one blend only
    ranking: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecExperiment:
    """An A/B test of ranking strategies: each customer is in one arm (a stable hash of the
    experiment id and the customer id), on the surfaces it names (none named: every Recommend)."""

    id: str
    arms: tuple[RecArm, ...]
    channels: tuple[str, ...] = ()
    placements: tuple[str, ...] = ()

    def applies(self, channel: str, placement: str) -> bool:
        return ((not self.channels or channel in self.channels)
                and (not self.placements or placement in self.placements))


def _rec_experiment(data: Any, where: str) -> RecExperiment:
    from engine.events import CHANNEL_PATTERN
    from engine.validation import require_id, require_number

    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: must be a table")
    unknown = set(data) - {"id", "arms", "channels", "placements"}
    if unknown:
        raise InvalidArgument(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    raw_arms = data.get("arms")
    if not isinstance(raw_arms, list) or not 2 <= len(raw_arms) <= 8:
        raise InvalidArgument(f"{where}.arms: 2 to 8 [[{where}.arms]] tables")
    arms = []
    for i, arm in enumerate(raw_arms):
        at = f"{where}.arms[{i}]"
        if not isinstance(arm, dict):
            raise InvalidArgument(f"{at}: must be a table")
        unknown = set(arm) - {"name", "share", "strategy", "ranking"}
        if unknown:
            raise InvalidArgument(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
        name = arm.get("name")
        if not isinstance(name, str) or not CHANNEL_PATTERN.match(name):
            raise InvalidArgument(f"{at}.name: a name (a-z, 0-9, _; up to 32, a letter first)")
        strategy = arm.get("strategy", "blend")
        if strategy not in ARM_STRATEGIES:
            raise InvalidArgument(f"{at}.strategy: one of {list(ARM_STRATEGIES)}")
        ranking = arm.get("ranking", {})
        if not isinstance(ranking, dict):
            raise InvalidArgument(f"{at}.ranking: must be a table")
        _build(RankingConfig, ranking, f"{at}.ranking")  # the keys and values a [ranking] table takes
        if strategy == "popularity" and ranking:
            raise InvalidArgument(f"{at}.ranking: a popularity arm ranks by popularity alone")
        arms.append(RecArm(name, require_number(arm.get("share"), f"{at}.share", low=0.0, high=1.0), strategy,
                           ranking))
    if len({a.name for a in arms}) != len(arms):
        raise InvalidArgument(f"{where}.arms: names must differ")
    if abs(sum(a.share for a in arms) - 1.0) > 1e-9:
        raise InvalidArgument(f"{where}.arms: shares must sum to 1")
    scope = {}
    for key in ("channels", "placements"):
        names = data.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) and CHANNEL_PATTERN.match(n) for n in names):
            raise InvalidArgument(f"{where}.{key}: a list of names")
        scope[key] = tuple(names)
    return RecExperiment(require_id(data.get("id"), f"{where}.id"), tuple(arms), **scope)


def ranking_over(base: RankingConfig, overrides: Mapping[str, Any]) -> RankingConfig:
    """``base`` with an experiment arm's ranking keys set over it (a blend's keys over that blend)."""
    if not overrides:
        return base
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if k not in BLEND_KEYS}
    for blend in BLEND_KEYS:
        if blend in overrides:
            changes[blend] = replace(getattr(base, blend), **overrides[blend])
    return replace(base, **changes)


@dataclass(frozen=True)
class ServeConfig:
    """Everything `recsys serve` needs. Defaults are the embedded single-machine setup."""

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 9000
    # P, the partitions customers hash to: set once, when the store is created (None: the store's
    # own, or engine.sharding.DEFAULT_PARTITIONS for a new store); a different value is refused
    partitions: int | None = None
    # The customer tier: how many owner processes hold the partitions, and when it grows or
    # shrinks (engine/scaling.py). [owners] in the TOML file.
    owners: ScalingConfig = field(default_factory=lambda: ScalingConfig(min_owners=2, max_owners=4))
    # False: the owner count changes only by `recsys owners scale` (dead owners are still replaced)
    autoscale_owners: bool = True
    owner_control_interval_s: float = 1.0
    model_dir: str = "models"
    data_dir: str = "../shared/data"
    # Largest accepted HTTP body / gRPC batch.
    max_body_bytes: int = 1_000_000
    max_events_per_request: int = 1_000
    ray_address: str | None = None
    num_cpus: int | None = None
    ingress_replicas: int = 1
    # Autoscaling of the ingress: on when ingress_max_replicas > ingress_replicas (the minimum).
    ingress_max_replicas: int = 1
    target_ongoing_requests: float = 8.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    # The durable store: sqlite:///PATH (embedded default) or postgresql://... (a cluster).
    store_url: str = "sqlite:///var/recsys.db"
    # A partition writes a snapshot of its customers after this many new events.
    snapshot_every_events: int = 10_000
    # Customers a partition keeps unpacked (recently used); the rest are held packed (actors/customer_table.py).
    hot_customers_per_partition: int = 5_000
    # Recommend calls from one ingress replica to one owner: at most this many outstanding; requests
    # arriving meanwhile go together in the next call, up to shard_batch_max (gateway/coalesce.py).
    shard_calls_in_flight: int = 2
    shard_batch_max: int = 32
    auth: AuthConfig = field(default_factory=AuthConfig)
    # TLS: PEM files; when set, HTTP is HTTPS and gRPC is served with TLS on grpc_port (see
    # gateway/tls_front.py) while Serve's own gRPC proxy listens on loopback only.
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    ranking: RankingConfig = field(default_factory=RankingConfig)
    offers: OffersConfig = field(default_factory=OffersConfig)
    # receivers of triggered actions (TOML: [[webhooks]] tables)
    webhooks: tuple[WebhookConfig, ...] = ()
    # channels beyond the defaults (web, app, pos, email, push, call_center, kiosk, sms, chatbot,
    # social) that events, requests and offers may name: no contract change needed
    channels: tuple[str, ...] = ()
    consume: ConsumeConfig = field(default_factory=ConsumeConfig)
    # recommendation ids: what an impression, click, add-to-cart or purchase is credited to
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    # an A/B test of ranking strategies ([recommend_experiment] with [[recommend_experiment.arms]])
    recommend_experiment: RecExperiment | None = None

    def __post_init__(self) -> None:
        from engine.events import _channels

        object.__setattr__(self, "channels", tuple(self.channels))
        _channels(self.channels)  # a bad name is an error here, with its message
        if self.partitions is not None and not 1 <= self.partitions <= MAX_PARTITIONS:
            raise InvalidArgument(f"partitions: must be between 1 and {MAX_PARTITIONS}")
        if not self.owner_control_interval_s > 0:
            raise InvalidArgument("owner_control_interval_s: must be > 0")
        if self.ingress_replicas < 1 or self.ingress_max_replicas < 1:
            raise InvalidArgument("ingress_replicas, ingress_max_replicas: must be >= 1")
        if self.hot_customers_per_partition < 100:
            raise InvalidArgument("hot_customers_per_partition: must be >= 100")
        if self.shard_calls_in_flight < 1 or self.shard_batch_max < 1:
            raise InvalidArgument("shard_calls_in_flight, shard_batch_max: must be >= 1")
        if self.snapshot_every_events < 1:
            raise InvalidArgument("snapshot_every_events: must be >= 1")
        for name in ("http_port", "grpc_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise InvalidArgument(f"{name}: must be a TCP port")


def _build(cls, data: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise InvalidArgument(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        if name == "ranking":
            value = _build(RankingConfig, value, f"{where}.ranking")
        elif name == "weights":
            value = _build(BlendWeights, value, f"{where}.weights")
        elif name in ("cart_weights", "anonymous_weights"):
            _build(BlendWeights, value, f"{where}.{name}")  # unknown keys are an error
            continue  # completed below, once [ranking.weights] is known
        elif name == "auth":
            value = _build(AuthConfig, value, f"{where}.auth")
        elif name == "offers":
            value = _build(OffersConfig, value, f"{where}.offers")
        elif name == "consume":
            value = _build(ConsumeConfig, value, f"{where}.consume")
        elif name == "attribution":
            value = _build(AttributionConfig, value, f"{where}.attribution")
        elif name == "recommend_experiment":
            value = _rec_experiment(value, f"{where}.recommend_experiment")
        elif name == "owners":
            value = _build(ScalingConfig, value, f"{where}.owners")
        elif name == "webhooks":
            if not isinstance(value, list):
                raise InvalidArgument(f"{where}.webhooks: a list of [[webhooks]] tables")
            value = tuple(_build(WebhookConfig, w, f"{where}.webhooks[{i}]") for i, w in enumerate(value))
            if len({w.name for w in value}) != len(value):
                raise InvalidArgument(f"{where}.webhooks: names must differ")
        elif name == "keys":
            value = tuple(_build(ApiKey, k, f"{where}.keys[{i}]") for i, k in enumerate(value))
        kwargs[name] = value
    if cls is RankingConfig:
        if "explicit" in data:
            raise InvalidArgument(f"{where}: unknown key(s) explicit")
        kwargs["explicit"] = frozenset({name for name in data if name not in ("weights", "cart_weights", "anonymous_weights")}
                                       | {f"{blend}.{key}" for blend in ("weights", "cart_weights", "anonymous_weights")
                                          for key in data.get(blend, {})})
    if cls is RankingConfig and "cart_weights" in data:
        # keys left out: as cart_blend gives them over [ranking.weights]
        kwargs["cart_weights"] = cart_blend(kwargs.get("weights", BlendWeights()), **data["cart_weights"])
    if cls is RankingConfig and "anonymous_weights" in data:
        kwargs["anonymous_weights"] = anonymous_blend(kwargs.get("weights", BlendWeights()), **data["anonymous_weights"])
    return cls(**kwargs)


def fitted_ranking(config: RankingConfig, fitted: Mapping[str, Any] | None) -> RankingConfig:
    """``config`` with what `recsys train` chose for its data (a manifest's ``fitted`` record, see
    recommenders/fitting.py) over it, except the keys ``config.explicit`` names (a config file's).
    The blends with a cart and for anonymous visitors follow the fitted next-basket weights, as they
    follow `[ranking.weights]`, unless the file sets them."""
    chosen = dict((fitted or {}).get("ranking") or {})
    if not chosen:
        return config
    known = {f.name for f in fields(BlendWeights)}
    fitted_weights = dict(chosen.pop("weights", {}))
    unknown = (set(fitted_weights) - known) | (set(chosen) - FITTED_RANKING_KEYS)
    if unknown:
        raise InvalidArgument(f"the model's fitted ranking has unknown key(s) {', '.join(sorted(unknown))}")
    weights = {key: value for key, value in fitted_weights.items() if f"weights.{key}" not in config.explicit}
    changes: dict[str, Any] = {name: value for name, value in chosen.items() if name not in config.explicit}
    if weights:
        new = replace(config.weights, **weights)
        changes["weights"] = new
        # the other blends follow, keeping what the file set of them
        for blend, make in (("cart_weights", cart_blend), ("anonymous_weights", anonymous_blend)):
            kept = {key: getattr(getattr(config, blend), key) for key in known if f"{blend}.{key}" in config.explicit}
            changes[blend] = make(new, **kept)
    return replace(config, **changes) if changes else config


# What a fitted record may set besides the weights (recommenders/fitting.py).
FITTED_RANKING_KEYS = frozenset({"repurchase_policy", "repurchase_timing"})


def absolute_store_url(url: str, base: Path | None = None) -> str:
    """Make a relative SQLite path absolute, so every process (Ray workers too) opens the same file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        return prefix + str(((base or Path.cwd()) / url[len(prefix):]).resolve())
    return url


def load_serve_config(path: str | Path | None = None, **overrides: Any) -> ServeConfig:
    """Read a TOML file (optional), then apply overrides that are not None."""
    config = ServeConfig()
    if path is not None:
        with open(path, "rb") as handle:
            config = _build(ServeConfig, tomllib.load(handle), str(path))
    clean = {k: v for k, v in overrides.items() if v is not None}
    config = replace(config, **clean) if clean else config
    return replace(config, store_url=absolute_store_url(config.store_url))


def ingress_scaling(config: ServeConfig) -> dict:
    """Ray Serve deployment options for the ingress: fixed replicas, or autoscaling between
    ``ingress_replicas`` and ``ingress_max_replicas`` on ongoing requests per replica."""
    if config.ingress_max_replicas <= config.ingress_replicas:
        return {"num_replicas": config.ingress_replicas}
    return {"autoscaling_config": {"min_replicas": config.ingress_replicas,
                                   "max_replicas": config.ingress_max_replicas,
                                   "target_ongoing_requests": config.target_ongoing_requests,
                                   "upscale_delay_s": config.upscale_delay_s,
                                   "downscale_delay_s": config.downscale_delay_s}}
