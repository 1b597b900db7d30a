"""Compiled vs pure Python (``make bench``, issue 14): the same runs in both builds, one after the other.

Each measurement runs in a child process, once with the compiled build and once with
``VMSIM_PURE=1``, on this machine in this run:

* rezki-2019-256mb, strategy nowait, replication 0, ``--duration`` simulated seconds: wall and
  CPU seconds, and the digest of what the run recorded (row without wall time, events,
  samples, counters, as ``benchmarks/fingerprints.py`` makes it), which must be equal;
* the allocator core (``VmapSpace`` and the rb-tree) at 10k live areas, fork stacks and
  random sizes: free+alloc pairs per CPU second, best of several blocks.

CPU seconds are the figure to compare: the machine is shared, and wall time counts the
waits for a core.  Even CPU seconds move by a third from one minute to the next here, so the
two builds alternate for ``--rounds`` rounds and each keeps its best.  Without a compiled
build both columns are pure Python, and a line says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import hashlib, json, sys, time
sys.path.insert(0, {root!r})
import sim
from sim.config.scenario import load_scenario
from sim.engine.run import run_once
sc = load_scenario({root!r} + "/scenarios/rezki-2019-256mb.yaml", ["duration={duration}s", "replications=1"])
def digest(v):
    return hashlib.sha256(json.dumps(v, sort_keys=True, default=repr, separators=(",", ":")).encode()).hexdigest()[:16]
wall, cpu = time.perf_counter(), time.process_time()
r = run_once(sc, "nowait", 0, sc.seed)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
row = {{k: v for k, v in r.row.items() if k != "wall_seconds"}}
fp = [digest(row), digest(r.events), digest(r.samples), digest(sorted(r.counters.items()))]
print(json.dumps({{"mode": sim.BUILD_MODE, "wall": wall, "cpu": cpu, "forks": r.row["forks"], "fp": fp}}))
"""

CORE = """
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import sim
from sim.kernel.mm.vmalloc.space import VmapSpace
from sim.workloads.churn import churn, fill, plan_churn
live, steps, repeats = 10_000, 20_000, {repeats}
out = {{"mode": sim.BUILD_MODE}}
for kind in ("fork-stacks", "random-sizes"):
    warm = max(steps, 2 * live)
    plan = plan_churn(kind, live, warm + steps * repeats, np.random.default_rng(2019))
    space = VmapSpace()
    areas = fill(space, plan)
    churn(space, plan, areas, 0, warm)
    best, pos = float("inf"), warm
    for _ in range(repeats):
        t0 = time.process_time()
        churn(space, plan, areas, pos, pos + steps)
        best = min(best, time.process_time() - t0)
        pos += steps
    out[kind] = 2 * steps / best
    out[kind + " state"] = hash((tuple(areas), tuple(space.fit_counts)))
print(json.dumps(out))
"""


def child(code: str, pure: bool) -> dict:
    """Run ``code`` in a fresh interpreter, compiled or pure; its one line of JSON."""
    env = dict(os.environ, VMSIM_PURE="1" if pure else "0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="simulated seconds of the scenario run")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks of the allocator core")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each build; best kept")
    args = parser.parse_args()
    run = RUN.format(root=str(ROOT), duration=args.duration)
    pure, fast = child(run, True), child(run, False)
    for _ in range(args.rounds - 1):
        pure = min(pure, child(run, True), key=lambda r: r["cpu"])
        fast = min(fast, child(run, False), key=lambda r: r["cpu"])
    if fast["mode"] != "compiled":
        print("no compiled build here (no C compiler, or `make native` not run): both columns are pure Python")
    print(f"rezki-2019-256mb, nowait, {args.duration:g} simulated s, {pure['forks']:,} forks, best of {args.rounds}")
    print(f"{'':<10} {'wall s':>8} {'CPU s':>8}")
    for label, r in (("pure", pure), (fast["mode"], fast)):
        print(f"{label:<10} {r['wall']:>8.2f} {r['cpu']:>8.2f}")
    same = pure["fp"] == fast["fp"] and pure["forks"] == fast["forks"]
    print(f"speed-up (CPU): {pure['cpu'] / fast['cpu']:.2f}x; results identical: {'yes' if same else 'NO'}")
    core = CORE.format(root=str(ROOT), repeats=args.repeats)
    cpure, cfast = child(core, True), child(core, False)
    for _ in range(args.rounds - 1):
        again_pure, again_fast = child(core, True), child(core, False)
        for kind in ("fork-stacks", "random-sizes"):
            cpure[kind], cfast[kind] = max(cpure[kind], again_pure[kind]), max(cfast[kind], again_fast[kind])
    print("allocator core at 10k live areas, free+alloc pairs per CPU second")
    for kind in ("fork-stacks", "random-sizes"):
        agree = "same state" if cpure[kind + " state"] == cfast[kind + " state"] else "STATES DIFFER"
        print(
            f"  {kind:<13} pure {cpure[kind]:>10,.0f}  {cfast['mode']} {cfast[kind]:>10,.0f}"
            f"  {cfast[kind] / cpure[kind]:.2f}x  {agree}"
        )
    if not same:
        raise SystemExit("compiled and pure runs differ")


if __name__ == "__main__":
    main()
