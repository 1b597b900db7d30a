"""Lazy freeing of vmalloc areas: ``vfree``, ``vfree_atomic`` and the purge.

:class:`LazyFree` owns the lazy-free state of one kernel (``vmap_purge_list``,
``vmap_lazy_nr``, ``vmap_purge_lock``, the per-CPU ``vfree_deferred``) and the
code that drains it; :class:`sim.kernel.mm.vmalloc.alloc.Vmalloc` holds one and
calls it for its overflow purge.  It follows mm/vmalloc.c v5.3, with the
v5.4/v5.5 changes where the kernel profile asks for them:

* ``__vunmap`` unmaps the range and frees it lazily (``remove_vm_area`` ->
  ``free_vmap_area_noflush``), then gives back the pages, the page array and
  the ``vm_struct``;
* the range waits in ``vmap_purge_list`` and counts in ``vmap_lazy_nr``; past
  ``lazy_max_pages`` the freeing context purges if ``vmap_purge_lock`` is free
  (``try_purge_vmap_area_lazy``), and an allocation failure purges, waiting
  for the mutex (``purge_vmap_area_lazy``);
* ``__purge_vmap_area_lazy`` flushes the TLB once, then merges the areas back
  one by one under the free-tree lock, offering the lock between areas
  (``cond_resched_lock``) once ``vmap_lazy_nr`` is below twice
  ``lazy_max_pages``;
* ``vfree_atomic`` defers the whole ``__vunmap`` to the CPU's ``free_work``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.page_alloc import PageAllocator
from sim.kernel.mm.slab.common import KmemCache
from sim.kernel.mm.vmalloc.space import PAGE_SHIFT, VmapSpace
from sim.kernel.mm.vmalloc.vm_struct import VmStruct
from sim.kernel.sched.cpu import Scheduler, Task
from sim.kernel.sched.locks import Mutex, SpinLock
from sim.record.metrics import Metrics

PurgeHook = Callable[[Task], Generator[Any, Any, None]]


class PurgeCosts(Protocol):
    """The costs the free path charges (simulated CPU seconds; ``VmallocParams`` has them)."""

    @property
    def t_map_page(self) -> float: ...
    @property
    def purge_base(self) -> float: ...
    @property
    def purge_per_va(self) -> float: ...
    @property
    def purge_ipi_per_cpu(self) -> float: ...
    @property
    def t_pool_op(self) -> float: ...


@dataclass
class Deferred:
    """``struct vfree_deferred``: a CPU's list of areas to free, and its worker."""

    items: deque = field(default_factory=deque)
    wake: eventloop.Event | None = None


class LazyFree:
    """The lazy-free state of one kernel and its frees and purges.

    ``free_lock`` guards the free tree (``vmap_area_lock`` in v5.3,
    ``free_vmap_area_lock`` from v5.5); with ``busy_unlinked_on_free`` (v5.4+,
    dd3b8353bae7) a freed area leaves the busy tree at once, under
    ``vmap_area_lock``, instead of at the purge.  ``purge_hooks`` run before a
    waited-for purge (``purge_fragmented_blocks_allcpus``)."""

    def __init__(
        self,
        sched: Scheduler,
        space: VmapSpace,
        page_alloc: PageAllocator,
        kmalloc: dict[int, KmemCache],
        free_lock: SpinLock,
        vmap_area_lock: SpinLock,
        busy_unlinked_on_free: bool,
        lazy_max: int,
        costs: PurgeCosts,
        metrics: Metrics,
    ) -> None:
        self.sched = sched
        self.env = sched.env
        self.space = space
        self.page_alloc = page_alloc
        self.kmalloc = kmalloc
        self.free_lock = free_lock
        self.vmap_area_lock = vmap_area_lock
        self.busy_unlinked_on_free = busy_unlinked_on_free
        self.lazy_max = lazy_max  # lazy_max_pages()
        self.params = costs
        self.metrics = metrics
        self.purge_lock = Mutex(sched, "vmap_purge_lock")
        self.vmap_lazy_nr = 0
        self.purge_list: list[VmStruct] = []  # vmap_purge_list
        self.purge_hooks: list[PurgeHook] = []
        self.deferred = [Deferred() for _ in range(sched.ncpus)]
        self.resched_per_page = False  # vfree offers the CPU after freeing its pages (set for 6.9)

    def start_workers(self) -> None:
        """One ``free_work`` kthread per CPU, pinned (the per-CPU ``vfree_deferred`` work)."""
        for i in range(self.sched.ncpus):
            self.sched.spawn(f"kworker/{i}:vfree", self._free_work, cpu=i, pinned=True, kthread=True)

    # -- lazy freeing and purging ------------------------------------------

    def free_vmap_area_noflush(self, task: Task, vm: VmStruct) -> Generator[Any, Any, None]:
        """Queue an unmapped area for a later purge (``free_vmap_area_noflush``):
        its pages count towards ``vmap_lazy_nr``, and past ``lazy_max_pages``
        the freeing context purges if the purge mutex is free.  From v5.4
        (dd3b8353bae7) the area first leaves the busy tree, under
        ``vmap_area_lock``; in v5.3 it stays busy until the purge."""
        if self.busy_unlinked_on_free:
            lock = self.vmap_area_lock
            yield from lock.lock(task)
            del self.space.busy[vm.va.va_start]
            yield from lock.unlock(task)
        self.vmap_lazy_nr += vm.size >> PAGE_SHIFT
        self.purge_list.append(vm)
        if self.vmap_lazy_nr > self.lazy_max and self.purge_lock.trylock(task):
            self.metrics.add("lazy_purges")
            yield from self._purge_vmap_area_lazy(task)
            self.purge_lock.unlock(task)

    def purge_vmap_area_lazy(self, task: Task) -> Generator[Any, Any, None]:
        """Purge under the purge mutex, waiting for it (``purge_vmap_area_lazy``)."""
        yield from self.purge_lock.lock(task)
        for hook in self.purge_hooks:
            yield from hook(task)
        yield from self._purge_vmap_area_lazy(task)
        self.purge_lock.unlock(task)

    def _purge_vmap_area_lazy(self, task: Task) -> Generator[Any, Any, bool]:
        """Flush the TLB once for all lazy areas, then merge each back into the
        free tree under the lock (``__purge_vmap_area_lazy``, v5.3; v5.5 merges
        under ``free_vmap_area_lock``, the areas having left the busy tree when
        they were freed).

        Once ``vmap_lazy_nr`` is below twice ``lazy_max_pages`` the lock is
        offered after every area (``cond_resched_lock``), so allocators wait
        for one merge, not for the whole batch.
        """
        if not self.purge_list:
            return False
        batch, self.purge_list = self.purge_list, []
        params = self.params
        sched = self.sched
        yield from sched.run(task, params.purge_base + params.purge_ipi_per_cpu * sched.ncpus)
        self.metrics.add("tlb_flushes")
        resched_threshold = 2 * self.lazy_max
        lock = self.free_lock
        unlinked = self.busy_unlinked_on_free
        space = self.space
        yield from lock.lock(task)
        held = 0.0  # merge time not yet charged: areas above the threshold run back to back
        for vm in batch:
            if unlinked:
                space.merge_or_add_vmap_area(vm.va, task)  # 0, 1 or 2 objects freed
            else:
                space.free_vmap_area(vm.va, task)  # __free_vmap_area: unlink, then merge
            self.vmap_lazy_nr -= vm.size >> PAGE_SHIFT
            held += params.purge_per_va
            if self.vmap_lazy_nr < resched_threshold:
                yield from sched.run(task, held)
                held = 0.0
                yield from lock.cond_resched_lock(task)
        if held:
            yield from sched.run(task, held)
        yield from lock.unlock(task)
        self.metrics.add("purged_areas", len(batch))
        return True

    # -- vfree -------------------------------------------------------------

    def vunmap(self, task: Task, vm: VmStruct) -> Generator[Any, Any, None]:
        """Unmap and free an area (``__vunmap`` with pages, v5.3): the range is
        unmapped and freed lazily first (``remove_vm_area``, which may purge),
        then the pages, the page array and the ``vm_struct`` go back on the
        CPU the task is on by then."""
        yield from self.sched.run(task, self.params.t_map_page * max(vm.nr_pages, 1))
        yield from self.free_vmap_area_noflush(task, vm)
        cpu = task.cpu
        if vm.nr_pages:
            self.page_alloc.free_pages(cpu, pool=vm.pool, nr=vm.nr_pages, owner=vm.owner)
            if self.resched_per_page:  # 6.9's vfree: cond_resched() after each page (one call stands for them)
                yield from self.sched.cond_resched(task)
        if vm.pages_slab is not None:
            self.kmalloc[32].free(cpu, vm.pages_slab)
        if vm.vm_slab is not None:
            self.kmalloc[64].free(cpu, vm.vm_slab)

    def vfree(self, task: Task, vm: VmStruct) -> Generator[Any, Any, None]:
        """``vfree`` from process context."""
        yield from self.sched.might_resched(task, "vfree")
        yield from self.vunmap(task, vm)

    def vfree_atomic(self, cpu: int, vm: VmStruct) -> None:
        """Defer the whole free to this CPU's worker (``vfree_atomic``)."""
        deferred = self.deferred[cpu]
        deferred.items.append(vm)
        if deferred.wake is not None and not deferred.wake.triggered:
            deferred.wake.succeed()

    def _free_work(self, task: Task) -> Generator[Any, Any, None]:
        """The per-CPU work item draining deferred frees (``free_work``)."""
        deferred = self.deferred[task.cpu]
        while True:
            while deferred.items:
                yield from self.vunmap(task, deferred.items.popleft())
            deferred.wake = self.env.event()
            yield from self.sched.wait_event(task, deferred.wake, "free_work")
            deferred.wake = None
