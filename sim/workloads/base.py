"""What every workload has: a spec (a pydantic model with a ``kind``) and a start.

A workload is built from its spec, then ``start(machine, rng)`` spawns its
tasks on the machine; from then on it only issues kernel calls and counts what
happened in ``machine.metrics``.  Its random stream is its own (common random
numbers across strategies).  Specs reject unknown keys so that a YAML typo is
an error, not a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol

import numpy as np

from sim.schema.input_model import InputModel
from sim.schema.units import Duration


class WorkloadSpec(InputModel):
    """Common fields of every workload spec."""

    kind: str
    name: str | None = None  # a label in reports; defaults to the kind
    start: Duration = 0.0  # simulated time at which the workload begins

    @property
    def label(self) -> str:
        return self.name or self.kind


class Workload(Protocol):
    """A running workload."""

    spec: WorkloadSpec

    def start(self, machine: Any, rng: np.random.Generator) -> None: ...


def poisson_arrivals(
    env: Any, rng: np.random.Generator, start: float, rate: float, limit: int | None, launch: Callable[[int], None]
) -> Generator[Any, Any, None]:
    """A SimPy process: from ``start``, arrivals at exponential gaps of mean
    ``1/rate`` (none when the rate is 0), at most ``limit`` of them (None: no
    bound).  ``launch(n)`` handles the n-th arrival (1-based) after its gap was
    drawn, and draws what else it needs from ``rng`` itself."""
    if start:
        yield env.timeout(start)
    n = 0
    while rate > 0 and (limit is None or n < limit):
        yield env.timeout(rng.exponential(1.0 / rate))
        n += 1
        launch(n)


def draw_lifetime(rng: np.random.Generator, mean: float) -> float:
    """An exponential lifetime of mean ``mean`` seconds; forever when the mean is infinite."""
    return rng.exponential(mean) if np.isfinite(mean) else np.inf
