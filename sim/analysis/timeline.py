"""The timeline of one run: free pages against the watermarks, kswapd, and ticks
at each failure, so a reader sees when and under what conditions a run fails.

Part of the figures (``sim/analysis/plots.py``); draws from the timeseries and events
tables and never imports SimPy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.data import largest_zone

EVENT_ROWS = (  # (event kind, label, colour) for the timeline's tick rows
    ("split_nowait_failure", "split NOWAIT failure", "#D55E00"),
    ("vmap_ebusy", "vmap -EBUSY", "#CC79A7"),
    ("oom_kill", "OOM kill", "#000000"),
    ("bug_sleeping_in_atomic", "BUG: sleeping in atomic", "#E69F00"),
    ("oom_panic", "OOM panic", "#882255"),
)


def timeline_figure(series: pd.DataFrame, events: pd.DataFrame, run_id: str) -> Figure:
    """Free pages of the largest zone against its min/low/high (dashed: raised by
    the watermark boost), kswapd awake (shaded) and its reclaim rate, and ticks
    at split NOWAIT failures, EBUSYs, OOM kills and BUGs: when and why a run fails.
    The zone's free pages at each split failure (from the event's snapshot) are
    marked too, since the 0.1 s samples miss the dips that cause them."""
    series = series.sort_values("time")
    fig = Figure(figsize=(6.8, 7.2), layout="constrained")  # readable when mailed ~650 px wide
    top, mid, low = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 1.1]})
    t = series["time"].to_numpy(dtype=float)
    zone = largest_zone(series)
    _shade_awake(top, series)
    if zone is not None:
        _draw_zone(top, series, events, zone)
    top.set_ylabel("free pages (4 KiB)")
    if "kswapd_reclaimed" in series and len(t) > 1:
        rate = np.diff(series["kswapd_reclaimed"].to_numpy(dtype=float)) / np.maximum(np.diff(t), 1e-12)
        mid.step(t[1:], rate, where="pre", color="#0072B2", label="kswapd reclaim")
        _clip_top(mid, rate, 1.2 * float(np.quantile(rate, 0.95)), "pages/s")
    mid.set_ylim(bottom=0)
    mid.set_ylabel("kswapd reclaim\n(pages/s)")
    mid.grid(True, alpha=0.3)
    _draw_event_rows(low, top, events)
    real = run_id.split("/")[1:2] == ["peer"]  # vmsim peer's runs: SCENARIO/peer/KERNEL/rNNN
    low.set_xlabel("time in the guest (s)" if real else "simulated time (s)")
    if len(t):
        low.set_xlim(0, max(float(t[-1]), float(events["time"].max()) if not events.empty else 0.0))
    (top_handles, top_labels), (mid_handles, mid_labels) = (
        top.get_legend_handles_labels(),
        mid.get_legend_handles_labels(),
    )
    handles, labels = top_handles + mid_handles, top_labels + mid_labels
    if handles:  # the figure's one legend, below the panels
        fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    counts = events["kind"].value_counts() if not events.empty else pd.Series(dtype=int)
    fig.suptitle(
        f"Timeline of {run_id}" + (f": zone {zone}" if zone else "")
        + f"\n{int(counts.get('split_nowait_failure', 0))} split NOWAIT failures,"
        f" {int(counts.get('oom_kill', 0))} OOM kills", fontsize=10
    )  # fmt: skip
    return fig


def _draw_zone(ax, series: pd.DataFrame, events: pd.DataFrame, zone: str) -> None:
    """Free pages, the watermarks (and boosted ones), free at each split failure;
    the y range keeps the watermarks readable when free starts far above them."""
    t = series["time"].to_numpy(dtype=float)
    free = series[f"{zone}_free"].to_numpy(dtype=float)
    ax.plot(t, free, color="black", linewidth=1.2, label=f"{zone} free")
    boost = series[f"{zone}_boost"].to_numpy(dtype=float) if f"{zone}_boost" in series else np.zeros(len(t))
    marks = [0.0]
    for mark, colour in (("min", "#D55E00"), ("low", "#E69F00"), ("high", "#009E73")):
        if f"{zone}_{mark}" not in series:
            continue
        level = series[f"{zone}_{mark}"].to_numpy(dtype=float)
        ax.plot(t, level, color=colour, linewidth=1, label=mark)
        if boost.any():
            ax.plot(t, level + boost, color=colour, linewidth=1, linestyle="--", label=f"{mark} + boost")
        marks.append(float((level + boost).max()))
    fails = events[events["kind"] == "split_nowait_failure"] if not events.empty else events
    if not fails.empty and f"{zone}_free" in fails:
        ax.plot(fails["time"], fails[f"{zone}_free"], "x", color="#D55E00", markersize=6,
                label=f"{zone} free at split failure")  # fmt: skip
    if len(free):
        _clip_top(ax, free, max(4 * max(marks), 1.1 * float(np.quantile(free, 0.9))), "pages")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)


def _clip_top(ax, values: np.ndarray, top: float, unit: str) -> None:
    """Cut the y axis at ``top`` when a few values (a start-up transient) would
    flatten the rest, and say so on the axis."""
    peak = float(np.max(values)) if len(values) else 0.0
    if top > 0 and peak > 1.5 * top:
        ax.set_ylim(0, top)
        ax.text(0.995, 0.97, f"clipped: peak {peak:,.0f} {unit}", transform=ax.transAxes, ha="right",
                va="top", fontsize=8, color="0.35")  # fmt: skip


def _shade_awake(ax, series: pd.DataFrame) -> None:
    """Shade the sample intervals during which kswapd was awake."""
    if "kswapd_awake" not in series:
        return
    t = series["time"].to_numpy(dtype=float)
    awake = series["kswapd_awake"].to_numpy(dtype=float) > 0
    start, label = None, "kswapd awake"
    for i in range(len(t)):
        if awake[i] and start is None:
            start = t[i]
        if start is not None and (i + 1 == len(t) or not awake[i + 1]):
            stop = t[i + 1] if i + 1 < len(t) else t[i]
            ax.axvspan(start, stop, color="#56B4E9", alpha=0.15, linewidth=0, label=label)
            start, label = None, None


def _draw_event_rows(ax, top, events: pd.DataFrame) -> None:
    """One row of ticks per event kind present; split failures also as faint lines on top."""
    rows = [(kind, label, colour) for kind, label, colour in EVENT_ROWS
            if not events.empty and (events["kind"] == kind).any()]  # fmt: skip
    for i, (kind, _, colour) in enumerate(rows):
        times = events.loc[events["kind"] == kind, "time"].to_numpy(dtype=float)
        ax.eventplot(times, lineoffsets=i, linelengths=0.8, colors=colour, linewidths=1)
        if kind == "split_nowait_failure" and len(times) <= 200:
            for when in times:
                top.axvline(when, color=colour, alpha=0.35, linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for _, label, _ in rows] or [])
    ax.set_ylim(max(len(rows), 1) - 0.4, -0.6)  # the first kind on top
    if not rows:
        ax.text(0.5, 0.5, "no failures, EBUSYs or OOM kills", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
    ax.grid(True, axis="x", alpha=0.3)
