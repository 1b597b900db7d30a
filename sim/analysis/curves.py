"""The failure-curve figure: failures per million trials against the swept factor.

Part of the figures (``sim/analysis/plots.py``); draws ``failure_curve_data``'s
numbers.  What it holds to, so a reader of a mailed PNG is not misled:

- a condition with no failure observed is never drawn as a rate: it is a hollow
  ▽ at its Wilson 95% upper bound (the rate lies below it), and no curve is ever
  drawn in that style; curves are lines through observed rates only;
- the x axis is logarithmic when the factor's values span more than a decade
  (decided from the values), its ticks carry the values as the sweep file writes
  them, and labels that would overlap are left out (their ticks stay);
- one legend for the whole figure, below the panels: strategies by colour,
  other factors' values by line style, and the ▽ once;
- the fork ENOMEM panel only when some fork failed; otherwise one line says how
  many attempts saw none;
- ``FIG_WIDTH`` inches and fonts of at least 8 pt, so that text stays about 10 px
  high or more when a mail client shows the figure 650 px wide.

Never imports SimPy.
"""

from __future__ import annotations

import textwrap

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import offset_copy

from sim.analysis.data import FAILURE_METRICS, Axis, failure_curve_data
from sim.record.strategy_info import strategy_colour, strategy_order

FIG_WIDTH = 6.8  # inches
PANEL_HEIGHT = 3.4  # inches
LOG_SPAN = 10.0  # a factor whose largest value is more than this times its smallest gets a log axis
GROUP_STYLES = ("-", "--", "-.", (0, (6, 2, 1, 2, 1, 2)))  # never dotted, never a bare marker
BOUND_MARKER = {"marker": "v", "markerfacecolor": "white", "linestyle": "none", "markersize": 7}
DODGE_POINTS = 2.5  # series side by side, so equal bounds do not hide each other
METRIC_TITLES = {"split_nowait": "split GFP_NOWAIT failures", "fork_enomem": "fork -ENOMEM"}
TICK_FONT = 9


def failure_curves_figure(runs: pd.DataFrame, x: str | None = None) -> Figure:
    """Split GFP_NOWAIT failures per million vmalloc calls (and fork ENOMEM per million
    fork attempts, when some fork failed) against the swept factor, one line per strategy
    and value of the other factors, with Wilson 95% bands over the pooled replications.
    Without a varying factor each strategy is one point with its interval."""
    data, axis = failure_curve_data(runs, x)
    trials_of = {m: what for m, _, _, what in FAILURE_METRICS}
    present = [m for m, *_ in FAILURE_METRICS if data.loc[data["metric"] == m, "trials"].sum() > 0]
    drawn = [m for m in present if m == "split_nowait" or data.loc[data["metric"] == m, "failures"].sum() > 0]
    drawn = drawn or present[:1]
    notes = [_none_note(data[data["metric"] == m], trials_of[m]) for m in present if m not in drawn]
    fig = Figure(figsize=(FIG_WIDTH, PANEL_HEIGHT * max(1, len(drawn)) + 1.3), layout="constrained")
    axes = fig.subplots(max(1, len(drawn)), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, drawn):
        part = data[data["metric"] == metric]
        _draw_panel(ax, part, axis)
        ax.set_title(f"{METRIC_TITLES[metric]} per 10^6 {trials_of[metric]}", fontsize=10)
        ax.set_ylabel(f"per 10^6 {trials_of[metric]}")
    if notes:  # under the last panel's axis label, where the layout keeps room for it
        last = axes[len(drawn) - 1]
        last.set_xlabel("\n".join([last.get_xlabel(), *(textwrap.fill(n, 90) for n in notes)]), fontsize=9)
    reps = int(data["runs"].max()) if not data.empty else 0
    where = f"against {axis.column}" if axis else "at one operating point"
    pooled = f"up to {reps} replications pooled" if reps > 1 else "one replication"
    fig.suptitle(f"Allocation failures {where}\n95% Wilson bands, {pooled}", fontsize=10)
    _one_legend(fig, data)
    return fig


def _none_note(part: pd.DataFrame, what: str) -> str:
    """One line for a metric with no failure anywhere: how many trials, the largest bound."""
    return (f"{METRIC_TITLES[part['metric'].iloc[0]]}: none observed in {int(part['trials'].sum()):,} {what} "
            f"(95% upper bound at most {part['hi'].max():.3g} per 10^6 in any condition)")  # fmt: skip


def _series(part: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(strategy, group, rows) in the strategies' declared order, groups by value."""
    out = []
    groups = list(dict.fromkeys(part.sort_values("group_rank", kind="stable")["group"]))
    for strategy in strategy_order(list(part["strategy"].unique())):
        for group in groups:
            rows = part[(part["strategy"] == strategy) & (part["group"] == group)]
            if not rows.empty:
                out.append((strategy, group, rows))
    return out


def _draw_panel(ax, part: pd.DataFrame, axis: Axis | None) -> None:
    """One panel: each series' observed rates as a line with its band, its conditions
    without failures as hollow ▽ at their upper bounds; then the axes."""
    series = _series(part)
    groups = list(dict.fromkeys(g for _, g, _ in series))
    for i, (strategy, group, rows) in enumerate(series):
        shift = (i - (len(series) - 1) / 2) * DODGE_POINTS if axis else 0.0  # one point per strategy: no need
        dodge = offset_copy(ax.transData, fig=ax.figure, x=shift, units="points")
        colour, style = strategy_colour(strategy), GROUP_STYLES[groups.index(group) % len(GROUP_STYLES)]
        xs = rows["x"].to_numpy(dtype=float) if axis else np.full(len(rows), float(_position(strategy, part)))
        _draw_series(ax, rows, xs, colour, style, dodge, annotate=axis is None)
    # limits set here: matplotlib does not autoscale to artists drawn with a dodged transform
    top = float(part["hi"].max()) * (1.35 if axis is None else 1.12)
    if _log_y(part):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        seen = part[part["failures"] > 0]
        low = min(float(seen["lo"][seen["lo"] > 0].min()), float(part["hi"].min()))
        ax.set_ylim(low / 1.5, top * 1.5)
    else:
        ax.set_ylim(bottom=0, top=max(top, 1e-9))
    if axis is None:
        strategies = strategy_order(list(part["strategy"].unique()))
        ax.set_xticks(range(len(strategies)), strategies, fontsize=TICK_FONT)
        ax.set_xlim(-0.6, len(strategies) - 0.4)
        ax.set_xlabel("strategy")
    else:
        set_x_axis(ax, axis)
        ax.set_xlabel(axis.column)
    ax.tick_params(labelsize=TICK_FONT)
    ax.grid(True, which="major", alpha=0.3)


def _position(strategy: str, part: pd.DataFrame) -> int:
    return strategy_order(list(part["strategy"].unique())).index(strategy)


def _draw_series(ax, rows: pd.DataFrame, xs: np.ndarray, colour: str, style, dodge, annotate: bool) -> None:
    """Observed rates: a line (broken where none was observed), filled dots, the band and
    error bars.  No failure observed: a hollow ▽ at the upper bound, never on the line."""
    ys, lo, hi = (rows[c].to_numpy(dtype=float) for c in ("per_million", "lo", "hi"))
    seen = rows["failures"].to_numpy(dtype=float) > 0
    if seen.any():
        ax.plot(xs, np.where(seen, ys, np.nan), linestyle=style, color=colour, marker="o", markersize=5,
                transform=dodge, clip_on=False)  # fmt: skip
        if seen.sum() > 1:
            ax.fill_between(xs, lo, hi, where=seen, color=colour, alpha=0.13, linewidth=0, transform=dodge)
        ax.vlines(xs[seen], lo[seen], hi[seen], color=colour, linewidth=1.0, alpha=0.7, transform=dodge)
    if (~seen).any():
        ax.plot(xs[~seen], hi[~seen], color=colour, transform=dodge, clip_on=False, **BOUND_MARKER)
        if annotate:
            for x, bound in zip(xs[~seen], hi[~seen]):
                ax.annotate(f"none observed\n(< {bound:.3g})", (x, bound), xytext=(0, 9), textcoords="offset points",
                            ha="center", va="bottom", fontsize=8, color=colour)  # fmt: skip


def _log_y(part: pd.DataFrame) -> bool:
    """Log y when the observed rates and all bands span two decades or more."""
    seen = part[part["failures"] > 0]
    values = np.concatenate([seen["lo"].to_numpy(dtype=float), part["hi"].to_numpy(dtype=float),
                             seen["per_million"].to_numpy(dtype=float)])  # fmt: skip
    values = values[np.isfinite(values)]
    values = values[values > values.max() * 1e-9] if values.size else values
    return bool(values.size) and values.max() / values.min() >= 100


def set_x_axis(ax, axis: Axis) -> None:
    """Ticks at the factor's values, labelled as the sweep file writes them: a log scale
    when the values span more than a decade (``LOG_SPAN``); categories at their positions.
    Labels that would overlap their left neighbour are dropped (the ticks stay)."""
    ticks = sorted(axis.values.items(), key=lambda item: item[1])
    positions = [v for _, v in ticks]
    log_x = axis.numeric and positions[0] > 0 and positions[-1] / positions[0] > LOG_SPAN
    if log_x:
        ax.set_xscale("log")
    ends = np.log10([positions[0], positions[-1]]) if log_x else np.array([positions[0], positions[-1]])
    pad = (ends[1] - ends[0]) * 0.06 or 0.5
    ends = np.array([ends[0] - pad, ends[1] + pad])
    ax.set_xlim(*(10**ends if log_x else ends))
    ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
    labels = [text for text, _ in ticks]
    if axis.numeric:
        labels = thin_labels(labels, positions, log_x, ax.figure.get_figwidth())
    ax.set_xticks(positions, labels, fontsize=TICK_FONT)
    if not axis.numeric and sum(len(t) for t in labels) * TICK_FONT * 0.6 > 0.7 * ax.figure.get_figwidth() * 72:
        ax.tick_params(axis="x", labelrotation=30)


def thin_labels(labels: list[str], positions: list[float], log_x: bool, width_in: float) -> list[str]:
    """The labels with those that would overlap a kept neighbour made empty: each label's
    width is estimated from its length at ``TICK_FONT`` and compared with its distance to the
    last kept label on an axis about ``width_in`` - 1 inches wide.  The last label is kept
    over the one before it."""
    if len(positions) < 2:
        return list(labels)
    where = np.log10(positions) if log_x else np.asarray(positions, dtype=float)
    span = float(where[-1] - where[0]) or 1.0
    axis_points = (width_in - 1.0) * 72 / 1.12  # the 6% margins that set_x_axis leaves on each side
    at = (where - where[0]) / span * axis_points
    half = [len(t) * TICK_FONT * 0.3 + 2 for t in labels]  # half a label's width, in points
    kept = [0]
    for i in range(1, len(labels)):
        if at[i] - at[kept[-1]] >= half[i] + half[kept[-1]]:
            kept.append(i)
        elif i == len(labels) - 1 and len(kept) > 1:
            kept[-1] = i
    return [t if i in kept else "" for i, t in enumerate(labels)]


def _one_legend(fig: Figure, data: pd.DataFrame) -> None:
    """The figure's only legend, below the panels: strategies (colour), the other factors'
    values (line style), what a hollow ▽ means."""
    handles = [Line2D([], [], color=strategy_colour(s), marker="o", markersize=5, label=s)
               for s in strategy_order(list(data["strategy"].unique()))]  # fmt: skip
    groups = list(dict.fromkeys(data.sort_values("group_rank", kind="stable")["group"]))
    if len(groups) > 1:
        handles += [Line2D([], [], color="0.25", linestyle=GROUP_STYLES[i % len(GROUP_STYLES)], label=g)
                    for i, g in enumerate(groups)]  # fmt: skip
    if (data["failures"] == 0).any():
        handles.append(Line2D([], [], color="0.25", label="none observed: ▽ at the 95% upper bound", **BOUND_MARKER))
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if len(handles) > 3 else len(handles),
               fontsize=9, frameon=False)  # fmt: skip


def legend_count(fig: Figure) -> int:
    """How many legends a figure has, its own and its panels' (one, by design)."""
    return len(fig.legends) + sum(ax.get_legend() is not None for ax in fig.axes)
