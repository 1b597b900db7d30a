"""The numbers behind the figures: result tables in, tidy frames out.

Kept apart from the drawing (``sim/analysis/plots.py``) so that tests can pin what a
figure shows without looking at pixels.  Reads Parquet tables and never
imports SimPy or the model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from sim.analysis.factors import by_value, numeric_values
from sim.record.results import RUN_COLUMNS
from sim.schema.errors import InputError

# every column of runs.parquet but these (and ``point``) is a swept or overridden parameter
NOT_FACTORS = frozenset((*RUN_COLUMNS, "point"))
FITS = ("fl", "le", "re", "ne")
LATENCY_COUNTER = re.compile(r"^preload_fill_latency_le_(\d+)$")
FIT_COUNTER = re.compile(r"^(?P<label>.+)\.fit_(?P<fit>fl|le|re|ne)$")
# (metric, failures column, trials = sum of these columns, what one trial is)
FAILURE_METRICS = (
    ("split_nowait", "split_nowait_failures", ("vmalloc_calls",), "vmalloc calls"),
    ("fork_enomem", "fork_enomem", ("forks", "fork_enomem"), "fork attempts"),
)


def wilson_interval(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k`` out of ``n``.

    Chosen over the normal (Wald) interval because failures here are rare: at
    k = 0 Wald collapses to [0, 0] while Wilson still gives an upper bound
    (0/10 gives [0, 0.278]).  With no trials nothing is known: [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"expected 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_per_million(k: float, n: float) -> tuple[float, float, float]:
    """``k`` failures in ``n`` trials per 10^6 trials, with the Wilson 95% interval; NaN without
    trials.  ``k`` is capped at ``n`` for the interval (a call retried after a purge can fail
    twice)."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    lo, hi = wilson_interval(min(k, n), n)
    return k / n * 1e6, lo * 1e6, hi * 1e6


# -- reading a results folder -------------------------------------------------


def table_path(folder: Path, name: str) -> Path | None:
    """``folder/name.parquet`` (a file or a folder of parts), or None if absent."""
    path = Path(folder) / f"{name}.parquet"
    return path if path.exists() else None


def read_table(folder: Path, name: str, run_id: str | None = None) -> pd.DataFrame:
    """A results table, only one run's rows if ``run_id`` (filtered while reading,
    as a sweep's time series can be large); empty if the table is absent or has no rows."""
    path = table_path(folder, name)
    if path is None:
        return pd.DataFrame()
    dataset = ds.dataset(path, format="parquet")
    if dataset.count_rows() == 0:
        return pd.DataFrame()
    if run_id is None:
        return dataset.to_table().to_pandas()
    return dataset.to_table(filter=pc.field("run_id") == run_id).to_pandas()


def read_runs(folder: Path) -> pd.DataFrame:
    """runs.parquet of a results folder; an InputError (one line) if there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(str(folder), None, "no such results folder")
    if table_path(folder, "runs") is None:
        raise InputError(str(folder), None, "not a results folder: no runs.parquet (make one with vmsim run or sweep)")
    runs = read_table(folder, "runs")
    if runs.empty:
        raise InputError(str(folder), None, "runs.parquet has no runs")
    missing = [c for c in ("run_id", "strategy", "vmalloc_calls", "split_nowait_failures") if c not in runs]
    if missing:
        raise InputError(str(folder), None, f"runs.parquet lacks the column(s) {', '.join(missing)}")
    return runs


def usable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose counters mean something: status ok or panic (an OOM panic is a
    result), not a run that died of an error in the simulator."""
    if "status" not in runs:
        return runs
    return runs[runs["status"].isin(["ok", "panic"])]


# -- the pressure axis ----------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """A factor column turned into plottable numbers (or categories)."""

    column: str
    label: str
    values: dict[str, float]  # raw value (as text) -> position on the axis
    numeric: bool


def varying_factors(runs: pd.DataFrame) -> list[str]:
    """Parameter columns that take more than one value across the runs."""
    return [c for c in runs.columns if c not in NOT_FACTORS and runs[c].astype(str).nunique() > 1]


def choose_factor(runs: pd.DataFrame, x: str | None) -> str | None:
    """The pressure axis: ``x`` if given (an InputError if no such column), else the
    one varying factor, else None (nothing varies, or several do and the user must say)."""
    if x is not None:
        if x not in runs.columns or x in NOT_FACTORS:
            known = ", ".join(c for c in runs.columns if c not in NOT_FACTORS) or "none"
            raise InputError("--x", None, f"no factor column {x!r}; factors here: {known}")
        return x
    varying = varying_factors(runs)
    return varying[0] if len(varying) == 1 else None


def factor_axis(column: str, raw: pd.Series) -> Axis:
    """Parse a factor's values: numbers, with their units understood (sizes in bytes,
    durations in seconds, rates per second; sim.analysis.factors), else categories in
    order of first appearance (the sweep file's order)."""
    texts = list(dict.fromkeys(raw.astype(str)))
    values = numeric_values(texts)
    if values is not None:
        return Axis(column, column, values, True)
    return Axis(column, column, {t: float(i) for i, t in enumerate(texts)}, False)


def short_name(column: str) -> str:
    """A factor's last named key for legends: ``workloads.0.workers`` -> ``workers``."""
    names = [part for part in column.split(".") if not part.isdigit()]
    return names[-1] if names else column


# -- failure curves ------------------------------------------------------------------


def failure_curve_data(runs: pd.DataFrame, x: str | None = None) -> tuple[pd.DataFrame, Axis | None]:
    """Failures per million trials per strategy and x, pooled over replications,
    with Wilson 95% bands: the numbers the failure-curve figure draws.

    One row per (metric, strategy, group, x): ``failures``, ``trials``,
    ``runs``, ``per_million`` and the band ``lo``/``hi`` (per million).  Split
    NOWAIT failures count per vmalloc call (a call that retries after a purge
    can fail twice, so k is capped at n for the band only); fork ENOMEM per
    fork attempt that ended (forks + ENOMEMs).  ``group`` names the values of
    other varying factors (by their last key) when ``x`` is one of several.  Without a factor the
    x is the strategy itself (one point each) and the Axis is None.
    """
    runs = usable_runs(runs)
    column = choose_factor(runs, x)
    axis = factor_axis(column, runs[column]) if column else None
    others = [c for c in varying_factors(runs) if c != column]
    keys = ["strategy", *([column] if column else []), *others]
    frame = runs.assign(**{k: runs[k].astype(str) for k in keys[1:]})
    # groups in the order of their values (workers=64 before workers=128), first factor first
    ranks = {c: {t: i for i, t in enumerate(by_value(frame[c]))} for c in others}
    rows = []
    for metric, fail_col, trial_cols, _ in FAILURE_METRICS:
        if fail_col not in frame or not all(c in frame for c in trial_cols):
            continue
        for key, part in frame.groupby(keys, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            k = float(part[fail_col].sum())
            n = float(sum(part[c].sum() for c in trial_cols))
            lo, hi = wilson_interval(min(k, n), n) if n > 0 else (math.nan, math.nan)
            raw = key[1] if column else key[0]
            rows.append(
                {
                    "metric": metric,
                    "strategy": key[0],
                    "group": ", ".join(f"{short_name(c)}={v}" for c, v in zip(others, key[len(keys) - len(others) :])),
                    "group_rank": tuple(ranks[c][v] for c, v in zip(others, key[len(keys) - len(others) :])),
                    "x_raw": raw,
                    "x": axis.values[raw] if axis else math.nan,
                    "failures": k,
                    "trials": n,
                    "runs": len(part),
                    "per_million": k / n * 1e6 if n > 0 else math.nan,
                    "lo": lo * 1e6,
                    "hi": hi * 1e6,
                }
            )
    data = pd.DataFrame(rows, columns=_CURVE_COLUMNS)
    data = data.sort_values(["metric", "strategy", "group_rank", "x"], kind="stable").reset_index(drop=True)
    return data, axis


_CURVE_COLUMNS = ["metric", "strategy", "group", "group_rank", "x_raw", "x", "failures", "trials", "runs",
                  "per_million", "lo", "hi"]  # fmt: skip


# -- fit mix, latency, the timeline run ---------------------------------------------------


def fit_mix_data(runs: pd.DataFrame, counters: pd.DataFrame) -> pd.DataFrame:
    """Allocations per fit type (FL/LE/RE/NE) per caller label, summed over the runs:
    ``all vmallocs`` from the runs' fit_* columns, then every ``<label>.fit_xx``
    counter family.  Columns: label, fl, le, re, ne, total, and shares fl_share..."""
    runs = usable_runs(runs)
    rows = []
    if all(f"fit_{f}" in runs for f in FITS):
        rows.append({"label": "all vmallocs", **{f: float(runs[f"fit_{f}"].sum()) for f in FITS}})
    if not counters.empty:
        mine = counters[counters["run_id"].isin(runs["run_id"])]
        parts = mine["name"].str.extract(FIT_COUNTER).join(mine["value"].astype(float)).dropna(subset=["label"])
        if not parts.empty:
            table = parts.pivot_table(index="label", columns="fit", values="value", aggfunc="sum", fill_value=0.0)
            for label, row in table.sort_index().iterrows():
                rows.append({"label": label, **{f: float(row.get(f, 0.0)) for f in FITS}})
    data = pd.DataFrame(rows, columns=["label", *FITS])
    data["total"] = data[list(FITS)].sum(axis=1)
    data = data[data["total"] > 0].reset_index(drop=True)
    for f in FITS:
        data[f"{f}_share"] = data[f] / data["total"]
    return data


def latency_data(runs: pd.DataFrame, counters: pd.DataFrame) -> pd.DataFrame:
    """Preload fills per latency bucket per strategy, from the counters
    ``preload_fill_latency_le_<k>`` (fills that took at most 2^k microseconds,
    k = 0 holding the zero-latency ones).  Columns: strategy, k, upper_us,
    fills, share (of the strategy's fills).  Empty if no such counters."""
    columns = ["strategy", "k", "upper_us", "fills", "share"]
    if counters.empty:
        return pd.DataFrame(columns=columns)
    k = counters["name"].str.extract(LATENCY_COUNTER)[0]
    found = counters.assign(k=k).dropna(subset=["k"])
    if found.empty:
        return pd.DataFrame(columns=columns)
    found = found.merge(usable_runs(runs)[["run_id", "strategy"]], on="run_id")
    data = found.assign(k=found["k"].astype(int)).groupby(["strategy", "k"], as_index=False)["value"].sum()
    data = data.rename(columns={"value": "fills"})
    data["upper_us"] = 2.0 ** data["k"]
    totals = data.groupby("strategy")["fills"].transform("sum")
    data["share"] = (data["fills"] / totals).where(totals > 0, 0.0)
    return data[columns]


def timeline_run(runs: pd.DataFrame, run_id: str | None = None) -> str:
    """The run to draw a timeline of: ``run_id`` (an InputError if unknown), else
    the run with the most split NOWAIT failures (then OOM kills; first on ties)."""
    if run_id is not None:
        if run_id not in set(runs["run_id"]):
            some = ", ".join(runs["run_id"].head(3))
            raise InputError("--run", None, f"no run {run_id!r} in runs.parquet (runs are like {some})")
        return run_id
    order = [c for c in ("split_nowait_failures", "oom_kills") if c in runs]
    ranked = usable_runs(runs)
    ranked = ranked if not ranked.empty else runs
    ranked = ranked.sort_values(order, ascending=False, kind="stable")
    return str(ranked["run_id"].iloc[0])


def largest_zone(series: pd.DataFrame) -> str | None:
    """The zone with the highest high watermark (watermarks scale with managed pages)."""
    zones = [c[: -len("_high")] for c in series.columns if c.endswith("_high") and f"{c[:-5]}_free" in series]
    if not zones:
        return None
    return max(zones, key=lambda z: float(series[f"{z}_high"].max()))
