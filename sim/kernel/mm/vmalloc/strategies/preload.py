"""``preload``: the per-CPU preload of v5.3, preemption off around the check.

Models ``alloc_vmap_area`` of v5.3 (82dd23e84be3, "mm/vmalloc.c: preload a CPU with one
object for split purpose"):
preemption off to check the CPU's ``ne_fit_preload_node``; if empty, preemption on, a
``kmem_cache_alloc_node(vmap_area_cachep, GFP_KERNEL)`` that may sleep and reclaim, preemption
off again and ``__this_cpu_cmpxchg`` on the CPU of the moment (a loser is freed), then the
lock taken before preemption is enabled again.  ``adjust_va_to_fit_type`` takes the object with
``__this_cpu_xchg``; an empty slot falls back to GFP_NOWAIT and counts as a ``preload_miss``.
With preemption off from the check to the lock (``spin_lock`` sleeps only under PREEMPT_RT),
an ``alloc_vmap_area`` split finds the slot empty only when its fill got no object (a
``preload_fill_miss``); a percpu carve
(``pcpu_get_vm_areas``, which never preloads) finds it empty whenever its CPU holds none
(``pcpu_split_nowait``).  :meth:`~sim.kernel.mm.vmalloc.alloc.Vmalloc.split_nowait` tells these
apart from the ``preload_race_miss`` of the v5.5 check.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

from sim.kernel.mm.gfp import GFP_KERNEL
from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.mm.vmalloc.strategies.base import SplitHost, SplitStrategy
from sim.kernel.sched.cpu import Task


class PreloadSplit(SplitStrategy):
    """v5.3 (82dd23e84be3): preload with preemption disabled around the check.

    Per CPU: ``ne_fit_preload_node``, one object or None."""

    name = "preload"
    commit = "82dd23e84be3 (v5.3)"
    colour = "#0072B2"
    order = 20
    preloads = True

    def __init__(self, ncpus: int) -> None:
        super().__init__(ncpus)
        self.ne_fit_preload_node: list[VmapArea | None] = [None] * ncpus

    def preloaded(self, cpu: int) -> int:
        return int(self.ne_fit_preload_node[cpu] is not None)

    def fill_gfp(self, gfp: int) -> int:
        """The gfp of the preload's fill: GFP_KERNEL in v5.3, whatever the caller passed."""
        return GFP_KERNEL

    def lock_for_alloc(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, None]:
        sched = vm.sched
        sched.preempt_disable(task)
        if self.ne_fit_preload_node[task.cpu] is None:
            yield from sched.preempt_enable(task)
            pva = yield from self.fill(vm, task, self.fill_gfp(gfp))
            sched.preempt_disable(task)
            self.install(vm, task, pva)
        yield from sched.run(task, vm.params.t_check_lock)
        yield from vm.free_lock.lock(task)
        yield from sched.preempt_enable(task)

    def split_object(self, vm: SplitHost, task: Task) -> VmapArea | None:
        va = self.take_preload(vm, task)
        if va is None:
            vm.metrics.add("preload_misses")
            va = vm.split_nowait(task)
        return va

    def take_preload(self, vm: SplitHost, task: Task) -> VmapArea | None:
        """``__this_cpu_xchg(ne_fit_preload_node, NULL)`` on the task's CPU now."""
        cpu = task.cpu
        va = self.ne_fit_preload_node[cpu]
        if va is not None:
            self.ne_fit_preload_node[cpu] = None
            vm.metrics.add("split_from_preload")
        return va

    def install(self, vm: SplitHost, task: Task, pva: VmapArea | None) -> None:
        """``__this_cpu_cmpxchg(ne_fit_preload_node, NULL, pva)``; a loser is freed."""
        cpu = task.cpu
        if self.ne_fit_preload_node[cpu] is None:
            self.ne_fit_preload_node[cpu] = pva
        elif pva is not None:
            vm.free_object_of(task, pva)

    def fill(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, VmapArea | None]:
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
