"""What a run measures: counters, failure events, and sampled levels.

One :class:`Metrics` object per run is handed to every kernel component.
Components only append to it (no I/O); ``record/results.py`` turns it into tables.
Counter names are declared in ``record/counters.py`` and event kinds with their
fields in ``record/events.py``.  ``add`` and ``add_time`` do not look names up
(they are on the hot path); :func:`check_names` makes them, and the tests turn
it on.  ``event`` always checks its kind and fields: events are rare.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sim.record.counters import declaration
from sim.record.events import check_event

CHECK_ENV = "VMSIM_CHECK_COUNTERS"  # "1": every Metrics checks counter names (worker processes too)


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
        self.seconds[name] += seconds  # type: ignore[assignment]  # a Counter of floats

    def event(self, kind: str, time: float, **fields: Any) -> dict[str, Any]:
        """Record one event (a failure, a BUG, an OOM kill) and return it; ``kind`` and
        ``fields`` must be declared in ``record/events.py``."""
        check_event(kind, fields)
        record = {"kind": kind, "time": time, **fields}
        self.events.append(record)
        return record

    def sample(self, time: float, **levels: Any) -> None:
        """Record one time series sample of levels (free pages, boost, ...)."""
        self.samples.append({"time": time, **levels})

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


_FAST = (Metrics.add, Metrics.add_time)


def _checked_add(self: Metrics, name: str, n: int = 1) -> None:
    if declaration(name) is None:
        raise KeyError(f"counter {name!r} is not declared in sim/record/counters.py")
    self.counters[name] += n


def _checked_add_time(self: Metrics, name: str, seconds: float) -> None:
    if declaration(name, seconds=True) is None:
        raise KeyError(f"time counter {name!r} is not declared in sim/record/counters.py")
    self.seconds[name] += seconds  # type: ignore[assignment]  # a Counter of floats


def check_names(on: bool = True) -> None:
    """Make ``Metrics.add``/``add_time`` refuse an undeclared name (``on``), or go back to
    the unchecked ones; sets ``$VMSIM_CHECK_COUNTERS`` so worker processes follow."""
    Metrics.add, Metrics.add_time = (_checked_add, _checked_add_time) if on else _FAST  # type: ignore[method-assign]
    os.environ[CHECK_ENV] = "1" if on else "0"


if os.environ.get(CHECK_ENV) == "1":
    check_names()
