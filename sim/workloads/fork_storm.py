"""``stress-ng --fork N``: N workers, each forking a child and waiting for it.

This is the workload of both 2019 reproductions and of Samsung's 2023 report:
every fork that finds no cached stack vmallocs a thread stack, 16 KiB plus a
guard page at THREAD_ALIGN = 16 KiB, which is an NE_FIT split: a stack ends 4 KiB
past a 16 KiB boundary, so the next one starts inside the free block after it
(``classify_va_fit_type``, mm/vmalloc.c v5.3).

One fork, in ``copy_process`` order (kernel/fork.c, arch/x86/mm/pgtable.c v5.2/v5.3),
every allocation through the page allocator or a slab cache with the kernel's gfp
and order, so that each can sleep in reclaim, wake kswapd, enter the OOM killer or
fail where the kernel's would; a failure is -ENOMEM and unwinds what was taken:

1. ``dup_task_struct`` -> ``alloc_task_struct_node``: one object of
   ``task_struct_cachep`` with GFP_KERNEL (:meth:`Machine.task_struct_cachep`,
   made with the scenario's allocator).  Its slabs are high-order: SLAB takes
   order 1 (``calculate_slab_order`` with slab_max_order 1 above 32 MiB of RAM),
   SLUB order 3 with a first try that may not reclaim and a fallback to the
   object's own order (``allocate_slab``).  Most forks find an object in the
   per-CPU cache and take no page at all;
2. ``alloc_thread_stack_node``: first this CPU's cache of ``NR_CACHED_STACKS``
   stacks (``this_cpu_xchg``), else ``__vmalloc_node_range(THREAD_SIZE,
   THREAD_ALIGN, VMALLOC_START, VMALLOC_END, THREADINFO_GFP & ~__GFP_ACCOUNT)``;
   on failure the task_struct goes straight back (``free_task_struct``);
3. ``copy_creds`` .. ``copy_signal`` and ``dup_mm``'s ``allocate_mm``: cred, files,
   fs, sighand, signal and mm_struct objects, ``mm_slab_pages`` order-0 GFP_KERNEL
   pages in one step;
4. ``mm_init`` -> ``mm_alloc_pgd`` -> ``pgd_alloc``: ``__get_free_pages(PGALLOC_GFP,
   PGD_ALLOCATION_ORDER)``, order 1 with CONFIG_PAGE_TABLE_ISOLATION (``pti``),
   order 0 without.  The order is fixed when the kernel is built: a kernel with
   PTI compiled in takes an order-1 pgd even when PTI is off at run time (``pti=off``,
   or a CPU not vulnerable to Meltdown), as distribution kernels do;
5. ``dup_mmap``: VMA, anon_vma and anon_vma_chain objects (the rest of
   ``slab_pages``, order-0 GFP_KERNEL pages), then ``copy_page_range``'s page tables
   (the rest of ``pagetable_pages``, order-0 PGALLOC_GFP pages);

each step's pages in one step, each page passing the watermark test it would pass
alone.  ``slab_pages`` (6) is a fork's whole slab bill and ``pagetable_pages`` (14) its
page tables with the pgd, as before the task_struct and the pgd were modelled: the
task_struct's share of a slab (``1 << order`` pages over its objects, rounded: 2 pages
under SLAB, 1 under SLUB for the default size) and the pgd's ``1 << order`` pages come
out of them.  Then ``wake_up_new_task``: the child starts on the least loaded CPU (the
parent's on a tie), runs briefly and exits.  At exit (``exit_mmap``) its page tables
and VMAs go; at its final switch on the CPU where it died, its pgd (``__mmdrop``)
and its stack, into that CPU's stack cache if a slot is free, else to
``vfree_atomic``.  The parent waits for its children (``wait4``; woken by the child's
``exit_notify``, see ``Scheduler.exit_event`` and ``sched.wake_affine``) and reaps
them: ``release_task`` frees the rest of the slab pages and queues
``delayed_put_task_struct`` with ``call_rcu``, so the task_struct goes back to its
cache ``rcu_grace`` after the reap, on the reaping CPU.  A failed fork is counted and
the worker backs off briefly, as stress-ng treats ENOMEM as benign.  Workers are
OOM-killable (oom_score_adj 1000).  By default a killed worker starts again after
``restart_delay``; stress-ng 0.15 (stress-fork.c) does not restart a fork instance,
which ``restart: false`` models.

The order-1 requests (the pgd with PTI, a SLAB task_struct slab, SLUB's fallback
for a task_struct of 4-8 KiB) meet a page allocator without fragmentation below
pageblock order (sim/kernel/mm/watermarks.py, freelists.py): an order-1 request
passes a watermark when the zone's free count less one is above the (reduced) mark
plus lowmem_reserve, and a free order-1 block is taken to exist whenever two pages
outside the high-atomic reserve are free (on the request's migratetype list, or to
be had from a fallback).  So at
min + 1 free pages an order-0 GFP_KERNEL
request still succeeds and an order-1 one enters direct reclaim; below that both
reclaim, retry and end in the OOM killer (order 1 is not costly), never in a
failure unless the forking task is itself an OOM victim.  The kernel's
``__zone_watermark_ok`` also needs a free block of order >= 1 on a free list of one
of the per-CPU migratetypes (or MIGRATE_HIGHATOMIC with ALLOC_HARDER): under
fragmentation it can refuse where the model passes, and then compaction runs,
which the model has no need for (docs/validation.md).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final

import numpy as np

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.machine import Machine
from sim.kernel.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_PGALLOC, GFP_THREAD_STACK
from sim.kernel.mm.oom_kill import MemoryOwner
from sim.kernel.mm.page_alloc import PageAllocator
from sim.kernel.mm.slab.common import KmemCache, Slab
from sim.kernel.mm.vmalloc.alloc import Vmalloc
from sim.kernel.mm.vmalloc.space import PAGE_SIZE, VMALLOC_END, VMALLOC_START
from sim.kernel.mm.vmalloc.vm_struct import VmStruct
from sim.kernel.profile import KernelProfile
from sim.kernel.sched.cpu import Scheduler, Task
from sim.record.metrics import Metrics
from sim.workloads.fork_storm_spec import TASK_STRUCT_SIZE, ForkStormSpec  # noqa: F401 (TASK_STRUCT_SIZE: users import it here)

THREAD_SIZE: Final = 16 * 1024
THREAD_ALIGN: Final = THREAD_SIZE
STACK_CACHE = "cached_stacks"
SLAB = "slab_unreclaimable"
PAGETABLES = "pagetables"
class _Child:
    """What one fork took, for its exit, its reaping and a failed fork's unwinding."""

    __slots__ = ("pgd", "slab", "stack", "tables", "task", "tsk", "vma_slab")

    def __init__(self, tsk: Slab, stack: VmStruct) -> None:
        self.tsk = tsk  # the task_struct object (its slab)
        self.stack = stack
        self.slab = 0  # pages of copy_creds .. allocate_mm
        self.pgd = False
        self.vma_slab = 0  # pages of dup_mmap's objects
        self.tables = 0  # page tables besides the pgd
        self.task: Task | None = None  # the child, once wake_up_new_task has run


class ForkStorm:
    """The running fork storm."""

    # What the storm calls into, bound by :meth:`bind`: typed references, so that the
    # compiled build calls them directly rather than through the (interpreted) Machine.
    m: Machine
    env: eventloop.Environment
    sched: Scheduler
    pa: PageAllocator
    vmalloc: Vmalloc
    metrics: Metrics
    profile: KernelProfile
    task_cache: KmemCache

    def __init__(self, spec: ForkStormSpec) -> None:
        self.spec = spec
        self.pgd_order = 1 if spec.pti else 0  # PGD_ALLOCATION_ORDER
        self.table_pages = max(0, spec.pagetable_pages - (1 << self.pgd_order))  # besides the pgd
        self.mm_slab_pages = self.vma_slab_pages = 0  # set by start(), less the task_struct's share

    def start(self, machine: Machine, rng: np.random.Generator) -> None:
        """Bind to ``machine`` and start the workers."""
        self.bind(machine)
        for i in range(self.spec.workers):
            machine.env.process(self._supervise(i))

    def bind(self, machine: Machine) -> None:
        """Take ``machine``'s parts, the task_struct cache and the per-CPU stack caches."""
        self.m = machine
        self.env, self.sched, self.pa = machine.env, machine.sched, machine.page_alloc
        self.vmalloc, self.metrics, self.profile = machine.vmalloc, machine.metrics, machine.profile
        self.task_cache = cache = machine.task_struct_cachep(self.spec.task_struct_size)
        rest = max(0, self.spec.slab_pages - round((1 << cache.order) / cache.objs_per_slab))
        self.mm_slab_pages = min(self.spec.mm_slab_pages, rest)
        self.vma_slab_pages = rest - self.mm_slab_pages
        for cpu in machine.sched.cpus:
            cpu.percpu.setdefault(STACK_CACHE, [None] * self.spec.stack_cache)

    # -- stress-ng's process tree -----------------------------------------------

    def _supervise(self, index: int) -> Generator[Any, Any, None]:
        """stress-ng's parent: start worker ``index`` and, if ``restart``, start it again when killed."""
        env = self.env
        if self.spec.start:
            yield env.timeout(self.spec.start)
        while True:
            owner = MemoryOwner(f"stress-ng-fork/{index}", oom_score_adj=self.spec.oom_score_adj)
            task = self.m.spawn(f"stress-ng-fork/{index}", lambda t, o=owner: self._worker(t, o))
            owner.tasks.append(task)
            task.owner = owner
            yield task.process
            if not self.spec.restart:
                return
            self.metrics.add("fork_worker_restarts")
            yield env.timeout(self.spec.restart_delay)

    def _worker(self, task: Task, owner: MemoryOwner) -> Generator[Any, Any, None]:
        spec, metrics = self.spec, self.metrics
        pa, sched = self.pa, self.sched
        rss = spec.worker_rss // PAGE_SIZE
        got = yield from pa.alloc_pages_bulk(
            task, GFP_HIGHUSER_MOVABLE, rss, pool="anon", owner=owner, site="page_fault"
        )
        while not task.killed:
            children: list[_Child] = []
            for _ in range(spec.fork_max):
                child = yield from self._fork(task, owner)
                if child is None:
                    metrics.add("fork_enomem")
                    yield from sched.sleep(task, spec.enomem_backoff, "stress-ng backoff")
                    break
                children.append(child)
            for child in children:
                assert child.task is not None  # _fork returns a child once it is spawned
                exited = sched.exit_event(child.task)
                if not exited.triggered:
                    yield from sched.wait_event(task, exited, "wait4", waker=child.task)
                self._release_task(task.cpu, child)
            if task.killed:
                break
        _release(pa, task.cpu, "anon", got, owner)

    # -- one fork ---------------------------------------------------------------

    def _fork(self, task: Task, owner: MemoryOwner) -> Generator[Any, Any, _Child | None]:
        """``_do_fork`` up to ``wake_up_new_task``; None is -ENOMEM.

        The order is ``copy_process``'s (module docstring): the task_struct, then the
        stack, then the other slab objects, the pgd, dup_mmap's objects and the page
        tables.  Charging pages after the stack matters: had they all come before
        it, every stack vmalloc would follow GFP_KERNEL allocations that had just
        restored free memory above min, hiding the very failures this workload
        exists to show; only the task_struct comes first, and it rarely needs a page.
        """
        spec, sched, metrics = self.spec, self.sched, self.metrics
        metrics.add("fork_attempts")
        tsk = yield from self.task_cache.alloc(task, GFP_KERNEL)  # alloc_task_struct_node
        if tsk is None:
            metrics.add("fork_task_struct_failures")
            return None
        stack = yield from self._alloc_thread_stack(task)
        if stack is None:
            self.task_cache.free(task.cpu, tsk)  # dup_task_struct's free_tsk: free_task_struct
            return None
        child = _Child(tsk, stack)
        ok = yield from self._copy_rest(task, owner, child)
        if not ok:
            self._bad_fork(task.cpu, owner, child)
            return None
        yield from sched.run(task, spec.fork_cpu)
        metrics.add("forks")
        child.task = sched.spawn(f"{task.name}-child", lambda t: self._child(t, child, owner), near=task.cpu)
        return child

    def _copy_rest(self, task: Task, owner: MemoryOwner, child: _Child) -> Generator[Any, Any, bool]:
        """``copy_process`` after ``dup_task_struct``: the pages it takes, in its order;
        False at the first that fails (a GFP_KERNEL request fails only for an OOM victim)."""
        pa = self.pa
        n = self.mm_slab_pages
        child.slab = yield from pa.alloc_pages_bulk(task, GFP_KERNEL, n, pool=SLAB, site="copy_process")
        if child.slab < n:
            return False
        child.pgd = yield from pa.alloc_pages(
            task, GFP_PGALLOC, self.pgd_order, pool=PAGETABLES, owner=owner, site="pgd_alloc"
        )
        if not child.pgd:
            return False
        n = self.vma_slab_pages
        child.vma_slab = yield from pa.alloc_pages_bulk(task, GFP_KERNEL, n, pool=SLAB, site="dup_mmap")
        if child.vma_slab < n:
            return False
        n = self.table_pages
        child.tables = yield from pa.alloc_pages_bulk(
            task, GFP_PGALLOC, n, pool=PAGETABLES, owner=owner, site="copy_page_range"
        )
        return child.tables == n

    def _bad_fork(self, cpu: int, owner: MemoryOwner, child: _Child) -> None:
        """``copy_process``'s bad_fork_* labels: what was taken goes back, the stack by
        ``put_task_stack`` and the task_struct by ``delayed_free_task`` (``call_rcu``
        with CONFIG_MEMCG, as distribution kernels have; v52.config frees it at once)."""
        pa = self.pa
        _release(pa, cpu, PAGETABLES, child.tables, owner)
        _release(pa, cpu, SLAB, child.vma_slab, None)
        if child.pgd:
            _release_block(pa, cpu, PAGETABLES, self.pgd_order, owner)
        _release(pa, cpu, SLAB, child.slab, None)
        self._free_thread_stack(cpu, child.stack)
        self._call_rcu(cpu, child.tsk)

    def _alloc_thread_stack(self, task: Task) -> Generator[Any, Any, VmStruct | None]:
        """``alloc_thread_stack_node`` (v5.3): a cached stack of this CPU, else vmalloc."""
        cache: list[VmStruct | None] = self.sched.cpus[task.cpu].percpu[STACK_CACHE]
        for i, vm in enumerate(cache):
            if vm is not None:
                cache[i] = None
                self.metrics.add("stack_cache_hits")
                return vm
        self.metrics.add("stack_vmallocs")
        return (
            yield from self.vmalloc.vmalloc_node_range(
                task,
                THREAD_SIZE,
                THREAD_ALIGN,
                VMALLOC_START,
                VMALLOC_END,
                GFP_THREAD_STACK,
                caller="copy_process",
                pool="kernel_stack",
            )
        )

    def _child(self, task: Task, child: _Child, owner: MemoryOwner) -> Generator[Any, Any, None]:
        """The child: runs and exits.  ``exit_mmap`` frees its page tables and VMAs; at
        its final switch on this CPU ``finish_task_switch`` drops the mm (``__mmdrop``:
        the pgd) and releases the stack (``put_task_stack`` -> ``free_thread_stack``)."""
        yield from self.sched.run(task, self.spec.child_cpu)
        pa = self.pa
        _release(pa, task.cpu, PAGETABLES, child.tables, owner)
        _release(pa, task.cpu, SLAB, child.vma_slab, None)
        child.tables = child.vma_slab = 0
        _release_block(pa, task.cpu, PAGETABLES, self.pgd_order, owner)
        child.pgd = False
        self._free_thread_stack(task.cpu, child.stack)

    def _release_task(self, cpu: int, child: _Child) -> None:
        """``release_task`` by the reaping parent on ``cpu``: the rest of the child's slab
        pages, then ``call_rcu(delayed_put_task_struct)`` for its task_struct."""
        _release(self.pa, cpu, SLAB, child.slab, None)
        child.slab = 0
        self._call_rcu(cpu, child.tsk)

    def _call_rcu(self, cpu: int, tsk: Slab) -> None:
        """``call_rcu`` of the task_struct's last reference: after ``rcu_grace`` the callback
        (RCU softirq on the CPU that queued it) runs ``put_task_struct`` ->
        ``__put_task_struct`` -> ``free_task`` -> ``free_task_struct``, a ``kmem_cache_free``."""
        self.metrics.add("task_structs_rcu_deferred")
        ev = self.env.timeout(self.spec.rcu_grace)
        assert ev.callbacks is not None  # a timeout just made: not processed yet
        ev.callbacks.append(lambda _ev: self.task_cache.free(cpu, tsk))

    def _free_thread_stack(self, cpu: int, stack: VmStruct) -> None:
        """``free_thread_stack``: park the stack in a free slot of ``cpu``'s cache
        (``this_cpu_cmpxchg``), else ``vfree_atomic`` it (v5.3).  From 5.18
        (``profile.stack_free_rcu``, e540bf3162e8) a stack that finds the cache
        full is handed to ``call_rcu`` instead: after a grace period
        ``thread_stack_free_rcu`` tries the same CPU's cache again, then frees it."""
        if self._try_cache(cpu, stack):
            return
        if self.profile.stack_free_rcu:
            self.metrics.add("stacks_rcu_deferred")
            ev = self.env.timeout(self.spec.rcu_grace)
            assert ev.callbacks is not None  # a timeout just made: not processed yet
            ev.callbacks.append(lambda _ev: self._thread_stack_free_rcu(cpu, stack))
            return
        self.metrics.add("stacks_vfreed")
        self.vmalloc.vfree_atomic(cpu, stack)

    def _thread_stack_free_rcu(self, cpu: int, stack: VmStruct) -> None:
        """The RCU callback (softirq on the CPU that queued it): the cache once more, else vfree."""
        if not self._try_cache(cpu, stack):
            self.metrics.add("stacks_vfreed")
            self.vmalloc.vfree_atomic(cpu, stack)

    def _try_cache(self, cpu: int, stack: VmStruct) -> bool:
        """``try_release_thread_stack_to_cache``: a free slot of ``cpu``'s cache takes the stack."""
        cache: list[VmStruct | None] = self.sched.cpus[cpu].percpu[STACK_CACHE]
        for i, vm in enumerate(cache):
            if vm is None:
                cache[i] = stack
                self.metrics.add("stacks_cached")
                return True
        return False


def _release(pa: PageAllocator, cpu: int, pool: str, n: int, owner: MemoryOwner | None) -> None:
    """Free ``n`` pages of ``pool``; pages of an owner the OOM reaper has already
    freed are not freed twice."""
    if owner is not None:
        n = min(n, owner.charged[pool])
    if n > 0:
        pa.free_pages(cpu, pool=pool, nr=n, owner=owner)


def _release_block(pa: PageAllocator, cpu: int, pool: str, order: int, owner: MemoryOwner | None) -> None:
    """Free one block of ``order`` (``free_pages``), or what is left of it after the OOM reaper."""
    n = 1 << order
    if owner is not None:
        n = min(n, owner.charged[pool])
    if n == 1 << order:
        pa.free_pages(cpu, order, pool=pool, nr=1, owner=owner)
    elif n > 0:
        pa.free_pages(cpu, pool=pool, nr=n, owner=owner)
