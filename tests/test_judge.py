"""`vmsim judge`: paired differences, the verdicts they support, the design report, bad designs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from sim.analysis.judge import HELD_COLUMN, JudgeSetup, Side, Workload, compare, run_measures
from sim.analysis.judge_report import write_judge
from sim.analysis.paired import BETTER, WORSE, mean_interval, paired, t_quantile, verdict
from sim.engine.plugins import forget_plugin_file
from sim.record.results import RUN_COLUMNS
from tests.conftest import ROOT

MEMPOOL = ROOT / "examples" / "mempool.py"


# -- the statistics ---------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262),
                                              (30, 2.042), (10_000, 1.960)])  # fmt: skip
def test_the_t_quantile_is_the_tables_95_percent_value(df, expected):
    assert t_quantile(df) == pytest.approx(expected, abs=6e-4)


def test_an_interval_wholly_below_zero_is_better_and_above_is_worse():
    base = [40.0, 55.0, 38.0, 61.0]
    assert paired(base, [b - d for b, d in zip(base, [9.0, 11.0, 10.0, 12.0])]).verdict == BETTER
    assert paired(base, [b + d for b, d in zip(base, [9.0, 11.0, 10.0, 12.0])]).verdict == WORSE


def test_an_interval_across_zero_is_no_detectable_difference_at_that_many_runs():
    result = paired([10.0, 20.0, 30.0, 40.0], [12.0, 17.0, 33.0, 38.0])
    assert result.lo < 0 < result.hi
    assert result.verdict == "no detectable difference at 4 runs"


def test_one_pair_has_no_interval_and_no_verdict_however_large_its_difference():
    result = paired([500.0], [0.0])
    assert result.difference == -500 and math.isnan(result.lo) and math.isnan(result.hi)
    assert result.verdict == "no detectable difference at 1 run"


def test_identical_runs_are_no_difference_and_a_constant_difference_is_exact():
    same = paired([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert same.exact and same.verdict == "no detectable difference at 3 runs"
    held = paired([1.0, 2.0, 3.0], [5.0, 6.0, 7.0])  # a reserve of 4 objects, held in every run
    assert held.exact and (held.lo, held.hi) == (4.0, 4.0) and held.verdict == WORSE


def test_pairing_finds_a_difference_that_two_unpaired_intervals_cannot():
    # the workload's randomness moves both sides together; the design takes 5 +- 1 off each run
    base = [120.0, 260.0, 340.0, 410.0, 180.0]
    design = [b - d for b, d in zip(base, [5.0, 6.0, 4.0, 5.5, 4.5])]
    _, base_lo, base_hi = mean_interval(base)
    _, design_lo, design_hi = mean_interval(design)
    assert design_lo < base_hi and base_lo < design_hi  # side by side, the intervals overlap widely
    result = paired(base, design)
    assert result.hi < 0 and result.verdict == BETTER


def test_a_pair_missing_one_side_is_left_out():
    result = paired([1.0, math.nan, 3.0], [0.5, 2.0, math.nan])
    assert result.n == 1 and result.difference == -0.5


def test_the_verdict_is_the_position_of_the_interval():
    assert verdict(-3.0, -1.0, 4) == BETTER
    assert verdict(1.0, 3.0, 4) == WORSE
    assert verdict(-1.0, 1.0, 4) == "no detectable difference at 4 runs"
    assert verdict(0.0, 0.0, 4) == "no detectable difference at 4 runs"
    assert verdict(math.nan, math.nan, 0) == "not measured in these runs"


# -- synthetic tables -------------------------------------------------------------------------


def runs_table(strategy: str, failures: dict[int, list[int]], calls: int = 100_000, **extra: object) -> pd.DataFrame:
    """runs.parquet rows of one side: failures[point][replication] split failures in ``calls``."""
    rows = []
    for point, per_rep in failures.items():
        for rep, k in enumerate(per_rep):
            row: dict[str, object] = dict.fromkeys(RUN_COLUMNS, 0)
            row.update(
                run_id=f"w/p{point:04d}/{strategy}/r{rep:03d}",
                strategy=strategy,
                status="ok",
                error="",
                point=point,
                replication=rep,
                sim_seconds=2.0,
                vmalloc_calls=calls,
                split_nowait_failures=k,
                forks=1000,
                fork_enomem=k // 10,
                vmap_lock_wait_seconds=0.01,
                **{"machine.ram": f"{point}GiB"},
            )
            row.update(extra)  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


NO_EVENTS = pd.DataFrame(columns=["run_id", "kind", "time"])
# the workload's randomness shared by both sides of a pair: replication 2 is a bad one everywhere
BASE = {0: [400, 650, 900, 520], 1: [3, 0, 8, 2]}
BETTER_AT_0 = {0: [380, 628, 875, 500], 1: [5, 0, 6, 3]}


def test_a_workload_and_its_points_get_verdicts_from_the_paired_runs():
    base = run_measures(runs_table("nowait", BASE), NO_EVENTS, ["machine.ram"])
    design = run_measures(runs_table("preload", BETTER_AT_0), NO_EVENTS, ["machine.ram"])
    rows = pd.DataFrame(compare(base, design))
    split = rows[rows["measure"] == "split_nowait"].set_index("point")
    assert split.loc[0, "verdict"] == BETTER and split.loc[0, "condition"] == "ram=0GiB"
    assert split.loc[1, "verdict"] == "no detectable difference at 4 runs"
    # the workload: per replication the mean over both points, paired over the 4 replications
    assert split.loc[-1, "n"] == 4 and split.loc[-1, "verdict"] == BETTER
    assert split.loc[-1, "difference"] == pytest.approx(((-20 - 22 - 25 - 20) + (2 + 0 - 2 + 1)) / 8 * 10)


def test_memory_held_aside_is_read_when_recorded_and_said_not_recorded_otherwise():
    older = [runs_table(s, BASE).drop(columns=[HELD_COLUMN]) for s in ("nowait", "preload")]  # tables of before
    base, design = (run_measures(t, NO_EVENTS) for t in older)
    held = pd.DataFrame(compare(base, design)).set_index(["measure", "point"]).loc[("held", -1)]
    assert held["verdict"] == "not recorded" and held["n"] == 0
    base = run_measures(runs_table("nowait", BASE, **{HELD_COLUMN: 0}), NO_EVENTS)
    design = run_measures(runs_table("mempool", BASE, **{HELD_COLUMN: 4}), NO_EVENTS)
    held = pd.DataFrame(compare(base, design)).set_index(["measure", "point"]).loc[("held", -1)]
    assert held["verdict"] == WORSE and held["exact"] and held["difference"] == 4


def test_purge_stalls_are_summed_from_the_overflow_purge_events():
    runs = runs_table("nowait", {0: [1, 1]})
    first, second = runs["run_id"]
    events = pd.DataFrame([
        {"run_id": first, "kind": "vmap_overflow_purge", "time": 1.0, "seconds": 0.002},
        {"run_id": first, "kind": "vmap_overflow_purge", "time": 1.5, "seconds": 0.004},
        {"run_id": second, "kind": "warn_alloc", "time": 1.0, "seconds": None},
    ])  # fmt: skip
    measured = run_measures(runs, events)
    assert list(measured["purge_stall"]) == pytest.approx([3.0, 0.0])  # ms per simulated second (2 s runs)


def _write_side(folder: Path, runs: pd.DataFrame) -> None:
    folder.mkdir(parents=True)
    runs.to_parquet(folder / "runs.parquet")
    (folder / "manifest.json").write_text(json.dumps({"sweep": {"factors": {"machine.ram": ["0GiB", "1GiB"]}}}))


def test_the_report_gives_each_workload_the_verdict_of_its_paired_interval(tmp_path):
    base, design, same = Side("nowait@5.2", "nowait", "5.2"), Side("preload@5.3", "preload", "5.3"), Side("x", "x")
    _write_side(tmp_path / "fork-ram" / base.label, runs_table("nowait", BASE))
    _write_side(tmp_path / "fork-ram" / design.label, runs_table("preload", BETTER_AT_0))
    _write_side(tmp_path / "fork-ram" / same.label, runs_table("x", BASE))
    setup = JudgeSetup(tmp_path, base, (design, same), (Workload("fork-ram", "f.yaml", 2, "6s", 2019, "5.2"),), 4)
    report, csv = write_judge(setup)
    text = report.read_text()
    assert "**fork-ram: better.**" in text
    assert "**fork-ram: no detectable difference at 4 runs (zero on both sides" not in text  # BASE has failures
    assert "**fork-ram: no detectable difference at 4 runs.**" in text  # the design identical to the baseline
    assert "| ram=0GiB |" in text and "How to read a paired interval" in text
    table = pd.read_csv(csv)
    assert set(table["design"]) == {"preload@5.3", "x"} and set(table["scope"]) == {"workload", "point"}


# -- the command ------------------------------------------------------------------------------


def vmsim(capsys, *args: str) -> tuple[int, str, str]:
    from sim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.fixture
def forget_mempool():
    yield
    forget_plugin_file(MEMPOOL)


def test_judge_on_two_builtins_and_a_plugin_writes_a_verdict_per_design_and_workload(tmp_path, capsys, forget_mempool):
    out = tmp_path / "judge"
    args = (
        "judge",
        "preload@5.3",
        "preload-gfp@5.5",
        "mempool",
        "--plugin",
        str(MEMPOOL),
        "--workloads",
        "test-vmalloc",
        "--quick",
        "--reps",
        "2",
        "--duration",
        "0.2s",
        "--executor",
        "serial",
        "--out",
        str(out),
    )
    code, stdout, err = vmsim(capsys, *args)  # fmt: skip
    assert code == 0, err
    text = (out / "report.md").read_text()
    assert text.count("**test-vmalloc: ") == 3
    for line in ("preload@5.3 on test-vmalloc: ", "preload-gfp@5.5 on test-vmalloc: ", "mempool on test-vmalloc: "):
        assert line in stdout
    assert "examples/mempool.py" in text and "| mempool | mempool | each workload's own |" in text
    table = pd.read_csv(out / "paired.csv")
    assert set(table["design"]) == {"preload@5.3", "preload-gfp@5.5", "mempool"}
    # common random numbers: every side's run of (point, replication) had the same seed
    seeds = [json.loads((out / "test-vmalloc" / side / "manifest.json").read_text())["seeds"]
             for side in ("nowait@5.2", "preload@5.3", "preload-gfp@5.5", "mempool")]  # fmt: skip
    keyed = [{tuple(s["spawn_key"]): s["entropy"] for s in side.values()} for side in seeds]
    assert all(k == keyed[0] for k in keyed) and len(keyed[0]) == 2
    kernels = pd.read_parquet(out / "test-vmalloc" / "preload-gfp@5.5" / "runs.parquet")["kernel"]
    assert set(kernels) == {"5.5"}
    # a second judge in the same folder runs nothing again and writes the same report
    code, stdout, err = vmsim(capsys, *args)
    assert code == 0, err
    assert "0/2 runs done" not in stdout and (out / "report.md").read_text() == text


BAD = [
    (["judge", "nosuch@5.3"], "design 'nosuch@5.3': unknown strategy 'nosuch'"),
    (["judge", "preload@4.19"], "design 'preload@4.19': unknown kernel profile '4.19' after '@'"),
    (["judge", "preload@5.3", "--baseline", "nowait@"], "--baseline 'nowait@': unknown kernel profile ''"),
    (["judge", "preload@5.3", "--workloads", "fork-ram,nosuch"], "--workloads: unknown workload 'nosuch'"),
    (["judge", "preload@5.3", "--duration", "2 parsecs"], "--duration:"),
    (["judge", "preload@5.3", "--reps", "0"], "judge: --reps: expected greater than or equal to 1"),
    (["judge", "mempool"], "design 'mempool': unknown strategy 'mempool'"),  # its plug-in not loaded
    (["judge", "preload@5.3", "--workloads", "nosuch.yaml"], "--workloads: nosuch.yaml: no such sweep file"),
    (["judge", "preload@5.3", "--set", "kernel=6.9"], "--set kernel: set by the judge itself"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_design_or_workload_is_one_line_and_exit_2(tmp_path, capsys, args, fragment):
    code, _, err = vmsim(capsys, *args, "--out", str(tmp_path / "out"))
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err
    assert not (tmp_path / "out").exists()  # refused before anything ran or was written


def test_the_figure_is_readable_at_mail_width_with_one_legend(tmp_path):
    from matplotlib.text import Text

    from sim.analysis.curves import legend_count
    from sim.analysis.judge import judge_table
    from sim.analysis.judge_report import paired_figure

    base, design, other = Side("nowait@5.2", "nowait", "5.2"), Side("preload@5.3", "preload", "5.3"), Side("x", "x")
    for side, failures in ((base, BASE), (design, BETTER_AT_0), (other, BASE)):
        _write_side(tmp_path / "fork-ram" / side.label, runs_table(side.strategy, failures))
    setup = JudgeSetup(tmp_path, base, (design, other), (Workload("fork-ram", "f.yaml", 2, "6s", 2019, "5.2"),), 4)
    fig = paired_figure(setup, judge_table(setup))
    texts = [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]
    assert fig.get_figwidth() == 6.8 and min(t.get_fontsize() for t in texts) >= 8
    assert legend_count(fig) == 1
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["all points", "ram=0GiB", "ram=1GiB"]


def test_neither_the_kernel_profile_nor_the_strategy_changes_a_runs_random_streams():
    from sim.config.scenario import load_scenario
    from sim.engine.run import run_seed
    from sim.kernel.machine import Machine

    draws = []
    for kernel, strategy in (("5.2", "nowait"), ("6.9", "preload-gfp")):
        scenario = load_scenario(ROOT / "scenarios/answer/base/test-vmalloc.yaml", [f"kernel={kernel}"])
        machine = Machine(scenario.machine_config(strategy), run_seed(scenario.seed, 3, 1))
        draws.append((list(machine.workload_rng(0).random(4)), {k: s.spawn_key for k, s in machine.streams.items()}))
    assert draws[0] == draws[1]


def test_every_side_of_a_workload_runs_the_same_points_and_seed_and_6_9_runs_slub(tmp_path):
    from sim.app.judge import choose_workloads, parse_design, plan_judge

    designs = [parse_design("nowait@6.9"), parse_design("preload")]
    runs, notes = plan_judge(designs, parse_design("nowait@5.2"), choose_workloads("fork-ram"), tmp_path, 3, None, True)
    plans = {run.design.label: run.plan for run in runs}
    assert list(plans) == ["nowait@5.2", "nowait@6.9", "preload"]
    for plan in plans.values():
        assert plan.seed == plans["nowait@5.2"].seed and plan.replications == 3
        assert [(p.index, p.values) for p in plan.points] == [(p.index, p.values) for p in plans["nowait@5.2"].points]
    assert (plans["nowait@6.9"].base.kernel, plans["nowait@6.9"].base.machine.slab) == ("6.9", "SLUB")
    assert (plans["preload"].base.kernel, plans["preload"].base.machine.slab) == ("5.2", "SLAB")  # the sweep's own
    assert notes == ["kernel 6.9 has no SLAB: nowait@6.9 runs fork-ram with SLUB (the other sides keep SLAB)."]


def test_a_sweep_file_of_ones_own_is_a_workload_and_set_applies_to_every_side(tmp_path):
    from sim.app.judge import choose_workloads, command_line, parse_design, plan_judge

    files = choose_workloads("fork-ram,scenarios/judge/test-vmalloc-threads.yaml")
    assert [f.stem for f in files] == ["fork-ram", "test-vmalloc-threads"]
    designs, base = [parse_design("preload-gfp@6.9")], parse_design("preload-gfp@5.5")
    runs, notes = plan_judge(designs, base, files, tmp_path, 2, None, True, ("machine.slab=SLUB",))
    assert notes == []  # no side needed its slab replaced: every side runs SLUB
    for run in runs:
        assert run.plan.base.machine.slab == "SLUB"
        if run.workload == "test-vmalloc-threads":
            assert run.plan.base.workloads[0].single_cpu_test is False
    line = command_line(designs, base, files, 2, None, True, (), ("machine.slab=SLUB",))
    assert "--workloads fork-ram,scenarios/judge/test-vmalloc-threads.yaml" in line and line.endswith(
        "--set machine.slab=SLUB")


COMMITTED_JUDGES = {
    "judge-6.9": ["preload-gfp@6.8", "preload-gfp@6.9", "--baseline", "preload-lockless@5.5", "--workloads",
                  "fork-ram,test-vmalloc,scenarios/judge/test-vmalloc-threads.yaml"],
    "judge-6.9-nowait": ["nowait@6.9", "--baseline", "nowait@6.8", "--workloads", "fork-ram"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(COMMITTED_JUDGES))
def test_the_committed_judge_reports_agree_with_their_committed_runs(tmp_path, capsys, monkeypatch, name):
    """docs/judge-6.9.md quotes these: report.md is recomputed exactly from the runs beside it."""
    import shutil

    committed = ROOT / "results" / name
    if not (committed / "report.md").exists():
        pytest.skip(f"no committed {committed}")
    monkeypatch.chdir(ROOT)  # the report shows sweep files relative to the working folder
    out = tmp_path / name
    shutil.copytree(committed, out, ignore=shutil.ignore_patterns("parts", "status.jsonl", "timeseries.parquet"))
    code, _, err = vmsim(capsys, "judge", *COMMITTED_JUDGES[name], "--reps", "4", "--set", "machine.slab=SLUB",
                         "--out", str(out), "--report-only")  # fmt: skip
    assert code == 0, err
    assert (out / "report.md").read_text() == (committed / "report.md").read_text()
    assert (out / "paired.csv").read_text() == (committed / "paired.csv").read_text()
