"""The runs of a boundary search: one numeric factor of a sweep, probed at chosen values.

``vmsim boundary`` bisects one factor (``machine.ram``, ``workloads.0.workers``) for the
value where split GFP_NOWAIT failures appear; the bisection itself is
:mod:`sim.analysis.boundary`.  This module says what a probe runs and runs it:

- :func:`plan_boundary` checks the factor against the sweep (a factor of the sweep or any
  scenario key, numeric: a size, a count or a number), finds its range (the sweep's
  smallest and largest value unless given) and the *combinations* of the sweep's other
  factors (swap off, swap 200MiB/s): the boundary is searched separately in each;
- a probe is the sweep's base scenario (its ``set`` and ``--set`` applied) with one
  combination and the factor at the probe value, run for every replication under the
  ``nowait`` strategy (v5.2's GFP_NOWAIT split, the question's baseline);
- :func:`run_probes` runs the probes of one bisection step, for every combination at
  once, through a :mod:`sim.sweep.executors` backend, one task per run.

Seeds: a probe run's SeedSequence is spawned from the sweep's root seed with the key
(probe key, replication), where the probe key is a hash of the factor, the combination and
the probe value; so the same command gives the same counts whatever the executor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sim.config.paths import PathError, describe_error, dotted, parse_override
from sim.config.scenario import Scenario
from sim.config.sweepfile import SweepPlan, key_loc, point_data
from sim.config.yamlpos import Loc
from sim.engine.plugins import load_plugins
from sim.engine.run import run_once
from sim.schema.errors import InputError
from sim.schema.units import format_size
from sim.sweep.executors import Backend

STRATEGY = "nowait"  # v5.2: the NE_FIT split's object taken with GFP_NOWAIT, no preload
SIZE, INTEGER, NUMBER = "size", "integer", "number"
_MIB, _PAGE = 1 << 20, 4096

Number = int | float


@dataclass(frozen=True)
class FactorAxis:
    """The bisected factor: its key, what its values are, and the range searched."""

    key: str
    kind: str  # SIZE (bytes), INTEGER (a count) or NUMBER (a real number)
    low: Number
    high: Number

    @property
    def granule(self) -> int | None:
        """The step of the values probed: 1 for counts, for sizes the largest of 1 MiB, a page
        and a byte that divides both ends (so that 592MiB reads as such); None for numbers."""
        if self.kind == NUMBER:
            return None
        if self.kind == SIZE:
            return next(g for g in (_MIB, _PAGE, 1) if self.low % g == 0 and self.high % g == 0)
        return 1

    def show(self, value: Number | None) -> str:
        """A value as a reader writes it: 336MiB for a size, 128 for a count."""
        if value is None:
            return "-"
        if self.kind == SIZE:
            return format_size(int(value))
        return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class BoundaryPlan:
    """What a boundary search runs: the sweep, the factor, the combinations of the other factors."""

    sweep: SweepPlan
    axis: FactorAxis
    combinations: tuple[dict[str, Any], ...]  # other factor -> value as the sweep file writes it
    replications: int
    plugins: tuple[str, ...] = ()

    def overrides(self, combination: int, value: Number) -> tuple[tuple[Loc, Any], ...]:
        """The overrides that turn the base scenario into the probe of ``value`` in ``combination``."""
        others = [(key_loc(k), v) for k, v in self.combinations[combination].items()]
        return (*others, (key_loc(self.axis.key), value))


@dataclass(frozen=True)
class ProbeRun:
    """One run of one probe, for a worker; small and picklable."""

    combination: int
    value: Number
    replication: int
    base_data: dict[str, Any]
    overrides: tuple[tuple[Loc, Any], ...]
    root_seed: int
    probe_key: int
    plugins: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeRunDone:
    """What the parent keeps of a probe run."""

    failures: int
    calls: int
    status: str
    error: str


@dataclass(frozen=True)
class ProbeCounts:
    """A probe's runs pooled: split NOWAIT failures, vmalloc calls, runs, and run errors."""

    failures: int
    calls: int
    runs: int
    errors: tuple[str, ...]


def plan_boundary(
    sweep: SweepPlan,
    key: str,
    low: str | None = None,
    high: str | None = None,
    replications: int | None = None,
    plugins: tuple[str, ...] = (),
) -> BoundaryPlan:
    """Check ``key`` against ``sweep`` and fix the range: ``low``/``high`` (values as on the
    command line, e.g. "160MiB") or else the sweep's smallest and largest value of the factor.
    An InputError (one line naming the sweep file and the key) if the key is no scenario key,
    its values are not numeric, or there is no range."""
    source = sweep.source
    loc = key_loc(key)
    try:  # a key the scenario schema has (its value is checked below)
        point_data(sweep.base_data, [(loc, None)])
    except PathError as err:
        raise InputError(source, None, f"--factor {key}: {err}") from None
    for other in sweep.factors:
        there = key_loc(other)
        if other != key and (loc[: len(there)] == there or there[: len(loc)] == loc):
            raise InputError(source, None, f"--factor {key}: overlaps factor {other} of the sweep")
    combinations = _combinations(sweep, key)
    first = combinations[0]
    lo, hi = _range(sweep, first, key, low, high)
    kind = NUMBER if isinstance(lo, float) or isinstance(hi, float) else _kind(sweep, first, key, lo)
    if kind == NUMBER:
        lo, hi = float(lo), float(hi)
    for combo in combinations[1:]:  # every combination must accept both ends
        for where, value in (("the low end", lo), ("the high end", hi)):
            _resolve(sweep, combo, key, value, where)
    reps = replications if replications is not None else sweep.replications
    return BoundaryPlan(sweep, FactorAxis(key, kind, lo, hi), combinations, reps, tuple(plugins))


def _combinations(sweep: SweepPlan, key: str) -> tuple[dict[str, Any], ...]:
    """The distinct values of the sweep's other factors among its points, in grid order."""
    combos: dict[str, dict[str, Any]] = {}
    for point in sweep.points:
        others = {k: v for k, v in point.values.items() if k != key}
        combos.setdefault(json.dumps(others, sort_keys=True, default=str), others)
    return tuple(combos.values())


def _range(sweep: SweepPlan, combo: dict[str, Any], key: str, low: str | None, high: str | None) -> tuple[Any, Any]:
    """(low, high) as the scenario holds them: the given ends, else the sweep's extreme values;
    each checked to be numeric."""
    source = sweep.source
    written = [(f"--low {low}", low), (f"--high {high}", high)]
    given = [(where, _parse(source, key, text)) for where, text in written if text is not None]
    swept = [(f"factors.{key}[{i}]", v) for i, v in enumerate(sweep.factors.get(key, []))]
    resolved = {where: _resolve(sweep, combo, key, value, where) for where, value in swept + given}
    for where, value in resolved.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(source, None, f"--factor {key}: expected a numeric factor (a size, a count or a "
                             f"number); {where} gives {_plain(value)}")  # fmt: skip
    values = [resolved[where] for where, _ in swept]
    ends = {where.split()[0]: resolved[where] for where, _ in given}
    if not values and len(ends) < 2:
        message = "not a factor of this sweep; give its range with --low and --high"
        raise InputError(source, None, f"--factor {key}: {message}")
    lo = ends.get("--low", min(values) if values else None)
    hi = ends.get("--high", max(values) if values else None)
    if not lo < hi:
        raise InputError(source, None, f"--factor {key}: expected a range with low < high, got {lo} to {hi}")
    return lo, hi


def _parse(source: str, key: str, text: str) -> Any:
    try:
        return parse_override(f"{key}={text}")[1]
    except ValueError as err:
        raise InputError(source, None, f"--factor {key}: {err}") from None


def _scenario(sweep: SweepPlan, combo: dict[str, Any], key: str, value: Any, where: str) -> Scenario:
    """The base scenario with ``combo`` and ``key`` = ``value``; an InputError naming ``where``."""
    overrides = [(key_loc(k), v) for k, v in combo.items()] + [(key_loc(key), value)]
    try:
        data = point_data(sweep.base_data, overrides)
    except PathError as err:
        raise InputError(sweep.source, None, f"--factor {key}: {err}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        at, message = describe_error(err.errors()[0], data, Scenario)
        raise InputError(sweep.source, None, f"--factor {key}: {where}: {dotted(at)}: {message}") from None


def _resolve(sweep: SweepPlan, combo: dict[str, Any], key: str, value: Any, where: str) -> Any:
    """The value at ``key`` as the validated scenario holds it (bytes for "256MiB")."""
    return _walk(_scenario(sweep, combo, key, value, where), key_loc(key))


def _kind(sweep: SweepPlan, combo: dict[str, Any], key: str, value: int) -> str:
    """SIZE if the scenario writes the integer factor back with a unit, else INTEGER."""
    dumped = _walk(_scenario(sweep, combo, key, value, "").model_dump(), key_loc(key))
    return SIZE if isinstance(dumped, str) else INTEGER


def _walk(node: Any, loc: Loc) -> Any:
    for part in loc:
        node = node[part] if isinstance(part, int) or isinstance(node, dict) else getattr(node, part)
    return node


def _plain(value: Any) -> str:
    return "off" if value is None else repr(value)


def probe_key(axis_key: str, combination: dict[str, Any], value: Number) -> int:
    """The seed key of a probe: a 32-bit hash of the factor, the combination and the value."""
    text = json.dumps([axis_key, combination, value], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def run_probe(task: ProbeRun) -> ProbeRunDone:
    """Build and run one probe run under :data:`STRATEGY` (in a worker process)."""
    load_plugins(task.plugins)
    try:
        scenario = Scenario.model_validate(point_data(task.base_data, list(task.overrides)))
    except Exception as err:  # the ends were validated; a value between them may still be refused
        return ProbeRunDone(0, 0, "error", f"cannot build the probe: {type(err).__name__}: {err}")
    result = run_once(scenario, STRATEGY, task.replication, task.root_seed, task.probe_key)
    row = result.row
    return ProbeRunDone(int(row["split_nowait_failures"]), int(row["vmalloc_calls"]), row["status"], row["error"])


def probe_runs(plan: BoundaryPlan, requests: Iterable[tuple[int, Number]]) -> list[ProbeRun]:
    """The runs of the probes ``requests`` ((combination, value) pairs), every replication."""
    runs = []
    for combination, value in requests:
        key = probe_key(plan.axis.key, plan.combinations[combination], value)
        overrides = plan.overrides(combination, value)
        for k in range(plan.replications):
            runs.append(ProbeRun(combination, value, k, plan.sweep.base_data, overrides, plan.sweep.seed, key,
                                 plan.plugins))  # fmt: skip
    return runs


def run_probes(
    plan: BoundaryPlan, requests: list[tuple[int, Number]], backend: Backend
) -> dict[tuple[int, Number], ProbeCounts]:
    """Run the probes ``requests`` on ``backend`` and pool each one's runs.  A run that ends in a
    simulator error (status "error") or a worker crash is kept as an error message; a kernel
    panic is a result (its counters count), as in the answer's tables."""
    found: dict[tuple[int, Number], list[tuple[int, ProbeRunDone]]] = {r: [] for r in requests}
    for task, result in backend.map_unordered(run_probe, probe_runs(plan, requests)):
        if not isinstance(result, ProbeRunDone):
            result = ProbeRunDone(0, 0, "error", f"worker crash: {type(result).__name__}: {result}")
        found[(task.combination, task.value)].append((task.replication, result))
    counts = {}
    for request, done in found.items():
        done.sort(key=lambda pair: pair[0])  # the order runs finished in must not matter
        usable = [r for _, r in done if r.status != "error"]
        errors = tuple(f"replication {k}: {r.error}" for k, r in done if r.status == "error")
        counts[request] = ProbeCounts(sum(r.failures for r in usable), sum(r.calls for r in usable), len(done), errors)
    return counts
