"""``vmsim judge DESIGN...``: run designs and a baseline on answer workloads, write a design report.

A design is ``STRATEGY[@KERNEL]``: a split-object strategy (built in, or a plug-in's loaded
with ``--plugin FILE.py``) and optionally a kernel profile; without ``@KERNEL`` it keeps each
sweep's own kernel.  The baseline (``--baseline``, default ``nowait@5.2``: the kernel without
the 2019 preload) is judged the same way.  A workload is a sweep of the answer suite
(``scenarios/answer/``).

The runs reuse the sweep machinery: for each (workload, side) a derived sweep file, the
workload's sweep with its ``strategies`` set to the side's strategy, its ``set.kernel`` to the
side's kernel, ``replications`` to ``--reps`` (and ``--duration``, ``--quick`` applied), is
written to ``<out>/sweeps/<workload>/<label>.yaml`` and run into ``<out>/<workload>/<label>/``.
Every side of a workload has the same factors, points and root seed, so the run of point p,
replication k has the same seed on every side (the seed is (root seed, point, replication);
neither strategy nor kernel is in it): common random numbers, pair by pair.  Each folder is
an ordinary sweep folder, so an interrupted judge resumes, a side already run for another
judge with the same settings is reused, and the tables are the same whatever the executor.
:mod:`sim.analysis.judge` pairs the runs and writes ``report.md`` and ``paired.csv``.

Default workloads, :data:`DEFAULT_WORKLOADS`: ``fork-ram`` (the fork storm of Rezki's
reproduction from 160 MiB to 1 GiB, swap off and on: where the split's GFP_NOWAIT fails and
where it does not, so a design is seen both where it should help and where it can only cost)
and ``test-vmalloc`` (the kernel's own lib/test_vmalloc cases on an unpressured machine: every
fit type and the vmap lock under a steady load, where a design's lock hold time and memory
held aside show without memory pressure blurring them).  ``all`` is the whole suite but the
``uptime-*`` reproductions (400 simulated seconds each, two replications: the judge needs
more) and the sensitivity sweeps (they vary the model, not the workload).

A design's kernel without the sweep's slab allocator (SLAB was removed in 6.8, and the fork
storm runs SLAB) runs with the kernel's allocator instead; the report says so.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sim.app.answer import ANSWER_DIR, QUICK_DURATION, suite_files
from sim.schema.errors import InputError

DEFAULT_BASELINE = "nowait@5.2"
DEFAULT_WORKLOADS = ("fork-ram", "test-vmalloc")
DEFAULT_REPS = 4
DEFAULT_OUT = Path("results") / "judge-local"
LEFT_OUT = ("uptime-",)  # sweeps `all` does not take: minutes of simulated time per run
JUDGE_KEYS = ("kernel", "strategies", "replications", "duration")  # what a side or an option sets


@dataclass(frozen=True)
class Design:
    """One side of a comparison: a strategy and, optionally, a kernel profile."""

    strategy: str
    kernel: str | None = None

    @property
    def label(self) -> str:
        """``preload@5.3``, or ``mempool`` for a design that keeps each sweep's kernel."""
        return f"{self.strategy}@{self.kernel}" if self.kernel else self.strategy


@dataclass(frozen=True)
class SideRun:
    """One side of one workload: its derived sweep plan and the folder it runs into."""

    workload: str
    design: Design
    plan: Any  # sim.config.sweepfile.SweepPlan of the derived sweep
    target: Path
    source: Path  # the answer sweep it derives from
    own_kernel: str  # the kernel profile of that sweep's base scenario


def parse_design(text: str, what: str = "design") -> Design:
    """``STRATEGY[@KERNEL]`` checked against the strategy registry (plug-ins loaded first) and
    the kernel profiles; an InputError (one line) names the design and what is expected."""
    from sim.kernel.mm.vmalloc.strategies import STRATEGIES
    from sim.kernel.profile import PROFILES

    strategy, at, kernel = text.strip().partition("@")
    where = f"{what} {text!r}"
    if strategy not in STRATEGIES:
        known = ", ".join(STRATEGIES)
        raise InputError(where, None, f"unknown strategy {strategy!r}; expected STRATEGY[@KERNEL] with a strategy "
                         f"of {known}, or a plug-in's (--plugin FILE.py)")  # fmt: skip
    if at and kernel not in PROFILES:
        raise InputError(where, None, f"unknown kernel profile {kernel!r} after '@'; expected one of "
                         f"{', '.join(PROFILES)}")  # fmt: skip
    return Design(strategy, kernel or None)


def choose_workloads(text: str | None, suite: Path = ANSWER_DIR) -> list[Path]:
    """The sweep files named by ``--workloads`` (a comma list of answer sweep names or paths of
    sweep files ending in .yaml, or ``all``), in the order given; :data:`DEFAULT_WORKLOADS`
    without it.  A workload is known by its file's stem."""
    files = {path.stem: path for path in suite_files(suite)}
    if text is None:
        names = [name for name in DEFAULT_WORKLOADS if name in files] or list(files)[:1]
    elif text.strip() == "all":
        names = [name for name in files if not name.startswith(LEFT_OUT)]
    else:
        names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
        if not names:
            raise InputError("--workloads", None, "expected sweep names separated by commas, or all")
    chosen = []
    for name in names:
        if name.endswith((".yaml", ".yml")):  # a sweep file of the user's own, by its path
            path = Path(name)
            if not path.is_file():
                raise InputError("--workloads", None, f"{name}: no such sweep file")
            chosen.append(path)
        elif name not in files:
            raise InputError("--workloads", None, f"unknown workload {name!r}; expected answer sweeps "
                             f"({', '.join(files)}) or sweep files (.yaml) separated by commas, or all")  # fmt: skip
        else:
            chosen.append(files[name])
    stems = [path.stem for path in chosen]
    if len(set(stems)) < len(stems):
        raise InputError("--workloads", None, f"two workloads share the name {_first_twice(stems)!r}; rename one file")
    return chosen


def shown_workload(path: Path) -> str:
    """A workload as ``--workloads`` takes it: an answer sweep by name, another file by path."""
    return path.stem if path.resolve().parent == ANSWER_DIR.resolve() else shown_path(path)


def _first_twice(names: list[str]) -> str:
    return next(name for i, name in enumerate(names) if name in names[:i])


def derived_sweep(
    source: Path, design: Design, target: Path, reps: int, duration: str | None, quick: bool, slab: str | None,
    overrides: tuple[str, ...] = (),
) -> Path:
    """Write the sweep that runs ``design`` on workload ``source`` (see the module doc) to
    ``target``; ``slab`` replaces the base scenario's slab allocator when the design's kernel
    lacks it; ``overrides`` are ``--set`` strings, the same for every side.  Rewritten on every
    judge, with the same text for the same settings."""
    from sim.record.results import atomic_write_bytes

    data = yaml.safe_load(Path(source).read_text()) or {}
    # the base scenario as seen from the derived sweep's folder (a relative path: the folder
    # may be committed and checked out anywhere)
    base = (Path(source).parent / data["scenario"]).resolve()
    data["scenario"] = os.path.relpath(base, Path(target).parent.resolve())
    sets = dict(data.get("set") or {})
    reduced = ""
    if quick:
        data["factors"] = {k: (v if len(v) <= 2 else [v[0], v[-1]]) for k, v in (data.get("factors") or {}).items()}
        data.pop("filter", None)
        sets["duration"] = QUICK_DURATION
        reduced = f", --quick (first and last factor values, {QUICK_DURATION})"
    if duration is not None:
        sets["duration"] = duration
    for text in overrides:  # --set, on every side alike
        sets[set_key(text)] = yaml.safe_load(text.partition("=")[2])
    if design.kernel is not None:
        sets["kernel"] = design.kernel
    if slab is not None:
        sets["machine.slab"] = slab
    data["set"] = sets
    data["strategies"] = [design.strategy]
    data["replications"] = reps
    head = f"# vmsim judge: {Path(source).name} under {design.label}, {reps} replications{reduced}\n"
    atomic_write_bytes(Path(target), (head + yaml.safe_dump(data, sort_keys=False)).encode())
    return Path(target)


def set_key(text: str) -> str:
    """The KEY.PATH of a ``--set KEY.PATH=VALUE`` string."""
    return text.partition("=")[0].strip()


def folder_name(label: str) -> str:
    """A side's label as a folder name (a plug-in's strategy name may hold any character)."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", label)


def shown_path(path: str | Path) -> str:
    """A path for the report: relative to the working folder when inside it, else absolute."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _slab_for(plan: Any, kernel: str | None) -> str | None:
    """The slab allocator a design's kernel must use on this workload instead of the base's, if any."""
    from sim.kernel.profile import PROFILES

    if kernel is None or "machine.slab" in plan.factors:
        return None
    allocators = PROFILES[kernel].slab_allocators
    return None if plan.base.machine.slab in allocators else allocators[0]


def plan_judge(
    designs: list[Design],
    baseline: Design,
    workloads: list[Path],
    out: Path,
    reps: int,
    duration: str | None,
    quick: bool,
    overrides: tuple[str, ...] = (),
) -> tuple[list[SideRun], list[str]]:
    """Every (workload, side) to run, each derived sweep written and loaded (so every error is
    found before anything runs), and the notes the report adds (slab allocators replaced)."""
    from sim.config.sweepfile import load_sweep
    from sim.sweep.runner import plan_fingerprint

    sides = list({d.label: d for d in [baseline, *designs]}.values())
    slab_given = "machine.slab" in {set_key(text) for text in overrides}  # then no side's slab is replaced
    runs, notes = [], []
    for source in workloads:
        original = load_sweep(source)
        name = source.stem
        if "kernel" in original.factors and any(d.kernel for d in sides):
            raise InputError(str(source), None, "varies the kernel profile: judge it with designs without @KERNEL")
        for design in sides:
            slab = None if slab_given else _slab_for(original, design.kernel)
            if slab is not None:
                notes.append(f"kernel {design.kernel} has no {original.base.machine.slab}: {design.label} runs "
                             f"{name} with {slab} (the other sides keep {original.base.machine.slab}).")  # fmt: skip
            label = folder_name(design.label)
            path = derived_sweep(source, design, Path(out) / "sweeps" / name / f"{label}.yaml", reps, duration,
                                 quick, slab, overrides)  # fmt: skip
            plan = load_sweep(path)
            target = Path(out) / name / label
            _check_reusable(target, plan_fingerprint(plan))
            runs.append(SideRun(name, design, plan, target, Path(source), original.base.kernel))
    return runs, notes


def profile_notes(designs: list[Design]) -> list[str]:
    """For each kernel profile a side names, what of its kernel the profile does not model
    (``vmsim profiles``): a verdict on a kernel holds for the kernel as modelled."""
    from sim.kernel.profile import PROFILES

    kernels = dict.fromkeys(d.kernel for d in designs if d.kernel)
    return [f"kernel profile {k} does not model: {'; '.join(PROFILES[k].not_modelled)} (`vmsim profiles {k}`)."
            for k in kernels if PROFILES[k].not_modelled]  # fmt: skip


def _check_reusable(target: Path, fingerprint: str) -> None:
    """A side's folder must be new or hold the same sweep (then it resumes); refused before
    anything runs, not half-way through the judge."""
    manifest = target / "manifest.json"
    if not manifest.exists():
        return
    try:
        stored = json.loads(manifest.read_text())["sweep"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        stored = None
    if stored != fingerprint:
        raise InputError(str(target), None, "holds runs made with other settings (--reps, --duration, --quick "
                         "or the sweep file); give another --out or remove the folder")  # fmt: skip


def command_line(designs: list[Design], baseline: Design, workloads: list[Path], reps: int, duration: str | None,
                 quick: bool, plugins: tuple[str, ...], overrides: tuple[str, ...] = ()) -> str:  # fmt: skip
    """The ``vmsim judge`` command that repeats this judge (the report's header)."""
    parts = ["vmsim judge", *(d.label for d in designs), f"--baseline {baseline.label}",
             f"--workloads {','.join(shown_workload(p) for p in workloads)}", f"--reps {reps}"]  # fmt: skip
    parts += [f"--duration {duration}"] if duration else []
    parts += ["--quick"] if quick else []
    parts += [f"--set {text}" for text in overrides]
    parts += [f"--plugin {shown_path(p)}" for p in plugins]
    return " ".join(parts)


def judge_setup(runs: list[SideRun], designs: list[Design], baseline: Design, out: Path, reps: int, quick: bool,
                plugins: tuple[str, ...], command: str, notes: list[str]) -> Any:  # fmt: skip
    """The :class:`sim.analysis.judge.JudgeSetup` of this judge, for its report."""
    from sim.analysis.judge import JudgeSetup, Side, Workload
    from sim.engine.plugins import plugin_manifest
    from sim.record.strategy_info import strategy_info
    from sim.schema.units import format_duration

    files = plugin_manifest(plugins)["files"]
    defined = {name: entry["file"] for entry in files for name in entry["strategies"]}

    def side(design: Design) -> Side:
        info = strategy_info(design.strategy)
        plugin = shown_path(defined[design.strategy]) if design.strategy in defined else ""
        return Side(folder_name(design.label), design.strategy, design.kernel or "", info.commit if info else "",
                    plugin)  # fmt: skip

    workloads = [
        Workload(run.workload, shown_path(run.source), len(run.plan.points),
                 format_duration(run.plan.base.duration), run.plan.seed, run.own_kernel, run.plan.description)
        for run in runs
        if run.design == baseline
    ]  # fmt: skip
    ordered = list({d.label: d for d in designs}.values())
    return JudgeSetup(Path(out), side(baseline), tuple(side(d) for d in ordered), tuple(workloads), reps, command,
                      quick, tuple({**entry, "file": shown_path(entry["file"])} for entry in files),
                      tuple(dict.fromkeys(notes)))  # fmt: skip


def run_judge(
    designs: list[str],
    *,
    baseline: str = DEFAULT_BASELINE,
    workloads: str | None = None,
    reps: int = DEFAULT_REPS,
    duration: str | None = None,
    out: Path = DEFAULT_OUT,
    quick: bool = False,
    executor: str = "process",
    jobs: int | None = None,
    plugins: tuple[str, ...] = (),
    argv: list[str] | None = None,
    progress: Callable[[str, int, int, int], None] | None = None,
    suite: Path = ANSWER_DIR,
    sets: tuple[str, ...] = (),
    report_only: bool = False,
) -> dict[str, Any]:
    """Check the request, run every side of every workload (resuming what ``out`` holds), write
    report.md and paired.csv; a summary with the verdicts of the workloads.  ``plugins`` (files
    already loaded by the caller) go to the workers.  ``report_only``: run nothing, write the
    report from the runs ``out`` holds (e.g. a committed judge, whose sweep bookkeeping is not
    kept)."""
    from sim.analysis.judge_report import write_judge
    from sim.app.options import check_out_folder
    from sim.sweep.executors import EXECUTORS
    from sim.sweep.runner import run_sweep

    if executor not in EXECUTORS:
        raise InputError("--executor", None, f"expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if not designs:
        raise InputError("judge", None, "expected at least one design, STRATEGY[@KERNEL]")
    chosen = [parse_design(text) for text in designs]
    base = parse_design(baseline, "--baseline")
    if duration is not None:
        _check_duration(duration)
    files = choose_workloads(workloads, suite)
    check_out_folder(Path(out))
    for key in map(set_key, sets):
        if key in JUDGE_KEYS:
            raise InputError(f"--set {key}", None,
                             "set by the judge itself: give STRATEGY@KERNEL designs, --reps or --duration")  # fmt: skip
    runs, notes = plan_judge(chosen, base, files, Path(out), reps, duration, quick, sets)
    summary: dict[str, Any] = {"sweeps": {}}
    for run in runs:
        name = f"{run.workload}/{run.target.name}"
        if report_only:
            if not (run.target / "runs.parquet").exists():
                raise InputError(str(run.target), None, "no runs to report on: run the judge without --report-only")
            continue

        def report_progress(done: int, failed: int, total: int, name: str = name) -> None:
            if progress is not None:
                progress(name, done, failed, total)

        outcome = run_sweep(
            run.plan, run.target, executor=executor, jobs=jobs, resume=(run.target / "manifest.json").exists(),
            argv=argv, progress=report_progress, plugins=plugins,
        )  # fmt: skip
        summary["sweeps"][name] = {"runs": outcome.total, "statuses": dict(outcome.statuses)}
    notes += profile_notes([base, *chosen])
    command = command_line(chosen, base, files, reps, duration, quick, plugins, sets)
    setup = judge_setup(runs, chosen, base, Path(out), reps, quick, plugins, command, notes)
    report, csv = write_judge(setup)
    summary.update(report=str(report), csv=str(csv), verdicts=verdicts(csv))
    return summary


def verdicts(csv: Path) -> list[dict[str, Any]]:
    """The workload verdicts of a paired.csv: design, workload, verdict, difference, lo, hi."""
    import pandas as pd

    from sim.analysis.judge import PRIMARY

    table = pd.read_csv(csv)
    rows = table[(table["scope"] == "workload") & (table["measure"] == PRIMARY.key)]
    return rows[["design", "workload", "verdict", "difference", "lo", "hi", "n"]].to_dict("records")


def _check_duration(text: str) -> None:
    from sim.schema.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as err:
        raise InputError("--duration", None, str(err)) from None
    if not seconds > 0:
        raise InputError("--duration", None, f"expected a simulated time above 0, got {text!r}")
