"""Whole-model speed (``make bench``): rezki-2019-256mb per strategy, and the
cost of one simulated fork in bare SimPy events.

Reports, from one run on this machine: the wall seconds of the scenario's
60 simulated seconds per strategy; simulated forks per wall second; and the
same as a ratio to a bare SimPy timeout loop measured in the same process
(events per fork = bare events per second / forks per second; the target is
at most 20).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import simpy

from sim.engine import run_once
from sim.scenario import load_scenario

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="60s", help="simulated time per strategy")
    args = parser.parse_args()
    scenario = load_scenario(ROOT / "scenarios" / "rezki-2019-256mb.yaml", [f"duration={args.duration}"])
    bare = max(bare_simpy_rate() for _ in range(3))
    print(f"bare SimPy timeout loop: {bare:,.0f} events/s")
    print(f"{'strategy':<10} {'sim s':>6} {'wall s':>8} {'forks':>9} {'forks/s':>9} {'events/fork':>12} {'status':>7}")
    for strategy in scenario.strategies:
        result = run_once(scenario, strategy, 0, scenario.seed)
        row = result.row
        rate = row["forks"] / row["wall_seconds"]
        per_fork = bare / rate if rate else float("inf")
        print(
            f"{strategy:<10} {row['sim_seconds']:>6.0f} {row['wall_seconds']:>8.1f} {row['forks']:>9,} "
            f"{rate:>9,.0f} {per_fork:>12.1f} {row['status']:>7}"
        )
    print("target: a simulated fork costs no more than 20 bare SimPy events")


if __name__ == "__main__":
    main()
