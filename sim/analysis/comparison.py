"""The model beside the real kernel: ``vmsim compare MODEL_DIR PEER_DIR``.

Both folders are vmsim results folders (``vmsim run`` and ``vmsim peer``).
Every measure is a ratio of counts pooled over the folder's usable runs
(per fork, per vmalloc call, per second), or a statistic of the sampled zone
state in the steady state (the last three quarters of each run), so two runs
of different lengths and speeds compare.  A measure one side lacks is shown as
"-", never as zero.  Tables only: no SimPy, no kernel model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.analysis.data import wilson_interval
from sim.schema.errors import InputError

TOLERANCE = 0.25  # the bound for a per-fork or per-call measure
MODEL_COUNTERS = ("watermark_boost",)  # counters.parquet names a ratio reads (absent: 0)


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator x scale, both summed over runs."""

    label: str
    numerator: str
    denominator: str
    scale: float = 1.0
    proportion: bool = False  # at most one per denominator: shown with a 95% Wilson interval


RATIOS = (
    Ratio("forks per second", "forks", "sim_seconds"),
    Ratio("vmalloc calls per fork (stack cache misses)", "vmalloc_calls_fork", "forks", proportion=True),
    Ratio("preload fills per vmalloc call", "preload_fills", "vmalloc_calls"),
    Ratio("NOWAIT split attempts per 1000 forks", "split_nowait_attempts", "forks", 1e3),
    Ratio("NOWAIT split failures per 10^6 vmalloc calls", "split_nowait_failures", "vmalloc_calls", 1e6, True),
    Ratio("NOWAIT page allocation failures per 1000 forks", "nowait_page_failures", "forks", 1e3),
    Ratio("direct reclaims per 1000 forks", "direct_reclaims", "forks", 1e3),
    Ratio("OOM kills per 1000 forks", "oom_kills", "forks", 1e3),
    Ratio("watermark boosts per 1000 forks", "watermark_boost", "forks", 1e3),
    Ratio("fork ENOMEM per 1000 forks", "fork_enomem", "forks", 1e3),
    Ratio("vmalloc failures per 10^6 calls", "vmalloc_failures", "vmalloc_calls", 1e6, True),
)


@dataclass(frozen=True)
class Side:
    """One folder's usable runs and samples."""

    folder: Path
    runs: pd.DataFrame
    samples: pd.DataFrame
    label: str


def load_side(folder: Path, strategy: str | None, real: bool) -> Side:
    """A results folder's runs that ended ok (of ``strategy`` on the model's side)."""
    folder = Path(folder)
    path = folder / "runs.parquet"
    if not path.exists():
        raise InputError(str(folder), None, "expected a results folder with runs.parquet (vmsim run or vmsim peer)")
    runs = pd.read_parquet(path)
    runs = runs[runs["status"] == "ok"]
    if not real:
        strategies = list(dict.fromkeys(runs["strategy"]))
        if not strategies:
            raise InputError(str(folder), None, "no run ended ok")
        chosen = strategy or strategies[0]
        if chosen not in strategies:
            raise InputError("--strategy", None, f"expected one of {', '.join(strategies)}, got {chosen!r}")
        runs = runs[runs["strategy"] == chosen]
        label = f"model ({chosen}, kernel {runs['kernel'].iloc[0]})"
    else:
        if runs.empty:
            raise InputError(str(folder), None, "no guest run ended ok")
        label = f"real ({runs['kernel'].iloc[0]})"
    runs = _with_counters(folder, runs, model_counters=() if real else MODEL_COUNTERS)
    if "vmalloc_calls_fork" not in runs:  # the model's vmalloc calls in a fork storm are its forks'
        runs = runs.assign(vmalloc_calls_fork=runs["vmalloc_calls"])
    ts_path = folder / "timeseries.parquet"
    samples = pd.read_parquet(ts_path) if ts_path.exists() else pd.DataFrame(columns=["run_id", "time"])
    samples = samples[samples["run_id"].isin(runs["run_id"])]
    return Side(folder, runs, samples, label)


def _with_counters(folder: Path, runs: pd.DataFrame, model_counters: tuple[str, ...]) -> pd.DataFrame:
    """``runs`` with the counters that a ratio needs and runs.parquet lacks, from
    counters.parquet.  A model run lists only the counters that moved, so one of
    ``model_counters`` that a run lacks is 0 there; a guest's missing counter stays
    missing (it was not measured)."""
    wanted = {r.numerator for r in RATIOS} | {r.denominator for r in RATIOS}
    path = folder / "counters.parquet"
    counters = pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["run_id", "name", "value"])
    counters = counters[counters["name"].isin(wanted - set(runs.columns))]
    if not counters.empty:
        wide = counters.pivot_table(index="run_id", columns="name", values="value", aggfunc="sum").reset_index()
        runs = runs.merge(wide, on="run_id", how="left")
    for name in model_counters:
        runs[name] = runs[name].fillna(0) if name in runs else 0
    return runs


def totals(runs: pd.DataFrame, ratio: Ratio) -> tuple[float, float] | None:
    """(numerator, denominator) summed over the runs that have both, or None."""
    if ratio.numerator not in runs or ratio.denominator not in runs:
        return None
    pair = runs[[ratio.numerator, ratio.denominator]].apply(pd.to_numeric, errors="coerce").dropna()
    if pair.empty or pair[ratio.denominator].sum() <= 0:
        return None
    return float(pair[ratio.numerator].sum()), float(pair[ratio.denominator].sum())


def pooled(runs: pd.DataFrame, ratio: Ratio) -> float | None:
    """The pooled ratio, or None if either column is missing or empty."""
    sums = totals(runs, ratio)
    return None if sums is None else sums[0] / sums[1] * ratio.scale


def interval(runs: pd.DataFrame, ratio: Ratio) -> tuple[float, float] | None:
    """The 95% Wilson interval of a proportion ratio (pooled counts), scaled."""
    sums = totals(runs, ratio)
    if sums is None or not ratio.proportion or sums[0] > sums[1]:
        return None
    lo, hi = wilson_interval(*sums)
    return lo * ratio.scale, hi * ratio.scale


def steady(samples: pd.DataFrame) -> pd.DataFrame:
    """Each run's samples after the first quarter of its time."""
    if samples.empty:
        return samples
    end = samples.groupby("run_id")["time"].transform("max")
    return samples[samples["time"] >= 0.25 * end]


def zone_measures(samples: pd.DataFrame) -> dict[str, float | None]:
    """Share of samples with a boost in any zone, and DMA32 free pages (median, 5th percentile)."""
    part = steady(samples)
    out: dict[str, float | None] = dict.fromkeys(("boost share", "DMA32 free median", "DMA32 free p5"))
    if part.empty:
        return out
    boosts = [c for c in part.columns if c.endswith("_boost") and part[c].notna().any()]
    if boosts:
        out["boost share"] = float((part[boosts].fillna(0).to_numpy() > 0).any(axis=1).mean())
    if "DMA32_free" in part:
        free = part["DMA32_free"].dropna().to_numpy(dtype=float)
        if free.size:
            out["DMA32 free median"] = float(np.median(free))
            out["DMA32 free p5"] = float(np.percentile(free, 5))
    return out


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) < 1e-9:  # a Wilson bound at zero events is 0 up to rounding
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


Row = tuple[str, float | None, float | None, tuple[float, float] | None, tuple[float, float] | None]


def comparison_rows(model: Side, real: Side) -> list[Row]:
    """(measure, model value, real value, model interval, real interval) for every measure."""
    rows: list[Row] = [
        (r.label, pooled(model.runs, r), pooled(real.runs, r), interval(model.runs, r), interval(real.runs, r))
        for r in RATIOS
    ]
    zm, zr = zone_measures(model.samples), zone_measures(real.samples)
    rows += [(name, zm[name], zr[name], None, None) for name in zm]
    return rows


def _cell(value: float | None, band: tuple[float, float] | None) -> str:
    return _fmt(value) + (f" [{_fmt(band[0])}, {_fmt(band[1])}]" if band is not None and value is not None else "")


def _scenario_name(side: Side) -> str:
    """The scenario the side's runs ran (from runs.parquet)."""
    return str(side.runs["scenario"].iloc[0]) if "scenario" in side.runs and len(side.runs) else "?"


def render(model: Side, real: Side) -> str:
    """compare.md: the header of both sides, then one line per measure with model/real."""
    manifest = real.folder / "manifest.json"
    guest = json.loads(manifest.read_text()).get("guest", {}) if manifest.exists() else {}
    names = (_scenario_name(model), _scenario_name(real))
    lines = [
        f"# {model.folder.name}: model against real kernel",
        "",
        *(
            [f"**Different scenarios: the model ran {names[0]}, the guest {names[1]}.**", ""]
            if names[0] != names[1]
            else []
        ),
        f"- model: {model.folder} — {model.label}, {len(model.runs)} runs, "
        f"{model.runs['sim_seconds'].sum():.1f} simulated s",
        f"- real: {real.folder} — {real.label}, {len(real.runs)} runs, {real.runs['sim_seconds'].sum():.1f} s measured"
        + (f", {guest.get('accel')} ({guest.get('accel_reason')})" if guest else ""),
        f"- ratios pooled over runs, [95% Wilson interval] where a ratio is a proportion; zone statistics "
        f"over the last three quarters of each run; "
        f"'>25%' marks a per-fork, per-call or per-second measure more than {TOLERANCE:.0%} apart",
        "",
        "| measure | model | real | model/real | |",
        "|---|---:|---:|---:|---|",
    ]
    per_call = {r.label for r in RATIOS}
    for label, m, r, m_band, r_band in comparison_rows(model, real):
        ratio = m / r if m is not None and r not in (None, 0) else None
        flag = ">25%" if ratio is not None and abs(ratio - 1) > TOLERANCE and label in per_call else ""
        if ratio is None and m is not None and r == 0 and m > 0:
            flag = "real is 0"
        lines.append(f"| {label} | {_cell(m, m_band)} | {_cell(r, r_band)} | {_fmt(ratio)} | {flag} |")
    return "\n".join(lines) + "\n"


def compare_folders(model_dir: Path, peer_dir: Path, strategy: str | None = None) -> str:
    """The comparison as markdown (``vmsim compare``)."""
    return render(load_side(model_dir, strategy, real=False), load_side(peer_dir, None, real=True))
