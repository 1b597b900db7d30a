"""Bisection for the NOWAIT failure boundary (sim/analysis/boundary.py), on synthetic probes.

A synthetic probe fails below (or from) a threshold; the bisection must bracket it,
find the direction from the ends, refuse to invent a boundary when both ends agree,
stay on the integer grid of integer factors, and give the same answer every time.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.analysis.boundary import (
    BRACKET,
    CLEAN_AT_BOTH_ENDS,
    ERROR,
    FAILS_AT_BOTH_ENDS,
    FALLING,
    RISING,
    Bisection,
    Observation,
    Probe,
    find_boundary,
    midpoint,
)

CALLS = 1_000_000


def threshold_probe(threshold: float, falling: bool, seen: list | None = None):
    """Failures below ``threshold`` (falling, as with RAM) or from it (rising, as with workers)."""

    def probe(value):
        if seen is not None:
            seen.append(value)
        fails = value < threshold if falling else value >= threshold
        return Observation(failures=3 if fails else 0, calls=CALLS, runs=2)

    return probe


@given(
    low=st.integers(0, 10_000),
    width=st.integers(1, 10_000),
    where=st.floats(0.0, 1.0),
    falling=st.booleans(),
    steps=st.integers(0, 20),
)
def test_bracket_contains_the_threshold_of_a_monotone_probe(low, width, where, falling, steps):
    high = low + width
    threshold = low + 1 + where * (width - 1) if width > 1 else high  # strictly inside (low, high]
    result = find_boundary(low, high, threshold_probe(threshold, falling), steps, granule=1)
    assert result.outcome == BRACKET
    assert result.direction == (FALLING if falling else RISING)
    lower, upper = result.bracket
    assert low <= lower < upper <= high
    assert lower < threshold <= upper
    assert (result.failing < result.clean) == falling
    # each midpoint halves the bracket, down to one unit
    assert upper - lower <= max(1, math.ceil(width / 2**steps))


@given(
    low=st.floats(-1e6, 1e6, allow_nan=False),
    width=st.floats(1e-3, 1e6),
    where=st.floats(0.01, 0.99),
    steps=st.integers(0, 30),
)
def test_real_factor_bracket_halves_each_step(low, width, where, steps):
    high = low + width
    threshold = low + where * width
    result = find_boundary(low, high, threshold_probe(threshold, falling=False), steps)
    lower, upper = result.bracket
    assert lower < threshold <= upper
    rounding = 4 * math.ulp(max(abs(low), abs(high)))  # the midpoints are rounded floats
    assert upper - lower <= width / 2**steps + rounding
    assert len(result.probes) <= 2 + steps


@given(low=st.integers(0, 1000), width=st.integers(1, 1000), steps=st.integers(0, 12), falling=st.booleans())
def test_integer_factor_probes_only_integers_inside_the_range(low, width, steps, falling):
    seen: list = []
    result = find_boundary(low, low + width, threshold_probe(low + width / 2 + 0.5, falling, seen), steps, granule=1)
    assert all(isinstance(v, int) for v in seen)
    assert all(low <= v <= low + width for v in seen)
    assert len(seen) == len(set(seen)) == len(result.probes)


def test_size_factor_probes_stay_on_the_granule():
    mib = 1 << 20
    seen: list = []
    result = find_boundary(160 * mib, 1024 * mib, threshold_probe(300.5 * mib, True, seen), 12, granule=mib)
    assert all(v % mib == 0 for v in seen)
    assert (result.failing, result.clean) == (300 * mib, 301 * mib)  # 864 MiB in 10 halvings


def test_integer_bracket_stops_at_adjacent_values_before_the_step_budget():
    result = find_boundary(0, 16, threshold_probe(5, falling=False), steps=50, granule=1)
    assert result.bracket == (4, 5)
    assert (result.clean, result.failing) == (4, 5)
    assert len(result.probes) <= 2 + 4  # log2(16) midpoints at most


@pytest.mark.parametrize(
    ("threshold", "falling", "outcome"),
    [
        (2000, True, FAILS_AT_BOTH_ENDS),  # fails below 2000 > high
        (-5, True, CLEAN_AT_BOTH_ENDS),
        (-5, False, FAILS_AT_BOTH_ENDS),  # fails from -5 < low
        (2000, False, CLEAN_AT_BOTH_ENDS),
    ],
)
def test_no_boundary_inside_the_range_when_both_ends_agree(threshold, falling, outcome):
    seen: list = []
    result = find_boundary(0, 1000, threshold_probe(threshold, falling, seen), steps=6, granule=1)
    assert result.outcome == outcome
    assert result.direction is None and result.bracket is None
    assert result.clean is None and result.failing is None
    assert sorted(seen) == [0, 1000]  # nothing probed in between


def test_direction_comes_from_the_ends():
    ram = find_boundary(160, 1024, threshold_probe(300, falling=True), steps=3, granule=1)
    workers = find_boundary(32, 512, threshold_probe(100, falling=False), steps=3, granule=1)
    assert (ram.direction, workers.direction) == (FALLING, RISING)
    assert ram.probe_at(160).failing and not ram.probe_at(1024).failing
    assert not workers.probe_at(32).failing and workers.probe_at(512).failing


def test_same_probes_give_the_same_boundary():
    def noisy(value):  # deterministic in the value, not monotone
        return Observation(failures=(value * 7919) % 5 // 3, calls=CALLS)

    first = find_boundary(0, 4096, noisy, steps=10, granule=1)
    assert first == find_boundary(0, 4096, noisy, steps=10, granule=1)


def test_pending_values_may_be_recorded_in_any_order():
    probe = threshold_probe(37, falling=False)
    a, b = Bisection(0, 100, 5, 1), Bisection(0, 100, 5, 1)
    while not a.done:
        for value in a.pending():
            a.record(value, probe(value))
        for value in reversed(b.pending()):
            b.record(value, probe(value))
    assert a.result() == b.result()


def test_a_value_not_pending_is_refused():
    bisection = Bisection(0, 10, 3, 1)
    with pytest.raises(ValueError, match="not waiting"):
        bisection.record(5, Observation(0, CALLS))


def test_a_run_error_stops_the_bisection_with_its_message():
    def probe(value):
        if value == 500:
            return Observation(0, 0, 1, ("KernelBug: boom",))
        return threshold_probe(300, True)(value)

    result = find_boundary(0, 1000, probe, steps=5, granule=1)
    assert result.outcome == ERROR
    assert "at 500: KernelBug: boom" in result.error
    assert result.bracket is None


def test_range_and_granule_are_checked():
    with pytest.raises(ValueError, match="low < high"):
        Bisection(5, 5, 3)
    with pytest.raises(ValueError, match="granule"):
        Bisection(0.5, 4, 3, granule=1)


def test_midpoint_none_when_the_bracket_is_one_granule():
    assert midpoint(4, 5, 1) is None
    assert midpoint(4, 6, 1) == 5
    assert midpoint(0, 3 << 20, 1 << 20) == 1 << 20
    assert midpoint(1.0, 2.0, None) == 1.5


def test_no_failure_observed_is_a_rate_below_the_wilson_upper_bound():
    rate, lo, hi = Probe(256, failures=0, calls=CALLS, runs=2).rate()
    assert rate == 0 and lo == 0
    assert hi == pytest.approx(3.84, rel=0.01)  # about 3.84 / n: z^2 / n
    rate, lo, hi = Probe(160, failures=10, calls=CALLS, runs=2).rate()
    assert lo < rate == 10 < hi
    assert all(math.isnan(x) for x in Probe(1, 0, 0, 1).rate())
