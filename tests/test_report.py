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
        "callers",
        "fork-cpus",
        "fork-ram",
        "fork-workers",
        "rezki-2019-1gb",
        "test-vmalloc",
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
