"""A counterfactual split-object strategy in one file: a mempool of reserved objects.

Load it with ``vmsim run --plugin examples/mempool.py SCENARIO --set
"strategies=[nowait, preload, mempool]"`` (also ``sweep``, ``answer``, ``validate``);
nothing under sim/ changes.  Defining the class registers it.

What a patch would change: instead of v5.3's per-CPU ``ne_fit_preload_node``, vmalloc
would keep one ``mempool_t`` of ``POOL`` reserved ``struct vmap_area`` objects
(``mempool_create_slab_pool(POOL, vmap_area_cachep)``).  ``adjust_va_to_fit_type`` would
take the split's object from the reserve under the lock, which never allocates; and
``alloc_vmap_area``, before taking the lock, would top the reserve up to ``POOL`` with
GFP_KERNEL allocations that may sleep and reclaim.  The reserve is shared by all CPUs, so
a task that migrates, or a split on another CPU, cannot leave a split without an object
as long as the reserve holds one; what it costs is ``POOL`` objects held for good, and a
refill that any caller may have to wait for.  An empty reserve falls back to v5.2's
GFP_NOWAIT under the lock, counted as a preload miss.  No kernel did this.

Simplifications, said here: the reserve is refilled by the caller before the lock (a real
mempool refills in ``mempool_free`` as objects come back, and ``mempool_alloc`` first tries
the slab allocator before the reserve); the reserve is a plain list under ``vmap_area_lock``
in effect (the model's CPUs do not race inside one instant).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sim.kernel.mm.gfp import GFP_KERNEL
from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.mm.vmalloc.strategies.base import SplitHost
from sim.kernel.mm.vmalloc.strategies.preload import PreloadSplit
from sim.kernel.sched.cpu import Task

POOL = 4  # reserved objects: one per CPU of the 2019 machine


class MempoolSplit(PreloadSplit):
    """Counterfactual: one shared reserve of ``POOL`` objects, refilled with GFP_KERNEL
    before the lock, emptied by splits under it.  (The parent's per-CPU slots are not used;
    its ``fill`` counts the refills as preload fills, with their latency.)"""

    name = "mempool"
    commit = "counterfactual"
    colour = "#CC79A7"
    order = 62  # after the built-in strategies
    preloads = True

    def __init__(self, ncpus: int) -> None:
        super().__init__(ncpus)
        self.reserve: list[VmapArea] = []

    def preloaded(self, cpu: int) -> int:
        """Objects any CPU may take now: the shared reserve."""
        return len(self.reserve)

    def objects_held(self, ncpus: int) -> int:
        """The shared reserve, counted once (``preloaded`` shows it to every CPU)."""
        return len(self.reserve)

    def lock_for_alloc(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, None]:
        while len(self.reserve) < POOL:  # refill, preemptible and sleeping, before the lock
            pva = yield from self.fill(vm, task, GFP_KERNEL)
            if pva is None:
                break
            if len(self.reserve) < POOL:
                self.reserve.append(pva)
            else:  # others filled it meanwhile
                vm.free_object_of(task, pva)
        yield from vm.sched.run(task, vm.params.t_check_lock)
        yield from vm.free_lock.lock(task)

    def take_preload(self, vm: SplitHost, task: Task) -> VmapArea | None:
        """``mempool_alloc`` from the reserve, under the lock; None when it is empty."""
        if not self.reserve:
            return None
        vm.metrics.add("split_from_preload")
        return self.reserve.pop()
