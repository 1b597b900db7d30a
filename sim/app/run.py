"""``vmsim run``: one scenario, once per strategy and replication, into a results folder.

:func:`prepare_run` loads and checks everything a run needs before any simulating (the
scenario with its ``--set`` overrides, the seed, the output folder); :func:`execute_run`
estimates the computing time, runs, and writes the folder (manifest.json, runs.parquet,
events.parquet, timeseries.parquet, counters) in one atomic step at the end, so an
interrupted run leaves nothing half written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.app.options import check_out_folder, estimate, set_params


@dataclass(frozen=True)
class RunPlan:
    """A checked ``vmsim run`` request."""

    source: Path
    scenario: Any  # sim.config.scenario.Scenario
    sets: tuple[str, ...]
    root_seed: int
    target: Path
    plugins: tuple[str, ...]

    @property
    def total(self) -> int:
        """Runs planned: strategies x replications."""
        return len(self.scenario.strategies) * self.scenario.replications


def prepare_run(
    source: Path,
    sets: list[str],
    *,
    seed: int | None = None,
    out: Path | None = None,
    max_runs: int,
    plugins: tuple[str, ...] = (),
) -> RunPlan:
    """Load ``source`` with ``sets``, pick the root seed (``seed`` or the scenario's) and the
    folder (``out`` or results/<scenario name>), and check that the folder can be written."""
    from sim.config.scenario import load_scenario

    scenario = load_scenario(source, sets, max_runs=max_runs)
    target = Path(out) if out is not None else Path("results") / scenario.name
    check_out_folder(target)
    return RunPlan(Path(source), scenario, tuple(sets), scenario.seed if seed is None else seed, target, plugins)


def execute_run(
    plan: RunPlan,
    *,
    jobs: int = 1,
    sure: bool = False,
    argv: list[str] | None = None,
    on_estimate: Callable[[str], None] | None = None,
    on_result: Callable[[Any], None] | None = None,
) -> list[dict[str, Any]]:
    """Estimate (refusing above the bound unless ``sure``), run every (strategy, replication) on
    ``jobs`` worker processes, and write ``plan.target``; the run rows, in run order.  The
    caller wraps this in :func:`sim.app.signals.stop_on_signals` to stop it cleanly."""
    from sim import __version__
    from sim.config.scenario import resolved_dict
    from sim.engine.plugins import plugin_manifest
    from sim.engine.run import RUN_COLUMNS, run_scenario, run_seed
    from sim.record.results import build_manifest, counter_rows, write_run_folder
    from sim.sweep.executors import make_backend

    scenario, root_seed = plan.scenario, plan.root_seed
    line = estimate(str(plan.source), [(scenario, 0)], root_seed, scenario.run_count(), jobs, sure)
    if on_estimate is not None:
        on_estimate(line)
    with make_backend("process" if jobs > 1 else "serial", jobs) as backend:
        results = run_scenario(
            scenario, root_seed, params=set_params(list(plan.sets)), on_result=on_result, backend=backend,
            plugins=plan.plugins,
        )  # fmt: skip
    rows = [r.row for r in results]
    seeds = {
        f"r{k}": {"entropy": root_seed, "spawn_key": list(run_seed(root_seed, 0, k).spawn_key)}
        for k in range(scenario.replications)
    }
    manifest = build_manifest(
        resolved_dict(scenario), scenario.scenario_hash(), root_seed, rows, list(argv or []), seeds, __version__,
        plugin_manifest(plan.plugins),
    )  # fmt: skip
    write_run_folder(
        plan.target,
        manifest,
        rows,
        [e for r in results for e in r.events],
        [s for r in results for s in r.samples],
        list(RUN_COLUMNS),
        [c for r in results for c in counter_rows(r.row["run_id"], r.counters)],
    )
    return rows


SUMMARY_COLUMNS = (
    ("vmalloc_calls", "vmallocs"),
    ("fit_ne", "NE"),
    ("split_nowait_attempts", "nowait"),
    ("split_nowait_failures", "nowait fail"),
    ("preload_fills", "fills"),
    ("preload_misses", "misses"),
    ("overflow_purges", "purges"),
    ("vmap_ebusy", "EBUSY"),
    ("forks", "forks"),
    ("fork_enomem", "ENOMEM"),
    ("oom_kills", "OOM kills"),
    ("direct_reclaims", "dreclaims"),
    ("sleep_in_atomic_bugs", "BUGs"),
)


def summary_table(rows: list[dict[str, Any]], strategies: list[str]) -> list[str]:
    """The lines of ``vmsim run``'s table: per strategy, the mean over replications of each
    :data:`SUMMARY_COLUMNS` counter, and how many runs ended ok."""
    header = f"{'strategy':<18}" + "".join(f"{label:>12}" for _, label in SUMMARY_COLUMNS) + f"{'status':>10}"
    lines = [header]
    for strategy in strategies:
        mine = [r for r in rows if r["strategy"] == strategy]
        cells = []
        for key, _ in SUMMARY_COLUMNS:
            mean = sum(r[key] for r in mine) / len(mine)
            cells.append(f"{mean:>12,.0f}" if mean >= 100 or mean == int(mean) else f"{mean:>12.2f}")
        ok = sum(r["status"] == "ok" for r in mine)
        lines.append(f"{strategy:<18}" + "".join(cells) + f"{f'{ok}/{len(mine)} ok':>10}")
    return lines
