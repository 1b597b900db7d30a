"""``vmsim sweep``: a sweep file's grid points x strategies x replications into one folder.

:func:`prepare_sweep` checks the request before any simulating (executor, scheduler, the
sweep file with its ``--set`` overrides, the folder); :func:`execute_sweep` estimates the
computing time (not again on ``--resume``) and runs the sweep with :mod:`sim.sweep.runner`,
which keeps every finished chunk for a later ``--resume``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.app.options import check_out_folder, estimate
from sim.schema.errors import InputError


@dataclass(frozen=True)
class SweepRequest:
    """A checked ``vmsim sweep`` request."""

    source: Path
    plan: Any  # sim.config.sweepfile.SweepPlan
    sets: tuple[str, ...]
    executor: str
    jobs: int | None
    scheduler: str | None
    target: Path
    out_given: bool
    plugins: tuple[str, ...]

    @property
    def workers(self) -> int:
        """Workers the estimate assumes (a Dask cluster's size is not known here: this machine's)."""
        return 1 if self.executor == "serial" else self.jobs or os.cpu_count() or 1

    def where(self) -> str:
        """``executor process -j 2`` and the like, for the header line."""
        if self.scheduler:
            return f"executor {self.executor} scheduler {self.scheduler}"
        return f"executor {self.executor}" + (f" -j {self.jobs or os.cpu_count()}" if self.executor != "serial" else "")

    def kept_runs(self) -> int:
        """Runs of this sweep the folder holds finished (what an interrupted sweep keeps)."""
        from sim.sweep.runner import kept_runs

        return kept_runs(self.plan, self.target)

    def resume_command(self) -> str:
        """The command line that continues this sweep where it stopped."""
        again = ["vmsim", "sweep", str(self.source), "--resume", *(f"--set {text}" for text in self.sets)]
        again += [f"--plugin {path}" for path in self.plugins]
        again += ["--out", str(self.target)] if self.out_given else []
        return " ".join(again)


def prepare_sweep(
    source: Path,
    sets: list[str],
    *,
    executor: str | None,
    jobs: int | None,
    scheduler: str | None,
    out: Path | None,
    max_runs: int,
    plugins: tuple[str, ...] = (),
    check_folder: bool = True,
) -> SweepRequest:
    """Check the executor options and load the sweep (with ``sets`` applied to its base
    scenario); the folder is ``out`` or results/<sweep name>, checked unless ``check_folder``
    is off (a dry run writes nothing)."""
    from sim.config.sweepfile import load_sweep
    from sim.sweep.executors import EXECUTORS

    if executor is not None and executor not in EXECUTORS:
        raise InputError("--executor", None, f"expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None and executor not in (None, "dask"):
        raise InputError("--scheduler", None, f"needs --executor dask, not {executor}")
    plan = load_sweep(source, sets, max_runs=max_runs)
    target = Path(out) if out is not None else Path("results") / plan.name
    if check_folder:
        check_out_folder(target)
    chosen = executor or ("dask" if scheduler else "process")
    return SweepRequest(Path(source), plan, tuple(sets), chosen, jobs, scheduler, target, out is not None, plugins)


def dry_run_lines(plan: Any) -> list[str]:
    """One line per grid point: its index, factor values and scenario hash."""
    lines = []
    for p in plan.points:
        values = " ".join(f"{k}={v}" for k, v in p.values.items())
        lines.append(f"  p{p.index:04d} {values}  (scenario {p.scenario_hash[:12]})")
    return lines


def execute_sweep(
    request: SweepRequest,
    *,
    resume: bool = False,
    chunk: int | None = None,
    sure: bool = False,
    argv: list[str] | None = None,
    on_estimate: Callable[[str], None] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> Any:
    """Estimate from the first and last grid point (not on ``resume``: the sweep was estimated
    when it started), then run it; the :class:`sim.sweep.runner.SweepOutcome`."""
    from sim.sweep.runner import run_sweep

    plan = request.plan
    if not resume:
        corners = [plan.points[0], plan.points[-1]] if len(plan.points) > 1 else [plan.points[0]]
        probes = [(plan.scenario(p), p.index) for p in corners]
        line = estimate(str(request.source), probes, plan.seed, len(plan.runs()), request.workers, sure)
        if on_estimate is not None:
            on_estimate(line)
    return run_sweep(
        plan, request.target, executor=request.executor, jobs=request.jobs, scheduler=request.scheduler,
        resume=resume, chunk_size=chunk, argv=list(argv or []), progress=progress, plugins=request.plugins,
    )  # fmt: skip
