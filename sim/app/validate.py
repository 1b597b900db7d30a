"""``vmsim validate``: check scenario and sweep files without running them."""

from __future__ import annotations

from pathlib import Path

from sim.schema.errors import InputError


def validate_file(path: Path, sets: list[str], max_runs: int) -> str:
    """``FILE: ok (...)`` with the runs the file plans, or an InputError (FILE:LINE: key: message).

    A sweep file (it has ``factors``) is loaded as a sweep, and refuses ``--set`` (which
    applies to scenario files); anything else as a scenario with ``sets`` applied."""
    from sim.config.scenario import load_scenario
    from sim.config.sweepfile import is_sweep_data, load_sweep
    from sim.config.yamlpos import read_yaml

    if is_sweep_data(read_yaml(path).data):
        if sets:
            raise InputError(str(path), None, "a sweep file: --set applies to scenario files only")
        plan = load_sweep(path, max_runs=max_runs)
        runs = len(plan.points) * len(plan.strategies) * plan.replications
        return (f"{path}: ok (sweep: {len(plan.points)} points x {len(plan.strategies)} strategies x "
                f"{plan.replications} replications = {runs} runs)")  # fmt: skip
    scenario = load_scenario(path, sets, max_runs=max_runs)
    runs, nstrat, nrep = scenario.run_count(), len(scenario.strategies), scenario.replications
    return (f"{path}: ok ({runs} run{'s' * (runs != 1)}: {nstrat} strateg{'ies' if nstrat != 1 else 'y'}"
            f" x {nrep} replication{'s' * (nrep != 1)})")  # fmt: skip
