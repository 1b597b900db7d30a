"""The report's "Agreement with a real kernel": recomputed from the committed peer folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.analysis.agreement import PAIRS, REPO, _failure_verdict, agreement_section
from sim.analysis.comparison import comparison_rows, load_side


def test_overlapping_intervals_agree_and_disjoint_ones_say_by_what_factor():
    assert _failure_verdict(100.0, 95.0, (60.0, 150.0), (52.0, 176.0)).startswith("The split-failure rates agree")
    text = _failure_verdict(676.0, 95.4, (566.0, 806.0), (51.8, 176.0))
    assert "do not agree: the model's is 7.09 times above the kernel's" in text
    assert "10 times below" in _failure_verdict(10.0, 100.0, (5.0, 20.0), (80.0, 120.0))
    assert "not measured on both sides" in _failure_verdict(10.0, None, (5.0, 20.0), None)


def test_no_validation_page_or_no_peer_folders_means_no_section(tmp_path):
    assert agreement_section(tmp_path, repo=tmp_path) == []
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "validation.md").write_text("# page\n")
    assert agreement_section(tmp_path, repo=tmp_path) == []  # the page, but no committed results


@pytest.mark.skipif(not all((REPO / f / "runs.parquet").exists() for f in (PAIRS[0].model, PAIRS[0].real)),
                    reason="no committed peer results")  # fmt: skip
def test_the_section_shows_vmsim_compare_s_figures_and_links_the_page():
    pair = PAIRS[0]
    rows = {r[0]: r for r in comparison_rows(load_side(REPO / pair.model, "nowait", False),
                                              load_side(REPO / pair.real, None, True))}  # fmt: skip
    lines = agreement_section(REPO / "results" / "answer")
    text = "\n".join(lines)
    assert lines[0] == "## Agreement with a real kernel"
    label, m, r, _, _ = rows["NOWAIT split failures per 10^6 vmalloc calls"]
    assert f"| {label} | {m:,.0f} [" in text and f"| {r:.3g} [" in text
    assert "[docs/validation.md](../../docs/validation.md)" in text
    assert Path(REPO / "docs" / "validation.md").exists()


@pytest.mark.skipif(not all((REPO / f / "runs.parquet").exists() for f in (PAIRS[0].model, PAIRS[0].real)),
                    reason="no committed peer results")  # fmt: skip
def test_agreement_csv_holds_every_figure_the_section_shows():
    from sim.analysis.agreement import agreement_table

    table = agreement_table()
    text = "\n".join(agreement_section(REPO / "results" / "answer"))
    row = table[table["measure"] == "NOWAIT split failures per 10^6 vmalloc calls"].iloc[0]
    assert f"{row['model']:,.0f} [{row['model_lo']:,.0f}, {row['model_hi']:,.0f}]" in text
    assert f"{row['real']:.3g} [{row['real_lo']:.3g}, {row['real_hi']:,.0f}]" in text
    assert "`agreement.csv` here" in text
