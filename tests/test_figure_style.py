"""How the figures show what the tables hold: values as written and ordered by value, log x
by span, no-failure conditions at their upper bound (never at the axis floor, never as a curve),
one legend, and text readable when a mail client shows the figure about 650 px wide."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

import sim.kernel.mm.vmalloc.strategies  # noqa: F401  (declares the built-in strategies' colours)
from sim.analysis.curves import BOUND_MARKER, failure_curves_figure, legend_count, thin_labels
from sim.analysis.data import failure_curve_data, wilson_interval
from sim.analysis.factors import as_written, by_value
from sim.analysis.plots import fit_mix_figure, latency_figure
from sim.analysis.timeline import timeline_figure
from sim.config.sweepfile import written_values
from sim.record.results import RUN_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

SHOWN_PX = 650  # how wide a mail client shows a figure
MIN_TEXT_PX = 10


def runs_of(factors: dict[str, list], fails: dict[str, int], calls: int = 100_000) -> pd.DataFrame:
    """One replication per strategy at every grid point of ``factors`` (values as runs.parquet
    holds them); strategy s fails fails[s] times at every point."""
    import itertools

    rows = []
    for point, combo in enumerate(itertools.product(*factors.values())):
        for strategy, k in fails.items():
            row = {c: 0 for c in RUN_COLUMNS}
            row.update(run_id=f"s/p{point:04d}/{strategy}/r000", strategy=strategy, status="ok", point=point,
                       vmalloc_calls=calls, split_nowait_failures=k, forks=1000, fork_enomem=0,
                       **dict(zip(factors, combo)))  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def test_values_are_ordered_by_value_with_units_understood():
    assert by_value(["128", "256", "512", "64"]) == ["64", "128", "256", "512"]
    assert by_value(["1GiB", "512MiB", "160MiB", "2G"]) == ["160MiB", "512MiB", "1GiB", "2G"]
    assert by_value(["1s", "10ms", "500us"]) == ["500us", "10ms", "1s"]
    assert by_value(["none", "full", "voluntary"]) == ["none", "full", "voluntary"]  # categories: as listed


def test_other_factors_groups_are_ordered_by_value():
    runs = runs_of({"machine.cpus": [2, 4], "workloads.0.workers": ["128", "256", "512", "64"]}, {"nowait": 3})
    data, _ = failure_curve_data(runs, "machine.cpus")
    groups = list(dict.fromkeys(data["group"]))
    assert groups == ["workers=64", "workers=128", "workers=256", "workers=512"]


def test_values_are_labelled_as_the_sweep_file_writes_them(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nscenario: base.yaml\nfactors:\n  machine.swap: [off, 200MiB/s]\n"
                     "  machine.cpus: [2, 4.0]\n")  # fmt: skip
    assert written_values(sweep.read_text()) == {"machine.swap": ["off", "200MiB/s"], "machine.cpus": ["2", "4.0"]}
    factors = {"machine.swap": [False, "200MiB/s"], "machine.cpus": [2, 4.0]}
    grid = [(False, 2), (False, 4.0), ("200MiB/s", 2), ("200MiB/s", 4.0)]
    points = [{"point": i, "values": {"machine.swap": s, "machine.cpus": c}} for i, (s, c) in enumerate(grid)]
    manifest = {"sweep": {"file": str(sweep), "factors": factors, "points": points}}
    runs = pd.DataFrame({"point": [0, 1, 2, 3], "machine.swap": ["false", "false", "200MiB/s", "200MiB/s"],
                         "machine.cpus": [2.0, 4.0, 2.0, 4.0]})  # fmt: skip
    shown = as_written(runs, json.loads(json.dumps(manifest)), ["machine.swap", "machine.cpus"])
    assert list(shown["machine.swap"]) == ["off", "off", "200MiB/s", "200MiB/s"]
    assert list(shown["machine.cpus"]) == ["2", "4.0", "2", "4.0"]


def test_values_without_their_sweep_file_are_shown_plainly(tmp_path):
    manifest = {"sweep": {"file": str(tmp_path / "gone.yaml"), "factors": {"machine.cpus": [2, 4]}}}
    runs = pd.DataFrame({"point": [0, 1], "machine.cpus": [2.0, 4.0], "machine.thp": [True, False]})
    shown = as_written(runs, manifest, ["machine.cpus", "machine.thp"])
    assert list(shown["machine.cpus"]) == ["2", "4"] and list(shown["machine.thp"]) == ["true", "false"]


def test_a_sweep_records_how_its_file_writes_the_values_so_labels_survive_the_file(tmp_path):
    from sim.config.sweepfile import load_sweep
    from sim.sweep.runner import sweep_manifest

    base = tmp_path / "base.yaml"
    base.write_text((ROOT / "scenarios" / "answer" / "base" / "fork-storm.yaml").read_text())
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nscenario: base.yaml\nfactors:\n  machine.swap: [off, 200MiB/s]\n")
    manifest = json.loads(json.dumps(sweep_manifest(load_sweep(sweep), {}, [], False, "test"), default=str))
    assert manifest["sweep"]["written"] == {"machine.swap": ["off", "200MiB/s"]}
    sweep.unlink()  # results read on another machine, or after the file moved
    runs = pd.DataFrame({"point": [0, 1], "machine.swap": ["false", "200MiB/s"]})
    assert list(as_written(runs, manifest, ["machine.swap"])["machine.swap"]) == ["off", "200MiB/s"]


def _x_axis(fig):
    ax = fig.axes[0]
    return ax.get_xscale(), [t.get_text() for t in ax.get_xticklabels()]


def test_log_x_when_the_factor_spans_more_than_a_decade():
    wide = runs_of({"workloads.0.workers": ["32", "128", "512"]}, {"nowait": 5})
    narrow = runs_of({"machine.ram": ["160MiB", "1GiB"]}, {"nowait": 5})
    assert _x_axis(failure_curves_figure(wide))[0] == "log"
    assert _x_axis(failure_curves_figure(narrow)) == ("linear", ["160MiB", "1GiB"])


def test_tick_labels_that_would_overlap_are_left_out_but_the_last_is_kept():
    labels = thin_labels(["160MiB", "192MiB", "256MiB", "384MiB", "512MiB", "1GiB"],
                         [160, 192, 256, 384, 512, 1024], False, 6.8)  # fmt: skip
    assert labels == ["160MiB", "", "256MiB", "384MiB", "512MiB", "1GiB"]
    assert thin_labels(["1", "2", "3"], [1, 2, 3], False, 6.8) == ["1", "2", "3"]


def _bound_markers(fig):
    """(x, y) of every hollow ▽ drawn, and every other line's style."""
    bounds, curves = [], []
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_marker() == BOUND_MARKER["marker"]:
                bounds += list(zip(line.get_xdata(), line.get_ydata()))
                assert line.get_linestyle() == "None" and line.get_markerfacecolor() == "white"
            else:
                curves.append(line)
    return bounds, curves


@pytest.mark.parametrize("factors", [{}, {"machine.ram": ["128MiB", "256MiB"]}])
def test_no_failure_is_drawn_at_its_upper_bound_not_at_the_axis_floor(factors):
    runs = runs_of(factors, {"nowait": 30, "preload": 0})
    fig = failure_curves_figure(runs)
    bounds, curves = _bound_markers(fig)
    hi = wilson_interval(0, 100_000)[1] * 1e6
    assert bounds and all(y == pytest.approx(hi) for _, y in bounds)
    floor = fig.axes[0].get_ylim()[0]
    assert all(y > floor for _, y in bounds)
    for line in curves:  # no curve passes through a condition without failures
        ys = np.asarray(line.get_ydata(), dtype=float)
        assert not (np.isfinite(ys) & (ys <= floor)).any()
        assert line.get_marker() != BOUND_MARKER["marker"] and line.get_linestyle() not in (":", "None")


def test_each_figure_has_one_legend():
    runs = runs_of({"machine.ram": ["128MiB", "256MiB"], "machine.swap": ["false", "200MiB/s"]},
                   {"nowait": 30, "preload": 0, "preload-lockless": 0})  # fmt: skip
    assert legend_count(failure_curves_figure(runs)) == 1


def _figures():
    runs = runs_of({"machine.ram": ["128MiB", "256MiB"], "machine.swap": ["false", "200MiB/s"]},
                   {"nowait": 30, "preload": 0, "preload-lockless": 0})  # fmt: skip
    counters = pd.DataFrame(
        [
            {"run_id": r, "name": n, "value": v}
            for r in runs["run_id"]
            for n, v in {
                "fork.fit_ne": 9,
                "fork.fit_fl": 1,
                **{f"preload_fill_latency_le_{k}": k + 1 for k in range(21)},
            }.items()
        ]
    )
    from sim.analysis.data import latency_data

    t = np.arange(0, 2, 0.1)
    series = pd.DataFrame({"time": t, "DMA32_free": 1500 - 200 * t, "DMA32_min": 445, "DMA32_low": 556,
                           "DMA32_high": 667, "DMA32_boost": 1000 * (t > 1), "kswapd_awake": t > 0.5,
                           "kswapd_reclaimed": 100 * t})  # fmt: skip
    events = pd.DataFrame({"run_id": "r", "kind": ["split_nowait_failure", "oom_kill"], "time": [0.7, 1.2],
                           "DMA32_free": [1300, 1200]})  # fmt: skip
    return {"failure-curves": failure_curves_figure(runs), "fit-mix": fit_mix_figure(runs, counters),
            "latency": latency_figure(latency_data(runs, counters)),
            "timeline": timeline_figure(series, events, "s/p0000/nowait/r000")}  # fmt: skip


@pytest.mark.parametrize("name", ["failure-curves", "fit-mix", "latency", "timeline"])
def test_figures_are_readable_at_the_width_a_mail_client_shows(name):
    fig = _figures()[name]
    width = fig.get_figwidth()
    texts = [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]
    smallest = min(t.get_fontsize() for t in texts)
    assert smallest / 72 * SHOWN_PX / width >= MIN_TEXT_PX, (name, width, smallest)
    assert legend_count(fig) == 1
