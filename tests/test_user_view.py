"""What a user sees, per condition and strategy: recomputed here from a small suite."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.analysis.report import Suite, suffer_table, user_view_section
from sim.analysis.user_view import PANELS, user_view_figure, user_view_table


def _run(strategy: str, rep: int, failures: int, **extra) -> dict:
    row = {"run_id": f"s:p0/{strategy}/r{rep}", "sweep": "s", "point": 0, "strategy": strategy, "status": "ok",
           "split_nowait_failures": failures, "vmalloc_calls": 10_000, "forks": 9_990, "fork_enomem": 10,
           "oom_kills": 30, "sim_seconds": 30.0, "vmap_lock_wait_seconds": 0.003}  # fmt: skip
    row.update(extra)
    return row


def _suite(runs: list[dict], stalls: list[float], warns: int) -> Suite:
    events = [{"run_id": "s:p0/nowait/r0", "kind": "vmap_overflow_purge", "time": 1.0, "seconds": s} for s in stalls]
    events += [{"run_id": "s:p0/nowait/r0", "kind": "warn_alloc", "time": 2.0, "seconds": math.nan}] * warns
    counters = pd.DataFrame(columns=["run_id", "name", "value"])
    return Suite(pd.DataFrame(runs), pd.DataFrame(events), counters, {"s": []}, {}, {})


def test_the_user_view_counts_reports_stalls_lock_waits_enomem_and_oom_per_run_time():
    runs = [_run("nowait", 0, 3), _run("nowait", 1, 2), _run("preload", 0, 0), _run("preload", 1, 0)]
    stalls = [0.001, 0.002, 0.004, 0.100, 0.010]
    suite = _suite(runs, stalls, warns=5)
    view = user_view_table(suite, suffer_table(suite)).set_index("strategy")
    nowait, preload = view.loc["nowait"], view.loc["preload"]
    assert nowait["warn_alloc"] == 5 and nowait["warn_per_hour"] == 5 / (60 / 3600)  # 5 in two 30 s runs
    assert nowait["stalls"] == 5
    assert nowait["stall_median_ms"] == 4.0 and nowait["stall_max_ms"] == 100.0
    assert nowait["stall_p95_ms"] == float(np.percentile(np.array(stalls) * 1e3, 95))
    assert math.isclose(nowait["lock_ms_per_s"], 2 * 3.0 / 60)  # 3 ms waited in each 30 s run
    assert math.isclose(nowait["enomem_per_million_forks"], 20 / 20_000 * 1e6)
    assert nowait["oom_per_min"] == 60 / 1.0
    assert preload["warn_alloc"] == 0 and preload["stalls"] == 0 and math.isnan(preload["stall_median_ms"])


def test_runs_without_the_lock_column_say_not_recorded_rather_than_zero():
    runs = [{k: v for k, v in _run(s, 0, 1 if s == "nowait" else 0).items() if k != "vmap_lock_wait_seconds"}
            for s in ("nowait", "preload")]  # fmt: skip
    suite = _suite(runs, [0.005], warns=1)
    table = suffer_table(suite)
    view = user_view_table(suite, table)
    assert view["lock_ms_per_s"].isna().all()
    section = "\n".join(user_view_section(suite, table))
    assert "| s | nowait | 120.0 | 1 | 5.0 / 5.0 / 5.0 | not recorded |" in section
    assert "| s | preload | 0.0 | 0 | none | not recorded |" in section


def test_no_failure_means_no_user_view_table():
    suite = _suite([_run("nowait", 0, 0), _run("preload", 0, 0)], [], warns=0)
    section = user_view_section(suite, suffer_table(suite))
    assert section[2].startswith("No condition had a split failure") and not any(s.startswith("|") for s in section)


def test_the_user_view_figure_has_one_panel_per_measure_and_one_legend():
    runs = [_run("nowait", 0, 3), _run("preload", 0, 0)]
    suite = _suite(runs, [0.002], warns=2)
    fig = user_view_figure(user_view_table(suite, suffer_table(suite)))
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [title for _, title, _ in PANELS]
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["nowait", "preload"]
    # the preload's stall panel says "none" instead of drawing a zero-length bar as a value
    assert any(t.get_text().strip() == "none" for t in axes[1].texts)


def test_the_user_view_figure_is_readable_at_the_width_a_mail_client_shows():
    from matplotlib.text import Text

    runs = [_run("nowait", 0, 3), _run("preload", 0, 0)]
    suite = _suite(runs, [0.002], warns=2)
    fig = user_view_figure(user_view_table(suite, suffer_table(suite)))
    smallest = min(t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible())
    assert smallest / 72 * 650 / fig.get_figwidth() >= 10  # px of text at 650 px wide
