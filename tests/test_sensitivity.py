"""How sure (issue 15 item 2): the headline rate under each estimate's low and high value, the
ranking verdicts (held, changed, not resolved), the tornado chart, the sweep files and their
place in `vmsim answer`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from sim.analysis.curves import legend_count
from sim.analysis.data import wilson_interval
from sim.analysis.sensitivity import (
    CHANGES,
    HOLDS,
    NOT_RESOLVED,
    TORNADO,
    Parameter,
    Rate,
    Sensitivity,
    draw_sensitivity,
    load_sensitivity,
    pooled_rate,
    ranking_evidence,
    ranking_text,
    ranking_verdict,
    sensitivity_section,
    tornado_figure,
)
from sim.app.answer import ANSWER_DIR, planned_sweeps, sensitivity_files, suite_files
from sim.config.sweepfile import load_sweep
from tests.conftest import vmsim

CALLS = 100_000


def rates(**failures: int) -> dict[str, Rate]:
    """Conditions with these failure counts, each in CALLS vmalloc calls."""
    return {name: Rate(float(k), float(CALLS)) for name, k in failures.items()}


def test_the_rate_is_pooled_over_replications_with_its_wilson_interval():
    runs = pd.DataFrame({"split_nowait_failures": [3, 1, 50], "vmalloc_calls": [10_000, 10_000, 10_000],
                         "status": ["ok", "panic", "error"]})  # fmt: skip
    rate = pooled_rate(runs)
    assert (rate.failures, rate.calls) == (4, 20_000)  # the run that died of an error is left out
    assert rate.per_million == pytest.approx(200.0)
    lo, hi = wilson_interval(4, 20_000)
    assert rate.interval == pytest.approx((lo * 1e6, hi * 1e6))


def test_no_failure_still_has_an_upper_bound():
    assert Rate(0.0, float(CALLS)).interval[1] == pytest.approx(wilson_interval(0, CALLS)[1] * 1e6)
    assert Rate(0.0, float(CALLS)).interval[1] > 0


def test_the_ranking_holds_when_every_pair_the_base_orders_stays_ordered():
    base = rates(a=60, b=55, c=0)  # a ~ b, both above c
    assert ranking_verdict(base, rates(a=30, b=90, c=1)) == HOLDS  # a and b swap, but the base never ordered them


def test_the_ranking_changes_when_a_pair_the_base_orders_is_reversed_with_intervals_apart():
    assert ranking_verdict(rates(a=60, b=55, c=0), rates(a=0, b=60, c=80)) == CHANGES


def test_the_ranking_is_not_resolved_when_a_pair_the_base_orders_overlaps():
    assert ranking_verdict(rates(a=60, b=55, c=0), rates(a=4, b=60, c=2)) == NOT_RESOLVED


def test_the_ranking_is_not_resolved_when_the_base_orders_nothing():
    assert ranking_verdict(rates(a=60, b=55), rates(a=90, b=1)) == NOT_RESOLVED


def test_a_verdict_shows_what_it_rests_on():
    base = rates(a=60, b=55, c=0)
    assert ranking_evidence(base, rates(a=0, b=60, c=80)) == "c > a"  # b and c overlap: not a reversal
    assert ranking_evidence(base, rates(a=4, b=60, c=2)) == "a ≈ c"
    assert ranking_evidence(base, rates(a=30, b=90, c=1)) == "b > a > c"


def test_the_ranking_text_orders_by_rate_and_marks_overlapping_neighbours():
    assert ranking_text(rates(a=55, b=60, c=0)) == "b ≈ a > c"


def sensitivity(**params: tuple[int | None, int | None]) -> Sensitivity:
    """Parameters with (low, high) failures at the headline condition h (None: that side is the
    base), the base at 40 failures; condition l fails 0 times throughout."""
    made = []
    for name, (low, high) in params.items():
        sides = {side: k for side, k in (("low", low), ("high", high)) if k is not None}
        made.append(Parameter(name, f"key.{name}", name, "why", "1", {s: f"{name}-{s}" for s in sides},
                              {s: rates(h=k, l=0) for s, k in sides.items()}))  # fmt: skip
    return Sensitivity(["machine.ram"], "h", rates(h=40, l=0), made, 2, 5.0)


def test_the_tornado_has_one_bar_pair_per_parameter_sorted_by_swing():
    fig = tornado_figure(sensitivity(small=(35, 45), large=(10, 200), middle=(30, 90)))
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and 0.3 < p.get_height() < 0.5]
    assert len(bars) == 6
    labels = [t.get_text().split("\n")[0] for t in ax.get_yticklabels()]
    assert labels == ["small", "middle", "large"]  # bottom to top: the largest swing on top
    assert legend_count(fig) == 1


def test_a_value_with_no_failure_is_a_marker_at_its_upper_bound_not_a_bar_to_zero():
    fig = tornado_figure(sensitivity(boost=(0, None), other=(30, 60)))
    ax = fig.axes[0]
    markers = [line for line in ax.get_lines() if line.get_marker() == "<"]
    assert len(markers) == 1
    bound = Rate(0.0, float(CALLS)).interval[1]
    assert np.asarray(markers[0].get_xdata(), dtype=float) == pytest.approx([bound])
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and 0.3 < p.get_height() < 0.5]
    assert len(bars) == 2  # other's pair; boost has a marker and no bar at all (its high is the base)
    assert all(p.get_x() + min(p.get_width(), 0) > 0 for p in bars)


def test_the_tornado_is_readable_at_the_width_a_mail_client_shows():
    fig = tornado_figure(sensitivity(a=(35, 45), b=(10, 200)))
    texts = [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]
    assert min(t.get_fontsize() for t in texts) / 72 * 650 / fig.get_figwidth() >= 10


def write_sweep(folder: Path, factors: dict[str, list[str]], failures: dict[tuple[str, ...], int], note: str) -> None:
    """A sweep folder as `vmsim sweep` leaves it: runs.parquet (two replications a point) and a
    manifest with the factors as the file writes them and the base scenario."""
    import itertools

    folder.mkdir(parents=True)
    rows, points = [], []
    for point, combo in enumerate(itertools.product(*factors.values())):
        values = dict(zip(factors, combo, strict=True))
        points.append({"point": point, "values": values})
        for rep in range(2):
            rows.append({"run_id": f"p{point}/r{rep}", "point": point, "strategy": "nowait", "status": "ok",
                         "replication": rep, "sim_seconds": 5.0, "vmalloc_calls": CALLS // 2,
                         "split_nowait_failures": failures[combo] // 2 + (rep == 0) * (failures[combo] % 2),
                         **values})  # fmt: skip
    pd.DataFrame(rows).to_parquet(folder / "runs.parquet")
    scenario = {"machine": {"ram": "256MiB"}, "workloads": [{"kind": "fork_storm", "workers": 256}]}
    manifest = {"scenario": scenario, "sweep": {"factors": factors, "written": factors, "points": points,
                                                "description": note}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def answer_folder(tmp_path: Path) -> Path:
    root = tmp_path / "sensitivity"
    ram = {"machine.ram": ["256MiB", "384MiB"]}
    write_sweep(root / "base", ram, {("256MiB",): 60, ("384MiB",): 0}, "the base values")
    write_sweep(root / "fork-workers", {"workloads.0.workers": ["128", "512"], **ram},
                {("128", "256MiB"): 2, ("128", "384MiB"): 0, ("512", "256MiB"): 30, ("512", "384MiB"): 90},
                "stress-ng --fork N. Not published; 128 and 512 bracket it.")  # fmt: skip
    return tmp_path


def test_the_section_reads_each_parameter_against_the_base_sweep(answer_folder):
    sens = load_sensitivity(answer_folder)
    assert sens.headline == "256MiB" and sens.runs_per_value == 2 and sens.seconds == 5.0
    (workers,) = sens.parameters
    assert (workers.label, workers.base_value, workers.values) == (
        "stress-ng --fork N", "256", {"low": "128", "high": "512"})  # fmt: skip
    assert workers.rates["high"]["384MiB"].failures == 90
    assert ranking_verdict(sens.base, workers.rates["low"]) == NOT_RESOLVED  # 2 against 0: overlap
    assert ranking_verdict(sens.base, workers.rates["high"]) == CHANGES  # 90 above 30
    lines = "\n".join(sensitivity_section(answer_folder))
    row = next(line for line in lines.splitlines() if line.startswith("| stress-ng --fork N"))
    assert "`workloads.0.workers` | 256 | 128 / 512 | Not published; 128 and 512 bracket it." in row
    assert f"| {Rate(60.0, float(CALLS)).text()} |" in row
    assert row.endswith(f"| {NOT_RESOLVED}: 256MiB ≈ 384MiB | {CHANGES}: 384MiB > 256MiB |")
    assert "holds under 0 of 2 variations; changes under 1 (fork-workers 512)" in lines
    assert TORNADO.as_posix() not in lines  # not drawn yet
    assert draw_sensitivity(answer_folder)
    assert TORNADO.as_posix() in "\n".join(sensitivity_section(answer_folder))


def test_no_section_without_sensitivity_runs(tmp_path):
    assert sensitivity_section(tmp_path) == []
    assert draw_sensitivity(tmp_path) == []


@pytest.mark.parametrize("path", sensitivity_files(), ids=lambda p: p.stem)
def test_each_sensitivity_sweep_validates_and_varies_one_parameter_over_the_base_grid(path, monkeypatch, capsys):
    code, out, err = vmsim(monkeypatch, capsys, "validate", str(path))
    assert code == 0, err
    base, plan = load_sweep(ANSWER_DIR / "sensitivity" / "base.yaml"), load_sweep(path)
    assert plan.strategies == ("nowait",)
    assert (plan.replications, plan.base.duration) == (base.replications, base.base.duration)
    assert {k: v for k, v in plan.factors.items() if k in base.factors} == base.factors
    assert len(plan.factors) == len(base.factors) + (path.stem != "base")
    assert path.read_text().startswith("#") and (path.stem == "base" or ". " in plan.description)


def test_the_ordinary_suite_leaves_the_sensitivity_sweeps_out():
    assert not set(suite_files()) & set(sensitivity_files())
    assert len(sensitivity_files()) >= 7


def test_answer_quick_runs_every_sensitivity_sweep_reduced_into_its_folder(tmp_path):
    planned = {name: (plan, target) for plan, target, name in planned_sweeps(ANSWER_DIR, tmp_path, quick=True)}
    for path in sensitivity_files():
        plan, target = planned[f"sensitivity/{load_sweep(path).name}"]
        assert target == tmp_path / "sensitivity" / plan.name
        assert plan.replications == 1 and plan.base.duration == 1.5
        assert plan.factors["machine.ram"][0] == "256MiB"  # the headline condition is kept
    assert list(planned)[-len(sensitivity_files()) :] == [f"sensitivity/{p.stem}" for p in sensitivity_files()]
