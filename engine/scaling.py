"""How many owner processes the elastic customer tier should run, from their measured load.

A pure function of the samples, the clock and a small state, so the controller that calls it (and
owns Ray) stays thin, and every decision can be replayed in a unit test. Two things keep the tier
from flapping: a tolerance band (a tier just under its capacity keeps its size) and delays (a wish
to change must hold for a while before it is acted on).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from engine.errors import InvalidArgument

MAX_OWNERS_LIMIT = 1024
# A tier whose load is within this fraction below its capacity keeps its size: shrinking it would
# put the remaining owners right at their target, where the next small rise scales it up again.
TOLERANCE = 0.10


@dataclass(frozen=True)
class ScalingConfig:
    """Bounds, target and pace of the tier. Validated here, so a bad TOML fails at start-up and
    not at the first decision."""

    min_owners: int = 2
    max_owners: int = 8
    # load units (CPU-seconds per second of an owner process) one owner should carry
    target_load_per_owner: float = 0.5
    # scaling up is cheap and load spikes hurt latency: a short delay
    upscale_delay_s: float = 5.0
    # scaling down moves customers and loses warm caches: a longer one
    downscale_delay_s: float = 30.0
    # 0: no limit; else at most this many owners added per decision (each start loads state)
    max_step_up: int = 0

    def __post_init__(self) -> None:
        if self.min_owners < 1:
            raise InvalidArgument("scaling.min_owners: must be >= 1")
        if not self.min_owners <= self.max_owners <= MAX_OWNERS_LIMIT:
            raise InvalidArgument(f"scaling.max_owners: must be between min_owners ({self.min_owners}) "
                                  f"and {MAX_OWNERS_LIMIT}")
        # written as `not >` so that NaN is refused too
        if not (self.target_load_per_owner > 0 and math.isfinite(self.target_load_per_owner)):
            raise InvalidArgument("scaling.target_load_per_owner: must be a finite number > 0")
        if not (self.upscale_delay_s >= 0 and self.downscale_delay_s >= 0):
            raise InvalidArgument("scaling.upscale_delay_s, scaling.downscale_delay_s: must be >= 0")
        if self.max_step_up < 0:
            raise InvalidArgument("scaling.max_step_up: must be >= 0 (0: no limit)")

    def clamp(self, owners: int) -> int:
        """``owners`` moved into [min_owners, max_owners]."""
        return max(self.min_owners, min(self.max_owners, owners))


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between decisions: since when (monotonic seconds) it has wanted
    to go up or down, ``None`` while it does not. Only one is set at a time."""

    want_up_since: float | None = None
    want_down_since: float | None = None


def desired_owners(loads: Sequence[float], current: int, config: ScalingConfig) -> int:
    """Owners the summed ``loads`` need at ``config.target_load_per_owner`` each, in bounds.

    ``current`` is kept while the load is within the tolerance band just below its capacity. No
    samples (every owner just started, or none answered) is no evidence: keep ``current``."""
    total = _total(loads)
    if not loads:
        return config.clamp(current)
    capacity = current * config.target_load_per_owner
    if capacity * (1 - TOLERANCE) <= total <= capacity:
        return config.clamp(current)
    return config.clamp(math.ceil(total / config.target_load_per_owner))


def decide(loads: Sequence[float], current: int, now_s: float, state: PolicyState,
           config: ScalingConfig) -> tuple[int, PolicyState]:
    """The number of owners to run now, and the state to pass to the next call.

    A change in either direction happens only once the wish for it has held on every sample for
    its delay (``upscale_delay_s`` / ``downscale_delay_s``); one sample that does not want it starts
    the wait again, so a spike shorter than the delay never scales. Up goes to the desired count
    (at most ``max_step_up`` more), down straight to the desired count. A ``current`` outside the
    bounds (the config changed) is corrected at once. After any change the timers start afresh,
    so two changes are always at least a delay apart."""
    bounded = config.clamp(current)
    if bounded != current:
        return bounded, PolicyState()
    desired = desired_owners(loads, current, config)
    if desired > current:
        since = state.want_up_since if state.want_up_since is not None else now_s
        if now_s - since < config.upscale_delay_s:
            return current, PolicyState(want_up_since=since)
        if config.max_step_up:
            desired = min(desired, current + config.max_step_up)
        return desired, PolicyState()
    if desired < current:
        since = state.want_down_since if state.want_down_since is not None else now_s
        if now_s - since < config.downscale_delay_s:
            return current, PolicyState(want_down_since=since)
        return desired, PolicyState()
    return current, PolicyState()


def _total(loads: Sequence[float]) -> float:
    """Sum of ``loads``; a negative or non-finite sample is a bug in the measurement, not load."""
    for i, load in enumerate(loads):
        if not (load >= 0 and math.isfinite(load)):
            raise InvalidArgument(f"loads[{i}]: must be a finite number >= 0, got {load!r}")
    return math.fsum(loads)
