"""`vmsim answer`: the report's numbers are recomputed here from the tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.answer import run_answer
from sim.plots_data import wilson_interval
from sim.report import load_suite, render

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "answer"


@pytest.fixture(scope="module")
def answer(tmp_path_factory):
    suite = tmp_path_factory.mktemp("suite")
    (suite / "tiny.yaml").write_text(
        f"name: tiny\nscenario: {ROOT / 'scenarios/answer/base/fork-storm.yaml'}\n"
        "set: {duration: 1.5s}\nfactors:\n  machine.ram: [160MiB, 1GiB]\n"
        "replications: 1\nstrategies: [nowait, preload]\n"
    )
    out = tmp_path_factory.mktemp("answer")
    run_answer(out, executor="serial", suite=suite)
    return out


def _expected_cells(runs: pd.DataFrame) -> list[str]:
    """The rate cells of the ranking table, recomputed from runs.parquet."""
    cells = []
    for (_, _), part in runs.groupby(["point", "strategy"]):
        k, n = part["split_nowait_failures"].sum(), part["vmalloc_calls"].sum()
        lo, hi = wilson_interval(min(k, n), n)
        cells.append(f"{k / n * 1e6:.1f} [{lo * 1e6:.1f}, {hi * 1e6:.1f}]")
    return cells


def test_answer_writes_a_report_whose_rates_match_runs_parquet(answer):
    report = (answer / "report.md").read_text()
    runs = pd.read_parquet(answer / "tiny" / "runs.parquet")
    assert len(runs) == 4 and set(runs["status"]) == {"ok"}
    for cell in _expected_cells(runs):
        assert cell in report
    failing = runs[runs["strategy"] == "nowait"].groupby("point")["split_nowait_failures"].sum()
    assert f"{int((failing > 0).sum())} of 2 conditions show split GFP_NOWAIT failures" in report


def test_answer_draws_its_figures_and_links_them(answer):
    figures = sorted(p.name for p in (answer / "tiny" / "figures").glob("*.png"))
    assert "failure-curves.png" in figures and "fit-mix.png" in figures
    report = (answer / "report.md").read_text()
    for name in figures:
        assert f"tiny/figures/{name}" in report


def test_report_is_recomputed_exactly_from_its_tables(answer):
    assert render(load_suite(answer)) == (answer / "report.md").read_text()


@pytest.mark.skipif(not (COMMITTED / "report.md").exists(), reason="no committed answer in results/answer")
def test_committed_report_agrees_with_the_committed_tables():
    assert render(load_suite(COMMITTED)) == (COMMITTED / "report.md").read_text()
