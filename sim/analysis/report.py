"""The answer to Morton's question, computed from the result tables of a suite.

``write_report(folder)`` reads every sweep folder under ``folder`` (each with
runs.parquet, events.parquet, counters.parquet and manifest.json, as
``vmsim sweep`` writes them) and writes ``report.md``: which workloads suffer
split failures without the preload (ranked, with Wilson 95% intervals and the
reduction each preload gives), when (the boundaries the sweeps find), how (one
traced failure, step by step with simulated timestamps), what the preload
costs, what the v5.5 lockless preload gives up, and the model's assumptions.
Every number, ranking and boundary comes from the tables at hand; the only
fixed text is the list of assumptions.  Never imports SimPy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sim.analysis.agreement import Comparison, agreement_section, agreement_table, comparisons, real_kernel_rate
from sim.analysis.data import NOT_FACTORS, rate_per_million, short_name, usable_runs
from sim.analysis.factors import as_written, by_value
from sim.analysis.headline import (
    HeadlineFacts,
    Onset,
    headline_facts,
    headline_markdown,
    report_text,
    zone_at_failures,
)
from sim.analysis.report_text import ASSUMPTIONS, traced_failure_story
from sim.analysis.sensitivity import load_sensitivity, sensitivity_section, sureness
from sim.analysis.uptime import UPTIME_PREFIX, uptime_runs, uptime_summary
from sim.analysis.user_view import user_view_table
from sim.record.results import atomic_write_bytes
from sim.record.strategy_info import strategy_order, strategy_preloads

BASELINE = "nowait"  # the question's strategy: the split's GFP_NOWAIT with no preload (v5.2)
PRELOAD = "preload"  # the fix it asks about (v5.3); other strategies are listed the same way
KEY = ("sweep", "point")
PREEMPTION = "machine.preemption"
DEFAULT_PREEMPTION = "none"  # MachineConfig's, for a manifest that does not say
# alloc_vmap_area's preload misses by cause, with their calls; percpu's NE carves (runs.parquet columns)
RACE_COLUMNS = ("preload_race_misses", "preload_fill_misses", "vmap_alloc_calls")
PERCPU_COLUMNS = ("pcpu_ne_splits", "pcpu_split_nowait")
TITLE = "Which workloads suffer when the NE_FIT split uses GFP_NOWAIT, when, and how"
NOT_RECORDED = "not recorded in these runs; re-run `vmsim answer`"
REDUCTION_NOTE = (
    "The preload reduction is what the runs resolve, not a point estimate: where the two 95% intervals "
    "are apart, the reduction is at least 1 - (preload's upper bound) / (nowait's lower bound) (whenever "
    "both intervals hold, at least 90% of the time); where they overlap, the runs cannot tell the two rates "
    "apart. Zero failures under the preload is not read as 100%: a finite run leaves a non-zero upper bound."
)


@dataclass
class Suite:
    """All tables of one answer run, sweeps stacked (a ``sweep`` column added)."""

    runs: pd.DataFrame
    events: pd.DataFrame
    counters: pd.DataFrame
    factors: dict[str, list[str]]  # sweep -> its factor columns
    folders: dict[str, Path]
    preemption: dict[str, str] = field(default_factory=dict)  # sweep -> its scenario's preemption model
    scenarios: dict[str, dict] = field(default_factory=dict)  # sweep -> its base scenario (manifest.json)
    root: Path | None = None  # the answer folder the sweeps are in


def load_suite(folder: Path) -> Suite:
    """Every sweep folder (one holding runs.parquet) directly under ``folder``."""
    runs, events, counters, factors, folders, preemption, scenarios = [], [], [], {}, {}, {}, {}
    for sub in sorted(p for p in Path(folder).iterdir() if (p / "runs.parquet").exists()):
        name = sub.name
        manifest = json.loads((sub / "manifest.json").read_text()) if (sub / "manifest.json").exists() else {}
        factors[name] = list((manifest.get("sweep") or {}).get("factors", {}) or {})
        folders[name] = sub
        scenarios[name] = manifest.get("scenario") or {}
        machine = scenarios[name].get("machine") or {}
        preemption[name] = str(machine.get("preemption") or DEFAULT_PREEMPTION)
        frame = pd.read_parquet(sub / "runs.parquet")
        frame = as_written(frame, manifest, [c for c in factors[name] if c not in NOT_FACTORS])
        # run ids are unique within a sweep; prefix the sweep so they are unique in the suite
        frame = frame.assign(sweep=name, point=frame.get("point", 0), run_id=name + ":" + frame["run_id"])
        runs.append(frame)
        for table, bucket in (("events", events), ("counters", counters)):
            path = sub / f"{table}.parquet"
            if path.exists():
                part = pd.read_parquet(path)
                bucket.append(part.assign(sweep=name, run_id=name + ":" + part["run_id"]))
    if not runs:
        raise FileNotFoundError(f"no sweep results under {folder}")
    return Suite(
        pd.concat(runs, ignore_index=True),
        pd.concat(events, ignore_index=True) if events else pd.DataFrame(columns=["run_id", "kind", "time"]),
        pd.concat(counters, ignore_index=True) if counters else pd.DataFrame(columns=["run_id", "name", "value"]),
        factors,
        folders,
        preemption,
        scenarios,
        Path(folder),
    )


def show(value: object) -> str:
    """A factor value as a reader wrote it: 4 not 4.0, off not False."""
    if isinstance(value, bool) or value is None:
        return "off" if not value else "on"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return "off" if text in ("False", "false") else text


def condition_label(suite: Suite, sweep: str, part: pd.DataFrame) -> str:
    """``sweep: ram=256MiB, swap=off`` for one grid point."""
    cols = suite.factors.get(sweep, [])
    first = part.iloc[0]
    values = ", ".join(f"{short_name(c)}={show(first[c])}" for c in cols if c in part)
    return f"{sweep}: {values}" if values else sweep


def suffer_table(suite: Suite) -> pd.DataFrame:
    """One row per grid point: split NOWAIT failures per million vmalloc calls for
    each strategy (pooled over replications, Wilson 95%), fork ENOMEM per million
    fork attempts, OOM kills per run, and each preload's reduction; ranked by the
    rate without the preload (nowait)."""
    runs = usable_runs(suite.runs)
    rows = []
    for (sweep, point), part in runs.groupby(list(KEY), sort=True):
        row: dict[str, object] = {"sweep": sweep, "point": int(point), "condition": condition_label(suite, sweep, part)}
        for strategy, mine in part.groupby("strategy"):
            k, n = float(mine["split_nowait_failures"].sum()), float(mine["vmalloc_calls"].sum())
            rate, lo, hi = rate_per_million(k, n)
            row[f"{strategy}.failures"] = k
            row[f"{strategy}.calls"] = n
            row[f"{strategy}.rate"], row[f"{strategy}.lo"], row[f"{strategy}.hi"] = rate, lo, hi
            forks = float(mine["forks"].sum() + mine["fork_enomem"].sum())
            row[f"{strategy}.enomem"] = rate_per_million(float(mine["fork_enomem"].sum()), forks)[0]
            row[f"{strategy}.oom_per_run"] = float(mine["oom_kills"].mean())
            row[f"{strategy}.runs"] = len(mine)
        base = row.get(f"{BASELINE}.rate")
        for strategy in strategy_order(list(part["strategy"].unique())):
            if strategy != BASELINE and base and base > 0:
                row[f"{strategy}.reduction"] = 1.0 - float(row[f"{strategy}.rate"]) / float(base)
                row[f"{strategy}.reduction_bound"] = reduction_bound(
                    float(row[f"{BASELINE}.lo"]), float(row[f"{strategy}.hi"])
                )
        rows.append(row)
    table = pd.DataFrame(rows)
    if f"{BASELINE}.rate" in table:
        table = table.sort_values([f"{BASELINE}.rate", "condition"], ascending=[False, True], kind="stable")
    return table.reset_index(drop=True)


def reduction_bound(base_lo: float, other_hi: float) -> float:
    """The smallest reduction of the failure rate that the runs resolve: 1 - (the other
    strategy's upper bound) / (nowait's lower bound), both Wilson 95%; NaN where the two
    intervals overlap (the runs cannot tell the rates apart, so they show no reduction).

    A bound, not an estimate: the true reduction is at least this whenever both intervals
    hold (at least 90% of the time, as the two runs' intervals are independent).  With no
    failure under the preload the point estimate is 100%, which the runs never resolve: a
    finite number of calls leaves a non-zero upper bound, so the bound stays below 100%."""
    if not (base_lo > 0) or not math.isfinite(other_hi) or other_hi >= base_lo:
        return math.nan
    return 1.0 - other_hi / base_lo


def reduction_text(row: pd.Series, strategy: str) -> str:
    """A reduction cell: ``≥ 67%`` (the resolved lower bound, :func:`reduction_bound`),
    ``not resolved (CIs overlap)``, or a dash where nowait failed nowhere (nothing to reduce)."""
    base = row.get(f"{BASELINE}.failures")
    if base is None or not base > 0 or f"{strategy}.rate" not in row or pd.isna(row.get(f"{strategy}.rate")):
        return "–"
    bound = row.get(f"{strategy}.reduction_bound")
    if bound is None or math.isnan(float(bound)):
        return "not resolved (CIs overlap)"
    return f"≥ {math.floor(float(bound) * 100)}%"


def boundaries(suite: Suite, table: pd.DataFrame) -> list[str]:
    """For each swept factor: the values at which nowait failures appear and vanish."""
    lines = []
    usable = usable_runs(suite.runs)
    for sweep, cols in suite.factors.items():
        mine = table[table["sweep"] == sweep]
        if mine.empty or f"{BASELINE}.failures" not in mine:
            continue
        runs = usable[usable["sweep"] == sweep]
        for col in cols:
            order = by_value(runs[col].astype(str))
            failing, clean = [], []
            for value in order:
                points = runs[runs[col].astype(str) == value]["point"].unique()
                k = mine[mine["point"].isin(points)][f"{BASELINE}.failures"].sum()
                (failing if k > 0 else clean).append(show(value))
            lines.append(f"- **{sweep}, {short_name(col)}**: {boundary_text(failing, clean)}")
    return lines


def boundary_text(failing: list[str], clean: list[str]) -> str:
    """Where a factor's values saw nowait split failures (pooled over the other factors),
    said of the values there are: all of them, none of them, or which."""
    values = ", ".join(failing + clean) if not (failing and clean) else ""
    if not clean:
        return f"nowait split failures at every value swept ({values})."
    if not failing:
        return f"no nowait split failure observed at any value swept ({values})."
    return f"nowait split failures at {', '.join(failing)}; none observed at {', '.join(clean)}."


def caller_table(suite: Suite) -> pd.DataFrame:
    """Per caller label (the workloads' own counters): vmap requests, NE share, and
    failures of the split object, by strategy."""
    c = suite.counters
    if c.empty:
        return pd.DataFrame()
    strategy = usable_runs(suite.runs).set_index("run_id")["strategy"]
    c = c[c["run_id"].isin(strategy.index)].assign(strategy=lambda f: f["run_id"].map(strategy))
    names = c["name"].str.rsplit(".", n=1, expand=True)
    c = c.assign(label=names[0], what=names[1])
    c = c[c["what"].isin(["calls", "fit_ne", "fail_split_object", "fail_no_space"]) & c["label"].notna()]
    c = c[~c["label"].str.contains(r"^slab\.|^alloc_fail|:")]
    if c.empty:
        return pd.DataFrame()
    table = c.pivot_table(index=["label", "strategy"], columns="what", values="value", aggfunc="sum", fill_value=0)
    return table.reset_index()


def free_at_failures(suite: Suite) -> str:
    """Where free memory stood at each split failure, relative to its zone's (boosted) min
    (:func:`sim.analysis.headline.zone_at_failures`, which the headline words too)."""
    z = zone_at_failures(suite.events)
    if z is None:
        return "No split failure was recorded, so there is no free-memory level to report."
    return (
        f"At all {z.failures} split failures, DMA32's free pages minus its boosted min were "
        f"{int(z.min_margin)} to {int(z.max_margin)} pages (median {int(z.median_margin)}); "
        f"{z.at_or_below} of them at or below the boosted min, "
        f"{z.boosted} while the zone's watermarks were boosted."
    )


def preload_costs(suite: Suite) -> pd.DataFrame:
    """Per strategy: GFP_KERNEL fills per vmalloc call, fill time per fill, the
    share of fills that waited, and what the slots hold."""
    runs = usable_runs(suite.runs)
    rows = []
    counters = suite.counters
    for strategy, mine in runs.groupby("strategy"):
        calls = float(mine["vmalloc_calls"].sum())
        fills = float(mine["preload_fills"].sum())
        ids = set(mine["run_id"])
        c = counters[counters["run_id"].isin(ids)] if not counters.empty else counters
        buckets = c[c["name"].str.startswith("preload_fill_latency_le_")] if not c.empty else c
        waited = float(buckets[buckets["name"] != "preload_fill_latency_le_0"]["value"].sum()) if len(buckets) else 0.0
        rows.append(
            {
                "strategy": strategy,
                "fills_per_call": fills / calls if calls else math.nan,
                "fills": fills,
                "waited_share": waited / fills if fills else math.nan,
                "failed_fills": float(mine["split_nowait_attempts"].sum() - mine["preload_misses"].sum())
                if strategy_preloads(strategy)
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def preemption_of(suite: Suite, runs: pd.DataFrame) -> pd.Series:
    """Each run's preemption model: its own value where swept or set, else its sweep's scenario's."""
    model = runs["sweep"].map(lambda sweep: suite.preemption.get(sweep, DEFAULT_PREEMPTION))
    if PREEMPTION in runs:
        model = runs[PREEMPTION].where(runs[PREEMPTION].notna(), model)
    return model.astype(str)


def _recorded(runs: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The runs that have every one of ``columns`` (runs from before a column was added lack it)."""
    if any(c not in runs for c in columns):
        return runs.iloc[0:0]
    return runs[runs[list(columns)].notna().all(axis=1)]


def lockless_misses(suite: Suite) -> pd.DataFrame:
    """Per preemption model and preloading strategy: ``alloc_vmap_area``'s race misses (its CPU
    held a preloaded object at the check, the split found none) per ``alloc_vmap_area`` call with
    Wilson 95%, and its fill misses (the check found the slot empty).  Percpu carves are not in it
    (:func:`percpu_carves`).  Empty where no run recorded these counters."""
    runs = usable_runs(suite.runs)
    runs = runs[runs["strategy"].map(strategy_preloads)]
    runs = _recorded(runs, RACE_COLUMNS)
    if runs.empty:
        return pd.DataFrame()
    runs = runs.assign(preemption=preemption_of(suite, runs))
    rows = []
    for preemption, part in runs.groupby("preemption", sort=True):
        for strategy in strategy_order(list(part["strategy"].unique())):
            mine = part[part["strategy"] == strategy]
            k, n = float(mine["preload_race_misses"].sum()), float(mine["vmap_alloc_calls"].sum())
            rate, lo, hi = rate_per_million(k, n)
            rows.append({"preemption": preemption, "strategy": strategy, "race_misses": k,
                         "fill_misses": float(mine["preload_fill_misses"].sum()), "calls": n,
                         "per_million": rate, "lo": lo, "hi": hi})  # fmt: skip
    return pd.DataFrame(rows)


def percpu_carves(suite: Suite) -> pd.DataFrame:
    """Per strategy, over every run: NE_FIT carves of ``pcpu_get_vm_areas`` (which never preloads)
    and those that found no preloaded object on their CPU and took GFP_NOWAIT.  Empty where no
    run recorded these counters."""
    runs = _recorded(usable_runs(suite.runs), PERCPU_COLUMNS)
    rows = []
    for strategy in strategy_order(list(runs["strategy"].unique())):
        mine = runs[runs["strategy"] == strategy]
        rows.append({"strategy": strategy, "carves": float(mine["pcpu_ne_splits"].sum()),
                     "nowait": float(mine["pcpu_split_nowait"].sum())})  # fmt: skip
    return pd.DataFrame(rows)


def _num(value: object) -> str:
    """One decimal, or a dash where there is nothing to count (no forks, say)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.1f}"


def _fmt_rate(row: pd.Series, strategy: str) -> str:
    rate = row.get(f"{strategy}.rate")
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "–"
    return f"{rate:.1f} [{row[f'{strategy}.lo']:.1f}, {row[f'{strategy}.hi']:.1f}]"


def render(suite: Suite, found: list[Comparison] | None = None, facts: HeadlineFacts | None = None) -> str:
    """report.md's text.  ``found`` (the real-kernel comparisons) and ``facts`` (the headline's)
    when the caller has them already, else computed here."""
    table = suffer_table(suite)
    strategies = strategy_order([str(c)[: -len(".rate")] for c in table.columns if str(c).endswith(".rate")])
    runs = usable_runs(suite.runs)
    out = [f"# {TITLE}", ""]
    if suite.root is not None and found is None:
        found = comparisons()
    out += headline_markdown(facts or answer_facts(suite, table, found))
    out += [
        f"Computed by `vmsim answer` from {len(suite.runs)} runs ({len(runs)} usable) in "
        f"{len(suite.folders)} sweeps: {', '.join(suite.folders)}. Rates are split GFP_NOWAIT failures per "
        "million vmalloc calls, pooled over replications, with Wilson 95% intervals; every strategy of a "
        "replication saw the same workload random numbers.",
        "",
        "## Which workloads suffer",
        "",
        "| rank | condition | "
        + " | ".join(f"{s} /10^6 calls [95% CI]" for s in strategies)
        + " | preload reduction (95% lower bound) | fork ENOMEM /10^6 (nowait) | OOM kills/run (nowait) |",
        "|" + "---|" * (len(strategies) + 5),
    ]
    for i, row in table.iterrows():
        red_s = reduction_text(row, PRELOAD)
        out.append(
            f"| {i + 1} | {row['condition']} | "
            + " | ".join(_fmt_rate(row, s) for s in strategies)
            + f" | {red_s} | {_num(row.get(f'{BASELINE}.enomem'))} | {_num(row.get(f'{BASELINE}.oom_per_run'))} |"
        )
    suffering = int((table.get(f"{BASELINE}.failures", pd.Series(dtype=float)) > 0).sum())
    out += ["", f"{suffering} of {len(table)} conditions show split GFP_NOWAIT failures without the preload.",
            "", REDUCTION_NOTE, ""]  # fmt: skip
    callers = caller_table(suite)
    if not callers.empty:
        out += ["Every caller's own requests, over all its runs (the NE share decides how many need a split object):",
                "", "| caller | strategy | requests | NE share | split-object failures | no-space failures |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for _, row in callers.iterrows():
            calls = row.get("calls", 0)
            ne = row.get("fit_ne", 0) / calls if calls else math.nan
            out.append(
                f"| {row['label']} | {row['strategy']} | {int(calls)} | {ne:.1%} | "
                f"{int(row.get('fail_split_object', 0))} | {int(row.get('fail_no_space', 0))} |"
            )
        out.append("")
    out += ["## When", "", *boundaries(suite, table), "", *bisection_section(suite), free_at_failures(suite), ""]
    out += user_view_section(suite, table)
    out += uptime_section(suite)
    out += sensitivity_section(suite.root) if suite.root is not None else []
    out += ["## How: one failure, step by step", "", *traced_failure_story(suite.events, suite.runs), ""]
    costs = preload_costs(suite)
    out += ["## What the preload costs", "", "| strategy | GFP_KERNEL fills per vmalloc call | fills that waited |",
            "|---|---|---|"]  # fmt: skip
    for _, row in costs.iterrows():
        if strategy_preloads(row["strategy"]):
            out.append(f"| {row['strategy']} | {row['fills_per_call']:.3f} | {row['waited_share']:.2%} |")
    out += ["", "A filled slot holds one `struct vmap_area` per CPU (88 bytes on 5.2-5.3) until the next NE split.", ""]
    out += ["## What the v5.5 lockless preload gives up", "", *lockless_section(suite)]
    if suite.root is not None:
        out += ["", *agreement_section(suite.root, found=found)]
    out += ["", "## Figures", ""]
    for sweep, folder in suite.folders.items():
        pngs = sorted((folder / "figures").glob("*.png")) if (folder / "figures").is_dir() else []
        if pngs:
            out += [f"- {sweep}: " + ", ".join(f"[{p.stem}]({sweep}/figures/{p.name})" for p in pngs)]
    out += ["", "## Assumptions and limits", "", *ASSUMPTIONS, ""]
    return "\n".join(out)


USER_VIEW_FIGURE = Path("figures") / "user-view.png"


def failing_conditions(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the ranking table with split failures without the preload."""
    return table[table.get(f"{BASELINE}.failures", pd.Series(0.0, index=table.index)) > 0]


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def user_view_section(suite: Suite, table: pd.DataFrame) -> list[str]:
    """ "What a user sees": per condition with split failures, per strategy, the kernel log's
    reports, the purge-and-retry stalls, the wait on the vmap locks, fork ENOMEM and OOM kills
    (:func:`sim.analysis.user_view.user_view_table`), and the figure when it was drawn."""
    out = ["## What a user sees", ""]
    failing = failing_conditions(table)
    if failing.empty:
        return [*out, "No condition had a split failure, so there is nothing for a user to see of one.", ""]
    view = user_view_table(suite, failing)
    out += [
        f"In the {len(failing)} conditions with split failures, per strategy: `warn_alloc` reports in the kernel "
        "log per hour of simulated uptime; the stalls of a vmalloc that found no space (or no split object), "
        "purged the lazily freed areas and retried (count; median, 95th percentile and longest, in ms); the time "
        "tasks waited on `vmap_area_lock`/`free_vmap_area_lock` (spinning, without PREEMPT_RT), in ms per "
        "simulated second summed over CPUs; fork ENOMEM per 10^6 fork attempts; OOM kills per minute.",
        "",
        "| condition | strategy | warn_alloc /h | purge stalls | stall ms: median / p95 / max "
        "| lock wait ms/s | fork ENOMEM /10^6 | OOM kills /min |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for _, row in view.iterrows():
        stalls = (
            f"{_ms(row['stall_median_ms'])} / {_ms(row['stall_p95_ms'])} / {_ms(row['stall_max_ms'])}"
            if row["stalls"]
            else "none"
        )
        lock = "not recorded" if math.isnan(row["lock_ms_per_s"]) else f"{row['lock_ms_per_s']:.2f}"
        out.append(
            f"| {row['condition']} | {row['strategy']} | {_num(row['warn_per_hour'])} | {int(row['stalls'])} | "
            f"{stalls} | {lock} | {_num(row['enomem_per_million_forks'])} | {_num(row['oom_per_min'])} |"
        )
    if suite.root is not None and (suite.root / USER_VIEW_FIGURE).exists():
        out += ["", f"![What a user sees]({USER_VIEW_FIGURE.as_posix()})"]
    return [*out, ""]


def _bisections(suite: Suite) -> list[tuple[dict[str, Any], list[str]]]:
    """Each bisection of the answer folder (``boundary/*/boundary.json``, by name) with the
    ``--set`` strings it ran with (the duration an ``answer --quick`` sets left out)."""
    if suite.root is None:
        return []
    found = []
    for path in sorted((suite.root / "boundary").glob("*/boundary.json")):
        data = json.loads(path.read_text())
        found.append((data, [t for t in data["sweep"].get("cli_set") or [] if not t.startswith("duration=")]))
    return found


def onsets(suite: Suite) -> list[Onset]:
    """Each bisected bracket of the answer folder, for the headline."""
    found = []
    for data, given in _bisections(suite):
        pairs = (text.split("=", 1) for text in given if "=" in text)
        sets = [f"{short_name(key)}={value}" for key, value in pairs]
        for combo in data["combinations"]:
            if combo["outcome"] != "bracket":
                continue
            probes = {p["value"]: p for p in combo["probes"]}
            where = [f"{short_name(k)}={show(v)}" for k, v in (combo.get("values") or {}).items()] + sets
            found.append(Onset(short_name(data["factor"]["key"]), ", ".join(where), probes[combo["failing"]]["text"],
                               probes[combo["clean"]]["text"], combo["direction"] == "falling"))  # fmt: skip
    return found


def bisection_section(suite: Suite) -> list[str]:
    """Where failures begin, found by bisection (``vmsim boundary``; the answer writes each
    search into ``boundary/<name>/boundary.json``): per search and combination of the other
    factors, the bracket with the rate at its failing end and the bound at its clean end."""
    found = _bisections(suite)
    if not found:
        return []
    out = [
        "Bisected (`vmsim boundary`: both ends of the sweep's range, then midpoints; nowait only): the bracket "
        'between the last value with no split failure observed and the first with failures. "None observed" '
        "bounds the rate by its Wilson 95% upper bound; it does not make it zero.",
        "",
        "| search | combination | failures at | rate there /10^6 [95% CI] | none observed at | rate below /10^6 "
        "| probes x runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for data, given in found:
        sets = ", ".join(given)
        name = short_name(data["factor"]["key"]) + (f" ({sets})" if sets else "")
        for combo in data["combinations"]:
            label = ", ".join(f"{short_name(k)}={show(v)}" for k, v in (combo.get("values") or {}).items()) or "–"
            probes = {p["value"]: p for p in combo["probes"]}
            size = f"{len(probes)} x {data['replications']}"
            if combo["outcome"] != "bracket":
                out.append(f"| {name} | {label} | {combo['outcome']} | – | – | – | {size} |")
                continue
            fail, clean = probes[combo["failing"]], probes[combo["clean"]]
            side = "≤" if combo["direction"] == "falling" else "≥"
            out.append(
                f"| {name} | {label} | {side} {fail['text']} | {fail['rate_per_million']:.1f} [{fail['lo']:.1f}, "
                f"{fail['hi']:.1f}] | {clean['text']} | < {clean['hi']:.1f} | {size} |"
            )
    return [*out, ""]


UPTIME_FIGURE = Path("figures") / "uptime.png"


def uptime_section(suite: Suite) -> list[str]:
    """ "Over uptime": the long runs of the 2019 reproductions (sweeps named ``uptime-*``): each
    run's first split failure beside Rezki's, and failures per hour of uptime with an exact
    Poisson 95% interval (:mod:`sim.analysis.uptime`).  Nothing without such sweeps."""
    summary = uptime_summary(uptime_runs(suite))
    if summary.empty:
        return []
    out = [
        "## Over uptime",
        "",
        f"The 2019 reproductions run long (the `{UPTIME_PREFIX}*` sweeps): when did each run's first split "
        "GFP_NOWAIT failure come, against the uptime at which Rezki's guest printed its first, and how many "
        "failures come per hour of uptime.",
        "",
        "| sweep | strategy | runs | seconds each | first failure, each run (s) | median | Rezki's first "
        "| failures | per hour [95% CI] |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for _, row in summary.iterrows():
        firsts = ", ".join(f"{t:.1f}" for t in row["first_failures"]) or "none"
        if row["never"]:
            firsts += f"; {row['never']} run{'s' if row['never'] > 1 else ''} with none"
        rezki = "–" if math.isnan(row["rezki_first"]) else f"{row['rezki_first']:.0f} s"
        median = "–" if math.isnan(row["first_median"]) else f"{row['first_median']:.1f}"
        out.append(
            f"| {row['sweep']} | {row['strategy']} | {row['runs']} | {row['run_seconds']:.0f} | {firsts} | {median} "
            f"| {rezki} | {row['failures']} | {row['per_hour']:,.0f} [{row['per_hour_lo']:,.0f}, "
            f"{row['per_hour_hi']:,.0f}] |"
        )
    out += ["", *_uptime_sentences(summary)]
    if suite.root is not None and (suite.root / UPTIME_FIGURE).exists():
        out += ["", f"![Split failures over uptime]({UPTIME_FIGURE.as_posix()})"]
    return [*out, ""]


def _uptime_sentences(summary: pd.DataFrame) -> list[str]:
    """Per reproduction, the model's first failures against Rezki's, in words."""
    lines = []
    for _, row in summary.iterrows():
        if math.isnan(row["rezki_first"]):
            continue
        firsts = row["first_failures"]
        if not firsts:
            lines.append(
                f"- {row['sweep']}: no run failed a split in {row['run_seconds']:.0f} s, where Rezki's guest "
                f"printed its first failure at {row['rezki_first']:.0f} s."
            )
            continue
        earlier = sum(t < row["rezki_first"] for t in firsts)
        lines.append(
            f"- {row['sweep']}: the first failure came at "
            + (f"{firsts[0]:.1f} s" if len(firsts) == 1 else f"{min(firsts):.1f} to {max(firsts):.1f} s")
            + " of simulated "
            f"uptime ({earlier} of {len(firsts)} runs before Rezki's {row['rezki_first']:.0f} s). Rezki's time "
            "is the guest's uptime (the kernel log's timestamp), boot and whatever ran before the test included; "
            "the model's clock starts with its workloads."
        )
    return lines


def lockless_section(suite: Suite) -> list[str]:
    """The lines of "What the v5.5 lockless preload gives up": alloc_vmap_area's race and fill
    misses per preemption model and preloading strategy, then percpu's carves per strategy."""
    runs = usable_runs(suite.runs)
    if not runs["strategy"].eq("preload-lockless").any():
        return ["No run used preload-lockless."]
    out = [
        "A race miss is an NE_FIT split in `alloc_vmap_area` whose preload check found its CPU's "
        "`ne_fit_preload_node` full, so it did not fill it, yet which holds the lock on a CPU whose slot is "
        "empty: v5.5 checks with preemption on, and without kernel preemption (none, voluntary) nothing can "
        "move the task or run another on its CPU between the check and `spin_lock`, so the count there is 0 "
        "by construction. A fill miss is a split whose check found the slot empty and whose fill got no object.",
        "",
    ]
    misses = lockless_misses(suite)
    if misses.empty:
        out.append(f"Race and fill misses of `alloc_vmap_area`: {NOT_RECORDED}.")
    else:
        out += ["| preemption | strategy | race misses | fill misses | alloc_vmap_area calls | race misses "
                "/10^6 calls [95% CI] |", "|---|---|---|---|---|---|"]  # fmt: skip
        for _, row in misses.iterrows():
            out.append(
                f"| {row['preemption']} | {row['strategy']} | {int(row['race_misses'])} | "
                f"{int(row['fill_misses'])} | {int(row['calls'])} | "
                f"{row['per_million']:.2f} [{row['lo']:.2f}, {row['hi']:.2f}] |"
            )
    out += ["", "Percpu chunks (`pcpu_get_vm_areas`) never preload, in any kernel: an NE_FIT carve takes its "
            "CPU's preloaded object if it happens to hold one, else allocates with GFP_NOWAIT under the lock, "
            "whatever the strategy. These carves are counted apart, over all runs:", ""]  # fmt: skip
    carves = percpu_carves(suite)
    if carves.empty:
        out.append(f"Percpu NE_FIT carves: {NOT_RECORDED}.")
    else:
        out += ["| strategy | percpu NE_FIT carves | of them GFP_NOWAIT |", "|---|---|---|"]
        for _, row in carves.iterrows():
            out.append(f"| {row['strategy']} | {int(row['carves'])} | {int(row['nowait'])} |")
    out += ["", "Under a preloading strategy, runs.parquet's `preload_misses` is the sum of the three: race misses, "
            "fill misses and percpu's GFP_NOWAIT carves."]  # fmt: skip
    return out


def render_text(suite: Suite, facts: HeadlineFacts | None = None) -> str:
    """report.txt's text: the answer wrapped at 72 columns, for a reply on a mailing list."""
    found = comparisons() if suite.root is not None and facts is None else None
    return report_text(facts or answer_facts(suite, suffer_table(suite), found), TITLE)


def answer_facts(suite: Suite, table: pd.DataFrame, found: list[Comparison] | None) -> HeadlineFacts:
    """The headline's facts: the ranking ``table``, and, for an answer folder (``suite.root``),
    the real kernel's rate from ``found``, the bisected onsets and the sensitivity part."""
    if suite.root is None:
        return headline_facts(suite, table, BASELINE, PRELOAD)
    sens = load_sensitivity(suite.root)
    sure = sureness(sens) if sens is not None else None
    return headline_facts(suite, table, BASELINE, PRELOAD, real_kernel_rate(found or []), onsets(suite), sure)


def draw_user_view(suite: Suite) -> list[Path]:
    """``figures/user-view.png`` (and .svg) in the answer folder ``suite.root``: what a user sees
    in the worst conditions (:func:`sim.analysis.user_view.user_view_figure`); nothing when no
    condition had a split failure."""
    from sim.analysis.user_view import user_view_figure

    failing = failing_conditions(suffer_table(suite))
    if failing.empty or suite.root is None:
        return []
    return _save(user_view_figure(user_view_table(suite, failing)), suite.root / USER_VIEW_FIGURE)


def draw_uptime(suite: Suite) -> list[Path]:
    """``figures/uptime.png`` (and .svg) in ``suite.root``: each long run's cumulative split
    failures against uptime beside Rezki's first failure; nothing without ``uptime-*`` sweeps."""
    from sim.analysis.uptime import uptime_figure

    per_run = uptime_runs(suite)
    if per_run.empty or suite.root is None:
        return []
    return _save(uptime_figure(per_run, suite.events), suite.root / UPTIME_FIGURE)


def _save(fig: Any, png: Path) -> list[Path]:
    """The figure as ``png`` and the .svg beside it (:func:`sim.analysis.plots.save_figure`)."""
    from sim.analysis.plots import save_figure

    png.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, png.parent, png.stem)


def write_report(folder: Path, suite: Suite | None = None) -> Path:
    """report.md, report.txt and agreement.csv in ``folder`` from the sweeps (and their figures)
    under it (``suite``: already loaded from it), each written atomically; returns report.md's
    path.  The real-kernel comparisons and the headline's facts are computed once for all three."""
    suite = load_suite(folder) if suite is None else suite
    found = comparisons()
    agreement = agreement_table(found)
    if not agreement.empty:
        atomic_write_bytes(Path(folder) / "agreement.csv", agreement.to_csv(index=False).encode())
    facts = answer_facts(suite, suffer_table(suite), found)
    atomic_write_bytes(Path(folder) / "report.txt", render_text(suite, facts).encode())
    path = Path(folder) / "report.md"
    atomic_write_bytes(path, render(suite, found, facts).encode())
    return path
