"""Paired differences with a t interval, and the verdict they support (``vmsim judge``).

A design and the baseline run at the same grid point and replication start from the same
random streams (common random numbers: a run's seed comes from the root seed, the point and
the replication, never from the strategy or the kernel profile).  What differs between the
two runs of a pair is the design, so the difference *within* a pair carries far less noise
than the spread of either side: the question "does the design change this measure?" is
answered by the mean of the paired differences and its interval, not by two intervals side by
side (which overlap long after the paired one has left zero).

The interval is Student's t at 95% on the n differences.  The t quantile is computed here
(:func:`t_quantile`: scipy is not a dependency, and a table would stop somewhere); it uses the
closed form of the t distribution's central mass for whole degrees of freedom.

Verdicts, lower being better for every measure vmsim judges (failures, waits, stalls, memory):
``better`` when the whole interval lies below zero, ``worse`` when it lies above, otherwise
``no detectable difference at N runs``.  Two edge cases, decided so:

* one pair (n = 1) has no interval: whatever its difference, the verdict is "no detectable
  difference at 1 run";
* zero spread (n >= 2 and every difference the same): the t interval has width 0.  If that
  difference is 0 (both sides identical in every run: the design never changed the outcome,
  e.g. no split ever failed on either side) the verdict is "no detectable difference".  If it
  is not 0, the verdict is "better" or "worse", flagged *exact*: under common random numbers an
  identical difference in every replication means the design changes this measure by that
  amount whatever the workload's random numbers did (a reserve of 4 objects held in every run,
  a deterministic test that fails the same calls each time).  It says nothing about workloads
  that were not run; the report prints "the same in every run" beside it so a reader can weigh it.

Nothing here reads files or imports the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
BETTER, WORSE = "better", "worse"
NOT_MEASURED = "not measured in these runs"


def t_central_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (a whole number >= 1) degrees of freedom.

    The closed form for whole degrees of freedom (Abramowitz and Stegun 26.7.3 and 26.7.4): with
    theta = atan(t / sqrt(df)), a finite series in cos(theta), odd and even ``df`` apart."""
    if df < 1:
        raise ValueError(f"expected df >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 0.0
        if df > 1:
            term = total = math.cos(theta)
            for k in range(1, (df - 1) // 2):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
        return 2 / math.pi * (theta + s * total)
    term = total = 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The t value whose central interval holds ``confidence`` of the mass (1.96 as df grows;
    12.71 at df = 1, 2.78 at df = 4 for 95%); found by bisection on :func:`t_central_mass`."""
    if not 0 < confidence < 1:
        raise ValueError(f"expected a confidence between 0 and 1, got {confidence}")
    lo, hi = 0.0, 1.0
    while t_central_mass(hi, df) < confidence:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_central_mass(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean of ``values``; low and high are NaN for
    fewer than two values, and both the mean when every value is the same."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    if float(np.ptp(x)) == 0.0:  # no spread: an exact difference (no rounding left in the std)
        return mean, mean, mean
    half = t_quantile(x.size - 1, confidence) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def no_difference(n: int) -> str:
    """``no detectable difference at 4 runs``."""
    return f"no detectable difference at {n} run{'' if n == 1 else 's'}"


def verdict(lo: float, hi: float, n: int) -> str:
    """``better`` (the interval of design - baseline lies below 0), ``worse`` (above), else no
    detectable difference at ``n`` runs; nothing measured at n = 0 (see the module doc)."""
    if n == 0:
        return NOT_MEASURED
    if n < 2 or math.isnan(lo) or math.isnan(hi):
        return no_difference(n)
    if hi < 0:
        return BETTER
    if lo > 0:
        return WORSE
    return no_difference(n)


@dataclass(frozen=True)
class Paired:
    """The paired comparison of one measure: means of each side over the pairs, the mean
    difference (design - baseline) with its interval, and the verdict."""

    n: int
    baseline: float
    design: float
    difference: float
    lo: float
    hi: float
    verdict: str

    @property
    def exact(self) -> bool:
        """Every pair differed by the same amount (an interval of width 0 from n >= 2 pairs)."""
        return self.n >= 2 and self.lo == self.hi


def paired(baseline: Sequence[float], design: Sequence[float], confidence: float = CONFIDENCE) -> Paired:
    """Compare ``design`` with ``baseline`` pair by pair (the i-th of each: same point, same
    replication); pairs where either side is NaN (not measured) are left out."""
    b = np.asarray(baseline, dtype=float)
    d = np.asarray(design, dtype=float)
    if b.shape != d.shape:
        raise ValueError(f"expected pairs, got {b.size} baseline and {d.size} design values")
    keep = ~(np.isnan(b) | np.isnan(d))
    b, d = b[keep], d[keep]
    if b.size == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, math.nan, NOT_MEASURED)
    diff, lo, hi = mean_interval(d - b, confidence)
    return Paired(int(b.size), float(b.mean()), float(d.mean()), diff, lo, hi, verdict(lo, hi, int(b.size)))
