"""A background lane of the answer: long sweeps run in a child process beside the rest.

The answer's uptime sweeps are a few runs of minutes each.  Run in turn with the other
sweeps, a sweep of two long runs on a machine of two cores leaves nothing to do for the
other core while its last run finishes, and a single long run leaves one core idle for
all of it.  :func:`start_lane` starts a child process that runs such sweeps one after
the other with its own workers (as many as the answer's), while the answer runs the rest
of the suite with its workers; the operating system shares the cores among all of them,
so no core idles while a long run is left.  (A lane of one worker, the first version,
made the two 1 GB runs wait for each other: 827 s for a full answer whose runs took 679
CPU seconds on 2 cores.)  Each run keeps its own
seed, so the results are the same, bit for bit, as when the sweeps run in turn.

The child is ``python -m sim.app.lane OUT SWEEP... [--jobs N] [--plugin FILE]``; every sweep
resumes what its folder holds, so an interrupted answer (child included) resumes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def start_lane(
    sweeps: list[Path], out: Path, plugins: tuple[str, ...] = (), jobs: int | None = None
) -> subprocess.Popen[bytes]:
    """Start the child that runs ``sweeps`` (sweep files) into ``out/<sweep name>/`` with
    ``jobs`` worker processes (default: the CPU count)."""
    argv = [sys.executable, "-m", "sim.app.lane", str(out), *map(str, sweeps)]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    for plugin in plugins:
        argv += ["--plugin", plugin]
    return subprocess.Popen(argv)


def stop_lane(child: subprocess.Popen[bytes]) -> None:
    """Stop the child (the answer was interrupted or failed): what it finished stays, and
    its sweeps resume next time."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_lane(out: Path, sweeps: list[Path], plugins: tuple[str, ...] = (), jobs: int | None = None) -> None:
    """Run each sweep file into ``out/<name>/`` on ``jobs`` worker processes, resuming."""
    from sim.config.sweepfile import load_sweep
    from sim.engine.plugins import load_plugins
    from sim.sweep.runner import run_sweep

    load_plugins(plugins)
    for path in sweeps:
        plan = load_sweep(path)
        target = Path(out) / plan.name

        def progress(done: int, failed: int, total: int, name: str = plan.name) -> None:
            print(f"  {name}: {done}/{total} runs done, {failed} failed (background lane)", flush=True)

        run_sweep(plan, target, executor="process", jobs=jobs, resume=(target / "manifest.json").exists(),
                  progress=progress, plugins=plugins)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run sweeps of the answer in a background lane.")
    parser.add_argument("out", type=Path)
    parser.add_argument("sweeps", type=Path, nargs="+")
    parser.add_argument("--plugin", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    run_lane(args.out, args.sweeps, tuple(args.plugin), args.jobs)


if __name__ == "__main__":
    main()
