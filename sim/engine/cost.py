"""What a run will cost, estimated before it starts, from a short probe of the run itself.

A scenario's cost is not a formula of its keys: it depends on how busy the
machine gets (reclaim storms, OOM kills, thousands of CPUs).  So the estimate
is measured: :func:`probe_run` builds the first run of a scenario and
simulates it in small steps until a wall-clock budget is spent (or the run
ends), then extrapolates linearly to the whole duration.  It is rough (a run
whose pressure builds up later costs more than its start suggests) and says
so; its use is to refuse, before anything runs, a command that would take
hours by mistake (``duration: 1e6s``, 8192 CPUs, a million-point grid).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sim.engine.run import run_seed, start_run
from sim.record.metrics import Metrics
from sim.schema.errors import InputError

PROBE_WALL_SECONDS = 0.5  # wall-clock budget of one probe ...
PROBE_LONGER_SECONDS = 3.0  # ... and how long it goes on when its first estimate is above the bound
PROBE_STEPS = 1000  # the probe advances by duration / PROBE_STEPS (at most 1 ms simulated) at a time


@dataclass(frozen=True)
class RunCost:
    """The probe of one run and what it predicts for the whole run."""

    build_seconds: float  # wall time to build the machine and start its workloads
    probe_sim_seconds: float  # simulated time the probe reached
    probe_wall_seconds: float  # wall time it took to reach it (build excluded)
    duration: float  # the run's simulated duration
    rate_sim_seconds: float  # the probe's later part, over which the pace is measured ...
    rate_wall_seconds: float  # ... and its wall time (the start, when every workload launches, is left out)

    @property
    def finished(self) -> bool:
        """Whether the probe simulated the whole run (the estimate is then a measurement)."""
        return self.probe_sim_seconds >= self.duration

    @property
    def seconds(self) -> float:
        """Estimated wall seconds of the whole run."""
        if self.finished:
            return self.build_seconds + self.probe_wall_seconds
        if self.rate_sim_seconds <= 0:
            return self.build_seconds + self.probe_wall_seconds * self.duration / max(self.probe_sim_seconds, 1e-9)
        rest = self.duration - self.probe_sim_seconds
        return self.build_seconds + self.probe_wall_seconds + rest * self.rate_wall_seconds / self.rate_sim_seconds


def probe_run(scenario: Any, root_seed: int, point: int = 0, bound: float = float("inf")) -> RunCost:
    """Build replication 0 of the first strategy and simulate it for PROBE_WALL_SECONDS of wall
    time, longer (PROBE_LONGER_SECONDS) if the estimate is then above ``bound`` seconds, as a
    run's start (every workload launching at once) is slower than its steady state.  A run
    that fails early (a panic, an error) is timed up to where it stopped."""
    wall0 = time.perf_counter()
    machine = start_run(scenario, scenario.strategies[0], run_seed(root_seed, point, 0), Metrics())
    built = time.perf_counter()
    step = min(scenario.duration / PROBE_STEPS, 1e-3)
    marks = [(0.0, built)]  # (simulated, wall) after each step
    for budget in (PROBE_WALL_SECONDS, PROBE_LONGER_SECONDS):
        try:
            while marks[-1][0] < scenario.duration and marks[-1][1] - built < budget:
                until = min(scenario.duration, marks[-1][0] + step)
                machine.env.run(until=until)
                marks.append((until, time.perf_counter()))
        except Exception:  # the run itself will record it; the probe only times what ran
            marks.append((machine.env.now, time.perf_counter()))
            return _cost(wall0, marks, scenario.duration)
        cost = _cost(wall0, marks, scenario.duration)
        if cost.finished or cost.seconds <= bound:
            break
    return cost


def _cost(wall0: float, marks: list[tuple[float, float]], duration: float) -> RunCost:
    """The RunCost of a probe's (simulated, wall) marks; the pace from its later half."""
    built = marks[0][1]
    end_sim, end_wall = marks[-1]
    half = next((m for m in marks if m[1] - built >= (end_wall - built) / 2), marks[0])
    if half == marks[-1]:
        half = marks[0]
    return RunCost(built - wall0, end_sim, end_wall - built, duration, end_sim - half[0], end_wall - half[1])


def estimate_runs(
    source: str, probes: list[tuple[Any, int]], root_seed: int, runs: int, workers: int, bound: float, sure: bool
) -> str:
    """Probe each (scenario, grid point) of ``probes`` and state what ``runs`` runs will take on
    ``workers`` workers (the most expensive probe counts, ``runs / workers`` rounded up after
    one another); an InputError naming ``source`` if that is above ``bound`` seconds and the
    user did not say ``sure`` (--yes)."""
    waves = -(-runs // max(workers, 1))
    costs = [probe_run(scenario, root_seed, point, bound=bound / waves) for scenario, point in probes]
    per_run = max(cost.seconds for cost in costs)
    total = per_run * waves
    measured = all(cost.finished for cost in costs)
    basis = "measured" if measured else f"from a probe of {min(c.probe_sim_seconds for c in costs):.3g} s simulated"
    line = (f"estimated {format_seconds(total)} of computing: {runs} runs x {format_seconds(per_run)} "
            f"on {workers} worker{'s' * (workers != 1)} ({basis})")  # fmt: skip
    if total > bound and not sure:
        why = "a run's start, which the probe sees, is often its slowest part"
        over = f"more than the {format_seconds(bound)} bound"
        raise InputError(source, None, f"{line}; {over}: pass --yes to run it ({why})")
    return line


def format_seconds(seconds: float) -> str:
    """A wall time as people say it: 40 s, 12 min, 3.5 h, 12 days."""
    for unit, scale in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
