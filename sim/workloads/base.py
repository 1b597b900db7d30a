"""What every workload has: a spec (a pydantic model with a ``kind``) and a start.

A workload is built from its spec, then ``start(machine, rng)`` spawns its
tasks on the machine; from then on it only issues kernel calls and counts what
happened in ``machine.metrics``.  Its random stream is its own (common random
numbers across strategies).  Specs reject unknown keys so that a YAML typo is
an error, not a silently ignored setting.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from sim.units import Duration


class WorkloadSpec(BaseModel):
    """Common fields of every workload spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
