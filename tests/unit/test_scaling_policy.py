"""The elastic tier's scaling policy without Ray: delays, tolerance band, bounds and step limit."""
import math
import random

import pytest

from engine.errors import InvalidArgument
from engine.scaling import PolicyState, ScalingConfig, decide, desired_owners

# default config: 2..8 owners, 0.5 load each, up after 5 s, down after 30 s
CONFIG = ScalingConfig()


def per_owner(total, owners=4):
    """``total`` load spread over ``owners`` samples (the policy only uses the sum)."""
    return [total / owners] * owners


def run(samples, current, config=CONFIG, state=PolicyState()):
    """Feed ``(now_s, loads)`` samples in order, each decision's target becoming the next current.
    Returns the targets, one per sample."""
    targets = []
    for now_s, loads in samples:
        current, state = decide(loads, current, now_s, state, config)
        targets.append(current)
    return targets


def test_desired_is_load_over_target_rounded_up():
    assert desired_owners(per_owner(2.1), 4, CONFIG) == 5  # 4.2 owners' worth
    assert desired_owners(per_owner(1.2), 4, CONFIG) == 3  # 2.4 owners' worth, below the band
    assert desired_owners([], 5, CONFIG) == 5  # no samples: no evidence, keep


def test_up_only_after_the_delay():
    high = per_owner(3.0)  # wants 6 owners
    targets = run([(t, high) for t in (100.0, 101.0, 104.9, 105.0)], current=4)
    assert targets == [4, 4, 4, 6]


def test_spike_shorter_than_the_delay_does_not_scale():
    high, normal = per_owner(3.0), per_owner(1.9)
    # 4 s of high load, one normal sample, 4 s of high load again: neither wait reaches 5 s
    samples = [(100.0 + t, high) for t in range(5)] + [(105.0, normal)]
    samples += [(106.0 + t, high) for t in range(5)]
    assert run(samples, current=4) == [4] * 11
    # the same high load held once for 5 s does scale: the reset above is what kept it at 4
    assert run([(100.0 + t, high) for t in range(6)], current=4)[-1] == 6


def test_down_after_the_downscale_delay():
    low = per_owner(0.6)  # wants 2 owners
    samples = [(100.0 + t, low) for t in range(0, 31)]
    targets = run(samples, current=6)
    assert targets[5] == 6  # the upscale delay is not the one that applies
    assert targets[29] == 6
    assert targets[30] == 2  # straight to the desired count


def test_wanting_up_resets_the_wait_to_go_down():
    low, high = per_owner(0.6), per_owner(3.0)
    samples = [(100.0 + t, low) for t in range(20)] + [(120.0, high)]
    samples += [(121.0 + t, low) for t in range(20)]  # 40 s of mostly low, but 20 s since the break
    assert run(samples, current=4) == [4] * 41


def test_timers_reset_after_a_change():
    high = per_owner(3.0)
    _, state = decide(high, 4, 100.0, PolicyState(), CONFIG)
    assert state == PolicyState(want_up_since=100.0)
    target, state = decide(high, 4, 105.0, state, CONFIG)
    assert target == 6 and state == PolicyState()


def test_tolerance_band_keeps_a_tier_just_under_capacity():
    config = ScalingConfig(max_owners=32, downscale_delay_s=0.0)  # no delay: only the band holds it
    # 20 owners have capacity 10.0; 9.2 would round up to 19 owners without the band
    assert math.ceil(9.2 / config.target_load_per_owner) == 19
    assert desired_owners([9.2], 20, config) == 20
    # a load oscillating inside the band never moves the tier
    loads = [[9.0], [10.0], [9.3], [9.9], [9.05]] * 10
    assert run([(float(t), load) for t, load in enumerate(loads)], current=20, config=config) == [20] * 50
    # just below the band it does shrink
    assert decide([8.9], 20, 0.0, PolicyState(), config)[0] == 18


def test_desired_is_clamped_to_min_and_max():
    assert desired_owners(per_owner(100.0), 4, CONFIG) == 8
    assert desired_owners(per_owner(0.0), 4, CONFIG) == 2
    assert run([(t, per_owner(100.0)) for t in (0.0, 5.0)], current=4) == [4, 8]
    assert run([(t, per_owner(0.0)) for t in (0.0, 30.0)], current=4) == [4, 2]


@pytest.mark.parametrize("current, expected", [(0, 2), (1, 2), (9, 8), (100, 8)])
def test_current_out_of_bounds_is_corrected_at_once(current, expected):
    # the load would want the other way, and no delay has passed: the bounds win
    load = per_owner(100.0) if current > 8 else per_owner(0.0)
    state = PolicyState(want_up_since=99.0)
    assert decide(load, current, 100.0, state, CONFIG) == (expected, PolicyState())


def test_max_step_up_limits_each_step_and_each_step_waits():
    config = ScalingConfig(max_step_up=2)
    high = per_owner(100.0)  # wants 8 (the max)
    targets = run([(float(t), high) for t in range(0, 20)], current=2, config=config)
    assert targets[5] == 4 and targets[4] == 2
    # the next step waits a full delay again, counted from the first sample after the change
    assert targets[11] == 6 and targets[10] == 4
    assert targets[17] == 8 and targets[16] == 6
    # without the limit: straight to the max
    assert run([(0.0, high), (5.0, high)], current=2)[-1] == 8


def test_max_step_up_does_not_limit_down():
    config = ScalingConfig(max_step_up=1)
    assert run([(0.0, [0.0]), (30.0, [0.0])], current=8, config=config) == [8, 2]


@pytest.mark.parametrize("kwargs, field", [
    ({"min_owners": 0}, "min_owners"),
    ({"min_owners": 5, "max_owners": 4}, "max_owners"),
    ({"max_owners": 1025}, "max_owners"),
    ({"target_load_per_owner": 0.0}, "target_load_per_owner"),
    ({"target_load_per_owner": -1.0}, "target_load_per_owner"),
    ({"target_load_per_owner": float("nan")}, "target_load_per_owner"),
    ({"upscale_delay_s": -0.1}, "upscale_delay_s"),
    ({"downscale_delay_s": -1.0}, "downscale_delay_s"),
    ({"downscale_delay_s": float("nan")}, "downscale_delay_s"),
    ({"max_step_up": -1}, "max_step_up"),
])
def test_invalid_config_raises_invalid_argument(kwargs, field):
    with pytest.raises(InvalidArgument, match=field):
        ScalingConfig(**kwargs)


def test_edge_configs_are_valid():
    ScalingConfig(min_owners=1, max_owners=1)
    ScalingConfig(min_owners=1, max_owners=1024, upscale_delay_s=0.0, downscale_delay_s=0.0)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_load_sample_raises_invalid_argument(bad):
    with pytest.raises(InvalidArgument, match=r"loads\[1\]"):
        decide([0.5, bad], 4, 0.0, PolicyState(), CONFIG)


def test_random_load_series_stay_in_bounds_and_never_change_twice_within_the_delay():
    rng = random.Random(20240607)
    changes_seen = 0
    for _ in range(200):
        low = rng.randint(1, 6)
        config = ScalingConfig(min_owners=low, max_owners=rng.randint(low, 24),
                               target_load_per_owner=rng.choice([0.25, 0.5, 1.0]),
                               upscale_delay_s=rng.uniform(0.5, 10.0),
                               downscale_delay_s=rng.uniform(0.5, 40.0),
                               max_step_up=rng.choice([0, 0, 1, 3]))
        min_gap = min(config.upscale_delay_s, config.downscale_delay_s)
        current = rng.randint(config.min_owners, config.max_owners)
        state, now_s, last_change = PolicyState(), 1000.0, None
        level = rng.uniform(0.0, 1.5) * config.max_owners * config.target_load_per_owner
        for _ in range(300):
            now_s += rng.uniform(0.1, 3.0)
            if rng.random() < 0.05:  # occasional regime change, plus noise and spikes
                level = rng.uniform(0.0, 1.5) * config.max_owners * config.target_load_per_owner
            spike = rng.uniform(1.0, 4.0) if rng.random() < 0.03 else 1.0
            loads = [max(0.0, level * spike * rng.uniform(0.8, 1.2)) / current] * rng.randint(0, current)
            target, state = decide(loads, current, now_s, state, config)
            assert config.min_owners <= target <= config.max_owners
            if target != current:
                if config.max_step_up and target > current:
                    assert target - current <= config.max_step_up
                if last_change is not None:
                    assert now_s - last_change >= min_gap, (config, last_change, now_s)
                last_change = now_s
                changes_seen += 1
            current = target
    # the loop must actually exercise changes, or the gap check above proves nothing
    assert changes_seen > 500
