"""Where the NOWAIT split starts to fail: bisection over one numeric factor.

The question "at how much RAM (how many fork workers) do split GFP_NOWAIT failures
appear?" has an answer between two probed values, not at one: a probe either observed
failures or did not, and "no failure observed" only says that the rate is below the
Wilson upper bound of zero failures in that many vmalloc calls.  So a boundary here is
a *bracket*: the last value where no failure was observed and the first value where
failures were, each probe with its rate per 10^6 vmalloc calls and Wilson 95% interval.

:class:`Bisection` knows nothing of the model: it is told the observation at each
value it asks for (:meth:`Bisection.pending`, :meth:`Bisection.record`), so that a
caller can probe many bisections in lockstep on one executor, and
:func:`find_boundary` drives one with a probe function.  The direction comes from the
two ends of the range (failures at small RAM, at many workers); if both ends fail or
neither does, there is no boundary inside the range and none is invented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim.analysis.data import rate_per_million

Number = int | float

BRACKET = "bracket"  # the ends disagree: the boundary lies between ``clean`` and ``failing``
FAILS_AT_BOTH_ENDS = "fails at both ends"
CLEAN_AT_BOTH_ENDS = "no failure at either end"
ERROR = "error"  # a probe's runs produced nothing usable
FALLING = "falling"  # failures below the boundary (small RAM): they stop as the factor grows
RISING = "rising"  # failures above the boundary (many workers): they start as the factor grows


@dataclass(frozen=True)
class Observation:
    """What the runs of one probe gave, pooled over its replications."""

    failures: int  # split GFP_NOWAIT failures
    calls: int  # vmalloc calls
    runs: int = 1
    errors: tuple[str, ...] = ()  # messages of runs that ended in an error of the simulator


@dataclass(frozen=True)
class Probe:
    """One probed value of the factor and what its runs observed."""

    value: Number
    failures: int
    calls: int
    runs: int

    @property
    def failing(self) -> bool:
        """Whether any split NOWAIT failure was observed here."""
        return self.failures > 0

    def rate(self) -> tuple[float, float, float]:
        """Failures per 10^6 vmalloc calls and its Wilson 95% interval (NaN without calls).
        At zero failures the upper end is all a probe can say: the rate is below it."""
        return rate_per_million(self.failures, self.calls)


@dataclass(frozen=True)
class Boundary:
    """The outcome of one bisection over [low, high]."""

    low: Number
    high: Number
    outcome: str  # BRACKET, FAILS_AT_BOTH_ENDS, CLEAN_AT_BOTH_ENDS or ERROR
    direction: str | None  # FALLING or RISING for a bracket
    clean: Number | None  # the bracket's end where no failure was observed
    failing: Number | None  # the bracket's end where failures were observed
    probes: tuple[Probe, ...]  # every probe, by value
    error: str = ""

    @property
    def bracket(self) -> tuple[Number, Number] | None:
        """The bracket in value order (lower, upper), None without one."""
        if self.clean is None or self.failing is None:
            return None
        return (min(self.clean, self.failing), max(self.clean, self.failing))

    def probe_at(self, value: Number) -> Probe | None:
        """The probe of ``value``, if it was probed."""
        return next((p for p in self.probes if p.value == value), None)


def midpoint(a: Number, b: Number, granule: int | None) -> Number | None:
    """A value strictly between ``a`` < ``b`` near their middle, on the grid ``a + k * granule``
    (integers; None for real numbers), or None when there is none: the bracket is as narrow as
    the factor allows."""
    if granule is None:
        mid = (a + b) / 2
        return mid if a < mid < b else None
    steps = (int(b) - int(a)) // (2 * granule) or 1
    mid = int(a) + steps * granule
    return mid if mid < b else None


class Bisection:
    """Bisection of [low, high] for the value where observed failures start or stop.

    First both ends are probed (:meth:`pending` gives both); their outcomes give the
    direction, or the answer that the range holds no boundary.  Then each step probes a
    midpoint of the bracket and keeps the half whose ends disagree, until ``steps``
    midpoints have been probed or the bracket is one ``granule`` wide (integer factors:
    ``granule`` is 1 for counts, a page or a MiB for sizes; None for real numbers)."""

    def __init__(self, low: Number, high: Number, steps: int, granule: int | None = None) -> None:
        if not low < high:
            raise ValueError(f"expected low < high, got {low} and {high}")
        if steps < 0:
            raise ValueError(f"expected steps >= 0, got {steps}")
        if granule is not None and (granule < 1 or low != int(low) or high != int(high)):
            raise ValueError(f"an integer granule ({granule}) needs integer ends and granule >= 1")
        self.low, self.high, self.steps, self.granule = low, high, steps, granule
        self._probes: dict[Number, Probe] = {}
        self._left: Number = low  # the bracket: its ends' outcomes differ (after the ends are probed)
        self._right: Number = high
        self._waiting: list[Number] = [low, high]
        self._midpoints = 0
        self._error = ""

    @property
    def done(self) -> bool:
        """Whether nothing is left to probe."""
        return not self._waiting

    def pending(self) -> list[Number]:
        """The values to probe now (both ends at first, then one midpoint); empty when done."""
        return list(self._waiting)

    def record(self, value: Number, seen: Observation) -> None:
        """The observation at ``value``, one of :meth:`pending`; plans the next probe once every
        pending value is recorded."""
        if value not in self._waiting:
            raise ValueError(f"{value} is not waiting to be probed (pending: {self._waiting})")
        self._waiting.remove(value)
        self._probes[value] = Probe(value, seen.failures, seen.calls, seen.runs)
        if seen.errors:
            self._error = f"at {value}: {seen.errors[0]}"
            self._waiting.clear()
            return
        if self._waiting:
            return
        if len(self._probes) == 2:  # the ends (a midpoint lies strictly between them)
            if self._probes[self.low].failing == self._probes[self.high].failing:
                return  # no boundary inside the range
        else:
            self._midpoints += 1
            if self._probes[value].failing == self._probes[self._left].failing:
                self._left = value
            else:
                self._right = value
        mid = midpoint(self._left, self._right, self.granule)
        if mid is not None and self._midpoints < self.steps:
            self._waiting.append(mid)

    def result(self) -> Boundary:
        """The boundary found so far (the final one once :attr:`done`)."""
        probes = tuple(self._probes[v] for v in sorted(self._probes))
        ends = (self._probes.get(self.low), self._probes.get(self.high))
        if self._error or None in ends:
            return Boundary(self.low, self.high, ERROR, None, None, None, probes, self._error or "not probed yet")
        low_end, high_end = ends
        if low_end.failing == high_end.failing:
            outcome = FAILS_AT_BOTH_ENDS if low_end.failing else CLEAN_AT_BOTH_ENDS
            return Boundary(self.low, self.high, outcome, None, None, None, probes)
        left, right = self._probes[self._left], self._probes[self._right]
        direction = FALLING if left.failing else RISING
        clean, failing = (right, left) if left.failing else (left, right)
        return Boundary(self.low, self.high, BRACKET, direction, clean.value, failing.value, probes)


def find_boundary(
    low: Number,
    high: Number,
    probe: Callable[[Number], Observation],
    steps: int,
    granule: int | None = None,
) -> Boundary:
    """Bisect [low, high] with ``probe`` (value -> pooled observation): the ends, then up to
    ``steps`` midpoints.  See :class:`Bisection`."""
    bisection = Bisection(low, high, steps, granule)
    while not bisection.done:
        for value in bisection.pending():
            bisection.record(value, probe(value))
    return bisection.result()
