"""Whole-model speed (``make bench``): rezki-2019-256mb per strategy, and the
cost of one simulated fork in bare SimPy events.

Reports, from one run on this machine: the wall seconds of the scenario's
60 simulated seconds per strategy; simulated forks per wall second; and the
same as a ratio to a bare SimPy timeout loop measured in the same process
(events per fork = bare events per second / forks per second; the target is
at most 20).

It also times two lighter machines built from the same file, so that each run
shows where a fork's cost comes from: the same fork storm with no memory
pressure (4 GiB, the hog and shmem shrunk to 1 MiB), with 256 workers and with
4.  Their events per fork are the model's floor for a fork today: the page and
slab accounting of copy_process, the child as a scheduled task, exit and wait4,
without reclaim or slow-path entries.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import simpy  # SimPy as released: the yardstick

from sim.config.scenario import load_scenario
from sim.engine.run import run_once

ROOT = Path(__file__).resolve().parents[1]


def bare_simpy_rate(n: int = 300_000) -> float:
    """Timeout events per wall second of a loop that does nothing else."""
    env = simpy.Environment()

    def loop():
        for _ in range(n):
            yield env.timeout(1)

    env.process(loop())
    t0 = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t0)


SCENARIO = ROOT / "scenarios" / "rezki-2019-256mb.yaml"
# the same file with no memory pressure: RAM to spare, the hog and shmem shrunk
UNPRESSURED = ["machine.ram=4GiB", "workloads.1.size=1MiB", "workloads.2.size=1MiB"]
FLOORS = {
    "no pressure, 256 workers": UNPRESSURED,
    "no pressure, 4 workers": [*UNPRESSURED, "workloads.0.workers=4"],
}


def _row(label: str, bare: float, row: dict) -> str:
    """One table line: wall seconds, forks, forks per wall second, bare events per fork."""
    rate = row["forks"] / row["wall_seconds"]
    per_fork = bare / rate if rate else float("inf")
    return (
        f"{label:<26} {row['sim_seconds']:>6.0f} {row['wall_seconds']:>8.1f} {row['forks']:>9,} "
        f"{rate:>9,.0f} {per_fork:>12.1f} {row['status']:>7}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="60s", help="simulated time per strategy")
    parser.add_argument("--floor-duration", default="5s", help="simulated time of each no-pressure run")
    args = parser.parse_args()
    scenario = load_scenario(SCENARIO, [f"duration={args.duration}"])
    bare = max(bare_simpy_rate() for _ in range(3))
    print(f"bare SimPy timeout loop: {bare:,.0f} events/s")
    header = f"{'wall s':>8} {'forks':>9} {'forks/s':>9} {'events/fork':>12} {'status':>7}"
    print(f"{scenario.name + ', strategy':<26} {'sim s':>6} {header}")
    for strategy in scenario.strategies:
        print(_row(strategy, bare, run_once(scenario, strategy, 0, scenario.seed).row))
    print(f"\n{'same file, nowait':<26} {'sim s':>6} {header}")
    for label, overrides in FLOORS.items():
        light = load_scenario(SCENARIO, [f"duration={args.floor_duration}", *overrides])
        print(_row(label, bare, run_once(light, "nowait", 0, light.seed).row))
    print("target: a simulated fork costs no more than 20 bare SimPy events")


if __name__ == "__main__":
    main()
