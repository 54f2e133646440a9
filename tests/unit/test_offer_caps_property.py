"""Contact caps are exact for any window, any number of offers and channels and any volume of
history, while a customer's offer memory stays bounded by the caps.

The history under test is the shard's own: events applied by engine.state.apply_event, then
trimmed by ShardOffers.trim_history (as CustomerShardLogic._apply does). The reference keeps
every show and decline in a plain list and counts naively."""
import math
import random

from hypothesis import given, settings, strategies as st

from actors.shard_offers import ShardOffers
from engine.config import OffersConfig
from engine.decisioning import TRIM_SLACK_MS, DecisionContext, OfferHistory, caps_left, check_eligibility
from engine.events import Event
from engine.offers import DAY_MS, parse_catalog
from engine.state import CustomerState, apply_event

NOW = 1_321_000_000_000
CHANNELS = ("web", "app", "email")


class Reference:
    """Every contact, counted the obvious way."""

    def __init__(self):
        self.shows: list[tuple[str, str, int]] = []
        self.declines: list[tuple[str, int]] = []

    def eligible_and_left(self, offer, channel, now):
        eligible, left = True, {}
        caps = offer.caps
        if caps.per_customer_per_channel is not None:
            since = now - caps.period_days * DAY_MS
            shown = sum(1 for o, c, ts in self.shows if o == offer.id and c == channel and ts >= since)
            eligible = eligible and shown < caps.per_customer_per_channel
            left["per_customer_per_channel"] = max(0, caps.per_customer_per_channel - shown)
        if caps.cooldown_after_decline_days > 0:
            declined = [ts for o, ts in self.declines if o == offer.id]
            cooldown_ms = caps.cooldown_after_decline_days * DAY_MS
            if declined:
                eligible = eligible and now - max(declined) >= cooldown_ms
                left["cooldown_seconds_left"] = max(0, math.ceil((max(declined) + cooldown_ms - now) / 1000))
            else:
                left["cooldown_seconds_left"] = 0
        return eligible, left


offer_caps = st.fixed_dictionaries({}, optional={
    "cap": st.tuples(st.integers(1, 6), st.integers(1, 60)),  # (per channel, period days)
    "cooldown": st.one_of(st.floats(0.01, 20), st.integers(1, 20)),
})
# one step: the clock moves on, then a show (at a decision clock up to TRIM_SLACK_MS behind, as
# from several ingress replicas), a decline (a client's clock: anywhere from 40 days back to
# a day ahead) or a check (a decision up to TRIM_SLACK_MS behind the clock)
steps = st.lists(st.tuples(
    st.sampled_from(["show", "show", "show", "decline", "check"]),
    st.integers(0, 40), st.integers(0, 2),  # offer index (mod the catalogue), channel
    st.integers(0, 2 * DAY_MS),  # clock advance
    st.floats(0, 1),  # how far back/ahead
), min_size=100, max_size=600)


def build(specs):
    offers = []
    for i, spec in enumerate(specs):
        caps = {}
        if "cap" in spec:
            caps["per_customer_per_channel"], caps["period_days"] = spec["cap"]
        if "cooldown" in spec:
            caps["cooldown_after_decline_days"] = spec["cooldown"]
        offers.append({"id": f"o{i}", "value": 1.0, "caps": caps})
    return parse_catalog({"version": "p", "offers": offers})


def offer_event(n, kind, offer_id, channel, ts):
    return Event(event_id=f"e{n}", customer_id="c", event_type=kind, item_id="", channel=channel, timestamp_ms=ts,
                 attributes=(("decision_id", f"d{n}"), ("offer_id", offer_id)))


def memory_bound(catalog, config):
    per_channel = sum(o.caps.per_customer_per_channel or 0 for o in catalog.offers)
    cooldowns = sum(1 for o in catalog.offers if o.caps.cooldown_after_decline_days > 0)
    return per_channel * len(CHANNELS) + cooldowns


def check_all(catalog, state, reference, now):
    history = state.offers if state.offers is not None else OfferHistory()
    for offer in catalog.offers:
        for channel in CHANNELS:
            ctx = DecisionContext(customer_id="c", channel=channel, now_ms=now, marketing_consent=True)
            expected_ok, expected_left = reference.eligible_and_left(offer, channel, now)
            ok, _, failed = check_eligibility(offer, ctx, history)
            assert ok == expected_ok, (offer, channel, now, failed)
            assert caps_left(offer, ctx, history) == expected_left, (offer, channel, now)


@settings(max_examples=120, deadline=None)
@given(st.lists(offer_caps, min_size=1, max_size=4), steps, st.sampled_from([1, 4, 32]))
def test_caps_agree_with_a_full_history_counted_naively(specs, ops, answerable):
    catalog = build(specs)
    config = OffersConfig(answerable_shows=answerable)
    offers = ShardOffers(0, 1, config, catalog)
    state, reference = CustomerState("c"), Reference()
    clock = NOW
    for n, (kind, index, channel_index, advance, back) in enumerate(ops):
        clock += advance
        offer_id, channel = f"o{index % len(catalog.offers)}", CHANNELS[channel_index]
        if kind == "check":
            check_all(catalog, state, reference, clock - int(back * TRIM_SLACK_MS))
            continue
        if kind == "show":
            ts = clock - int(back * TRIM_SLACK_MS)
            reference.shows.append((offer_id, channel, ts))
            event = offer_event(n, "offer_shown", offer_id, channel, ts)
        else:
            ts = clock - int(40 * DAY_MS * back) + DAY_MS
            reference.declines.append((offer_id, ts))
            event = offer_event(n, "offer_declined", offer_id, channel, ts)
        apply_event(state, event)
        offers.trim_history(state, event)  # what CustomerShardLogic._apply does after every event
        assert state.offers.entry_count() <= memory_bound(catalog, config)
        assert len(state.offers.decisions) <= answerable
    check_all(catalog, state, reference, clock)


def test_memory_stays_bounded_and_caps_exact_whatever_the_volume():
    catalog = parse_catalog({"version": "v", "offers": [
        {"id": "weekly", "value": 1.0, "caps": {"per_customer_per_channel": 3, "period_days": 7,
                                                 "cooldown_after_decline_days": 1}},
        {"id": "quarterly", "value": 1.0, "caps": {"per_customer_per_channel": 5, "period_days": 90}},
        {"id": "uncapped", "value": 1.0},
    ]})
    offers = ShardOffers(0, 1, OffersConfig(), catalog)
    state, reference = CustomerState("c"), Reference()
    rng = random.Random(3)
    clock = NOW
    for n in range(6000):
        clock += rng.randrange(0, DAY_MS // 2)
        offer_id, channel = rng.choice(["weekly", "quarterly", "uncapped"]), rng.choice(CHANNELS)
        kind = "offer_declined" if rng.random() < 0.1 else "offer_shown"
        ts = clock - rng.randrange(0, TRIM_SLACK_MS) if kind == "offer_shown" else clock - rng.randrange(0, 9 * DAY_MS)
        (reference.shows.append((offer_id, channel, ts)) if kind == "offer_shown"
         else reference.declines.append((offer_id, ts)))
        event = offer_event(n, kind, offer_id, channel, ts)
        apply_event(state, event)
        offers.trim_history(state, event)
        assert state.offers.entry_count() <= (3 + 5) * len(CHANNELS) + 1
        assert len(state.offers.decisions) <= OffersConfig().answerable_shows
    # the old 50-entry history forgot the quarterly shows long before 90 days had passed
    assert len(reference.shows) > 5000
    check_all(catalog, state, reference, clock)
    # and a snapshot of the trimmed history is as small and as exact
    from engine.state import state_from_dict, state_to_dict

    again = state_from_dict(state_to_dict(state))
    check_all(catalog, again, reference, clock)


def test_a_long_window_counts_every_show_in_it():
    """The bug this replaces: a 90-day cap of 5 with 60 shows of other offers in between."""
    catalog = parse_catalog({"version": "v", "offers": [
        {"id": "rare", "value": 1.0, "caps": {"per_customer_per_channel": 5, "period_days": 90}},
        {"id": "busy", "value": 1.0, "caps": {"per_customer_per_channel": 100, "period_days": 90}}]})
    offers = ShardOffers(0, 1, OffersConfig(), catalog)
    state = CustomerState("c")
    n = 0
    for day in range(60):
        for offer_id in (["rare"] if day % 12 == 0 else []) + ["busy"]:
            n += 1
            event = offer_event(n, "offer_shown", offer_id, "web", NOW + day * DAY_MS)
            apply_event(state, event)
            offers.trim_history(state, event)
    ctx = DecisionContext(customer_id="c", channel="web", now_ms=NOW + 60 * DAY_MS, marketing_consent=True)
    assert check_eligibility(catalog.by_id["rare"], ctx, state.offers)[2] == "cap_per_channel"
    assert caps_left(catalog.by_id["rare"], ctx, state.offers) == {"per_customer_per_channel": 0}
