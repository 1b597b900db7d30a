"""The figures issue 13 asks of each fidelity fix, for one scenario, before and after.

Runs a scenario (default rezki-2019-256mb, its 3 replications and both strategies) into a
temporary folder and prints, per strategy, summed over replications:

* NOWAIT split failures per 10^6 vmalloc calls, with a 95% Wilson interval;
* forks per simulated second; OOM kills and direct reclaims per run;
* the share of time-series samples with a boosted watermark in any zone;
* the median free pages of the DMA zone in the state recorded at each split failure.

    python benchmarks/fidelity.py --label before --json before.json
    python benchmarks/fidelity.py --label after --json after.json --set duration=30s

Same seed, same figures: compare two trees by running this in each.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def figures(folder: Path) -> dict[str, dict[str, float | str]]:
    """The figures of a results folder written by ``vmsim run``, per strategy."""
    import pandas as pd

    runs = pd.read_parquet(folder / "runs.parquet")
    events = pd.read_parquet(folder / "events.parquet")
    samples = pd.read_parquet(folder / "timeseries.parquet")
    counters = pd.read_parquet(folder / "counters.parquet")
    boost_cols = [c for c in samples.columns if c.endswith("_boost")]
    out: dict[str, dict[str, float | str]] = {}
    for strategy, mine in runs.groupby("strategy", sort=False):
        ids = set(mine["run_id"])
        k, n = int(mine["split_nowait_failures"].sum()), int(mine["vmalloc_calls"].sum())
        lo, hi = wilson(k, n)
        fails = events[(events["kind"] == "split_nowait_failure") & events["run_id"].isin(ids)]
        mine_samples = samples[samples["run_id"].isin(ids)]
        boosted = (mine_samples[boost_cols] > 0).any(axis=1).mean() if len(mine_samples) else float("nan")
        dma = fails["DMA_free"].median() if "DMA_free" in fails and len(fails) else float("nan")
        mine_counters = counters[counters["run_id"].isin(ids)].groupby("name")["value"].sum()
        forks = float(mine["forks"].sum())
        out[str(strategy)] = {
            "runs": len(mine),
            "nowait_per_1e6": 1e6 * k / n if n else float("nan"),
            "nowait_interval": f"[{1e6 * lo:.0f}, {1e6 * hi:.0f}]",
            "forks_per_s": float(mine["forks"].sum() / mine["sim_seconds"].sum()),
            "oom_kills_per_run": float(mine["oom_kills"].mean()),
            "direct_reclaims_per_run": float(mine["direct_reclaims"].mean()),
            "boosted_share": float(boosted),
            "dma_free_at_failures": float(dma),
            "boosts_per_1000_forks": 1000 * float(mine_counters.get("watermark_boost", 0.0)) / forks if forks else 0.0,
        }
    return out


def table(label: str, result: dict[str, dict[str, float | str]]) -> str:
    """A markdown table of :func:`figures`, one row per strategy."""
    lines = [
        f"| {label} | NOWAIT fail /10^6 vmalloc | forks/s | OOM kills/run | direct reclaims/run "
        "| samples boosted | boosts /1000 forks | DMA free at failures |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for strategy, f in result.items():
        lines.append(
            f"| {strategy} | {f['nowait_per_1e6']:.0f} {f['nowait_interval']} | {f['forks_per_s']:.0f} "
            f"| {f['oom_kills_per_run']:.1f} | {f['direct_reclaims_per_run']:.0f} | {f['boosted_share']:.1%} "
            f"| {f.get('boosts_per_1000_forks', float('nan')):.0f} | {f['dma_free_at_failures']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "rezki-2019-256mb.yaml")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY.PATH=VALUE")
    parser.add_argument("--label", default="figures")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()

    from sim.app.run import execute_run, prepare_run
    from sim.schema.limits import MAX_RUNS

    with tempfile.TemporaryDirectory() as tmp:
        plan = prepare_run(args.scenario, args.sets, out=Path(tmp) / "run", max_runs=MAX_RUNS)
        execute_run(plan, jobs=args.jobs, sure=True)
        result = figures(plan.target)
    print(table(args.label, result))
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "sets": args.sets, "figures": result}, indent=2))


if __name__ == "__main__":
    main()
