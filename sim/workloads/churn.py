"""Alloc/free churn on the bare allocator core, around a fixed live-set size.

These are the two reference workloads of the core (issue 2): kernel thread
stacks (CONFIG_VMAP_STACK: 16 KiB plus a guard page at THREAD_ALIGN = 16 KiB
in the vmalloc window) and plain vmalloc of 1-100 pages plus guard (align 1).
The live set grows to ``live`` areas, then each step frees a random live area
and allocates a new one.  All randomness comes from the numpy Generator passed
in, drawn up front, so the timed loop does nothing but allocator work and
bookkeeping of the live set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.kernel.mm.vmalloc.space import FIT_NAMES, PAGE_SIZE, VMALLOC_END, VMALLOC_START, VmapSpace

THREAD_SIZE = 16 * 1024
THREAD_ALIGN = THREAD_SIZE
STACK_AREA = THREAD_SIZE + PAGE_SIZE  # with the guard page

CHURN_KINDS = ("fork-stacks", "random-sizes")


@dataclass
class ChurnPlan:
    """Pre-drawn sizes and victims of one churn run."""

    kind: str
    align: int
    sizes: list[int]
    victims: list[int]
    live: int


@dataclass
class ChurnResult:
    """What the core did during the steady-state part of a churn run."""

    kind: str
    live: int
    steps: int
    fits: dict[str, int] = field(default_factory=dict)
    failures: int = 0

    def fit_mix(self) -> dict[str, float]:
        total = sum(self.fits.values())
        return {k: (v / total if total else 0.0) for k, v in self.fits.items()}


def plan_churn(kind: str, live: int, steps: int, rng: np.random.Generator) -> ChurnPlan:
    """Draw the sizes of ``live + steps`` allocations and ``steps`` victims."""
    if kind not in CHURN_KINDS:
        raise ValueError(f"kind must be one of {CHURN_KINDS}, not {kind!r}")
    if live < 1 or steps < 0:
        raise ValueError("live must be at least 1 and steps at least 0")
    total = live + steps
    if kind == "fork-stacks":
        sizes = [STACK_AREA] * total
        align = THREAD_ALIGN
    else:
        sizes = ((rng.integers(1, 101, size=total) + 1) * PAGE_SIZE).tolist()
        align = 1
    victims = rng.integers(0, live, size=steps).tolist()
    return ChurnPlan(kind, align, sizes, victims, live)


def fill(space: VmapSpace, plan: ChurnPlan) -> list[int]:
    """Allocate the initial live set; return the live start addresses."""
    alloc = space.alloc_area
    align = plan.align
    live = []
    for size in plan.sizes[: plan.live]:
        va = alloc(size, align, VMALLOC_START, VMALLOC_END)
        if isinstance(va, int):
            raise RuntimeError(f"fill failed with error {va}")
        live.append(va.va_start)
    return live


def churn(space: VmapSpace, plan: ChurnPlan, live: list[int], first: int = 0, last: int | None = None) -> int:
    """Run steps ``first``..``last`` of the plan (free a victim, allocate one);
    return the number of failed allocations."""
    last = len(plan.victims) if last is None else last
    alloc = space.alloc_area
    free = space.free
    sizes = plan.sizes
    victims = plan.victims
    align = plan.align
    base = plan.live
    failures = 0
    for k in range(first, last):
        j = victims[k]
        free(live[j])
        va = alloc(sizes[base + k], align, VMALLOC_START, VMALLOC_END)
        if isinstance(va, int):
            failures += 1
            live[j] = -1
        else:
            live[j] = va.va_start
    return failures


def run_churn(kind: str, live: int, steps: int, rng: np.random.Generator, search: str = "v5.3") -> ChurnResult:
    """Fill, then churn; report the fit types of the steady-state allocations."""
    plan = plan_churn(kind, live, steps, rng)
    space = VmapSpace(search=search)
    addrs = fill(space, plan)
    before = list(space.fit_counts)
    failures = churn(space, plan, addrs)
    fits = {FIT_NAMES[t]: space.fit_counts[t] - before[t] for t in FIT_NAMES}
    return ChurnResult(kind, live, steps, fits, failures)
