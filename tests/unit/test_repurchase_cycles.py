"""Per-item repurchase cycles: learnt from repeat purchases, used to time the repurchase source."""
import numpy as np
import pandas as pd
import pytest

from engine.config import RankingConfig
from engine.errors import InvalidArgument

from recommenders.recommend import _Profile, repurchase_candidates
from engine.rules import DAY_MS
from recommenders.training import repurchase_cycles

T0 = 1_700_000_000_000


def purchases(rows):
    return pd.DataFrame([{"customer_id": c, "item_id": i, "event_type": "purchase", "timestamp_ms": T0 + d * DAY_MS}
                         for c, i, d in rows])


def test_cycles_are_the_median_gap_per_item_with_a_fallback():
    rows = []
    for c in range(6):  # coffee every 7 days, filters every 30
        rows += [(f"c{c}", "coffee", d) for d in (0, 7, 14)]
        rows += [(f"c{c}", "filters", d) for d in (0, 30)]
    rows += [("c0", "rare", 0), ("c0", "rare", 3)]  # one repeat: too few for a cycle of its own
    cycles = repurchase_cycles(purchases(rows), np.array(["coffee", "filters", "rare", "never-repeated"]))
    assert cycles[0] == 7 and cycles[1] == 30
    overall = np.median([7] * 12 + [30] * 6 + [3])
    assert cycles[2] == overall and cycles[3] == overall


def test_without_any_repeat_there_is_no_cycle():
    cycles = repurchase_cycles(purchases([("c0", "a", 0), ("c1", "b", 5)]), np.array(["a", "b"]))
    assert np.isnan(cycles).all()


def test_cycle_timing_prefers_the_item_that_is_due():
    now = T0 + 100 * DAY_MS
    # both bought once; item 0 (cycle 7 days) 7 days ago: due; item 1 (cycle 60 days) 7 days ago: not yet
    profile = _Profile(vector=None, weights={}, last_purchase_ms={0: now - 7 * DAY_MS, 1: now - 7 * DAY_MS},
                       purchase_weight={0: 1.0, 1: 1.0}, known=True)
    idx, score = repurchase_candidates(profile, now, np.array([7.0, 60.0], dtype=np.float32))
    by_item = dict(zip(idx.tolist(), score.tolist()))
    assert by_item[0] > by_item[1]
    idx, plain = repurchase_candidates(profile, now)
    assert np.allclose(plain, plain[0])  # decay timing cannot tell them apart
    idx, nan_cycles = repurchase_candidates(profile, now, np.array([np.nan, np.nan], dtype=np.float32))
    assert np.allclose(nan_cycles, plain)  # no cycle: falls back to decay


def test_frequency_timing_ranks_by_how_often_alone():
    now = T0 + 100 * DAY_MS
    # item 0 bought 3 times, last 90 days ago; item 1 once, yesterday; item 2 once, 50 days ago
    profile = _Profile(vector=None, weights={}, purchase_weight={0: 3.0, 1: 1.0, 2: 1.0}, known=True,
                       last_purchase_ms={0: now - 90 * DAY_MS, 1: now - DAY_MS, 2: now - 50 * DAY_MS})
    idx, score = repurchase_candidates(profile, now, np.array([7.0, 7.0, 7.0], dtype=np.float32), "frequency")
    by_item = dict(zip(idx.tolist(), score.tolist()))
    assert by_item[0] > by_item[1] == by_item[2]  # equally often: a tie the other sources break
    _, decayed = repurchase_candidates(profile, now, None, "decay")
    assert dict(zip(idx.tolist(), decayed.tolist()))[1] > dict(zip(idx.tolist(), decayed.tolist()))[2]


def test_repurchase_timing_is_checked():
    for timing in ("decay", "cycle", "frequency"):
        assert RankingConfig(repurchase_timing=timing).repurchase_timing == timing
    with pytest.raises(InvalidArgument, match="repurchase_timing"):
        RankingConfig(repurchase_timing="soon")
