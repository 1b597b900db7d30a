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
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.curves import FIG_WIDTH, failure_curves_figure
from sim.analysis.data import (
    FITS,
    NOT_FACTORS,
    fit_mix_data,
    latency_data,
    read_runs,
    read_table,
    timeline_run,
    usable_runs,
    varying_factors,
)
from sim.analysis.factors import as_written
from sim.analysis.timeline import timeline_figure
from sim.record.results import atomic_write_bytes
from sim.record.strategy_info import strategy_colour, strategy_order

log = logging.getLogger(__name__)

FIT_COLOURS = {"fl": "#BBBBBB", "le": "#88CCEE", "re": "#44AA99", "ne": "#882255"}
# Strategies are ordered and coloured as their classes declare (sim.record.strategy_info):
# Okabe-Ito colours, safe for colour-blind readers, for the built-in ones.


# -- 3. fit-type mix ----------------------------------------------------------------------


def fit_mix_figure(runs: pd.DataFrame, counters: pd.DataFrame) -> Figure:
    """Shares of FL/LE/RE/NE fits per caller label (stacked horizontal bars): NE
    is the fit that needs the extra vmap_area, so its share says how often a
    caller can meet the split-object problem at all."""
    data = fit_mix_data(runs, counters)
    fig = Figure(figsize=(FIG_WIDTH, 1.3 + 0.42 * max(len(data), 1)), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(len(data))[::-1]
    left = np.zeros(len(data))
    for fit in FITS:
        share = data[f"{fit}_share"].to_numpy(dtype=float) * 100
        ax.barh(ys, share, left=left, color=FIT_COLOURS[fit], label=f"{fit.upper()}_FIT", edgecolor="white")
        for y, x0, w in zip(ys, left, share):
            if w >= 7:
                ax.text(x0 + w / 2, y, f"{w:.0f}%", ha="center", va="center", fontsize=8,
                        color="white" if fit == "ne" else "black")  # fmt: skip
        left += share
    for y, total, ne in zip(ys, data["total"], data["ne_share"]):
        ax.text(101, y, f"NE {ne:.1%}\nof {int(total):,}", va="center", fontsize=8)
    ax.set_yticks(ys, data["label"])
    ax.set_xlim(0, 125)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("share of allocations (%)")
    ax.legend(ncol=4, fontsize=9, loc="lower center", bbox_to_anchor=(0.45, 1.0), frameon=False)
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
    fig = Figure(figsize=(FIG_WIDTH, 4.2), layout="constrained")
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
    # upright labels while they fit beside each other, else turned a quarter (a bucket is ~20 pt wide)
    rotation = 0 if len(ks) <= 5 else (40 if len(ks) <= 10 else 90)
    ax.set_xticks(range(len(ks)), [_bucket_label(k) for k in ks], rotation=rotation, fontsize=8,
                  ha="right" if rotation == 40 else "center")  # fmt: skip
    ax.set_xlabel("latency of the preload fill (upper bound of bucket)")
    ax.set_ylabel("share of fills (%)")
    ax.set_title("Extra latency of the preload's GFP_KERNEL fills", fontsize=10)
    ax.legend(fontsize=9)
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
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    runs = as_written(runs, manifest, [c for c in runs.columns if c not in NOT_FACTORS])
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
