"""Parameter sweeps: a plan's runs in chunks on an executor, resumable, merged into one folder.

Phases: *plan* (:func:`sim.config.sweepfile.load_sweep`: grid points, each validated),
*run* (:func:`run_sweep`: the runs not yet finished, grouped into chunks of
runs that are contiguous in run-id order, submitted through a
:mod:`sim.sweep.executors` backend; each chunk writes its own part files and
returns a small summary, so the parent's memory stays flat however many runs
there are), *collect* (status lines appended per chunk; at the end the parts
are merged into runs/events/timeseries.parquet and the manifest is written).

Seeds come from (root seed, point index, replication) through
:func:`sim.engine.run.run_seed`, never from the strategy or the executor: every
strategy of replication k of a point sees the same workload random numbers,
and the tables are the same whatever the executor and chunking.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.config.scenario import Scenario, resolved_dict
from sim.config.sweepfile import RunSpec, SweepPlan, key_loc, point_data, written_values
from sim.config.yamlpos import Loc
from sim.engine.plugins import load_plugins, plugin_manifest
from sim.engine.run import RUN_COLUMNS, run_once, run_seed
from sim.record.results import build_manifest, counter_rows, write_json
from sim.schema.errors import InputError
from sim.sweep.executors import make_backend
from sim.sweep.store import StatusLine, SweepStore

MAX_CHUNK = 20  # runs per chunk at most, by default: small enough to resume at a fine grain


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to rebuild one grid point: overrides, row columns, kernel."""

    overrides: tuple[tuple[Loc, Any], ...]
    params: dict[str, Any]
    kernel: str


@dataclass(frozen=True)
class ChunkTask:
    """A chunk of runs for one worker; small and picklable (the base data, not Scenario objects)."""

    part: str
    out: str
    scenario_name: str
    base_data: dict[str, Any]
    root_seed: int
    runs: tuple[RunSpec, ...]
    points: dict[int, PointTask]
    columns: tuple[str, ...]
    plugins: tuple[str, ...] = ()  # plug-in files the worker loads before validating its points


@dataclass(frozen=True)
class RunSummary:
    """What the parent keeps of one run."""

    run_id: str
    status: str
    error: str
    wall_seconds: float


@dataclass(frozen=True)
class ChunkDone:
    """A chunk's part name and its runs' summaries."""

    part: str
    runs: tuple[RunSummary, ...]


@dataclass
class SweepOutcome:
    """What a sweep session did: counts by status, runs skipped as already finished, table sizes."""

    out: Path
    total: int
    skipped: int
    ran: int
    statuses: Counter = field(default_factory=Counter)
    crashed: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0


def run_chunk(task: ChunkTask) -> ChunkDone:
    """Run every run of ``task`` in order; write its events, timeseries and runs parts (runs last,
    each atomically) under ``task.out``; return the summaries.  Runs in a worker process."""
    load_plugins(task.plugins)
    store = SweepStore(Path(task.out))
    scenarios: dict[int, Scenario | str] = {}
    rows, events, samples, counters = [], [], [], []
    for spec in task.runs:
        point = task.points[spec.point]
        if spec.point not in scenarios:
            try:
                scenarios[spec.point] = Scenario.model_validate(point_data(task.base_data, list(point.overrides)))
            except Exception as err:  # validated in the parent already; a worker with other code may differ
                scenarios[spec.point] = f"{type(err).__name__}: {err}"
        scenario = scenarios[spec.point]
        if isinstance(scenario, str):
            rows.append(error_row(task, spec, f"cannot build the point: {scenario}"))
            continue
        result = run_once(scenario, spec.strategy, spec.replication, task.root_seed, spec.point, point.params)
        rows.append(result.row)
        events.extend(result.events)
        samples.extend(result.samples)
        counters.extend(counter_rows(result.row["run_id"], result.counters))
    store.write_part(task.part, "events", events, ["run_id", "kind", "time"])
    store.write_part(task.part, "counters", counters, ["run_id", "name", "value"])
    store.write_part(task.part, "timeseries", samples, ["run_id", "time"])
    store.write_part(task.part, "runs", rows, list(task.columns))
    summaries = (RunSummary(r["run_id"], r["status"], r["error"], r.get("wall_seconds", 0.0)) for r in rows)
    return ChunkDone(task.part, tuple(summaries))


def error_row(task: ChunkTask, spec: RunSpec, message: str) -> dict[str, Any]:
    """A runs.parquet row for a run that produced nothing (status "error")."""
    point = task.points[spec.point]
    return {
        "run_id": spec.run_id,
        "scenario": task.scenario_name,
        "strategy": spec.strategy,
        "kernel": point.kernel,
        "seed": task.root_seed,
        "replication": spec.replication,
        "status": "error",
        "error": message,
        **point.params,
    }


def kept_runs(plan: SweepPlan, out: Path) -> int:
    """How many of ``plan``'s runs the folder ``out`` has finished (what ``--resume`` keeps)."""
    store = SweepStore(out)
    return len(store.finished(store.read_status()) & {spec.run_id for spec in plan.runs()})


def run_columns(plan: SweepPlan) -> tuple[str, ...]:
    """runs.parquet columns: run_id, the point index and one column per factor, then the engine's."""
    return ("run_id", "point", *plan.factors, *RUN_COLUMNS[1:])


def plan_fingerprint(plan: SweepPlan) -> str:
    """sha256 of what decides the runs: names, seed, strategies, replications, every point's hash."""
    data = {
        "scenario": plan.base.name,
        "seed": plan.seed,
        "strategies": list(plan.strategies),
        "replications": plan.replications,
        "points": [[p.index, p.scenario_hash, p.columns] for p in plan.points],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def make_chunks(runs: list[RunSpec], pending: set[str], size: int) -> list[list[RunSpec]]:
    """Pending runs in run-id order, cut into chunks of at most ``size`` that never span a finished
    run: each chunk's runs are a contiguous range of run ids, which keeps the merge streaming."""
    chunks: list[list[RunSpec]] = []
    current: list[RunSpec] = []
    for spec in runs:
        if spec.run_id not in pending or len(current) == size:
            if current:
                chunks.append(current)
            current = []
        if spec.run_id in pending:
            current.append(spec)
    if current:
        chunks.append(current)
    return chunks


def default_chunk_size(pending: int, jobs: int) -> int:
    """About four chunks per worker, at most :data:`MAX_CHUNK` runs each."""
    return max(1, min(MAX_CHUNK, math.ceil(pending / (4 * max(1, jobs)))))


def sweep_manifest(
    plan: SweepPlan,
    latest: dict[str, StatusLine],
    argv: list[str],
    complete: bool,
    version: str,
    plugins: tuple[str, ...] = (),
) -> dict[str, Any]:
    """manifest.json: results.build_manifest (code, command, resolved base scenario, seeds, status
    of every run) plus the sweep: its file, factors, filter, points with their values."""
    runs = plan.runs()
    rows = []
    for spec in runs:
        line = latest.get(spec.run_id)
        status = "pending" if line is None else ("crashed" if line.retry else line.status)
        rows.append({"run_id": spec.run_id, "status": status, "error": line.error if line else ""})
    seeds = {}
    for spec in runs:
        key = run_seed(plan.seed, spec.point, spec.replication).spawn_key
        seeds[spec.run_id] = {"entropy": plan.seed, "spawn_key": list(key)}
    manifest = build_manifest(
        resolved_dict(plan.base),
        plan.base.scenario_hash(),
        plan.seed,
        rows,
        argv,
        seeds,
        version,
        plugin_manifest(plugins),
    )
    manifest["sweep"] = {
        "file": str(Path(plan.source).resolve()),
        "name": plan.name,
        "description": plan.description,
        "base_scenario": str(Path(plan.scenario_path).resolve()),
        "set": plan.set,
        "cli_set": list(plan.cli_set),
        "factors": plan.factors,
        "written": _written(plan),
        "filter": plan.filter,
        "strategies": list(plan.strategies),
        "replications": plan.replications,
        "points": [{"point": p.index, "values": p.values, "scenario_hash": p.scenario_hash} for p in plan.points],
        "fingerprint": plan_fingerprint(plan),
        "complete": complete,
    }
    return manifest


def _written(plan: SweepPlan) -> dict[str, list[str]]:
    """Each factor's values as the sweep file writes them (``off``, not false), recorded so
    that figures and reports label them so wherever the results are read later."""
    try:
        return written_values(Path(plan.source).read_text())
    except (OSError, ValueError):
        return {}


def _check_folder(store: SweepStore, plan: SweepPlan, resume: bool, plugins: tuple[str, ...] = ()) -> None:
    """Refuse to mix sweeps in one folder: without --resume it must be new; with it, the same sweep,
    and the same code for the plug-in strategies it runs (a plug-in file edited since is refused)."""
    if not store.has_results():
        return
    if not resume:
        raise InputError(str(store.root), None, "holds a sweep's results already; add --resume to finish it")
    try:
        manifest = json.loads(store.manifest_path.read_text())
        stored = manifest["sweep"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        message = "missing or unreadable: cannot tell which sweep this is"
        raise InputError(str(store.manifest_path), None, message) from None
    if stored != plan_fingerprint(plan):
        raise InputError(str(store.root), None, f"holds another sweep's results (not {plan.source} as it is now)")
    before = {
        name: entry.get("sha256")
        for entry in (manifest.get("plugins") or {}).get("files", [])
        for name in entry.get("strategies", [])
    }
    now = {name: entry["sha256"] for entry in plugin_manifest(plugins)["files"] for name in entry["strategies"]}
    for name in plan.strategies:
        if name in before and before[name] != now.get(name):
            raise InputError(str(store.root), None, f"its runs of strategy {name!r} came from a plug-in file "
                             "that has changed since (SHA-256 differs); resume into a new folder")  # fmt: skip


def _tasks(
    plan: SweepPlan, store: SweepStore, chunks: list[list[RunSpec]], plugins: tuple[str, ...] = ()
) -> Iterator[ChunkTask]:
    """One task per chunk, made as the executor asks for them; part names are unique per session."""
    session = uuid.uuid4().hex[:8]
    points = {}
    for p in plan.points:
        overrides = tuple((key_loc(k), v) for k, v in p.values.items())
        points[p.index] = PointTask(overrides, {"point": p.index, **p.columns}, p.kernel)
    columns = run_columns(plan)
    for n, chunk in enumerate(chunks):
        yield ChunkTask(
            part=f"{session}-{n:05d}",
            out=str(store.root),
            scenario_name=plan.base.name,
            base_data=plan.base_data,
            root_seed=plan.seed,
            runs=tuple(chunk),
            points={spec.point: points[spec.point] for spec in chunk},
            columns=columns,
            plugins=plugins,
        )


def run_sweep(
    plan: SweepPlan,
    out: Path,
    *,
    executor: str = "process",
    jobs: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    chunk_size: int | None = None,
    argv: list[str] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    chunk_fn: Callable[[ChunkTask], ChunkDone] = run_chunk,
    plugins: tuple[str, ...] = (),
) -> SweepOutcome:
    """Run the runs of ``plan`` that ``out`` does not hold yet, then merge and write the manifest.

    ``progress(done, failed, total)`` is called after each chunk (and once at the start).  A
    chunk whose future raises (a worker died) is recorded as failed runs, marked for retry on
    the next ``resume``; the sweep goes on.  ``plugins`` (plug-in files, already loaded here)
    go with every chunk, for workers to load before they validate the points."""
    from sim import __version__

    wall0 = time.perf_counter()
    store = SweepStore(out)
    _check_folder(store, plan, resume, tuple(plugins))
    argv = list(argv or [])
    latest = store.read_status()
    write_json(store.manifest_path, sweep_manifest(plan, latest, argv, False, __version__, plugins))
    runs = plan.runs()
    finished = store.finished(latest) & {spec.run_id for spec in runs}
    pending = {spec.run_id for spec in runs} - finished
    outcome = SweepOutcome(store.root, len(runs), len(finished), 0)
    done = len(finished)
    failed = sum(latest[rid].status != "ok" for rid in finished)
    if progress:
        progress(done, failed, len(runs))
    with make_backend(executor, jobs, scheduler) as backend, store.status_log() as log:
        size = chunk_size or default_chunk_size(len(pending), backend.jobs)
        tasks = _tasks(plan, store, make_chunks(runs, pending, size), tuple(plugins))
        for task, result in backend.map_unordered(chunk_fn, tasks):
            lines = _status_lines(store, task, result)
            log.append(lines)
            outcome.ran += len(lines)
            done += len(lines)
            failed += sum(line.status != "ok" for line in lines)
            if progress:
                progress(done, failed, len(runs))
    latest = store.read_status()
    outcome.rows = store.merge({spec.run_id: latest[spec.run_id] for spec in runs if spec.run_id in latest})
    for spec in runs:
        line = latest.get(spec.run_id)
        outcome.statuses[line.status if line else "pending"] += 1
        outcome.crashed += bool(line and line.retry)
    write_json(store.manifest_path, sweep_manifest(plan, latest, argv, outcome.crashed == 0, __version__, plugins))
    outcome.wall_seconds = time.perf_counter() - wall0
    return outcome


def _status_lines(store: SweepStore, task: ChunkTask, result: ChunkDone | BaseException) -> list[StatusLine]:
    """The status lines of a finished chunk; for a chunk whose future raised, error rows go into
    a part of their own (written here, before the lines) and the lines ask for a retry."""
    if isinstance(result, ChunkDone):
        return [StatusLine(r.run_id, r.status, result.part, r.error, False, r.wall_seconds) for r in result.runs]
    message = f"worker crash: {type(result).__name__}: {result}"
    part = f"{task.part}-failed"
    store.write_part(part, "runs", [error_row(task, spec, message) for spec in task.runs], list(task.columns))
    return [StatusLine(spec.run_id, "error", part, message, True) for spec in task.runs]
