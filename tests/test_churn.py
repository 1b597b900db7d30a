"""The built-in churn workloads: fork stacks are all NE_FIT in v5.3."""

from __future__ import annotations

import numpy as np
import pytest

from sim.workloads.churn import plan_churn, run_churn


@pytest.mark.parametrize("live", [1, 64, 1500])
def test_fork_stacks_are_100_percent_ne_fit_in_v53(live):
    result = run_churn("fork-stacks", live, 3000, np.random.default_rng(7), search="v5.3")
    assert result.failures == 0
    assert result.fits["NE"] == 3000
    assert result.fit_mix()["NE"] == 1.0


def test_random_sizes_are_mostly_left_edge_fits():
    result = run_churn("random-sizes", 500, 3000, np.random.default_rng(7))
    mix = result.fit_mix()
    assert mix["LE"] > 0.5
    assert sum(result.fits.values()) == 3000


def test_same_seed_gives_the_same_plan_and_mix():
    a = run_churn("random-sizes", 200, 1000, np.random.default_rng(3))
    b = run_churn("random-sizes", 200, 1000, np.random.default_rng(3))
    assert a.fits == b.fits
    assert (
        plan_churn("random-sizes", 10, 5, np.random.default_rng(1)).sizes
        == plan_churn("random-sizes", 10, 5, np.random.default_rng(1)).sizes
    )


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError):
        plan_churn("bogus", 1, 1, np.random.default_rng(0))
