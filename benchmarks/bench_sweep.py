"""Sweep throughput (``make bench``): runs per wall second of a 200-run sweep with
-j 1 and -j 2, and the speed-up, measured in one process on this machine.

The sweep is 25 grid points (5 RAM sizes x 5 worker counts) x 2 strategies x 4
replications of the answer suite's fork storm, 0.1 simulated seconds each, run
by the process executor into a temporary folder.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sim.config.sweepfile import load_sweep
from sim.sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """name: bench
scenario: {base}
set: {{duration: 0.1s}}
factors:
  machine.ram: [160MiB, 192MiB, 256MiB, 384MiB, 512MiB]
  workloads.0.workers: [16, 32, 64, 128, 256]
replications: 4
strategies: [nowait, preload]
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SWEEP.format(base=ROOT / "scenarios/answer/base/fork-storm.yaml"))
        plan = load_sweep(path)
        total = len(plan.runs())
        rates = {}
        for jobs in (1, 2):
            t0 = time.perf_counter()
            outcome = run_sweep(plan, Path(tmp) / f"out-j{jobs}", executor="process", jobs=jobs)
            wall = time.perf_counter() - t0
            rates[jobs] = total / wall
            print(f"-j {jobs}: {total} runs in {wall:.1f} s = {rates[jobs]:.2f} runs/s  {dict(outcome.statuses)}")
        print(f"speed-up -j 2 / -j 1: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
