"""Fingerprints of every shipped scenario and strategy: a digest of what each run recorded.

A refactoring that must not change the model (issue 12: moving modules, breaking cycles,
typed records) is checked by running this before and after and comparing the two files:
for every scenario under scenarios/ (sweeps excluded) and every strategy it lists, one
replication shortened to ``--duration`` simulated seconds, the sha256 of its runs row
(wall time left out), events, samples and counters.

    python benchmarks/fingerprints.py --out before.json
    python benchmarks/fingerprints.py --out after.json && diff before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprints(duration: float, only: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """{scenario/strategy: {rows, events, samples, counters: digest}} of every shipped scenario
    (or of those whose file name is in ``only``)."""
    from sim.config.scenario import load_scenario
    from sim.config.sweepfile import is_sweep_data
    from sim.config.yamlpos import read_yaml
    from sim.engine.run import run_once

    out: dict[str, dict[str, str]] = {}
    for path in sorted(ROOT.glob("scenarios/**/*.yaml")):
        if (only and path.name not in only) or is_sweep_data(read_yaml(path).data):
            continue
        scenario = load_scenario(path, [f"duration={duration}s", "replications=1"])
        for strategy in scenario.strategies:
            result = run_once(scenario, strategy, 0, scenario.seed)
            row = {k: v for k, v in result.row.items() if k != "wall_seconds"}
            key = f"{path.relative_to(ROOT)}/{strategy}"
            out[key] = {
                "rows": _digest(row),
                "events": _digest(result.events),
                "samples": _digest(result.samples),
                "counters": _digest(sorted(result.counters.items())),
            }
            print(key, out[key]["rows"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="simulated seconds per run (default 2)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="", help="comma-separated scenario file names (default: all)")
    args = parser.parse_args()
    prints = fingerprints(args.duration, tuple(name for name in args.only.split(",") if name))
    args.out.write_text(json.dumps(prints, indent=1, sort_keys=True) + "\n")
    print(f"{len(prints)} scenario/strategy fingerprints written to {args.out}")


if __name__ == "__main__":
    main()
