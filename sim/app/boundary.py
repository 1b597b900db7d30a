"""``vmsim boundary``: where split GFP_NOWAIT failures appear along one factor of a sweep.

:func:`find_boundaries` plans the search (:func:`sim.sweep.boundary.plan_boundary`), then
bisects the factor in every combination of the sweep's other factors at once: each step
gathers the values every unfinished :class:`~sim.analysis.boundary.Bisection` asks for and
runs them, all replications, in one batch on the executor (so ``-j`` keeps its workers
busy), and tells each bisection what its probes observed.  :func:`boundary_lines` is the
printed table, :func:`write_boundary` writes boundary.csv and boundary.json.  The answer
report can call both.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.analysis.boundary import BRACKET, FALLING, Bisection, Boundary, Observation, Probe
from sim.record.results import atomic_write_bytes, write_json
from sim.schema.errors import InputError
from sim.schema.limits import MAX_RUNS, runs_limit_message
from sim.sweep.boundary import STRATEGY, FactorAxis

NOTE = ("a probe with no failure observed has a rate below its Wilson 95% upper bound, not a rate of zero; "
        "the boundary lies between the bracket's two values")  # fmt: skip


@dataclass(frozen=True)
class CombinationBoundary:
    """The boundary in one combination of the sweep's other factors."""

    values: dict[str, Any]  # other factor -> value as the sweep file writes it
    boundary: Boundary

    def label(self) -> str:
        """``machine.swap=off``, or ``all`` when the sweep has no other factor."""
        return ", ".join(f"{k}={_text(v)}" for k, v in self.values.items()) or "all"


@dataclass(frozen=True)
class BoundaryResult:
    """A boundary search: what was searched, how, and the boundary in each combination."""

    source: str
    name: str
    axis: FactorAxis
    strategy: str
    replications: int
    steps: int
    seed: int
    cli_set: tuple[str, ...]
    combinations: tuple[CombinationBoundary, ...]


def find_boundaries(
    sweep_path: str | Path,
    factor: str,
    *,
    sets: Sequence[str] = (),
    replications: int | None = None,
    steps: int = 4,
    low: str | None = None,
    high: str | None = None,
    executor: str = "process",
    jobs: int | None = None,
    scheduler: str | None = None,
    plugins: tuple[str, ...] = (),
    max_runs: int = MAX_RUNS,
    on_step: Callable[[int, int], None] | None = None,
) -> BoundaryResult:
    """Bisect ``factor`` of the sweep at ``sweep_path`` (``--set`` strings ``sets`` applied to its
    base) for the value where NOWAIT split failures appear, in each combination of its other
    factors: the two ends of the range, then up to ``steps`` midpoints, each probe ``replications``
    runs (default: the sweep's).  ``low``/``high`` (e.g. "160MiB") replace the sweep's range of the
    factor.  ``on_step(probes done, runs done)`` is called after each batch."""
    from sim.config.sweepfile import load_sweep
    from sim.sweep.boundary import plan_boundary, run_probes
    from sim.sweep.executors import EXECUTORS, make_backend

    if executor not in EXECUTORS:
        raise InputError("--executor", None, f"expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise InputError("--scheduler", None, f"needs --executor dask, not {executor}")
    if steps < 0:
        raise InputError("--steps", None, f"expected 0 or more, got {steps}")
    if replications is not None and replications < 1:
        raise InputError("--replications", None, f"expected 1 or more, got {replications}")
    sweep = load_sweep(sweep_path, list(sets), max_runs=max_runs)
    plan = plan_boundary(sweep, factor, low, high, replications, plugins)
    axis = plan.axis
    most = len(plan.combinations) * (steps + 2) * plan.replications
    if most > max_runs:
        what = (f"{len(plan.combinations)} combinations x up to {steps + 2} probes x {plan.replications} "
                "replications")  # fmt: skip
        raise InputError("--steps", None, runs_limit_message(what, most, max_runs))
    bisections = [Bisection(axis.low, axis.high, steps, axis.granule) for _ in plan.combinations]
    probes = runs = 0
    with make_backend(executor, jobs, scheduler) as backend:
        while requests := [(i, v) for i, b in enumerate(bisections) for v in b.pending()]:
            counts = run_probes(plan, requests, backend)
            for i, value in requests:
                c = counts[(i, value)]
                bisections[i].record(value, Observation(c.failures, c.calls, c.runs, c.errors))
            probes, runs = probes + len(requests), runs + len(requests) * plan.replications
            if on_step is not None:
                on_step(probes, runs)
    found = tuple(CombinationBoundary(c, b.result()) for c, b in zip(plan.combinations, bisections))
    return BoundaryResult(sweep.source, sweep.name, axis, STRATEGY, plan.replications, steps, sweep.seed,
                          tuple(sets), found)  # fmt: skip


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _rate_text(probe: Probe | None) -> str:
    """``12.3 [8.1, 18.6]``, or ``0 (< 3.1)`` when no failure was observed."""
    if probe is None:
        return "-"
    rate, lo, hi = probe.rate()
    if math.isnan(rate):
        return "no calls"
    if not probe.failing:
        return f"0 (< {_number(hi)})"
    return f"{_number(rate)} [{_number(lo)}, {_number(hi)}]"


def _number(x: float) -> str:
    """Three significant digits, without an exponent up to 10^7: 0.0123, 3.84, 1322."""
    return f"{x:.0f}" if 1000 <= x < 1e7 else f"{x:.3g}"


def _where(result: BoundaryResult, b: Boundary) -> str:
    """The boundary in words: ``failures below 352MiB (at 320MiB; none at 352MiB)``."""
    show = result.axis.show
    if b.outcome != BRACKET:
        return b.outcome + (f": {b.error}" if b.error else "")
    side = "at and below" if b.direction == FALLING else "at and above"
    return f"failures {side} {show(b.failing)}, none observed at {show(b.clean)}"


def boundary_lines(result: BoundaryResult) -> list[str]:
    """The printed table: one row per combination (the bracket and its two probes' rates),
    then every probe of each combination with its rate and Wilson interval."""
    axis, show = result.axis, result.axis.show
    lines = [f"{result.name}: where {result.strategy} split failures appear along {axis.key}, "
             f"{show(axis.low)}..{show(axis.high)}; {result.replications} run(s) per probe, "
             f"up to {result.steps} steps; rates per 10^6 vmalloc calls [Wilson 95%]"]  # fmt: skip
    head = ("combination", "no failure at", "failures at", "its rate", "its rate", "boundary")
    rows = []
    for c in result.combinations:
        b = c.boundary
        clean = b.probe_at(b.clean) if b.clean is not None else None
        failing = b.probe_at(b.failing) if b.failing is not None else None
        rows.append((c.label(), show(b.clean), show(b.failing), _rate_text(clean), _rate_text(failing),
                     _where(result, b)))  # fmt: skip
    lines += _aligned([head, *rows])
    for c in result.combinations:
        lines.append("")
        lines.append(f"{c.label()}: {len(c.boundary.probes)} probes")
        probe_rows = [(axis.key, "runs", "failures", "vmalloc calls", "rate /10^6 [95%]")]
        for p in c.boundary.probes:
            probe_rows.append((show(p.value), str(p.runs), str(p.failures), str(p.calls), _rate_text(p)))
        lines += ["  " + line for line in _aligned(probe_rows)]
    lines += ["", f"note: {NOTE}"]
    return lines


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def boundary_rows(result: BoundaryResult) -> list[dict[str, Any]]:
    """boundary.csv: one row per combination; values in the factor's unit (bytes for sizes)
    beside their text, the rates per 10^6 vmalloc calls with their Wilson 95% interval."""
    rows = []
    for c in result.combinations:
        b = c.boundary
        row: dict[str, Any] = {"sweep": result.name, "factor": result.axis.key}
        row.update({k: _text(v) for k, v in c.values.items()})
        row.update(outcome=b.outcome, direction=b.direction or "", clean=b.clean, failing=b.failing,
                   clean_text=result.axis.show(b.clean), failing_text=result.axis.show(b.failing))  # fmt: skip
        for name, value in (("clean", b.clean), ("failing", b.failing)):
            probe = b.probe_at(value) if value is not None else None
            rate, lo, hi = probe.rate() if probe is not None else (math.nan,) * 3
            row.update({f"{name}_rate_per_million": rate, f"{name}_lo": lo, f"{name}_hi": hi})
        row.update(probes=len(b.probes), replications=result.replications, strategy=result.strategy, error=b.error)
        rows.append(row)
    return rows


def boundary_json(result: BoundaryResult) -> dict[str, Any]:
    """boundary.json: the search and every probe of every combination (NaN written as null)."""

    def number(x: float) -> float | None:
        return None if math.isnan(x) else x

    combos = []
    for c in result.combinations:
        b = c.boundary
        probes = [{"value": p.value, "text": result.axis.show(p.value), "runs": p.runs, "failures": p.failures,
                   "vmalloc_calls": p.calls, **dict(zip(("rate_per_million", "lo", "hi"), map(number, p.rate())))}
                  for p in b.probes]  # fmt: skip
        combos.append({"values": c.values, "outcome": b.outcome, "direction": b.direction, "clean": b.clean,
                       "failing": b.failing, "error": b.error, "probes": probes})  # fmt: skip
    axis = result.axis
    return {
        "sweep": {"file": str(Path(result.source).resolve()), "name": result.name, "cli_set": list(result.cli_set)},
        "factor": {"key": axis.key, "kind": axis.kind, "low": axis.low, "high": axis.high, "granule": axis.granule},
        "strategy": result.strategy,
        "replications": result.replications,
        "steps": result.steps,
        "root_seed": result.seed,
        "note": NOTE,
        "combinations": combos,
    }


def write_boundary(result: BoundaryResult, folder: str | Path) -> list[Path]:
    """Write boundary.csv and boundary.json into ``folder`` (each atomically); their paths."""
    folder = Path(folder)
    rows = boundary_rows(result)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = [folder / "boundary.csv", folder / "boundary.json"]
    atomic_write_bytes(paths[0], text.getvalue().encode())
    write_json(paths[1], boundary_json(result))
    return paths
