"""A counterfactual split-object strategy in one file: retry the split with GFP_KERNEL.

Load it with ``vmsim run --plugin examples/retry_kernel.py SCENARIO --set
"strategies=[nowait, preload, retry-kernel]"`` (also ``sweep``, ``answer``, ``validate``);
nothing under sim/ changes.  Defining the class registers it.

What a patch would change: v5.2's ``adjust_va_to_fit_type`` would keep its
``kmem_cache_alloc(vmap_area_cachep, GFP_NOWAIT)`` under the lock, but quietly
(``__GFP_NOWARN``), and a split that got no object would no longer end in the overflow
path's purge: ``alloc_vmap_area`` would drop the lock, allocate the object with GFP_KERNEL
(which may sleep and reclaim), and go back to ``retry:`` once, with the object in hand for
the split.  Nothing is preloaded: the common case costs what v5.2 costs, and only a split
that failed pays for a sleeping allocation.  The object is held by the calling task (a local
variable of ``alloc_vmap_area`` in a patch), so migration cannot take it away.  A retry that
finds the space changed and needs no split leaves the object for the task's next call (a
patch would free it after the unlock).  No kernel did this; the model's
``alloc_vmap_area`` offers the retry to any strategy whose ``retry_split_unlocked`` is set
(strategies/base.py), counted as ``split_retries_unlocked``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sim.kernel.mm.gfp import GFP_KERNEL, GFP_NOWAIT, Gfp
from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.mm.vmalloc.strategies.base import SplitHost, SplitStrategy
from sim.kernel.sched.cpu import Task


class RetryKernelSplit(SplitStrategy):
    """Counterfactual: GFP_NOWAIT|__GFP_NOWARN under the lock; on failure, drop the lock, get
    the object with GFP_KERNEL, retry once (no purge).

    Per task (by pid): ``wanting``, the tasks whose split found no object; ``held``, the
    object a task got for its retry."""

    name = "retry-kernel"
    commit = "counterfactual"
    colour = "#F0E442"
    order = 63  # after the built-in strategies
    retry_split_unlocked = True

    def __init__(self, ncpus: int) -> None:
        super().__init__(ncpus)
        self.wanting: set[int] = set()
        self.held: dict[int, VmapArea] = {}

    def lock_for_alloc(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, None]:
        if task.pid in self.wanting and task.pid not in self.held:
            self.wanting.discard(task.pid)
            pva = yield from vm.new_object(task, GFP_KERNEL)  # may sleep and reclaim: no lock held
            if pva is not None:
                self.held[task.pid] = pva
        yield from vm.free_lock.lock(task)

    def split_object(self, vm: SplitHost, task: Task) -> VmapArea | None:
        va = self.held.pop(task.pid, None)
        if va is not None:
            return va
        va = vm.split_nowait(task, int(GFP_NOWAIT) | Gfp.NOWARN)
        if va is None:
            self.wanting.add(task.pid)
        return va
