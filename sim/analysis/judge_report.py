"""What ``vmsim judge`` writes: report.md (what was run, how to read a paired interval, a
verdict per design and workload, the tables behind each verdict), paired.csv (every row of
:func:`sim.analysis.judge.judge_table`) and one figure of the paired differences of the primary
measure.  From tables only: never imports SimPy or the model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.judge import MEASURES, NOT_RECORDED, PRIMARY, JudgeSetup, Measure, Side, judge_table
from sim.analysis.paired import BETTER, NOT_MEASURED, WORSE
from sim.record.results import atomic_write_bytes

CSV_NAME = "paired.csv"
REPORT_NAME = "report.md"
HOW_TO_READ = (
    "How to read a paired interval: each run of a design is paired with the baseline's run of the same "
    "point and replication, which starts from the same seed: the same workload, the same random numbers "
    "(common random numbers). The *difference* is the mean over the pairs of (design - baseline), and "
    "its 95% interval is Student's t on those differences. Because both runs of a pair share their "
    "randomness, the difference is far tighter than either side's own spread, so two intervals drawn "
    "side by side would overlap long after the paired one has left zero: read the difference, not the "
    "two means. Lower is better for every measure. **better**: the whole interval lies below 0; "
    "**worse**: above 0; otherwise **no detectable difference at N runs** (which is not the same as no "
    "difference: more replications may find one). One pair gives no interval. An interval of width 0 "
    'means every pair differed by exactly the same amount; it is marked "the same in every run".'
)
FIGURE = Path("figures") / "paired-differences.png"  # the primary measure's
# one colour per design where two designs share a strategy (the strategy's colour otherwise)
DESIGN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">")
SHORT = {BETTER: "better", WORSE: "worse", NOT_RECORDED: "n/r", NOT_MEASURED: "n/a"}


def num(x: float, signed: bool = False) -> str:
    """A number for a table: three significant digits (whole numbers from 1000), – for NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    x = float(x)
    if x == 0:
        return "0"
    text = f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    return ("+" + text) if signed and x > 0 else text


def difference_text(row: pd.Series) -> str:
    """``-409 [-520, -298]``, ``+4 (the same in every run)`` or ``+12 (no interval at 1 run)``."""
    if row["verdict"] in (NOT_RECORDED, NOT_MEASURED):
        return "–"
    diff = num(row["difference"], signed=True)
    if bool(row["exact"]):
        return f"{diff} (the same in every run)"
    if math.isnan(float(row["lo"])):
        return f"{diff} (no interval at {int(row['n'])} run{'' if int(row['n']) == 1 else 's'})"
    return f"{diff} [{num(row['lo'], signed=True)}, {num(row['hi'], signed=True)}]"


def verdict_text(row: pd.Series) -> str:
    """The verdict of one row with its reason where it needs one."""
    verdict = str(row["verdict"])
    if verdict == NOT_MEASURED:
        return "not measured (nothing to count in these runs, e.g. no fork)"
    if verdict == NOT_RECORDED:
        return "not recorded in these runs"
    if row["exact"] and float(row["baseline_mean"]) == 0 and float(row["design_mean"]) == 0:
        return f"{verdict} (zero on both sides in every run)"
    if row["exact"] and verdict in (BETTER, WORSE):
        return f"{verdict} (the same difference in every run)"
    return verdict


def _side_line(side: Side, setup: JudgeSetup) -> str:
    kernel = side.kernel or "each workload's own"
    where = f"plug-in `{side.plugin}`" if side.plugin else "built in"
    return f"| {side.label} | {side.strategy} | {kernel} | {side.commit or '–'} | {where} |"


def header(setup: JudgeSetup) -> list[str]:
    """The report's title and what was run."""
    designs = ", ".join(s.label for s in setup.designs)
    lines = [f"# Design report: {designs} against {setup.baseline.label}", ""]
    if setup.command:
        lines += [f"Command: `{setup.command}`", ""]
    lines += [
        f"Every design and the baseline ran every point of each workload's sweep, {setup.replications} "
        f"replication{'s' if setup.replications != 1 else ''} each. A run's seed comes from (root seed, point, "
        "replication) only: neither the strategy nor the kernel profile is in it, so the two runs of a pair "
        "start from the same random streams.", "",
        "| side | strategy | kernel profile | models | defined |", "|---|---|---|---|---|",
        _side_line(setup.baseline, setup).replace(f"| {setup.baseline.label} |", f"| {setup.baseline.label} "
                                                 "(baseline) |", 1),
        *(_side_line(side, setup) for side in setup.designs), "",
        "| workload | sweep file | points | simulated | root seed | its kernel profile |", "|---|---|---|---|---|---|",
        *(f"| {w.name} | `{w.source}` | {w.points} | {w.duration} | {w.seed} | {w.kernel} |" for w in setup.workloads),
        "",
    ]  # fmt: skip
    if setup.quick:
        lines += ["`--quick`: each sweep reduced to the first and last value of each factor and a short "
                  "simulated time (above); a quick look, not a verdict to quote.", ""]  # fmt: skip
    for entry in setup.plugins:
        names = ", ".join(entry.get("strategies") or []) or "no strategy"
        lines += [f"Plug-in `{entry['file']}` (SHA-256 {str(entry.get('sha256', ''))[:16]}...): {names}.", ""]
    for note in setup.notes:
        lines += [f"Note: {note}", ""]
    return [*lines, HOW_TO_READ, ""]


def verdict_line(workload: str, row: pd.Series, points: int) -> str:
    """``**fork-ram: better.** Split NOWAIT failures per 10^6 vmalloc calls: baseline 412, ...``."""
    n = int(row["n"])
    over = f", each the mean over {points} points" if points > 1 else ""
    title = PRIMARY.title[0].upper() + PRIMARY.title[1:]
    return (f"**{workload}: {verdict_text(row)}.** {title} {PRIMARY.unit}: baseline {num(row['baseline_mean'])}, "
            f"design {num(row['design_mean'])}; paired difference {difference_text(row)}; "
            f"{n} replication{'' if n == 1 else 's'}{over}.")  # fmt: skip


def measures_table(rows: pd.DataFrame) -> list[str]:
    """One line per measure at one scope: both means, the paired difference, the verdict."""
    lines = ["| measure | unit | baseline | design | difference (design - baseline) [95%] | verdict |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for _, row in rows.iterrows():
        lines.append(f"| {row['title']} | {row['unit']} | {num(row['baseline_mean'])} | {num(row['design_mean'])} "
                     f"| {difference_text(row)} | {verdict_text(row)} |")  # fmt: skip
    return lines


def points_table(rows: pd.DataFrame) -> list[str]:
    """One line per point: the primary measure in full, the other measures' verdicts."""
    others = [m for m in MEASURES if m is not PRIMARY]
    titles = " | ".join(m.title for m in others)
    lines = [f"| condition | baseline | design | difference [95%] | verdict | {titles} |",
             "|---|---|---|---|---|" + "---|" * len(others)]  # fmt: skip
    for point, part in rows.groupby("point", sort=True):
        by = part.set_index("measure")
        main = by.loc[PRIMARY.key]
        cells = [SHORT.get(str(by.loc[m.key, "verdict"]), "–") for m in others]
        lines.append(f"| {main['condition'] or f'point {point}'} | {num(main['baseline_mean'])} | "
                     f"{num(main['design_mean'])} | {difference_text(main)} | {verdict_text(main)} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += [
        "",
        f"The first columns are {PRIMARY.title} {PRIMARY.unit}; the others give each measure's verdict "
        "at that point (– no detectable difference, n/r not recorded in these runs, n/a nothing measured).",
    ]
    return lines


def summary(setup: JudgeSetup, table: pd.DataFrame) -> list[str]:
    """The verdicts at a glance: one line per design and workload."""
    lines = ["## Verdicts", "",
             f"| design | workload | verdict | {PRIMARY.title}: difference [95%] | other measures better | worse |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    overall = table[table["scope"] == "workload"]
    for side in setup.designs:
        for workload in setup.workloads:
            rows = overall[(overall["design"] == side.label) & (overall["workload"] == workload.name)]
            if rows.empty:
                continue
            by = rows.set_index("measure")
            main = by.loc[PRIMARY.key]
            better = [m.title for m in MEASURES[1:] if by.loc[m.key, "verdict"] == BETTER]
            worse = [m.title for m in MEASURES[1:] if by.loc[m.key, "verdict"] == WORSE]
            lines.append(f"| {side.label} | {workload.name} | {verdict_text(main)} | {difference_text(main)} | "
                         f"{', '.join(better) or '–'} | {', '.join(worse) or '–'} |")  # fmt: skip
    return [*lines, ""]


def render_report(setup: JudgeSetup, table: pd.DataFrame) -> str:
    """report.md: the header, the verdicts, then per design and workload the verdict line, the
    measures over the workload and, for a sweep of several points, the table per point."""
    lines = header(setup) + summary(setup, table)
    lines += [f"![The paired differences of {PRIMARY.title}]({FIGURE.as_posix()})", ""]
    others = decided_measures(table)
    if others:
        lines += ["The other measures with a verdict, drawn the same way: "
                  + ", ".join(f"[{m.title}]({figure_path(m).as_posix()})" for m in others) + ".", ""]
    for side in setup.designs:
        lines += [f"## {side.label} against {setup.baseline.label}", ""]
        for workload in setup.workloads:
            mine = table[(table["design"] == side.label) & (table["workload"] == workload.name)]
            overall = mine[mine["scope"] == "workload"]
            points = mine[mine["scope"] == "point"]
            npoints = points["point"].nunique()
            lines += [f"### {workload.name}", ""]
            if overall.empty:
                lines += ["No runs to compare.", ""]
                continue
            main = overall.set_index("measure").loc[PRIMARY.key]
            lines += [verdict_line(workload.name, main, npoints), "", *measures_table(overall), ""]
            if npoints > 1:
                lines += [f"Per point ({npoints} conditions, each its replications paired):", "",
                          *points_table(points), ""]  # fmt: skip
    lines += [f"The numbers are in `{CSV_NAME}` (one row per design, workload, scope, point and measure)."]
    return "\n".join(lines) + "\n"


def figure_rows(table: pd.DataFrame, workload: str) -> list[tuple[int, str]]:
    """The rows of one workload's panel, top first: the whole workload, then each point."""
    mine = table[(table["workload"] == workload) & (table["measure"] == PRIMARY.key)]
    points = mine[mine["scope"] == "point"].drop_duplicates("point").sort_values("point")
    rows = [(-1, "all points" if len(points) > 1 else "")]
    if len(points) > 1:
        rows += [(int(r["point"]), str(r["condition"]) or f"point {int(r['point'])}") for _, r in points.iterrows()]
    return rows


def figure_path(measure: Measure) -> Path:
    """Where a measure's figure goes: :data:`FIGURE` for the primary one."""
    return FIGURE if measure is PRIMARY else FIGURE.with_name(f"paired-{measure.key}.png")


def decided_measures(table: pd.DataFrame) -> list[Measure]:
    """The measures other than the primary one with a better or worse verdict on some workload:
    those get a figure of their own."""
    whole = table[table["scope"] == "workload"]
    decided = set(whole.loc[whole["verdict"].isin([BETTER, WORSE]), "measure"])
    return [m for m in MEASURES[1:] if m.key in decided]


def paired_figure(setup: JudgeSetup, table: pd.DataFrame, measure: Measure = PRIMARY) -> Figure:
    """A measure's paired difference (design - baseline) with its 95% interval, a panel per
    workload, a row per point (and the workload's own on top), a marker per design; a hollow
    marker has no interval (one run).  6.8 in wide, text of 8 pt or more, one legend."""
    from sim.record.strategy_info import strategy_colour

    shared = len({side.strategy for side in setup.designs}) < len(setup.designs)

    panels = [(w.name, figure_rows(table, w.name)) for w in setup.workloads]
    heights = [max(len(rows), 1) for _, rows in panels]
    fig = Figure(figsize=(6.8, 1.2 + 0.32 * sum(heights) * max(1.0, len(setup.designs) / 3) + 0.5 * len(panels)),
                 layout="constrained")  # fmt: skip
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    step = 0.7 / max(len(setup.designs), 1)
    for ax, (workload, rows) in zip(axes, panels, strict=True):
        ys = np.arange(len(rows))[::-1]
        for k, side in enumerate(setup.designs):
            mine = table[(table["workload"] == workload) & (table["design"] == side.label)
                         & (table["measure"] == measure.key)].set_index("point")  # fmt: skip
            for y, (point, _) in zip(ys, rows, strict=True):
                if point not in mine.index or math.isnan(float(mine.loc[point, "difference"])):
                    continue
                row = mine.loc[point]
                at = y + 0.35 - step * (k + 0.5)
                diff, lo, hi = float(row["difference"]), float(row["lo"]), float(row["hi"])
                colour = DESIGN_COLOURS[k % len(DESIGN_COLOURS)] if shared else strategy_colour(side.strategy)
                if not math.isnan(lo):
                    ax.plot([lo, hi], [at, at], color=colour, linewidth=1.5)
                hollow = math.isnan(lo)
                ax.plot([diff], [at], marker=MARKERS[k % len(MARKERS)], color=colour, linestyle="none",
                        markerfacecolor="white" if hollow else colour, markersize=5,
                        label=side.label if point == rows[0][0] and y == ys[0] else None)  # fmt: skip
        ax.axvline(0.0, color="#555555", linewidth=0.8)
        ax.set_yticks(ys, [label for _, label in rows], fontsize=8)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_title(workload, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(f"{measure.title} {measure.unit}\ndesign - baseline, 95% paired interval "
                        "(left of 0 is better; hollow: one run, no interval)", fontsize=8)  # fmt: skip
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=max(len(labels), 1), fontsize=8, frameon=False,
               title=f"against {setup.baseline.label}", title_fontsize=8)  # fmt: skip
    return fig


def draw_figure(setup: JudgeSetup, table: pd.DataFrame) -> list[Path]:
    """:func:`paired_figure` of the primary measure and of each :func:`decided_measures`, as
    PNG and SVG under ``setup.root`` (atomically)."""
    from sim.analysis.plots import save_figure

    written: list[Path] = []
    for measure in (PRIMARY, *decided_measures(table)):
        png = Path(setup.root) / figure_path(measure)
        png.parent.mkdir(parents=True, exist_ok=True)
        written += save_figure(paired_figure(setup, table, measure), png.parent, png.stem)
    return written


def write_judge(setup: JudgeSetup) -> tuple[Path, Path]:
    """paired.csv, report.md and its figure in ``setup.root``, each written atomically; the
    report's and the table's paths."""
    table = judge_table(setup)
    root = Path(setup.root)
    draw_figure(setup, table)
    csv = root / CSV_NAME
    atomic_write_bytes(csv, table.to_csv(index=False).encode())
    report = root / REPORT_NAME
    atomic_write_bytes(report, render_report(setup, table).encode())
    return report, csv
