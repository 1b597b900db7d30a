"""Over uptime: when the first split failure comes, and how many come per hour (issue 15 item 4).

Rezki's two reproductions printed their first GFP_NOWAIT split failure after 180 s
(256 MB guest; research/pressure.md, [Rezki-v5]) and 368 s of uptime (1 GB guest;
docs/validation.md, "The 1 GB run").  The answer suite runs both reproductions for at
least 400 simulated seconds in sweeps whose names start with ``uptime-``; this module
takes each run's first ``split_nowait_failure`` event and its failure count, and gives
the distribution of the time to the first failure and the failures per hour of uptime
with an exact (Garwood) Poisson 95% interval.  The figure draws each run's cumulative
failures against uptime beside Rezki's first failure.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.data import usable_runs

UPTIME_PREFIX = "uptime-"
HOUR = 3600.0
# the first split failure Rezki's guests printed, by the scenario the uptime sweep runs
REZKI_FIRST = {"rezki-2019-256mb": 180.0, "rezki-2019-1gb": 368.0}


def poisson_interval(k: int, exposure: float, z: float = 1.96) -> tuple[float, float]:
    """The exact (Garwood) two-sided interval of a Poisson rate: ``k`` events in
    ``exposure``, at the level of ``z`` (1.96: 95%).  Found by bisection on the Poisson
    CDF, so it needs nothing beyond the standard library."""
    if exposure <= 0:
        return math.nan, math.nan
    tail = 0.5 * math.erfc(z / math.sqrt(2))  # 0.025 for z = 1.96

    def cdf(n: int, lam: float) -> float:  # P(X <= n) for X ~ Poisson(lam)
        if n < 0:
            return 0.0
        if lam == 0:
            return 1.0
        terms = [i * math.log(lam) - lam - math.lgamma(i + 1) for i in range(n + 1)]
        top = max(terms)
        return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))

    def solve(target, n: int) -> float:  # the lam where cdf(n, lam) == target (cdf falls with lam)
        lo, hi = 0.0, max(10.0, 2.0 * n + 20 * math.sqrt(n + 1))
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if cdf(n, mid) > target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    lower = 0.0 if k == 0 else solve(1.0 - tail, k - 1)
    upper = solve(tail, k)
    return lower / exposure, upper / exposure


def uptime_runs(suite: Any) -> pd.DataFrame:
    """One row per run of the uptime sweeps: sweep, scenario, strategy, replication,
    sim_seconds, failures and ``first_failure`` (simulated seconds; NaN if none)."""
    runs = usable_runs(suite.runs)
    runs = runs[runs["sweep"].str.startswith(UPTIME_PREFIX)]
    if runs.empty:
        return pd.DataFrame()
    ev = suite.events
    fails = ev[ev["kind"] == "split_nowait_failure"] if not ev.empty else ev
    first = fails.groupby("run_id")["time"].min() if not fails.empty else pd.Series(dtype=float)
    out = runs[["sweep", "scenario", "strategy", "replication", "sim_seconds", "run_id"]].copy()
    out["failures"] = runs["split_nowait_failures"].astype(int)
    out["first_failure"] = out["run_id"].map(first).astype(float)
    return out.reset_index(drop=True)


def uptime_summary(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per uptime sweep and strategy: runs, seconds each, the first failures (sorted; runs
    with none are counted apart), failures per hour with its Poisson 95% interval, and
    Rezki's first failure for the scenario."""
    rows = []
    if per_run.empty:
        return pd.DataFrame()
    for (sweep, strategy), part in per_run.groupby(["sweep", "strategy"], sort=True):
        seconds = float(part["sim_seconds"].sum())
        k = int(part["failures"].sum())
        lo, hi = poisson_interval(k, seconds / HOUR)
        firsts = sorted(float(t) for t in part["first_failure"].dropna())
        scenario = str(part["scenario"].iloc[0])
        rows.append({
            "sweep": sweep, "scenario": scenario, "strategy": strategy, "runs": len(part),
            "run_seconds": float(part["sim_seconds"].min()), "failures": k,
            "per_hour": k / (seconds / HOUR) if seconds else math.nan, "per_hour_lo": lo, "per_hour_hi": hi,
            "first_failures": firsts, "never": int(part["first_failure"].isna().sum()),
            "first_median": float(np.median(firsts)) if firsts else math.nan,
            "rezki_first": REZKI_FIRST.get(scenario, math.nan),
        })  # fmt: skip
    return pd.DataFrame(rows)


def uptime_figure(per_run: pd.DataFrame, events: pd.DataFrame) -> Figure:
    """One panel per uptime sweep: each run's cumulative split failures against uptime (a
    step line per replication), Rezki's first failure as a dashed vertical line."""
    sweeps = sorted(per_run["sweep"].unique())
    fig = Figure(figsize=(6.8, 2.6 * max(len(sweeps), 1)), layout="constrained")
    axes = fig.subplots(len(sweeps), 1, squeeze=False)[:, 0]
    fails = events[events["kind"] == "split_nowait_failure"] if not events.empty else events
    for ax, sweep in zip(axes, sweeps, strict=True):
        part = per_run[per_run["sweep"] == sweep]
        scenario = str(part["scenario"].iloc[0])
        for _, run in part.iterrows():
            times = np.sort(fails[fails["run_id"] == run["run_id"]]["time"].to_numpy(dtype=float))
            xs = np.concatenate([[0.0], times, [float(run["sim_seconds"])]])
            ys = np.concatenate([[0], np.arange(1, len(times) + 1), [len(times)]])
            ax.step(xs, ys, where="post", lw=1.2, label=f"{run['strategy']}, replication {int(run['replication'])}")
        rezki = REZKI_FIRST.get(scenario)
        if rezki is not None:
            ax.axvline(rezki, color="#555555", ls="--", lw=1)
            ax.annotate(f"Rezki's first failure, {rezki:.0f} s", (rezki, 0.95), xycoords=("data", "axes fraction"),
                        ha="right", va="top", fontsize=8, rotation=90, color="#555555")  # fmt: skip
        ax.set_title(scenario, fontsize=10)
        ax.set_ylabel("split failures so far", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right", frameon=False)
    axes[-1].set_xlabel("simulated uptime, s", fontsize=9)
    return fig
