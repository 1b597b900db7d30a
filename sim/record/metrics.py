"""What a run measures: counters, failure events, and sampled levels.

One :class:`Metrics` object per run is handed to every kernel component.
Components only append to it (no I/O); ``record/results.py`` turns it into tables.
Counter names are the column names of runs.parquet where one exists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Metrics:
    """Counters, an event log and time series samples of one run."""

    counters: Counter = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)

    def add(self, name: str, n: int = 1) -> None:
        """Increase counter ``name`` by ``n``."""
        self.counters[name] += n

    def add_time(self, name: str, seconds: float) -> None:
        """Accumulate simulated seconds under ``name`` (e.g. direct reclaim)."""
        self.seconds[name] += seconds

    def event(self, kind: str, time: float, **fields: Any) -> dict[str, Any]:
        """Record one event (a failure, a BUG, an OOM kill) and return it."""
        record = {"kind": kind, "time": time, **fields}
        self.events.append(record)
        return record

    def sample(self, time: float, **levels: Any) -> None:
        """Record one time series sample of levels (free pages, boost, ...)."""
        self.samples.append({"time": time, **levels})

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]
