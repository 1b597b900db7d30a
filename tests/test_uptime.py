"""Over uptime: first failures and failures per hour, recomputed from a small suite."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.analysis.report import Suite, uptime_section
from sim.analysis.uptime import poisson_interval, uptime_figure, uptime_runs, uptime_summary


@pytest.mark.parametrize(
    ("k", "lo", "hi"),
    [(0, 0.0, 3.689), (1, 0.0253, 5.572), (5, 1.6235, 11.668), (100, 81.364, 121.627)],  # Garwood's table
)
def test_the_poisson_interval_is_garwood_s(k, lo, hi):
    got = poisson_interval(k, 1.0)
    assert got[0] == pytest.approx(lo, abs=1e-3) and got[1] == pytest.approx(hi, abs=1e-3)


@given(st.integers(0, 400), st.floats(0.01, 100))
def test_the_poisson_interval_holds_the_rate_and_scales_with_exposure(k, hours):
    lo, hi = poisson_interval(k, hours)
    assert lo <= k / hours <= hi
    lo1, hi1 = poisson_interval(k, 1.0)
    assert math.isclose(lo * hours, lo1, rel_tol=1e-9, abs_tol=1e-12) and math.isclose(hi * hours, hi1, rel_tol=1e-9)


def _suite() -> Suite:
    runs = [
        {"run_id": f"uptime-256mb:r{r}", "sweep": "uptime-256mb", "point": 0, "scenario": "rezki-2019-256mb",
         "strategy": "nowait", "replication": r, "status": "ok", "sim_seconds": 400.0, "split_nowait_failures": k}
        for r, k in ((0, 3), (1, 0))
    ] + [{"run_id": "fork-ram:x", "sweep": "fork-ram", "point": 0, "scenario": "fork-storm", "strategy": "nowait",
          "replication": 0, "status": "ok", "sim_seconds": 6.0, "split_nowait_failures": 9}]  # fmt: skip
    events = [{"run_id": "uptime-256mb:r0", "kind": "split_nowait_failure", "time": t} for t in (250.0, 120.5, 300.0)]
    events += [{"run_id": "fork-ram:x", "kind": "split_nowait_failure", "time": 0.1}]
    return Suite(pd.DataFrame(runs), pd.DataFrame(events), pd.DataFrame(columns=["run_id", "name", "value"]),
                 {}, {}, {})  # fmt: skip


def test_each_long_run_s_first_failure_and_the_runs_without_one():
    per_run = uptime_runs(_suite())
    assert list(per_run["sweep"]) == ["uptime-256mb", "uptime-256mb"]  # only the uptime sweeps
    assert per_run["first_failure"].iloc[0] == 120.5 and math.isnan(per_run["first_failure"].iloc[1])
    (row,) = uptime_summary(per_run).to_dict("records")
    assert row["first_failures"] == [120.5] and row["never"] == 1 and row["rezki_first"] == 180.0
    assert row["failures"] == 3 and row["per_hour"] == pytest.approx(3 / (800 / 3600))


def test_the_section_sets_the_model_s_first_failures_beside_rezki_s():
    text = "\n".join(uptime_section(_suite()))
    assert "| uptime-256mb | nowait | 2 | 400 | 120.5; 1 run with none | 120.5 | 180 s | 3 | 14 [3, 39] |" in text
    assert "the first failure came at 120.5 s of simulated uptime (1 of 1 runs before Rezki's 180 s)" in text


def test_no_uptime_sweep_no_section():
    suite = _suite()
    suite.runs = suite.runs[suite.runs["sweep"] == "fork-ram"]
    assert uptime_section(suite) == []


def test_the_uptime_figure_draws_one_step_line_per_run_and_rezki_s_mark():
    suite = _suite()
    fig = uptime_figure(uptime_runs(suite), suite.events)
    (ax,) = fig.get_axes()
    assert len(ax.get_lines()) == 3  # two runs and the vertical mark
    assert ax.get_lines()[0].get_ydata()[-1] == 3
