"""Compiled vs pure Python (``make bench``, issue 14): the same runs in both builds, one after the other.

Each measurement runs in a child process, once with the compiled build and once with
``VMSIM_PURE=1``, on this machine in this run:

* the model: rezki-2019-256mb with each strategy (nowait, preload), big-server (nowait)
  and the unpressured 4-worker fork storm (rezki-2019-256mb with 4 GiB, the hog and
  shmem shrunk, 4 workers; ``bench_engine.py``'s floor), each for ``--duration``
  simulated seconds (big-server: at most its own 3 s), replication 0.  Per build: wall and
  CPU seconds, simulated seconds per CPU second, and bare SimPy events per fork (the
  rate of a bare SimPy timeout loop, run pure in the pure child, over forks per CPU
  second: one fixed yardstick for both builds); and the digest of what the run recorded
  (row without wall time, events, samples, counters, as ``benchmarks/fingerprints.py``
  makes it), which must be equal in both builds;
* the allocator core (``VmapSpace`` and the rb-tree) at 10k live areas, fork stacks and
  random sizes: free+alloc pairs per CPU second, best of several blocks.
  (``bench_vmap.py`` compares the core with its plain port at 1k, 10k and 100k.)

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

# the unpressured fork storm of bench_engine.py, with 4 workers
UNPRESSURED_4 = ["machine.ram=4GiB", "workloads.1.size=1MiB", "workloads.2.size=1MiB", "workloads.0.workers=4"]
# (label, scenario file, overrides, strategy, longest duration)
CASES = (
    ("rezki-2019-256mb, nowait", "rezki-2019-256mb.yaml", [], "nowait", None),
    ("rezki-2019-256mb, preload", "rezki-2019-256mb.yaml", [], "preload", None),
    ("big-server, nowait", "big-server.yaml", [], "nowait", 3.0),
    ("no pressure, 4 workers", "rezki-2019-256mb.yaml", UNPRESSURED_4, "nowait", None),
)

RUN = """
import hashlib, json, sys, time
sys.path.insert(0, {root!r})
import sim
import simpy
from sim.config.scenario import load_scenario
from sim.engine.run import run_once
sc = load_scenario({root!r} + "/scenarios/" + {file!r}, [*{overrides!r}, "duration={duration}s", "replications=1"])
def digest(v):
    return hashlib.sha256(json.dumps(v, sort_keys=True, default=repr, separators=(",", ":")).encode()).hexdigest()[:16]
def bare_rate(n=200_000):
    env = simpy.Environment()
    def loop():
        for _ in range(n):
            yield env.timeout(1)
    env.process(loop())
    t0 = time.process_time()
    env.run()
    return n / (time.process_time() - t0)
wall, cpu = time.perf_counter(), time.process_time()
r = run_once(sc, {strategy!r}, 0, sc.seed)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
row = {{k: v for k, v in r.row.items() if k != "wall_seconds"}}
fp = [digest(row), digest(r.events), digest(r.samples), digest(sorted(r.counters.items()))]
out = {{"mode": sim.BUILD_MODE, "wall": wall, "cpu": cpu, "forks": r.row["forks"], "sim": r.row["sim_seconds"]}}
out.update(fp=fp, status=r.row["status"], bare=bare_rate())
print(json.dumps(out))
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


def best_of(code: str, rounds: int) -> tuple[dict, dict]:
    """(pure, compiled) results of ``code``, alternating builds ``rounds`` times; least CPU kept."""
    pure, fast = child(code, True), child(code, False)
    for _ in range(rounds - 1):
        pure = min(pure, child(code, True), key=lambda r: r["cpu"])
        fast = min(fast, child(code, False), key=lambda r: r["cpu"])
    return pure, fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="simulated seconds of each model run")
    parser.add_argument("--repeats", type=int, default=10, help="timed blocks of the allocator core")
    parser.add_argument(
        "--core-rounds", type=int, default=4, help="alternating runs of each build for the core (a few seconds each)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each build; best kept")
    parser.add_argument("--cases", default="all", help="comma-separated case numbers (1-4), all, or none (core only)")
    args = parser.parse_args()
    named = {"all": list(CASES), "none": []}
    chosen = named[args.cases] if args.cases in named else [CASES[int(k) - 1] for k in args.cases.split(",")]
    print(f"model runs, replication 0, best of {args.rounds} alternating runs per build (CPU seconds)")
    header = f"{'':<27} {'sim s':>5} {'forks':>8} {'pure s':>7} {'comp. s':>7} {'ratio':>6}"
    print(f"{header} {'sim s/CPU s':>12} {'events/fork':>12}  same results")
    bare = None
    differ = []
    for label, file, overrides, strategy, longest in chosen:
        duration = args.duration if longest is None else min(args.duration, longest)
        code = RUN.format(root=str(ROOT), file=file, overrides=overrides, strategy=strategy, duration=duration)
        pure, fast = best_of(code, args.rounds)
        if fast["mode"] != "compiled":
            print("no compiled build here (no C compiler, or `make native` not run): both columns are pure Python")
        bare = max(bare or 0.0, pure["bare"])  # the pure SimPy loop: one yardstick for both builds
        same = pure["fp"] == fast["fp"] and pure["forks"] == fast["forks"]
        if not same:
            differ.append(label)
        per_s = f"{pure['sim'] / pure['cpu']:.2f}/{fast['sim'] / fast['cpu']:.2f}"
        per_fork = "-"
        if pure["forks"] and fast["forks"]:
            events = [pure["bare"] * r["cpu"] / r["forks"] for r in (pure, fast)]
            per_fork = f"{events[0]:.0f}/{events[1]:.0f}"
        print(
            f"{label:<27} {pure['sim']:>5g} {pure['forks']:>8,} {pure['cpu']:>7.2f} {fast['cpu']:>7.2f} "
            f"{pure['cpu'] / fast['cpu']:>5.2f}x {per_s:>12} {per_fork:>12}  {'yes' if same else 'NO'}"
        )
    if bare is not None:
        print(f"(sim s/CPU s, events/fork: pure/compiled; a bare SimPy timeout loop: {bare:,.0f} events/CPU s, pure)")
    core = CORE.format(root=str(ROOT), repeats=args.repeats)
    cpure, cfast = child(core, True), child(core, False)
    for _ in range(args.core_rounds - 1):
        again_pure, again_fast = child(core, True), child(core, False)
        for kind in ("fork-stacks", "random-sizes"):
            cpure[kind], cfast[kind] = max(cpure[kind], again_pure[kind]), max(cfast[kind], again_fast[kind])
    rounds = args.core_rounds
    print(f"allocator core at 10k live areas, free+alloc pairs per CPU second, best of {rounds} runs per build")
    for kind in ("fork-stacks", "random-sizes"):
        agree = "same state" if cpure[kind + " state"] == cfast[kind + " state"] else "STATES DIFFER"
        print(
            f"  {kind:<13} pure {cpure[kind]:>10,.0f}  {cfast['mode']} {cfast[kind]:>10,.0f}"
            f"  {cfast[kind] / cpure[kind]:.2f}x  {agree}"
        )
    if differ:
        raise SystemExit(f"compiled and pure runs differ: {', '.join(differ)}")


if __name__ == "__main__":
    main()
