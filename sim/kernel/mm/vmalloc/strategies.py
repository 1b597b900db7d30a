"""How the NE_FIT split's extra ``struct vmap_area`` is obtained.

Each strategy supplies two steps of ``alloc_vmap_area``: ``lock_for_alloc``
(everything from the ``retry:`` label to holding the free-tree lock, i.e. the
preload) and ``split_object`` (what ``adjust_va_to_fit_type`` does for an
NE_FIT split, under the lock, on the CPU the task runs on at that instant).

* ``nowait``: v5.2, GFP_NOWAIT under the lock.
* ``preload``: v5.3, 82dd23e84be3: preemption off to check the per-CPU slot,
  a GFP_KERNEL fill with preemption on, cmpxchg on the CPU of the moment, and
  the lock taken before preemption is enabled again.
* ``preload-lockless``: v5.5, 81f1ba586e39: the slot is checked with
  preemption on and the filled object installed with cmpxchg once the lock is
  held, so a preemption or migration between the check and the lock can leave
  the lock-holding CPU without an object.
* ``preload-gfp``: v5.5+, "respect passed gfp_mask when do preloading": as
  ``preload-lockless`` with the caller's gfp for the fill.
* ``atomic``: a counterfactual: GFP_ATOMIC for the split (may dip below min).

In every preload strategy an empty slot at split time falls back to GFP_NOWAIT,
as the kernel does; such a split counts as a ``preload_miss``.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

from sim.kernel.mm.gfp import GFP_ATOMIC, GFP_KERNEL, GFP_RECLAIM_MASK
from sim.kernel.mm.vmalloc.space import VmapArea
from sim.kernel.sched.cpu import Task

PRELOAD_SLOT = "ne_fit_preload_node"


class NowaitSplit:
    """v5.2: no preload; the split allocates with GFP_NOWAIT under the lock."""

    name = "nowait"
    commit = "68ad4a330433 (v5.2)"
    preloads = False

    def lock_for_alloc(self, vm: Any, task: Task, gfp: int) -> Generator[Any, Any, None]:
        yield from vm.free_lock.lock(task)

    def split_object(self, vm: Any, task: Task) -> VmapArea | None:
        return vm.split_nowait(task)


class AtomicSplit(NowaitSplit):
    """Counterfactual: GFP_ATOMIC for the split (ALLOC_HIGH | ALLOC_HARDER)."""

    name = "atomic"
    commit = "counterfactual"

    def split_object(self, vm: Any, task: Task) -> VmapArea | None:
        return vm.split_nowait(task, GFP_ATOMIC)


class PreloadSplit:
    """v5.3 (82dd23e84be3): preload with preemption disabled around the check."""

    name = "preload"
    commit = "82dd23e84be3 (v5.3)"
    preloads = True

    def fill_gfp(self, gfp: int) -> int:
        return GFP_KERNEL

    def lock_for_alloc(self, vm: Any, task: Task, gfp: int) -> Generator[Any, Any, None]:
        sched = vm.sched
        sched.preempt_disable(task)
        if sched.cpus[task.cpu].percpu[PRELOAD_SLOT] is None:
            yield from sched.preempt_enable(task)
            pva = yield from _fill(vm, task, self.fill_gfp(gfp))
            sched.preempt_disable(task)
            _install(vm, task, pva)
        yield from sched.run(task, vm.params.t_check_lock)
        yield from vm.free_lock.lock(task)
        yield from sched.preempt_enable(task)

    def split_object(self, vm: Any, task: Task) -> VmapArea | None:
        va = vm.take_preload(task)
        if va is None:
            vm.metrics.add("preload_misses")
            va = vm.split_nowait(task)
        return va


class PreloadLocklessSplit(PreloadSplit):
    """v5.5 (81f1ba586e39): check with preemption on, install under the lock."""

    name = "preload-lockless"
    commit = "81f1ba586e39 (v5.5)"

    def lock_for_alloc(self, vm: Any, task: Task, gfp: int) -> Generator[Any, Any, None]:
        sched = vm.sched
        pva = None
        if sched.cpus[task.cpu].percpu[PRELOAD_SLOT] is None:
            pva = yield from _fill(vm, task, self.fill_gfp(gfp))
        yield from sched.run(task, vm.params.t_check_lock)  # a preemption point before the lock
        yield from vm.free_lock.lock(task)
        if pva is not None:
            _install(vm, task, pva)


class PreloadGfpSplit(PreloadLocklessSplit):
    """v5.5+ ("respect passed gfp_mask when do preloading"): the caller's gfp."""

    name = "preload-gfp"
    commit = "v5.5, Rezki 2019-10-16 2/3"

    def fill_gfp(self, gfp: int) -> int:
        return gfp & GFP_RECLAIM_MASK


def _fill(vm: Any, task: Task, gfp: int) -> Generator[Any, Any, VmapArea | None]:
    """The preload's allocation, counted, with its latency in a histogram of
    power-of-two microsecond buckets: ``preload_fill_latency_le_<k>`` counts
    fills that took at most 2^k us (k = 0 also holds fills that took no
    simulated time, served from a per-CPU cache)."""
    start = vm.env.now
    pva = yield from vm.new_object(task, gfp)
    metrics = vm.metrics
    metrics.add("preload_fills")
    if pva is None:
        metrics.add("preload_fill_failures")
    waited = vm.env.now - start
    k = 0 if waited <= 1e-6 else min(math.ceil(math.log2(waited * 1e6) - 1e-9), 30)
    metrics.add(f"preload_fill_latency_le_{k}")
    metrics.add_time("preload_fill", waited)
    return pva


def _install(vm: Any, task: Task, pva: VmapArea | None) -> None:
    """``__this_cpu_cmpxchg(ne_fit_preload_node, NULL, pva)``; a loser is freed."""
    percpu = vm.sched.cpus[task.cpu].percpu
    if percpu[PRELOAD_SLOT] is None:
        percpu[PRELOAD_SLOT] = pva
    elif pva is not None:
        vm.free_object_of(task, pva)


STRATEGIES: dict[str, type] = {
    cls.name: cls for cls in (NowaitSplit, PreloadSplit, PreloadLocklessSplit, PreloadGfpSplit, AtomicSplit)
}


def make_strategy(name: str) -> Any:
    """A new strategy object by its scenario name."""
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
