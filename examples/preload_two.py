"""A counterfactual split-object strategy in one file: a per-CPU preload of two objects.

Load it with ``vmsim run --plugin examples/preload_two.py SCENARIO --set
"strategies=[nowait, preload, preload-two]"`` (also ``sweep``, ``answer``, ``validate``,
``plot``); nothing under sim/ changes.  Defining the class registers it.

The kernel's preload (v5.3, 82dd23e84be3, "mm/vmalloc.c: preload a CPU with one object for
split purpose") keeps at most one ``struct vmap_area`` per CPU in ``ne_fit_preload_node``.
Here each CPU keeps up to two: ``alloc_vmap_area`` tops the CPU's stock up to two with
GFP_KERNEL fills (preemption on for each fill, off to check and install, as v5.3 does) before
taking the lock, and ``adjust_va_to_fit_type`` takes one.  The question it asks: does a
second object cover the splits that v5.3 misses when a task migrates, or another task takes
the object, between the fill and the lock?  No kernel did this.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.mm.vmalloc.strategies.base import SplitHost
from sim.kernel.mm.vmalloc.strategies.preload import PreloadSplit
from sim.kernel.sched.cpu import Task

DEPTH = 2  # objects kept per CPU


class PreloadTwoSplit(PreloadSplit):
    """Counterfactual: v5.3's preload, with a per-CPU stock of two objects instead of one.

    Per CPU: ``stock``, a list of at most ``DEPTH`` objects (the parent's one-object slot is
    not used)."""

    name = "preload-two"
    commit = "counterfactual"
    colour = "#56B4E9"
    order = 60  # after the built-in strategies
    preloads = True

    def __init__(self, ncpus: int) -> None:
        super().__init__(ncpus)
        self.stock: list[list[VmapArea]] = [[] for _ in range(ncpus)]

    def preloaded(self, cpu: int) -> int:
        return len(self.stock[cpu])

    def lock_for_alloc(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, None]:
        sched = vm.sched
        sched.preempt_disable(task)
        while len(self.stock[task.cpu]) < DEPTH:  # the CPU of the moment: the task may migrate
            yield from sched.preempt_enable(task)
            pva = yield from self.fill(vm, task, self.fill_gfp(gfp))
            sched.preempt_disable(task)
            if pva is None:
                break
            self.install(vm, task, pva)
        yield from sched.run(task, vm.params.t_check_lock)
        yield from vm.free_lock.lock(task)
        yield from sched.preempt_enable(task)

    def take_preload(self, vm: SplitHost, task: Task) -> VmapArea | None:
        stock = self.stock[task.cpu]
        if not stock:
            return None
        vm.metrics.add("split_from_preload")
        return stock.pop()

    def install(self, vm: SplitHost, task: Task, pva: VmapArea | None) -> None:
        if pva is None:
            return
        stock = self.stock[task.cpu]
        if len(stock) < DEPTH:
            stock.append(pva)
        else:
            vm.free_object_of(task, pva)
