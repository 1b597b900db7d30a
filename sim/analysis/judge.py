"""The design report of ``vmsim judge``: each design against the baseline, workload by workload.

Each side of a comparison (the baseline, or one design) ran every point of a workload's sweep
for the same replications with the same seeds, into ``<out>/<workload>/<side label>/``.  Here
a run of the design is paired with the baseline's run at the same (point, replication), each
measure of :data:`MEASURES` is computed per run, and :func:`sim.analysis.paired.paired` gives
the mean paired difference (design - baseline) with its 95% t interval and a verdict;
:mod:`sim.analysis.judge_report` writes them as report.md and paired.csv.

Two scopes, both in the report and in ``paired.csv``:

* **per point** (one condition of the sweep: the honest grain, since a design can help where
  memory is short and cost where it is not): the pairs of that point, one per replication;
* **per workload** (the sweep as a whole: the verdict line): for each replication, the
  measure averaged over the sweep's points on each side, then paired over the replications.
  Those averages are independent from one replication to the next (each point's seeds differ),
  so the t interval holds; the conditions are weighted equally.

The verdict of a workload is the verdict of its **primary measure**, split GFP_NOWAIT
failures per 10^6 vmalloc calls: the failure every design here exists to remove.  It stays
primary where neither side failed a split (the verdict is then "no detectable difference",
with the reason said): a fork ENOMEM without a split failure comes from the page allocator,
not from the split, so promoting it would judge a split design on something it does not
touch.  Every other measure gets its own verdict as a column beside it.

Tables in, text out: never imports SimPy or the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sim.analysis.data import read_table, usable_runs
from sim.analysis.factors import as_written
from sim.analysis.paired import Paired, paired

PURGE_EVENT = "vmap_overflow_purge"
HELD_COLUMN = "vmap_objects_held_max"  # peak vmap_area objects set aside (preloads, reserves, node pools)
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Measure:
    """One judged measure: a key (paired.csv), a title and unit (the report), the runs.parquet
    columns it needs (absent: "not recorded"), and how a run's value is computed.  Lower is
    better for every one of them."""

    key: str
    title: str
    unit: str
    needs: tuple[str, ...]
    value: Callable[[pd.DataFrame], pd.Series]


def _placements(runs: pd.DataFrame) -> pd.Series:
    """KVA placements of each run: the free tree's four fit types, plus 6.9's node-pool hits
    (0 in tables written before the column, and on kernels without pools)."""
    placed = runs["fit_fl"] + runs["fit_le"] + runs["fit_re"] + runs["fit_ne"]
    return placed + runs["vmap_pool_hits"] if "vmap_pool_hits" in runs else placed


def _per(numerator: pd.Series, denominator: pd.Series, scale: float = 1.0) -> pd.Series:
    """``numerator / denominator * scale``; NaN where the denominator is not positive."""
    den = denominator.astype(float)
    return (numerator.astype(float) * scale / den).where(den > 0)


MEASURES: tuple[Measure, ...] = (
    Measure("split_nowait", "split NOWAIT failures", "per 10^6 vmalloc calls",
            ("split_nowait_failures", "vmalloc_calls"),
            lambda r: _per(r["split_nowait_failures"], r["vmalloc_calls"], 1e6)),
    Measure("fork_enomem", "fork ENOMEM", "per 10^6 fork attempts", ("fork_enomem", "forks"),
            lambda r: _per(r["fork_enomem"], r["forks"] + r["fork_enomem"], 1e6)),
    Measure("lock_wait", "vmap lock wait (spin)", "ms per simulated s", ("vmap_lock_wait_seconds", "sim_seconds"),
            lambda r: _per(r["vmap_lock_wait_seconds"], r["sim_seconds"], 1e3)),
    Measure("lock_hold", "vmap lock hold", "ms per simulated s", ("vmap_lock_hold_seconds", "sim_seconds"),
            lambda r: _per(r["vmap_lock_hold_seconds"], r["sim_seconds"], 1e3)),
    Measure("purges", "overflow purges", "per simulated s", ("overflow_purges", "sim_seconds"),
            lambda r: _per(r["overflow_purges"], r["sim_seconds"])),
    Measure("purge_stall", "purge stall time", "ms per simulated s", ("purge_seconds", "sim_seconds"),
            lambda r: _per(r["purge_seconds"], r["sim_seconds"], 1e3)),
    Measure("held", "vmap_area objects held aside (peak)", "objects", (HELD_COLUMN,),
            lambda r: r[HELD_COLUMN].astype(float)),
    # what 6.9's node pools change: a pool hit places an area with no search and no split
    Measure("ne_share", "NE_FIT splits among KVA placements", "% of placements",
            ("fit_fl", "fit_le", "fit_re", "fit_ne"), lambda r: _per(r["fit_ne"], _placements(r), 100.0)),
)  # fmt: skip
PRIMARY = MEASURES[0]


@dataclass(frozen=True)
class Side:
    """The baseline or one design: its label (``preload@5.3``), strategy, kernel profile
    ("" = each sweep's own) and the plug-in file that defines the strategy, if one does."""

    label: str
    strategy: str
    kernel: str = ""
    commit: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Workload:
    """One answer sweep judged: its name, sweep file, points, simulated duration, root seed and
    the kernel profile its base scenario names."""

    name: str
    source: str
    points: int
    duration: str
    seed: int
    kernel: str
    description: str = ""


@dataclass(frozen=True)
class JudgeSetup:
    """What ``vmsim judge`` ran, for the report's header and for finding the result folders."""

    root: Path
    baseline: Side
    designs: tuple[Side, ...]
    workloads: tuple[Workload, ...]
    replications: int
    command: str = ""
    quick: bool = False
    plugins: tuple[dict[str, Any], ...] = ()  # plugin_manifest entries: file, sha256, strategies
    notes: tuple[str, ...] = field(default_factory=tuple)

    def folder(self, workload: str, side: Side) -> Path:
        """Where one side's runs of one workload are."""
        return Path(self.root) / workload / side.label


# -- per-run measures -----------------------------------------------------------------


def run_measures(runs: pd.DataFrame, events: pd.DataFrame, factors: list[str] | None = None) -> pd.DataFrame:
    """One row per usable run: ``point``, ``replication``, ``condition`` and one column per
    measure whose columns the runs have (a measure they lack has no column: "not recorded")."""
    runs = usable_runs(runs).reset_index(drop=True)
    purge = pd.Series(dtype=float)
    if not events.empty and {"kind", "seconds"} <= set(events.columns):
        stalls = events[events["kind"] == PURGE_EVENT]
        purge = stalls.groupby("run_id")["seconds"].sum().astype(float)
    runs = runs.assign(purge_seconds=runs["run_id"].map(purge).fillna(0.0))
    out = pd.DataFrame({
        "point": runs["point"].astype(int) if "point" in runs else 0,
        "replication": runs["replication"].astype(int),
        "condition": _conditions(runs, factors or []),
    })  # fmt: skip
    for measure in MEASURES:
        if all(c in runs and runs[c].notna().any() for c in measure.needs):
            out[measure.key] = measure.value(runs).astype(float)
    return out


def _conditions(runs: pd.DataFrame, factors: list[str]) -> pd.Series:
    """``ram=256MiB, swap=off`` per run (the factor values of its point), "" without factors."""
    from sim.analysis.data import short_name

    shown = [c for c in factors if c in runs]
    if not shown:
        return pd.Series([""] * len(runs), index=runs.index, dtype=str)
    words = {"false": "off", "true": "on"}  # swap: off reads back from YAML as false

    def label(row: pd.Series) -> str:
        return ", ".join(f"{short_name(c)}={words.get(str(row[c]).lower(), row[c])}" for c in shown)

    return runs[shown].astype(str).apply(label, axis=1)


def read_measures(folder: Path) -> pd.DataFrame:
    """:func:`run_measures` of a sweep's results folder (runs, events, the manifest's factors)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    factors = list((manifest.get("sweep") or {}).get("factors") or {})
    runs = read_table(folder, "runs")
    if runs.empty:
        return pd.DataFrame(columns=["point", "replication", "condition"])
    runs = as_written(runs, manifest, factors)
    return run_measures(runs, read_table(folder, "events"), factors)


# -- pairing ------------------------------------------------------------------------------


def compare(baseline: pd.DataFrame, design: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of the paired comparison of two :func:`run_measures` frames of one workload: per
    measure, one ``scope="workload"`` row (replications paired, each the mean over the points
    both sides ran) and one ``scope="point"`` row per point (its replications paired)."""
    pairs = baseline.merge(design, on=["point", "replication"], suffixes=(".b", ".d"))
    points = sorted(pairs["point"].unique())
    rows: list[dict[str, Any]] = []
    for measure in MEASURES:
        recorded = measure.key in baseline and measure.key in design
        b, d = f"{measure.key}.b", f"{measure.key}.d"
        overall = None
        if recorded:
            by_rep = pairs[["replication", b, d]].dropna().groupby("replication")[[b, d]].mean()
            overall = paired(by_rep[b], by_rep[d])
        rows.append(_row("workload", -1, "", measure, overall))
        for point in points:
            mine = pairs[pairs["point"] == point]
            result = paired(mine[b], mine[d]) if recorded else None
            rows.append(_row("point", int(point), str(mine["condition.b"].iloc[0]), measure, result))
    return rows


def _row(scope: str, point: int, condition: str, measure: Measure, result: Paired | None) -> dict[str, Any]:
    """One row of paired.csv; ``result`` None: the measure is not recorded in these runs."""
    nan = math.nan
    r = result or Paired(0, nan, nan, nan, nan, nan, NOT_RECORDED)
    return {
        "scope": scope, "point": point, "condition": condition, "measure": measure.key, "title": measure.title,
        "unit": measure.unit, "n": r.n, "baseline_mean": r.baseline, "design_mean": r.design,
        "difference": r.difference,
        "lo": r.lo, "hi": r.hi, "verdict": r.verdict, "exact": r.exact,
    }  # fmt: skip


def judge_table(setup: JudgeSetup) -> pd.DataFrame:
    """Every design against the baseline on every workload (the rows of paired.csv)."""
    rows = []
    for workload in setup.workloads:
        base = read_measures(setup.folder(workload.name, setup.baseline))
        for side in setup.designs:
            mine = read_measures(setup.folder(workload.name, side))
            for row in compare(base, mine):
                rows.append({"design": side.label, "baseline": setup.baseline.label, "workload": workload.name,
                             **row})  # fmt: skip
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


TABLE_COLUMNS = ["design", "baseline", "workload", "scope", "point", "condition", "measure", "title", "unit", "n",
                 "baseline_mean", "design_mean", "difference", "lo", "hi", "verdict", "exact"]  # fmt: skip
