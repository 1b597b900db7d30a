"""What a user of the machine sees, per condition and strategy (issue 15 item 5).

A failed split is not a number a user sees: they see a "page allocation failure"
report in the kernel log (``warn_alloc``), a task stalled while vmalloc purges
the lazily freed areas and retries, other CPUs spinning on the vmap area locks
meanwhile, a fork that returns ENOMEM if the retry fails too, and the OOM killer
that the same memory pressure drives.  :func:`user_view_table` computes each of
these per grid point and strategy from a suite's runs and events;
:func:`user_view_figure` draws the worst conditions on one page.  Figures only
from the tables; nothing here runs the model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.data import usable_runs
from sim.record.strategy_info import strategy_colour, strategy_order

HOUR = 3600.0
SHOWN = 6  # conditions drawn: the worst by the rate without the preload
LOCK_COLUMN = "vmap_lock_wait_seconds"

# (column, panel title, unit on the axis)
PANELS = (
    ("warn_per_hour", "page allocation failure reports", "per hour of uptime"),
    ("stall_p95_ms", "vmalloc stalls: purge and retry", "95th percentile, ms"),
    ("lock_ms_per_s", "waiting on the vmap locks", "ms of CPU per second"),
    ("oom_per_min", "OOM kills", "per minute"),
)


def user_view_table(suite: Any, ranking: pd.DataFrame) -> pd.DataFrame:
    """One row per grid point and strategy, in the ranking's order (worst first):

    ``warn_per_hour`` (warn_alloc reports per simulated hour), ``stalls`` and
    ``stall_median_ms``/``stall_p95_ms``/``stall_max_ms`` (overflow purges: the time a
    failed search spent purging before its retry), ``lock_ms_per_s`` (ms of waiting on
    vmap_area_lock/free_vmap_area_lock per simulated second, all CPUs; NaN for runs
    from before the column existed), ``enomem_per_million_forks`` and ``oom_per_min``.
    ``suite`` is a :class:`sim.analysis.report.Suite`, ``ranking`` its
    :func:`sim.analysis.report.suffer_table`."""
    runs = usable_runs(suite.runs)
    events = suite.events
    warn = events[events["kind"] == "warn_alloc"] if not events.empty else events
    purge = events[events["kind"] == "vmap_overflow_purge"] if not events.empty else events
    warn_by_run = warn.groupby("run_id").size() if not warn.empty else pd.Series(dtype=float)
    rows = []
    for _, cond in ranking.iterrows():
        part = runs[(runs["sweep"] == cond["sweep"]) & (runs["point"] == cond["point"])]
        for strategy in strategy_order(list(part["strategy"].unique())):
            mine = part[part["strategy"] == strategy]
            ids = set(mine["run_id"])
            seconds = float(mine["sim_seconds"].sum())
            stalls = purge[purge["run_id"].isin(ids)]["seconds"].to_numpy(dtype=float) if not purge.empty else []
            stalls_ms = np.asarray(stalls) * 1e3
            attempts = float(mine["forks"].sum() + mine["fork_enomem"].sum())
            recorded = LOCK_COLUMN in mine and bool(mine[LOCK_COLUMN].notna().all())
            lock = float(mine[LOCK_COLUMN].sum()) if recorded else math.nan
            reports = int(warn_by_run.reindex(sorted(ids)).fillna(0).sum()) if len(warn_by_run) else 0
            rows.append({
                "sweep": cond["sweep"], "point": cond["point"], "condition": cond["condition"],
                "strategy": strategy, "runs": len(mine), "sim_seconds": seconds,
                "warn_alloc": reports, "warn_per_hour": _per(float(reports), seconds / HOUR),
                "stalls": len(stalls_ms),
                "stall_median_ms": float(np.median(stalls_ms)) if len(stalls_ms) else math.nan,
                "stall_p95_ms": float(np.percentile(stalls_ms, 95)) if len(stalls_ms) else math.nan,
                "stall_max_ms": float(stalls_ms.max()) if len(stalls_ms) else math.nan,
                "lock_ms_per_s": _per(lock * 1e3, seconds),
                "enomem_per_million_forks": _per(float(mine["fork_enomem"].sum()) * 1e6, attempts),
                "oom_per_min": _per(float(mine["oom_kills"].sum()), seconds / 60),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _per(value: float, over: float) -> float:
    return value / over if over > 0 and not math.isnan(value) else math.nan


def worst_conditions(view: pd.DataFrame, shown: int = SHOWN) -> list[str]:
    """The first ``shown`` conditions of the view (it keeps the ranking's order)."""
    return list(dict.fromkeys(view["condition"]))[:shown]


def user_view_figure(view: pd.DataFrame, shown: int = SHOWN) -> Figure:
    """Four panels, one per thing a user sees, each a horizontal bar per strategy for the
    ``shown`` worst conditions; a stall that never happened is a gap marked "none",
    never a bar at zero length that reads as "fast"."""
    conditions = worst_conditions(view, shown)
    strategies = strategy_order(list(view["strategy"].unique())) if not view.empty else []
    # 6.8 in wide with text of 8 pt or more: readable at the ~650 px a mail client shows
    fig = Figure(figsize=(6.8, 1.4 + 0.5 * max(len(conditions), 1) * 2), layout="constrained")
    axes = fig.subplots(2, 2, sharey=True)
    height = 0.8 / max(len(strategies), 1)
    ys = np.arange(len(conditions))[::-1]
    for ax, (column, title, unit) in zip(axes.flat, PANELS, strict=True):
        if view.empty or (view[column].isna().all() and not column.startswith("stall")):
            ax.text(0.5, 0.5, "not recorded in these runs", transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="#555555")  # fmt: skip
            ax.set_xticks([])
        for k, strategy in enumerate(strategies):
            mine = view[view["strategy"] == strategy].set_index("condition")
            ran = [c in mine.index for c in conditions]
            values = [float(mine.loc[c, column]) if c in mine.index else math.nan for c in conditions]
            offsets = ys + 0.4 - height * (k + 0.5)
            drawn = [0.0 if math.isnan(v) else v for v in values]
            ax.barh(offsets, drawn, height=height * 0.9, color=strategy_colour(strategy), label=strategy)
            for y, v, here in zip(offsets, values, ran, strict=True):
                # a strategy not run at a condition gets no mark; no stall measured is "none"
                if not here or (math.isnan(v) and not column.startswith("stall")):
                    continue
                if math.isnan(v) or v == 0:
                    ax.text(0, y, " none", va="center", ha="left", fontsize=8, color="#555555")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(ys, [_wrap(c) for c in conditions], fontsize=8)
    axes[1][0].set_yticks(ys, [_wrap(c) for c in conditions], fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=max(len(strategies), 1), fontsize=8, frameon=False)
    fig.suptitle(f"What a user sees in the {len(conditions)} worst conditions", fontsize=10)
    return fig


def _wrap(label: str, width: int = 28) -> str:
    """A condition label on two lines at the sweep name, when long."""
    if len(label) <= width or ": " not in label:
        return label
    sweep, rest = label.split(": ", 1)
    return f"{sweep}:\n{rest}"
