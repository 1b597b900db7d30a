"""What a run measures: counters, failure events, and sampled levels.

One :class:`Metrics` object per run is handed to every kernel component.
Components only append to it (no I/O); ``record/results.py`` turns it into tables.
Counter names are declared in ``record/counters.py`` and event kinds with their
fields in ``record/events.py``.  ``add`` and ``add_time`` do not look names up
(they are on the hot path) unless the object was made while checking was on:
:func:`check_names` turns it on (the tests do) for every ``Metrics`` made after
the call, in this process and in the worker processes it starts.  ``event``
always checks its kind and fields: events are rare.

This module is compiled in the compiled build (docs/compiled.md): the flag is a
field read on each call rather than a method swapped on the class, which a
compiled class does not allow.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sim.record.counters import declaration
from sim.record.events import check_event

CHECK_ENV = "VMSIM_CHECK_COUNTERS"  # "1": every Metrics checks counter names (worker processes too)


def checking() -> bool:
    """Whether a ``Metrics`` made now checks counter names (:func:`check_names`)."""
    return os.environ.get(CHECK_ENV) == "1"


@dataclass
class Metrics:
    """Counters, an event log and time series samples of one run."""

    counters: Counter[str] = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    seconds: Counter[str] = field(default_factory=Counter)
    check: bool = field(default_factory=checking)  # refuse undeclared counter names

    def add(self, name: str, n: int = 1) -> None:
        """Increase counter ``name`` by ``n``."""
        if self.check and declaration(name) is None:
            raise KeyError(f"counter {name!r} is not declared in sim/record/counters.py")
        self.counters[name] += n

    def add_time(self, name: str, seconds: float) -> None:
        """Accumulate simulated seconds under ``name`` (e.g. direct reclaim)."""
        if self.check and declaration(name, seconds=True) is None:
            raise KeyError(f"time counter {name!r} is not declared in sim/record/counters.py")
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


def check_names(on: bool = True) -> None:
    """Make every ``Metrics`` made from now on refuse an undeclared counter name (``on``),
    or stop; sets ``$VMSIM_CHECK_COUNTERS`` so that worker processes follow."""
    os.environ[CHECK_ENV] = "1" if on else "0"
