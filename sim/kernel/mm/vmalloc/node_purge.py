"""Lazy freeing and purging with the vmap nodes of Linux 6.9, on the machine.

:class:`NodeLazyFree` replaces :class:`~sim.kernel.mm.vmalloc.purge.LazyFree` for a
profile with ``vmap_nodes`` (the ``6.9`` profile).  It follows mm/vmalloc.c of v6.9:

* ``free_vmap_area_noflush``: the area leaves the busy tree of its address's node under
  that node's busy lock (``find_unlink_vmap_area``), joins the lazy tree of the node that
  asked for it under that node's lazy lock, and counts in ``vmap_lazy_nr``.  Past
  ``lazy_max_pages`` the freeing context only queues ``drain_vmap_work``
  (``schedule_work``; since 690467c81b1a, 5.18, the caller no longer purges itself);
* ``drain_vmap_area_work``: a kworker purges under ``vmap_purge_lock`` with a partial
  pool decay;
* ``reclaim_and_purge_vmap_areas`` (an allocation's overflow path): the purge with a full
  decay, which also keeps the purged areas out of the pools (``skip_populate``);
* ``__purge_vmap_area_lazy``: per node, the pools are decayed (the decayed areas merged into
  the free tree under ``free_vmap_area_lock``) and the lazy list detached; one TLB flush for
  all; then per node ``purge_vmap_node``: tagged areas back to the node's pools (under the
  pool lock), the rest merged into the free tree under ``free_vmap_area_lock``, which is held
  for the node's whole batch (no ``cond_resched_lock`` any more).

Not modelled: the helper workers that purge nodes in parallel when more than twice
``lazy_max_pages`` wait (every node is purged by the purging task, one after the other, so
a large purge takes longer here than on a machine with idle CPUs), and KASAN.  The
``vmap-node`` shrinker is ``Vmalloc._vmap_node_shrink``, called by the reclaim passes (its
merges take no time and no lock there).  The steps on the pools and lists are
:class:`~sim.kernel.mm.vmalloc.nodes.VmapNodes`'s.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sim.kernel.mm.vmalloc.nodes import PurgeCounts, VmapNodes
from sim.kernel.mm.vmalloc.purge import LazyFree
from sim.kernel.mm.vmalloc.space import PAGE_SHIFT
from sim.kernel.mm.vmalloc.vm_struct import VmStruct
from sim.kernel.sched.cpu import Task
from sim.kernel.sched.locks import SpinLock


class NodeLazyFree(LazyFree):
    """The lazy-free state of a 6.9 kernel: per-node lazy trees and pools (``nodes``), the
    per-node locks, and the ``drain_vmap_work`` kworker."""

    def attach_nodes(self, nodes: VmapNodes, busy_locks: list[SpinLock], lazy_locks: list[SpinLock],
                     pool_locks: list[SpinLock]) -> None:  # fmt: skip
        """Give the node layer and its locks (``Vmalloc`` builds them; the allocation path
        shares them)."""
        self.nodes = nodes
        self.busy_locks = busy_locks
        self.lazy_locks = lazy_locks
        self.pool_locks = pool_locks
        self._drain_wake: Any = None
        self._drain_pending = False

    def start_workers(self) -> None:
        """The per-CPU ``free_work`` kthreads, and one unbound kworker for ``drain_vmap_work``."""
        super().start_workers()
        self.sched.spawn("kworker/u:drain_vmap", self._drain_vmap_work, kthread=True)

    def free_vmap_area_noflush(self, task: Task, vm: VmStruct) -> Generator[Any, Any, None]:
        """``find_unlink_vmap_area`` + ``free_vmap_area_noflush`` (v6.9); past
        ``lazy_max_pages`` the drain work is queued, not run."""
        va = vm.va
        nodes = self.nodes
        lock = self.busy_locks[nodes.addr_to_node_id(va.va_start)]
        yield from lock.lock(task)
        del self.space.busy[va.va_start]
        yield from lock.unlock(task)
        lock = self.lazy_locks[nodes.lazy_node(va)]
        yield from lock.lock(task)
        nodes.free_vmap_area_noflush(va)
        yield from lock.unlock(task)
        self.vmap_lazy_nr += vm.size >> PAGE_SHIFT
        if self.vmap_lazy_nr > self.lazy_max:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        """``schedule_work(&drain_vmap_work)``: a no-op while the work is already queued."""
        if self._drain_pending:
            return
        self._drain_pending = True
        wake = self._drain_wake
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _drain_vmap_work(self, task: Task) -> Generator[Any, Any, None]:
        """``drain_vmap_area_work``: purge with a partial pool decay, under the purge mutex."""
        while True:
            if not self._drain_pending:
                self._drain_wake = self.env.event()
                yield from self.sched.wait_event(task, self._drain_wake, "drain_vmap_work")
                self._drain_wake = None
            self._drain_pending = False
            yield from self.purge_lock.lock(task)
            self.metrics.add("lazy_purges")
            yield from self._purge_nodes(task, full=False)
            self.purge_lock.unlock(task)

    def purge_vmap_area_lazy(self, task: Task) -> Generator[Any, Any, None]:
        """``reclaim_and_purge_vmap_areas``: the vmap-block hooks, then the purge with a full
        pool decay, waiting for the purge mutex."""
        yield from self.purge_lock.lock(task)
        for hook in self.purge_hooks:
            yield from hook(task)
        yield from self._purge_nodes(task, full=True)
        self.purge_lock.unlock(task)

    def _purge_nodes(self, task: Task, full: bool) -> Generator[Any, Any, bool]:
        """``__purge_vmap_area_lazy(ULONG_MAX, 0, full)`` (v6.9): decay and detach per node,
        one TLB flush, then each node's batch.  True if any lazy area was purged."""
        nodes = self.nodes
        sched = self.sched
        params = self.params
        metrics = self.metrics
        free_lock = self.free_lock
        batches = []
        for node in range(nodes.nr_nodes):
            if nodes.pools[node]:
                pool_lock = self.pool_locks[node]
                yield from pool_lock.lock(task)  # each pool's detach
                step, merged = nodes.decay_va_pool_node(node, full, task)
                yield from pool_lock.unlock(task)
                if merged:
                    yield from free_lock.lock(task)  # reclaim_list_global
                    nodes.reclaim_list_global(merged, task)
                    yield from sched.run(task, params.purge_per_va * len(merged))
                    yield from free_lock.unlock(task)
                    metrics.add("vmap_pool_decayed", step.decayed)
            if nodes.lazy[node]:
                lock = self.lazy_locks[node]
                yield from lock.lock(task)
                batches.append((node, nodes.detach_lazy(node)))
                yield from lock.unlock(task)
        if not batches:
            return False
        yield from sched.run(task, params.purge_base + params.purge_ipi_per_cpu * sched.ncpus)
        metrics.add("tlb_flushes")
        total = PurgeCounts()
        for node, batch in batches:
            self.vmap_lazy_nr -= sum(va.va_end - va.va_start for va in batch) >> PAGE_SHIFT
            step, back = nodes.purge_vmap_node(node, batch, full)
            if step.pooled:
                pool_lock = self.pool_locks[node]  # node_pool_add_va, once per area
                yield from pool_lock.lock(task)
                yield from sched.run(task, params.t_pool_op * step.pooled)
                yield from pool_lock.unlock(task)
            if back:
                yield from free_lock.lock(task)  # reclaim_list_global, the node's whole batch
                nodes.reclaim_list_global(back, task)
                yield from sched.run(task, params.purge_per_va * len(back))
                yield from free_lock.unlock(task)
            total.add(step)
        metrics.add("purged_areas", total.purged)
        if total.pooled:
            metrics.add("vmap_pool_adds", total.pooled)
        return True
