"""Trending per country and channel, with time decay, for the request's context."""
import numpy as np
import pandas as pd

from engine.config import RankingConfig
from engine.queries import parse_recommend
from recommenders.loaders import Dataset, _items_from_events
from recommenders.recommend import recommend
from recommenders.runtime import ModelRuntime
from engine.rules import DAY_MS
from recommenders.training import TrainParams, train

T0 = 1_700_000_000_000


def shop():
    """France buys f-items, Germany g-items; everyone also buys some shared items."""
    rng = np.random.default_rng(3)
    rows = []
    for c in range(600):
        country = "France" if c % 2 else "Germany"
        local = [f"f{j}" for j in range(5)] if country == "France" else [f"g{j}" for j in range(5)]
        for b in range(3):
            ts = T0 + int(rng.integers(0, 60)) * DAY_MS
            for item in (local[int(rng.integers(0, 5))], f"s{int(rng.integers(0, 30))}"):
                rows.append((f"e{c}-{b}-{item}", ts, f"c{c}", f"s{c}-{b}", item, "purchase", 1.0, 2.0, "web", "",
                             country))
    events = pd.DataFrame(rows, columns=["event_id", "timestamp_ms", "customer_id", "session_id", "item_id",
                                         "event_type", "quantity", "price", "channel", "store_id", "country"])
    return Dataset(events, _items_from_events(events), "two-countries")


def test_an_unknown_customer_gets_what_trends_in_their_country():
    bundle = train(shop(), TrainParams(factors=8, iterations=3, threads=1, evaluate=False), progress=False)
    assert sorted(bundle.arrays["trend_keys"].tolist()) == ["channel:web", "country:France", "country:Germany"]
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    now = T0 + 61 * DAY_MS
    for country, prefix in (("France", "f"), ("Germany", "g")):
        query = parse_recommend({"customer_id": "stranger", "k": 5, "context": {"country": country}}, 100)
        items = recommend(model, None, query, RankingConfig(), now).items
        assert items[0].item_id.startswith(prefix) and "trending" in items[0].reasons
        assert "cold_start" in items[0].reasons
    plain = recommend(model, None, parse_recommend({"customer_id": "stranger", "k": 5}, 100), RankingConfig(), now)
    # no country: the channel's list (every event here is web), so still trending, but not one country's
    assert "trending" in plain.items[0].reasons
