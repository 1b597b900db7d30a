"""`vmsim answer`: the report's numbers are recomputed here from the tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.analysis.data import wilson_interval
from sim.analysis.report import load_suite, render

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "answer"


@pytest.fixture(scope="module")
def answer(tmp_path_factory):
    """``vmsim answer --quick`` into a fresh folder (about a minute on 2 cores)."""
    out = tmp_path_factory.mktemp("answer")
    res = subprocess.run(
        [sys.executable, "-m", "sim.cli", "answer", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def _expected_cells(runs: pd.DataFrame) -> list[str]:
    """The rate cells of the ranking table, recomputed from runs.parquet."""
    cells = []
    for (_, _), part in runs.groupby(["point", "strategy"]):
        k, n = part["split_nowait_failures"].sum(), part["vmalloc_calls"].sum()
        lo, hi = wilson_interval(min(k, n), n)
        cells.append(f"{k / n * 1e6:.1f} [{lo * 1e6:.1f}, {hi * 1e6:.1f}]")
    return cells


def test_answer_quick_writes_a_report_whose_rates_match_runs_parquet(answer):
    report = (answer / "report.md").read_text()
    sweeps = sorted(p.parent for p in answer.glob("*/runs.parquet"))
    assert [p.name for p in sweeps] == [
        "big-server",
        "boost-bound",
        "callers",
        "fork-cpus",
        "fork-ram",
        "fork-workers",
        "rezki-2019-1gb",
        "test-vmalloc",
        "uptime-1gb",
        "uptime-256mb",
    ]
    assert "| rezki-2019-1gb | " in report
    failing = total = 0
    for folder in sweeps:
        runs = pd.read_parquet(folder / "runs.parquet")
        assert set(runs["status"]) == {"ok"}
        for cell in _expected_cells(runs):
            assert cell in report, (folder.name, cell)
        per_point = runs[runs["strategy"] == "nowait"].groupby("point")["split_nowait_failures"].sum()
        failing += int((per_point > 0).sum())
        total += len(per_point)
    assert f"{failing} of {total} conditions show split GFP_NOWAIT failures" in report


def test_answer_bisects_where_failures_begin_and_reports_it(answer):
    names = sorted(p.parent.name for p in answer.glob("boundary/*/boundary.json"))
    assert names == ["ram", "workers", "workers-swap"]
    report = (answer / "report.md").read_text()
    assert "Bisected (`vmsim boundary`" in report and "| ram | swap=off |" in report
    assert (answer / "figures" / "uptime.png").exists() and "figures/uptime.png" in report


def test_answer_draws_its_figures_and_links_them(answer):
    figures = sorted(p.name for p in (answer / "fork-ram" / "figures").glob("*.png"))
    assert "failure-curves.png" in figures and "fit-mix.png" in figures
    assert any(name.startswith("timeline-") for name in figures)
    report = (answer / "report.md").read_text()
    for name in figures:
        assert f"fork-ram/figures/{name}" in report


def test_report_is_recomputed_exactly_from_its_tables(answer):
    assert render(load_suite(answer)) == (answer / "report.md").read_text()


@pytest.mark.skipif(not (COMMITTED / "report.md").exists(), reason="no committed answer in results/answer")
def test_committed_report_agrees_with_the_committed_tables():
    assert render(load_suite(COMMITTED)) == (COMMITTED / "report.md").read_text()


# -- the lockless-preload section, from suites made of a few machine-level runs -----------------


def _row(m, strategy: str, preemption: str | None, sweep: str = "s") -> dict:
    """A runs.parquet row of machine ``m`` as the engine builds it, in sweep ``sweep``."""
    from sim.engine.run import _headline

    row = {"run_id": f"{sweep}:{preemption}/{strategy}", "strategy": strategy, "status": "ok", "sweep": sweep,
           "point": 0, **_headline(m.metrics, None)}  # fmt: skip
    return row if preemption is None else {**row, "machine.preemption": preemption}


def _suite(rows: list[dict], preemption: dict[str, str] | None = None):
    from sim.analysis.report import Suite

    events = pd.DataFrame(columns=["run_id", "kind", "time"])
    counters = pd.DataFrame(columns=["run_id", "name", "value"])
    return Suite(pd.DataFrame(rows), events, counters, {}, {}, preemption or {})


def _percpu_machine(strategy: str):
    """Preemption none, one CPU: three percpu chunks (the first an NE carve, GFP_NOWAIT as no
    slot is full yet and percpu never preloads), then from 1 s 200 random-size test_vmalloc
    allocations (NE splits among them, and slots left full by the others)."""
    from sim.workloads.registry import WORKLOADS
    from tests.conftest import make_machine

    m = make_machine(strategy, cpus=1, kernel="5.3", ram=1 << 30)
    for i, (kind, fields) in enumerate([
        ("percpu_chunks", dict(rate=100, lifetime=float("inf"), max_chunks=3)),
        ("test_vmalloc", dict(cases=["random_size_align_alloc_test"], test_loop_count=200, single_cpu_test=True,
                              start=1.0)),
    ]):  # fmt: skip
        spec_cls, cls = WORKLOADS[kind]
        cls(spec_cls(**fields)).start(m, m.workload_rng(i))
    m.env.run(until=5)
    return m


@pytest.fixture(scope="module")
def lockless_suite():
    """Under preemption none, preload and preload-lockless with a percpu workload; under full
    preemption, the migration between the check and the lock (conftest.race_machine)."""
    from tests.conftest import race_machine

    rows = [_row(_percpu_machine(s), s, "none") for s in ("nowait", "preload", "preload-lockless")]
    rows += [_row(race_machine(s)[0], s, "full") for s in ("preload", "preload-lockless")]
    return _suite(rows)


def test_lockless_misses_are_alloc_vmap_area_races_only(lockless_suite):
    from sim.analysis.report import lockless_misses

    runs = lockless_suite.runs
    none = runs[runs["machine.preemption"] == "none"]
    assert (none.loc[none["strategy"] != "nowait", "preload_misses"] > 0).all()  # what the table used to count
    table = lockless_misses(lockless_suite).set_index(["preemption", "strategy"])
    assert list(table.index) == [("full", "preload"), ("full", "preload-lockless"),
                                 ("none", "preload"), ("none", "preload-lockless")]  # fmt: skip
    assert table.loc[("none", "preload-lockless"), "race_misses"] == 0
    assert table.loc[("none", "preload"), "race_misses"] == 0
    assert table.loc[("full", "preload-lockless"), "race_misses"] == 1
    assert table.loc[("full", "preload"), "race_misses"] == 0
    assert (table["fill_misses"] == 0).all()
    assert table.loc[("none", "preload-lockless"), "calls"] >= 200  # alloc_vmap_area's calls, not percpu's


def test_percpu_carves_are_their_own_table_for_every_strategy(lockless_suite):
    from sim.analysis.report import percpu_carves, render

    carves = percpu_carves(lockless_suite).set_index("strategy")
    assert list(carves.index) == ["nowait", "preload", "preload-lockless"]
    assert (carves["carves"] > 0).all() and (carves["nowait"] > 0).all()
    assert carves.loc["preload", "nowait"] == carves.loc["preload-lockless", "nowait"]
    text = render(lockless_suite)
    section = text[text.index("## What the v5.5 lockless preload gives up") : text.index("## Figures")]
    assert "| none | preload-lockless | 0 | 0 |" in section
    assert "| full | preload-lockless | 1 | 0 |" in section and "| full | preload | 0 | 0 |" in section
    assert f"| preload-lockless | {int(carves.loc['preload-lockless', 'carves'])} | " in section
    assert "0 by construction" in section and "not recorded" not in section


def test_the_lockless_section_says_so_when_the_runs_predate_its_counters(lockless_suite):
    from sim.analysis.report import PERCPU_COLUMNS, RACE_COLUMNS, lockless_section

    old = lockless_suite.runs.drop(columns=[*RACE_COLUMNS, *PERCPU_COLUMNS])
    lines = lockless_section(_suite(old.to_dict("records")))
    assert sum("not recorded in these runs; re-run `vmsim answer`" in line for line in lines) == 2
    assert not any(line.startswith("| ") for line in lines)


def test_a_sweep_without_a_preemption_column_takes_its_scenario_s_model(lockless_suite):
    from sim.analysis.report import lockless_misses

    runs = lockless_suite.runs
    full = runs[runs["machine.preemption"] == "full"].drop(columns=["machine.preemption"]).assign(sweep="rt")
    table = lockless_misses(_suite(full.to_dict("records"), {"rt": "full"}))
    assert set(table["preemption"]) == {"full"} and table["race_misses"].sum() == 1
    table = lockless_misses(_suite(full.to_dict("records")))  # no manifest: MachineConfig's default
    assert set(table["preemption"]) == {"none"}


# -- the wording of reductions and boundaries ------------------------------------------------------


def _reduction_row(base: tuple[int, int], other: tuple[int, int]) -> pd.Series:
    """A ranking-table row of nowait and preload with (failures, calls) each."""
    from sim.analysis.data import rate_per_million
    from sim.analysis.report import reduction_bound

    row = {}
    for strategy, (k, n) in (("nowait", base), ("preload", other)):
        row[f"{strategy}.failures"] = k
        row[f"{strategy}.rate"], row[f"{strategy}.lo"], row[f"{strategy}.hi"] = rate_per_million(k, n)
    row["preload.reduction_bound"] = reduction_bound(row["nowait.lo"], row["preload.hi"])
    return pd.Series(row)


def test_a_reduction_whose_intervals_overlap_is_not_resolved_never_100_percent():
    from sim.analysis.report import reduction_text

    row = _reduction_row((5, 12_000), (0, 12_000))  # nowait [~178, ~975], preload [0, ~320] per 10^6
    assert row["nowait.lo"] < row["preload.hi"]
    assert reduction_text(row, "preload") == "not resolved (CIs overlap)"


def test_a_reduction_whose_intervals_are_apart_is_its_lower_bound():
    from sim.analysis.report import reduction_text

    row = _reduction_row((400, 1_000_000), (0, 1_000_000))
    bound = 1 - row["preload.hi"] / row["nowait.lo"]
    assert 0.9 < bound < 1.0
    assert reduction_text(row, "preload") == f"≥ {int(bound * 100)}%" != "≥ 100%"
    assert reduction_text(_reduction_row((0, 1000), (0, 1000)), "preload") == "–"  # nothing to reduce


def test_boundaries_say_every_value_or_which_values_never_none_at_no_value():
    from sim.analysis.report import boundary_text

    assert boundary_text(["2", "4"], []) == "nowait split failures at every value swept (2, 4)."
    assert boundary_text([], ["2", "4"]) == "no nowait split failure observed at any value swept (2, 4)."
    assert boundary_text(["512"], ["64", "128"]) == "nowait split failures at 512; none observed at 64, 128."
    for text in (boundary_text(["a"], []), boundary_text([], ["a"])):
        assert "no value" not in text
