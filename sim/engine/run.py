"""Run a scenario: build a machine, start its workloads, run, collect (one run).

Phases, as in desmod: *build* (a :class:`~sim.kernel.machine.Machine` from the
scenario's machine section for one strategy, boot memory, workloads), *run*
(``env.run(until=duration)``), *collect* (a row of headline counters, the
failure events and the time series).  A kernel panic or any other exception
ends the run with a status and an error message instead of ending a sweep.

Seeds: a run's SeedSequence comes from (root seed, point index, replication)
and never from the strategy, so every strategy of replication k sees the same
workload random numbers (common random numbers).
"""

from __future__ import annotations

import gc
import math
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.engine.plugins import load_plugins
from sim.kernel.machine import Machine
from sim.kernel.mm.oom_kill import KernelPanic
from sim.record.metrics import Metrics
from sim.record.results import RUN_COLUMNS, run_id_of  # noqa: F401 (RUN_COLUMNS: the CLI and the sweep import it here)
from sim.record.runs import RUN_ROW
from sim.workloads.registry import build


def run_seed(root_seed: int, point: int, replication: int) -> np.random.SeedSequence:
    """The SeedSequence of replication ``replication`` of grid point ``point``."""
    return np.random.SeedSequence(entropy=root_seed, spawn_key=(point, replication))


@dataclass
class RunResult:
    """What one run produced: its runs.parquet row, events and samples."""

    row: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)  # absent counters read as 0


def run_once(
    scenario: Any,
    strategy: str,
    replication: int,
    root_seed: int,
    point: int = 0,
    params: dict[str, Any] | None = None,
) -> RunResult:
    """Build, run and collect one (scenario, strategy, replication)."""
    run_id = run_id_of(scenario.name, strategy, point, replication)
    seed = run_seed(root_seed, point, replication)
    metrics = Metrics()
    row: dict[str, Any] = {
        "run_id": run_id,
        "scenario": scenario.name,
        "strategy": strategy,
        "kernel": scenario.kernel,
        "seed": root_seed,
        "replication": replication,
    }
    wall0 = time.perf_counter()
    status, error, machine = "ok", "", None
    try:
        machine = start_run(scenario, strategy, seed, metrics)
        with collector_paced_for_a_run():
            machine.env.run(until=scenario.duration)
    except KernelPanic as err:
        status, error = "panic", str(err)
    except Exception as err:  # a failed run is recorded, not fatal to a sweep
        status = "error"
        error = f"{type(err).__name__}: {err} | {traceback.format_exc(limit=3).splitlines()[-2].strip()}"
    row["sim_seconds"] = machine.env.now if machine is not None else 0.0
    row["wall_seconds"] = time.perf_counter() - wall0
    row.update(_headline(metrics, machine))
    row["status"] = status
    row["error"] = error
    for key, value in (params or {}).items():
        row[key] = value
    for e in metrics.events:
        e["run_id"] = run_id
    for s in metrics.samples:
        s["run_id"] = run_id
    return RunResult(row, metrics.events, metrics.samples, Counter(metrics.counters))


@contextmanager
def collector_paced_for_a_run() -> Iterator[None]:
    """Run Python's cyclic garbage collector less often while a model runs, then as before.

    A run makes and drops millions of short-lived objects (events, generators, tuples),
    nearly all freed by reference counting; with the default threshold of 700 the
    collector scanned them about every 700 allocations, some 4% of a compiled run
    (perf, issue 14).  The objects the machine built before the run are moved out of
    the collector's sight (``gc.freeze``), and the young generation is collected every
    50,000 allocations.  Cycles are still collected, so memory stays bounded; no
    simulated result depends on when.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def start_run(scenario: Any, strategy: str, seed: np.random.SeedSequence, metrics: Metrics) -> Machine:
    """The *build* phase: a machine for ``strategy`` with its boot memory and workloads started, at time 0."""
    machine = Machine(scenario.machine_config(strategy), seed, metrics)
    _boot(machine, scenario)
    for i, spec in enumerate(scenario.workloads):
        build(spec).start(machine, machine.workload_rng(i))
    return machine


def _boot(machine: Machine, scenario: Any) -> None:
    """Memory in use at boot, by pool (page cache, kernel slab, ...)."""
    for pool, pages in scenario.boot_pages().items():
        if pages:
            machine.page_alloc.populate(pool, pages)


def run_scenario(
    scenario: Any,
    root_seed: int,
    point: int = 0,
    params: dict[str, Any] | None = None,
    on_result: Any = None,
    backend: Any = None,
    plugins: tuple[str, ...] = (),
) -> list[RunResult]:
    """Every (strategy, replication) of ``scenario``, replication by replication so that the
    strategies of one replication run side by side; on ``backend`` (a :mod:`sim.sweep.executors`
    backend, e.g. worker processes) if given, else here.  ``on_result`` sees each result as it
    finishes; the list comes back in run order, the same whatever the backend (a run's seed
    depends on its replication only).  ``plugins``: plug-in files a worker loads before its run."""
    tasks = [
        RunTask(scenario, strategy, replication, root_seed, point, params, tuple(plugins))
        for replication in range(scenario.replications)
        for strategy in scenario.strategies
    ]
    here = ((task, run_task(task)) for task in tasks)
    finished = here if backend is None else backend.map_unordered(run_task, tasks)
    order = {id(task): i for i, task in enumerate(tasks)}
    results: dict[int, RunResult] = {}
    for task, result in finished:
        if isinstance(result, BaseException):  # the worker process died
            result = failed_run(task, f"worker crash: {type(result).__name__}: {result}")
        results[order[id(task)]] = result
        if on_result is not None:
            on_result(result)
    return [results[i] for i in range(len(tasks))]


@dataclass(frozen=True, eq=False)
class RunTask:
    """The arguments of one :func:`run_once`, picklable for a worker process."""

    scenario: Any
    strategy: str
    replication: int
    root_seed: int
    point: int = 0
    params: dict[str, Any] | None = None
    plugins: tuple[str, ...] = ()  # plug-in files (their strategies) to load first


def run_task(task: RunTask) -> RunResult:
    """:func:`run_once` of ``task`` (what a worker process runs), its plug-ins loaded first."""
    load_plugins(task.plugins)
    return run_once(task.scenario, task.strategy, task.replication, task.root_seed, task.point, task.params)


def failed_run(task: RunTask, error: str) -> RunResult:
    """The result of a run that produced nothing: zero counters, status "error"."""
    row = {
        "run_id": run_id_of(task.scenario.name, task.strategy, task.point, task.replication),
        "scenario": task.scenario.name, "strategy": task.strategy, "kernel": task.scenario.kernel,
        "seed": task.root_seed, "replication": task.replication, "sim_seconds": 0.0, "wall_seconds": 0.0,
        **_headline(Metrics(), None), "status": "error", "error": error, **(task.params or {}),
    }  # fmt: skip
    return RunResult(row)


def _headline(metrics: Metrics, machine: Machine | None) -> dict[str, Any]:
    """The run columns that come from counters (``record/runs.py``), and the free page levels."""
    c, seconds = metrics.counters, metrics.seconds
    row: dict[str, Any] = {}
    for column in RUN_ROW:
        if column.source == "counters":
            row[column.name] = int(column.total(c))
        elif column.source == "seconds":
            row[column.name] = float(column.total(seconds))
    row["min_free_pages"], row["seconds_below_min"] = _free_levels(metrics, machine)
    row["vmap_objects_held_max"] = max((int(s.get("vmap_objects_held", 0)) for s in metrics.samples), default=0)
    return row


def _free_levels(metrics: Metrics, machine: Machine | None) -> tuple[int, float]:
    """The lowest free page count seen (samples and failure snapshots), and the
    time, counted over the samples, during which a GFP_NOWAIT request would
    have found every zone at or below its (boosted) min plus the reserve for
    the GFP_KERNEL classzone.  (The high-atomic reserve does not count: an order-0
    request passes ``zone_watermark_fast``'s shortcut without it.)"""
    if machine is None:
        return 0, 0.0
    pa = machine.page_alloc
    limits = [(z.name, z.wmark[0], z.lowmem_reserve[pa.classzone]) for z in pa.zones]
    lowest = math.inf
    below = 0.0
    interval = machine.config.sample_interval
    for s in metrics.samples:
        free = s.get("free")
        if free is None:
            continue
        lowest = min(lowest, free)
        if all(s[f"{name}_free"] <= wmin + s[f"{name}_boost"] + reserve for name, wmin, reserve in limits):
            below += interval
    for e in metrics.events:
        if e.get("free") is not None:
            lowest = min(lowest, e["free"])
    lowest = min(lowest, pa.nr_free_pages())
    return (int(lowest) if lowest != math.inf else 0), below
