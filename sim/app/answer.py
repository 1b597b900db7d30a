"""``vmsim answer``: run the answer suite, draw its figures, write its report.

The suite is every sweep file in ``scenarios/answer/`` (each over a base
scenario in ``scenarios/answer/base/``, or over a reproduction's own scenario
in ``scenarios/``, as rezki-2019-1gb is).  Each sweep runs into its own folder
under the output folder with the sweep machinery (so an interrupted answer
resumes), then :mod:`sim.analysis.plots` draws each sweep's figures and
:mod:`sim.analysis.report` writes ``report.md`` and ``report.txt``.

The ``uptime-*`` sweeps (the 2019 reproductions over 400 simulated seconds: a few
runs of minutes each) run in a background lane, a child process beside the rest
(:mod:`sim.app.lane`), so that no core waits for the last long run.  After the
sweeps, ``BOUNDARY_SEARCHES`` bisect where failures begin (``vmsim boundary``) into
``boundary/<name>/``.

``--quick`` runs a reduced suite derived from the same files, and says so in
the sweep files it writes next to the results: every sweep keeps only the
first and last value of each factor, one replication, and at most
``QUICK_DURATION`` simulated seconds.

After the suite, the sensitivity sweeps in ``scenarios/answer/sensitivity/`` (which
:func:`suite_files` does not pick up) run the same way into ``<out>/sensitivity/<name>/``,
reduced the same way by ``--quick``, and :mod:`sim.analysis.sensitivity` draws their
tornado chart for the report's "How sure" section.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sim.schema.errors import InputError

if TYPE_CHECKING:
    from sim.config.sweepfile import SweepPlan

ANSWER_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "answer"
QUICK_DURATION = "1.5s"


@dataclass(frozen=True)
class BoundarySearch:
    """One ``vmsim boundary`` search the answer runs: a sweep file of the suite, the factor
    bisected (each combination of the sweep's other factors apart), extra ``--set`` strings."""

    name: str
    sweep: str
    factor: str
    sets: tuple[str, ...] = ()


# Where failures begin: RAM with the tenants in proportion to it (fork-ram's swap off and
# on are its two combinations), and fork workers at 256 MiB without and with swap.
BOUNDARY_SEARCHES = (
    BoundarySearch("ram", "fork-ram.yaml", "machine.ram"),
    BoundarySearch("workers", "fork-workers.yaml", "workloads.0.workers"),
    BoundarySearch("workers-swap", "fork-workers.yaml", "workloads.0.workers", ("machine.swap=200MiB/s",)),
)
BOUNDARY_STEPS = 4  # midpoints after the two ends
BOUNDARY_REPLICATIONS = 2
# Where ``vmsim answer`` writes unless told (gitignored): never over the committed copy of the
# answer in results/answer/, which changes only when asked for with ``--out results/answer``.
DEFAULT_OUT = Path("results") / "answer-local"
QUICK_OUT = Path("results") / "answer-quick"
SENSITIVITY = "sensitivity"  # the folder of the sensitivity sweeps, in the suite and in the output


def default_out(quick: bool = False) -> Path:
    """The output folder of ``vmsim answer`` without ``--out``: a gitignored folder beside the
    committed answer (``results/answer-local``, or ``results/answer-quick`` for ``--quick``), so
    that ``make run`` leaves ``results/answer/`` as committed."""
    return QUICK_OUT if quick else DEFAULT_OUT


def suite_files(folder: Path = ANSWER_DIR) -> list[Path]:
    """The sweep files of the suite, in name order."""
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        raise InputError(str(folder), None, "no sweep files (*.yaml) in the answer suite folder")
    return files


def sensitivity_files(folder: Path = ANSWER_DIR) -> list[Path]:
    """The sensitivity sweep files of the suite (``folder/sensitivity/*.yaml``), in name order;
    none if the suite has no such folder."""
    return sorted((Path(folder) / SENSITIVITY).glob("*.yaml"))


def quick_sweep(path: Path, out_dir: Path, folder: str = "quick-sweeps") -> Path:
    """A reduced copy of sweep file ``path`` written into ``out_dir/folder`` (see the module doc)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    data["scenario"] = str((Path(path).parent / data["scenario"]).resolve())
    data["factors"] = {k: (v if len(v) <= 2 else [v[0], v[-1]]) for k, v in (data.get("factors") or {}).items()}
    data.pop("filter", None)
    data["replications"] = 1
    data.setdefault("set", {})
    data["set"]["duration"] = QUICK_DURATION
    target = Path(out_dir) / folder / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# --quick form of {Path(path).name}: first and last factor values, 1 replication, {QUICK_DURATION}\n"
    target.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return target


def planned_sweeps(suite: Path, out: Path, quick: bool) -> list[tuple[SweepPlan, Path, str]]:
    """Every sweep ``vmsim answer`` runs, in order, as (plan, output folder, name): the suite's
    sweeps into ``out/<name>``, then its sensitivity sweeps into ``out/sensitivity/<name>``
    (named ``sensitivity/<name>``); with ``quick`` each is planned from its reduced copy."""
    from sim.config.sweepfile import load_sweep

    out = Path(out)
    parts = [
        (suite_files(suite), "quick-sweeps", out, ""),
        (sensitivity_files(suite), f"quick-sweeps/{SENSITIVITY}", out / SENSITIVITY, f"{SENSITIVITY}/"),
    ]
    planned = []
    for files, quick_folder, parent, prefix in parts:
        for path in files:
            plan = load_sweep(quick_sweep(path, out, quick_folder) if quick else path)
            planned.append((plan, parent / plan.name, prefix + plan.name))
    return planned


def run_answer(
    out: Path,
    *,
    quick: bool = False,
    executor: str = "process",
    jobs: int | None = None,
    argv: list[str] | None = None,
    progress: Callable[[str, int, int, int], None] | None = None,
    suite: Path = ANSWER_DIR,
    plugins: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run every sweep of the suite into ``out/<sweep name>/`` (resuming what is
    there), draw the figures, write ``out/report.md``; returns a summary.  ``plugins``
    (plug-in files, loaded by the caller) go to the sweeps' workers."""
    from sim.analysis.plots import plot_folder
    from sim.analysis.report import draw_uptime, draw_user_view, load_suite, write_report
    from sim.analysis.sensitivity import draw_sensitivity
    from sim.analysis.uptime import UPTIME_PREFIX
    from sim.app.lane import start_lane, stop_lane
    from sim.sweep.executors import EXECUTORS
    from sim.sweep.runner import run_sweep

    if executor not in EXECUTORS:
        raise InputError("--executor", None, f"expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"sweeps": {}}
    # every sweep file is read (and checked) before anything runs
    planned = planned_sweeps(suite, out, quick)
    # the long uptime sweeps go to a background lane beside the rest (sim/app/lane.py), when
    # the runs may use more than one CPU at all
    lanes = executor == "process" and (jobs or os.cpu_count() or 1) > 1
    background = [
        (plan, target, name)
        for plan, target, name in planned
        if lanes and target.parent == out and plan.name.startswith(UPTIME_PREFIX)
    ]
    behind = {name for _, _, name in background}
    lane = start_lane([Path(p.source) for p, _, _ in background], out, plugins, jobs) if background else None

    def run_one(plan: Any, target: Path, name: str) -> None:

        def report_progress(done: int, failed: int, total: int, name: str = name) -> None:
            if progress is not None:
                progress(name, done, failed, total)

        outcome = run_sweep(
            plan, target, executor=executor, jobs=jobs, resume=(target / "manifest.json").exists(), argv=argv,
            progress=report_progress, plugins=plugins,
        )  # fmt: skip
        summary["sweeps"][name] = {"runs": outcome.total, "statuses": dict(outcome.statuses)}
        if target.parent == out:  # the sensitivity sweeps' figure is the tornado chart, drawn below
            factors = list(plan.factors)
            plot_folder(target, x=factors[0] if factors else None)

    try:
        for plan, target, name in planned:
            if name not in behind:
                run_one(plan, target, name)
        summary["boundaries"] = run_boundaries(out, suite, quick=quick, executor=executor, jobs=jobs, plugins=plugins)
        if lane is not None:
            lane.wait()
        # what the lane ran is merged here (a run it did not finish runs now); then drawn
        for item in background:
            run_one(*item)
    except BaseException:
        if lane is not None:
            stop_lane(lane)
        raise
    suite_tables = load_suite(out)  # once, for the answer's own figures and the report
    draw_user_view(suite_tables)
    draw_uptime(suite_tables)
    draw_sensitivity(out)
    summary["report"] = str(write_report(out, suite_tables))
    return summary


def run_boundaries(
    out: Path,
    suite: Path = ANSWER_DIR,
    *,
    quick: bool = False,
    executor: str = "process",
    jobs: int | None = None,
    plugins: tuple[str, ...] = (),
) -> dict[str, str]:
    """Each of ``BOUNDARY_SEARCHES`` whose sweep file is in the suite, into
    ``out/boundary/<name>/`` (boundary.csv and boundary.json); a search whose folder already
    holds its result with the same settings is kept (an interrupted answer resumes).
    ``--quick``: one replication, one midpoint, ``QUICK_DURATION``.  Returns name -> folder."""
    import json

    from sim.app.boundary import find_boundaries, write_boundary
    from sim.record.results import atomic_write_bytes

    done: dict[str, str] = {}
    for search in BOUNDARY_SEARCHES:
        path = Path(suite) / search.sweep
        if not path.exists():
            continue
        sets = (*search.sets, f"duration={QUICK_DURATION}") if quick else search.sets
        steps, replications = (1, 1) if quick else (BOUNDARY_STEPS, BOUNDARY_REPLICATIONS)
        target = Path(out) / "boundary" / search.name
        settings = {"sweep": str(path.resolve()), "factor": search.factor, "sets": list(sets), "steps": steps,
                    "replications": replications}  # fmt: skip
        marker = target / "search.json"
        if marker.exists() and (target / "boundary.json").exists() and json.loads(marker.read_text()) == settings:
            done[search.name] = str(target)
            continue
        result = find_boundaries(path, search.factor, sets=sets, replications=replications, steps=steps,
                                 executor=executor, jobs=jobs, plugins=plugins)  # fmt: skip
        write_boundary(result, target)
        atomic_write_bytes(marker, (json.dumps(settings, indent=1) + "\n").encode())
        done[search.name] = str(target)
    return done
