"""Figures: Wilson bands, the numbers behind the failure curves, and `vmsim plot` on real
and hand-made results folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.analysis.data import (
    RUN_COLUMNS,
    choose_factor,
    factor_axis,
    failure_curve_data,
    fit_mix_data,
    latency_data,
    timeline_run,
    wilson_interval,
)
from sim.analysis.plots import failure_curves_figure, plot_folder, save_figure
from sim.cli import main
from sim.record.results import write_run_folder
from sim.schema.errors import InputError
from tests.conftest import ROOT, vmsim

RAMS = ("128MiB", "256MiB", "512MiB", "1GiB")
MIB = 1 << 20


def run_row(strategy: str, ram: str, rep: int, fails: int, calls: int, enomem: int = 0, forks: int = 0, **extra):
    row = {c: 0 for c in RUN_COLUMNS}
    row.update(
        run_id=f"sweep/{ram}/{strategy}/r{rep:03d}", scenario="sweep", strategy=strategy, kernel="5.2",
        replication=rep, status="ok", error="", vmalloc_calls=calls, split_nowait_failures=fails,
        fork_enomem=enomem, forks=forks, fit_ne=calls, **{"machine.ram": ram, "point": RAMS.index(ram)},
    )  # fmt: skip
    row.update(extra)
    return row


def sweep_runs() -> pd.DataFrame:
    """nowait fails 2^i per replication at the i-th smallest RAM... reversed (less RAM, more
    failures); preload never fails.  Three replications of 10^5 calls each."""
    rows = []
    for i, ram in enumerate(RAMS):
        for rep in range(3):
            rows.append(run_row("nowait", ram, rep, fails=2 ** (3 - i) * (rep + 1), calls=100_000,
                                enomem=3 - i, forks=50_000))  # fmt: skip
            rows.append(run_row("preload", ram, rep, fails=0, calls=100_000, enomem=0, forks=50_000))
    return pd.DataFrame(rows)


# -- Wilson --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombe_1998_score_intervals(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_interval_bounds_zero_counts_and_knows_nothing_without_trials():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 3.8416 / 13.8416))  # z^2 / (n + z^2)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo99, hi99 = wilson_interval(5, 10, z=2.576)
    assert lo99 < 0.23659 and hi99 > 0.76341
    with pytest.raises(ValueError, match="k <= n"):
        wilson_interval(11, 10)


# -- failure-curve numbers --------------------------------------------------------


def test_failure_curves_pool_replications_into_per_million_rates_with_wilson_bands():
    data, axis = failure_curve_data(sweep_runs())
    assert axis is not None and axis.column == "machine.ram" and axis.label == "machine.ram"
    assert axis.values == {"128MiB": 128.0 * MIB, "256MiB": 256.0 * MIB, "512MiB": 512.0 * MIB, "1GiB": 1024.0 * MIB}
    split = data[(data.metric == "split_nowait") & (data.strategy == "nowait")]
    assert list(split["x"]) == [128.0 * MIB, 256.0 * MIB, 512.0 * MIB, 1024.0 * MIB]
    assert list(split["failures"]) == [48, 24, 12, 6]  # 2^(3-i) * (1 + 2 + 3)
    assert set(split["trials"]) == {300_000} and set(split["runs"]) == {3}
    assert list(split["per_million"]) == pytest.approx([160.0, 80.0, 40.0, 20.0])
    lo, hi = wilson_interval(48, 300_000)
    assert (split["lo"].iloc[0], split["hi"].iloc[0]) == pytest.approx((lo * 1e6, hi * 1e6))
    zero = data[(data.metric == "split_nowait") & (data.strategy == "preload")]
    assert set(zero["per_million"]) == {0.0} and set(zero["lo"]) == {0.0}
    assert zero["hi"].iloc[0] == pytest.approx(wilson_interval(0, 300_000)[1] * 1e6)  # about 12.8 per million
    fork = data[(data.metric == "fork_enomem") & (data.strategy == "nowait")]
    assert list(fork["trials"]) == [150_009, 150_006, 150_003, 150_000]  # forks + ENOMEMs
    assert fork["per_million"].iloc[0] == pytest.approx(9 / 150_009 * 1e6)


def test_failure_curves_leave_out_runs_that_died_of_a_simulator_error_but_keep_panics():
    runs = sweep_runs()
    runs.loc[0, "status"] = "error"  # nowait 128MiB r000: 8 failures
    runs.loc[2, "status"] = "panic"  # nowait 128MiB r001: 16 failures, kept
    data, _ = failure_curve_data(runs)
    first = data[(data.metric == "split_nowait") & (data.strategy == "nowait")].iloc[0]
    assert (first["failures"], first["trials"], first["runs"]) == (40, 200_000, 2)


def test_without_a_swept_factor_each_strategy_is_one_point():
    runs = sweep_runs()
    data, axis = failure_curve_data(runs[runs["machine.ram"] == "256MiB"])
    assert axis is None
    split = data[data.metric == "split_nowait"].set_index("strategy")
    assert split.loc["nowait", "per_million"] == pytest.approx(80.0) and split.loc["preload", "failures"] == 0


def test_the_x_axis_is_the_one_varying_factor_else_the_users_choice():
    runs = sweep_runs()
    assert choose_factor(runs, None) == "machine.ram"
    runs["machine.cpus"] = [2, 4] * (len(runs) // 2)
    assert choose_factor(runs, None) is None
    assert choose_factor(runs, "machine.cpus") == "machine.cpus"
    with pytest.raises(InputError, match="no factor column 'ram'"):
        choose_factor(runs, "ram")
    data, axis = failure_curve_data(runs, "machine.cpus")
    assert axis.numeric and set(data["group"]) == {f"ram={r}" for r in RAMS}


def test_factor_values_parse_as_numbers_sizes_durations_or_categories():
    assert factor_axis("w", pd.Series(["8", "16", "32"])).values == {"8": 8.0, "16": 16.0, "32": 32.0}
    assert factor_axis("d", pd.Series(["10ms", "1s"])).values == {"10ms": 0.01, "1s": 1.0}
    cat = factor_axis("k", pd.Series(["5.2", "5.3", "v5.5"]))
    assert not cat.numeric and cat.values == {"5.2": 0.0, "5.3": 1.0, "v5.5": 2.0}


# -- fit mix, latency, the timeline's run --------------------------------------------------


def counters_table(run_ids: list[str], names: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": r, "name": n, "value": v} for r in run_ids for n, v in names.items()])


def test_fit_mix_has_all_vmallocs_then_every_labelled_counter_family():
    runs = sweep_runs().head(2)
    names = {
        "tv.fix_align.fit_ne": 4,
        "tv.fix_align.fit_fl": 1,
        "percpu.fit_re": 9,
        "fit_ne": 1,
        "tv.fix_align.calls": 5,
    }
    mix = fit_mix_data(runs, counters_table(list(runs.run_id), names)).set_index("label")
    assert list(mix.index) == ["all vmallocs", "percpu", "tv.fix_align"]
    assert mix.loc["tv.fix_align", ["fl", "le", "re", "ne", "total"]].tolist() == [2, 0, 0, 8, 10]
    assert mix.loc["tv.fix_align", "ne_share"] == pytest.approx(0.8)
    assert mix.loc["all vmallocs", "ne_share"] == 1.0 and mix.loc["percpu", "re_share"] == 1.0


def test_latency_buckets_sum_per_strategy_with_bounds_of_two_to_the_k_microseconds():
    runs = sweep_runs().head(4)  # nowait, preload, nowait, preload
    counters = counters_table(list(runs.run_id), {"preload_fill_latency_le_0": 3, "preload_fill_latency_le_4": 1})
    data = latency_data(runs, counters).set_index(["strategy", "k"])
    assert data.loc[("preload", 0), "fills"] == 6 and data.loc[("preload", 4), "upper_us"] == 16.0
    assert data.loc[("preload", 0), "share"] == pytest.approx(0.75)
    assert latency_data(runs, counters_table(list(runs.run_id), {"forks": 1})).empty


def test_timeline_shows_the_run_with_most_split_failures_unless_told():
    runs = sweep_runs()
    assert timeline_run(runs) == "sweep/128MiB/nowait/r002"
    assert timeline_run(runs, "sweep/1GiB/preload/r000") == "sweep/1GiB/preload/r000"
    with pytest.raises(InputError, match="no run 'nope'"):
        timeline_run(runs, "nope")


def test_run_columns_are_the_engines():
    from sim.engine.run import RUN_COLUMNS as ENGINE_COLUMNS

    assert tuple(ENGINE_COLUMNS) == RUN_COLUMNS


# -- whole folders -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A one-second Rezki 256 MB run of both strategies (about 2 s)."""
    out = tmp_path_factory.mktemp("plots") / "rezki"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["vmsim", "run", str(ROOT / "scenarios/rezki-2019-256mb.yaml"), "--set", "duration=1s",
                             "--set", "replications=1", "--out", str(out)])  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main()
    mp.undo()
    assert not exc.value.code
    return out


def test_vmsim_plot_on_a_real_run_writes_every_supported_figure_as_png_and_svg(real_run, monkeypatch, capsys):
    code, out, err = vmsim(monkeypatch, capsys, "plot", str(real_run))
    assert code == 0, err
    written = [line for line in out.splitlines() if not line.startswith("skipped")]
    stems = ["failure-curves", "timeline-rezki-2019-256mb_p0000_nowait_r000", "fit-mix", "preload-fill-latency"]
    assert written == [str(real_run / "figures" / f"{s}.{ext}") for s in stems for ext in ("png", "svg")]
    for path in written:
        data = Path(path).read_bytes()
        assert len(data) > 5000
        assert data.startswith(b"\x89PNG\r\n\x1a\n") if path.endswith(".png") else b"<svg" in data[:2000]
    assert "skipped" not in out  # the preload run writes its fill-latency counters
    assert not [p for p in (real_run / "figures").iterdir() if p.name.endswith(".tmp")]


def test_plot_folder_on_a_hand_made_sweep_draws_curves_and_latency_and_skips_the_timeline(tmp_path):
    runs = sweep_runs()
    counters = counters_table(list(runs.run_id), {"preload_fill_latency_le_0": 5, "preload_fill_latency_le_3": 2})
    write_run_folder(tmp_path, {}, runs.to_dict("records"), [], [], list(RUN_COLUMNS), counters.to_dict("records"))
    report = plot_folder(tmp_path)
    assert sorted(p.name for p in report.written) == sorted(
        f"{s}.{e}" for s in ("failure-curves", "fit-mix", "preload-fill-latency") for e in ("png", "svg")
    )
    assert report.notes == ["timeline: no timeseries rows for sweep/128MiB/nowait/r002"]


def test_the_same_data_gives_the_same_svg(tmp_path):
    first = save_figure(failure_curves_figure(sweep_runs()), tmp_path / "a", "f")[1].read_bytes()
    second = save_figure(failure_curves_figure(sweep_runs()), tmp_path / "b", "f")[1].read_bytes()
    assert first == second


@pytest.mark.parametrize("case", ["missing", "empty-folder", "no-rows"])
def test_a_folder_without_runs_is_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "results"
    if case != "missing":
        folder.mkdir()
    if case == "no-rows":
        write_run_folder(folder, {}, [], [], [], list(RUN_COLUMNS))
    code, out, err = vmsim(monkeypatch, capsys, "plot", str(folder))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"vmsim: {folder}: ")


def test_an_unknown_run_or_factor_is_one_line_and_exit_2(real_run, monkeypatch, capsys):
    code, _, err = vmsim(monkeypatch, capsys, "plot", str(real_run), "--run", "nope")
    assert code == 2 and err.startswith("vmsim: --run: no run 'nope'")
    code, _, err = vmsim(monkeypatch, capsys, "plot", str(real_run), "--x", "machine.ram")
    assert code == 2 and err.startswith("vmsim: --x: no factor column 'machine.ram'; factors here: duration")


def test_a_folder_of_errored_runs_skips_the_curves_with_a_note(tmp_path):
    runs = sweep_runs().assign(status="error", error="RuntimeError: boom")
    write_run_folder(tmp_path, {}, runs.to_dict("records"), [], [], list(RUN_COLUMNS))
    report = plot_folder(tmp_path)
    assert report.written == []
    assert report.notes[0].startswith("failure curves: no run ended ok or in a panic")
