"""Figures from a results folder: failure curves, a run's timeline, fit-type mix,
preload fill latency.

Each ``*_figure`` function takes tables (DataFrames) and returns a matplotlib
``Figure`` built without pyplot, so nothing global is touched and no screen is
needed; ``plot_folder`` reads a folder and writes what its data supports as PNG
and SVG into ``figures/``.  The numbers come from ``sim.analysis.data``; this
module only draws.  Never imports SimPy.
"""

from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.data import (
    FAILURE_METRICS,
    FITS,
    Axis,
    failure_curve_data,
    fit_mix_data,
    latency_data,
    read_runs,
    read_table,
    timeline_run,
    usable_runs,
    varying_factors,
)
from sim.analysis.timeline import timeline_figure
from sim.record.results import atomic_write_bytes
from sim.record.strategy_info import strategy_colour, strategy_order

log = logging.getLogger(__name__)

FIT_COLOURS = {"fl": "#BBBBBB", "le": "#88CCEE", "re": "#44AA99", "ne": "#882255"}
_METRIC_TITLES = {"split_nowait": "split NOWAIT failures", "fork_enomem": "fork -ENOMEM"}
# Strategies are ordered and coloured as their classes declare (sim.record.strategy_info):
# Okabe-Ito colours, safe for colour-blind readers, for the built-in ones.


# -- 1. failure curves ----------------------------------------------------------------


def failure_curves_figure(runs: pd.DataFrame, x: str | None = None) -> Figure:
    """Split NOWAIT failures per million vmalloc calls (and fork ENOMEM per million
    fork attempts, when there were forks) against the swept factor, one line per
    strategy, with Wilson 95% bands over the pooled replications.  Without a
    varying factor each strategy is one point with its interval."""
    data, axis = failure_curve_data(runs, x)
    metrics = [m for m, *_ in FAILURE_METRICS if data.loc[data["metric"] == m, "trials"].sum() > 0]
    lines = len(data.groupby(["strategy", "group"])) if not data.empty else 0
    height = 4.6 + (0.2 * lines + 0.3 if lines > 3 else 0)  # room for a legend below the panels
    fig = Figure(figsize=(6.5 * max(1, len(metrics)), height), layout="constrained")
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    trials_of = {m: what for m, _, _, what in FAILURE_METRICS}
    for ax, metric in zip(axes, metrics):
        part = data[data["metric"] == metric]
        _draw_curves(ax, part, axis)
        none = " (none observed)" if part["failures"].sum() == 0 else ""
        ax.set_title(f"{_METRIC_TITLES[metric]} per million {trials_of[metric]}{none}")
        ax.set_ylabel(f"failures per 10^6 {trials_of[metric]}")
        ax.grid(True, which="major", alpha=0.3)
    reps = int(data["runs"].max()) if not data.empty else 0
    where = f"against {axis.column}" if axis else "at one operating point"
    fig.suptitle(f"Allocation failures {where} (95% Wilson bands, up to {reps} replications pooled)")
    return fig


def _draw_curves(ax, part: pd.DataFrame, axis: Axis | None) -> None:
    """One panel: a line (or, without an axis, a point) per strategy and group,
    with its band, on a y scale that keeps zero counts visible."""
    log_y, floor = _y_scale(part)
    strategies = strategy_order(list(part["strategy"].unique()))
    groups = list(dict.fromkeys(part["group"]))
    for s_idx, strategy in enumerate(strategies):
        for g_idx, group in enumerate(groups):
            line = part[(part["strategy"] == strategy) & (part["group"] == group)]
            if line.empty:
                continue
            label = strategy + (f" ({group})" if group else "")
            if axis:
                style = ("-", "--", ":", "-.")[g_idx % 4]
                _draw_line(ax, line, strategy_colour(strategy), style, label, floor if log_y else None)
            else:
                _draw_point(ax, line, float(s_idx), strategy_colour(strategy), label, floor if log_y else None)
    note = ""
    if log_y:
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor / 1.5)
        ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        if (part["failures"] == 0).any():
            note = "\nhollow ○: none observed, drawn at the axis floor; ▽: its 95% upper bound"
    else:
        ax.set_ylim(bottom=0)
    if axis is None:
        ax.set_xticks(range(len(strategies)), strategies)
        ax.set_xlim(-0.6, len(strategies) - 0.4)
        ax.set_xlabel("strategy" + note)
    else:
        _set_x_axis(ax, axis)
        ax.set_xlabel(axis.label + note)
    if len(ax.get_legend_handles_labels()[1]) > 3:  # below the panel, not over the curves
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    else:
        ax.legend(fontsize=8, loc="best")


def _draw_line(ax, line: pd.DataFrame, colour: str, style: str, label: str, floor: float | None) -> None:
    """A strategy's curve and its Wilson band; ``floor`` set means a log axis, on
    which zero counts sit at the floor and show only their upper bound."""
    xs = line["x"].to_numpy(dtype=float)
    ys, lo, hi = (line[c].to_numpy(dtype=float) for c in ("per_million", "lo", "hi"))
    seen = ys > 0
    if not seen.any():  # a band from zero would hide the other strategies' bands
        drawn = ys if floor is None else np.full(len(ys), floor)
        ax.plot(xs, drawn, style, color=colour, marker="o", clip_on=False,
                label=label + " (none seen; dotted: 95% upper bound)",
                markerfacecolor="white" if floor is not None else colour)  # fmt: skip
        ax.plot(xs, hi, ":", color=colour, linewidth=1.2)
        return
    drawn = ys if floor is None else np.where(seen, ys, floor)
    ax.plot(xs, drawn, style, color=colour, marker="o", label=label, clip_on=False)
    if floor is None:
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, linewidth=0)
        return
    ax.fill_between(xs, lo, hi, where=seen, color=colour, alpha=0.15, linewidth=0)
    ax.vlines(xs[seen], lo[seen], hi[seen], color=colour, linewidth=0.8, alpha=0.6)
    zero = ~seen
    ax.plot(xs[zero], drawn[zero], "o", markerfacecolor="white", color=colour, zorder=3, clip_on=False)
    ax.plot(xs[zero], hi[zero], "v", markerfacecolor="white", color=colour, markersize=5)


def _draw_point(ax, line: pd.DataFrame, x: float, colour: str, label: str, floor: float | None) -> None:
    """One strategy at one operating point: the rate with its interval as error bar."""
    y, lo, hi = (float(line[c].iloc[0]) for c in ("per_million", "lo", "hi"))
    if floor is not None and y == 0:
        ax.plot([x], [floor], "o", markerfacecolor="white", color=colour, label=label)
        ax.plot([x], [hi], "v", markerfacecolor="white", color=colour)
        return
    ax.errorbar([x], [y], yerr=[[max(y - lo, 0)], [max(hi - y, 0)]], fmt="o", color=colour, capsize=6, label=label)


def _y_scale(part: pd.DataFrame) -> tuple[bool, float]:
    """Log y when the positive rates and bands span two decades or more; the floor
    where zero counts are drawn on a log axis."""
    rates = part["per_million"].to_numpy(dtype=float)
    values = np.concatenate([rates, part["lo"].to_numpy(dtype=float), part["hi"].to_numpy(dtype=float)])
    finite = values[np.isfinite(values)]
    # a Wilson lower bound of zero failures comes out as rounding noise (1e-16), not a value
    positive = finite[finite > (finite.max() * 1e-9 if finite.size else 0)]
    if not (np.isfinite(rates) & (rates > 0)).any() or positive.size == 0:
        return False, 0.0
    smallest, largest = positive.min(), positive.max()
    floor = 10 ** math.floor(math.log10(smallest / 3))
    return largest / smallest >= 100, floor


def _set_x_axis(ax, axis: Axis) -> None:
    """Numbers on a linear or (for wide ranges such as RAM sizes) log-2 axis;
    categories at their positions."""
    if not axis.numeric:
        ax.set_xticks(list(axis.values.values()), list(axis.values))
        return
    values = sorted(axis.values.values())
    if values[0] > 0 and values[-1] / values[0] >= 16:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    if len(values) <= 12:
        ax.set_xticks(values)
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())


# -- 3. fit-type mix ----------------------------------------------------------------------


def fit_mix_figure(runs: pd.DataFrame, counters: pd.DataFrame) -> Figure:
    """Shares of FL/LE/RE/NE fits per caller label (stacked horizontal bars): NE
    is the fit that needs the extra vmap_area, so its share says how often a
    caller can meet the split-object problem at all."""
    data = fit_mix_data(runs, counters)
    fig = Figure(figsize=(9, 1.2 + 0.42 * max(len(data), 1)), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(len(data))[::-1]
    left = np.zeros(len(data))
    for fit in FITS:
        share = data[f"{fit}_share"].to_numpy(dtype=float) * 100
        ax.barh(ys, share, left=left, color=FIT_COLOURS[fit], label=f"{fit.upper()}_FIT", edgecolor="white")
        for y, x0, w in zip(ys, left, share):
            if w >= 7:
                ax.text(x0 + w / 2, y, f"{w:.0f}%", ha="center", va="center", fontsize=7,
                        color="white" if fit == "ne" else "black")  # fmt: skip
        left += share
    for y, total, ne in zip(ys, data["total"], data["ne_share"]):
        ax.text(101, y, f"NE {ne:.1%} of {int(total):,}", va="center", fontsize=7)
    ax.set_yticks(ys, data["label"])
    ax.set_xlim(0, 122)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("share of allocations (%)")
    ax.legend(ncol=4, fontsize=8, loc="lower center", bbox_to_anchor=(0.45, 1.0), frameon=False)
    nruns = len(runs)
    ax.set_title(f"Fit-type mix per caller, summed over {nruns} run{'s' * (nruns != 1)}", pad=22)
    return fig


# -- 4. preload fill latency ---------------------------------------------------------------


def latency_figure(data: pd.DataFrame) -> Figure:
    """Share of preload fills per latency bucket (upper bound 2^k µs), one bar
    per strategy in each bucket: the extra latency the GFP_KERNEL fill adds to a
    vmalloc.  Every bucket between the extremes is shown, empty ones too; a log
    y axis when the slow tail is small beside the bulk."""
    totals = data.groupby("strategy")["fills"].sum()
    data = data[data["strategy"].isin(totals[totals > 0].index)]
    ks = list(range(int(data["k"].min()), int(data["k"].max()) + 1)) if not data.empty else []
    strategies = strategy_order(list(data["strategy"].unique()))
    fig = Figure(figsize=(max(7.0, 0.45 * len(ks) * max(len(strategies), 1) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(strategies), 1)
    for i, strategy in enumerate(strategies):
        part = data[data["strategy"] == strategy].set_index("k")[["share"]].reindex(ks, fill_value=0.0)
        xs = np.arange(len(ks)) + (i - (len(strategies) - 1) / 2) * width
        label = f"{strategy} ({int(totals[strategy]):,} fills)"
        ax.bar(xs, part["share"] * 100, width, color=strategy_colour(strategy), label=label)
    shares = data.loc[data["share"] > 0, "share"]
    if not shares.empty and shares.min() < shares.max() / 30:
        ax.set_yscale("log")
        ax.set_ylim(bottom=shares.min() * 100 / 2)
        ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.set_xticks(range(len(ks)), [_bucket_label(k) for k in ks], rotation=35 if len(ks) > 6 else 0, ha="right")
    ax.set_xlabel("latency of the preload fill (upper bound of bucket)")
    ax.set_ylabel("share of fills (%)")
    ax.set_title("Extra latency of the preload's GFP_KERNEL fills")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def _bucket_label(k: int) -> str:
    """``≤2^k µs`` in readable units; bucket 0 also holds the fills that took no time."""
    upper = 2**k
    if upper < 1000:
        text = f"≤{upper} µs"
    else:
        text = f"≤{upper / 1000:.3g} ms" if upper < 10**6 else f"≤{upper / 1e6:.3g} s"
    return text + (" (incl. 0)" if k == 0 else "")


# -- writing ------------------------------------------------------------------------------


@dataclass
class PlotReport:
    """What ``plot_folder`` wrote and what it skipped, and why."""

    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, note: str) -> None:
        self.notes.append(note)
        log.info("%s", note)


def save_figure(fig: Figure, folder: Path, stem: str) -> list[Path]:
    """``folder/stem.png`` and ``.svg``, each written atomically (temp file, rename);
    the SVG carries no date and fixed ids, so the same data gives the same file."""
    paths = []
    for fmt, extra in (("png", {"dpi": 150}), ("svg", {"metadata": {"Date": None}})):
        buffer = io.BytesIO()
        with mpl.rc_context({"svg.hashsalt": "vmsim"}):
            fig.savefig(buffer, format=fmt, **extra)
        path = Path(folder) / f"{stem}.{fmt}"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


def plot_folder(folder: Path, run_id: str | None = None, x: str | None = None) -> PlotReport:
    """Every figure the folder's tables support, into ``folder/figures/``.

    An InputError if there is no usable runs table (or ``run_id``/``x`` name
    nothing); a figure whose data is missing is skipped with a note.
    """
    folder = Path(folder)
    runs = read_runs(folder)
    out, report = folder / "figures", PlotReport()
    usable = usable_runs(runs)
    varying = varying_factors(usable)
    if usable.empty:
        report.skip("failure curves: no run ended ok or in a panic (see the error column of runs.parquet)")
    elif x is None and len(varying) > 1:
        report.skip(f"failure curves: several factors vary ({', '.join(varying)}); choose one with --x")
    else:
        report.written += save_figure(failure_curves_figure(runs, x), out, "failure-curves")
    chosen = timeline_run(runs, run_id)
    series = read_table(folder, "timeseries", chosen)
    if series.empty:
        report.skip(f"timeline: no timeseries rows for {chosen}")
    else:
        events = read_table(folder, "events", chosen)
        events = events if not events.empty else pd.DataFrame(columns=["run_id", "kind", "time"])
        stem = "timeline-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", chosen)
        report.written += save_figure(timeline_figure(series, events, chosen), out, stem)
    counters = read_table(folder, "counters")
    if fit_mix_data(runs, counters).empty:
        report.skip("fit mix: no fit counts in runs.parquet or counters.parquet")
    else:
        report.written += save_figure(fit_mix_figure(runs, counters), out, "fit-mix")
    latency = latency_data(runs, counters)
    if latency.empty:
        report.skip("preload fill latency: no preload_fill_latency_le_<k> counters in counters.parquet")
    else:
        report.written += save_figure(latency_figure(latency), out, "preload-fill-latency")
    return report
