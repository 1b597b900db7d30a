"""vmalloc on the machine: ``alloc_vmap_area`` and its callers and frees (v5.3).

This joins the allocator core (:mod:`sim.kernel.mm.vmalloc.space`) to the machine: every
``struct vmap_area`` the core takes or gives back goes through the
``vmap_area`` slab cache, the free tree is guarded by ``vmap_area_lock`` (a
spinlock: preemption off, no sleeping), and the NE_FIT split gets its extra
object from the split-object strategy of :mod:`sim.kernel.mm.vmalloc.strategies`
(:class:`~sim.kernel.mm.vmalloc.strategies.base.SplitStrategy`).

The path of one request, as in mm/vmalloc.c v5.3:

* ``__vmalloc_node_range`` -> ``__get_vm_area_node``: page-align the size, the
  ``vm_struct`` from kmalloc with the caller's gfp (masked), a guard page unless
  VM_NO_GUARD, VM_IOREMAP alignment;
* ``alloc_vmap_area``: the busy descriptor from the ``vmap_area`` cache with
  ``gfp & _RECLAIM_MASK``; ``retry:`` the strategy's preload and the lock;
  the core allocation (a failed GFP_NOWAIT split object prints its
  ``warn_alloc`` report here, under the lock: :mod:`sim.kernel.printk`); on failure
  ``overflow:`` unlock, purge lazily freed areas under the purge mutex and retry
  once, then the notifier chain, then -EBUSY with a rate-limited warning;
* ``__vmalloc_area_node``: the page-pointer array and one order-0 page at a
  time with ``gfp | __GFP_NOWARN``.

Frees are lazy (:class:`~sim.kernel.mm.vmalloc.purge.LazyFree`, which ``Vmalloc``
holds as ``lazy``): ``vfree`` unmaps the area, and
its range waits (``vmap_lazy_nr``) until more than ``lazy_max_pages`` pages
wait, when the freeing context purges (mutex trylock).  ``vfree_atomic``
defers the whole free to a per-CPU worker.  A purge flushes the TLB on every
CPU, then merges each area back into the free tree, freeing 0, 1 or 2 objects
per area.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final

from sim.kernel.mm.gfp import GFP_NOWAIT, GFP_RECLAIM_MASK, Gfp, gfp_name
from sim.kernel.mm.page_alloc import PageAllocator
from sim.kernel.mm.slab.common import KmemCache
from sim.kernel.mm.vmalloc.node_purge import NodeLazyFree
from sim.kernel.mm.vmalloc.nodes import NO_NODE, VmapNodes, nr_vmap_nodes
from sim.kernel.mm.vmalloc.purge import LazyFree
from sim.kernel.mm.vmalloc.space import (
    ENOENT,
    ENOMEM,
    ERANGE,
    PAGE_SHIFT,
    PAGE_SIZE,
    VmapArea,
    VmapSpace,
)  # fmt: skip
from sim.kernel.mm.vmalloc.strategies.base import SplitStrategy
from sim.kernel.mm.vmalloc.vm_struct import VM_ALLOC, VM_IOREMAP, VM_NO_GUARD, VmStruct
from sim.kernel.printk import Console, vmap_warn_bytes
from sim.kernel.profile import KernelProfile
from sim.kernel.sched.cpu import Scheduler, Task
from sim.kernel.sched.locks import SpinLock
from sim.record.metrics import Metrics

__all__ = [
    "EBUSY",
    "VM_ALLOC",
    "VM_IOREMAP",
    "VM_NO_GUARD",
    "CallChains",
    "VmStruct",
    "Vmalloc",
    "VmallocParams",
    "fls",
    "lazy_max_pages",
]

EBUSY: Final = -16
# the gfp bits this module tests (Final: inlined by the compiled build)
_RECLAIM_MASK: Final = GFP_RECLAIM_MASK
_DIRECT_RECLAIM: Final = Gfp.DIRECT_RECLAIM
_NOWARN: Final = Gfp.NOWARN
_ZERO: Final = Gfp.ZERO
_NOWAIT: Final = GFP_NOWAIT
IOREMAP_MAX_ORDER: Final = 30  # PUD_SHIFT on x86_64 with huge vmap
FAILURE_CAUSE = {ENOENT: "no_space", ERANGE: "no_space", ENOMEM: "no_split_object"}


def fls(x: int) -> int:
    """Find last set bit, 1-based (``fls``): fls(4) = 3."""
    return x.bit_length()


def lazy_max_pages(ncpus: int, mb_per_fls: int = 32) -> int:
    """Lazily freed pages tolerated before a purge (``lazy_max_pages``, v5.3)."""
    return fls(ncpus) * (mb_per_fls * 1024 * 1024 // PAGE_SIZE)


@dataclass(frozen=True)
class VmallocParams:
    """Costs and limits of the vmalloc path (simulated CPU seconds).

    The core costs follow the test_vmalloc figures in Uladzislau Rezki's RFC
    <20181019173538.590-1-urezki@gmail.com> (2018, 4.18 on an i5-3320M, with the
    patch: le_fit_alloc_test ~1.14 s per 1M iterations, i.e. an alloc plus a free
    of a small area ~1.1 us); the purge cost is an estimate, not measured, of the
    steps of ``__purge_vmap_area_lazy`` (mm/vmalloc.c, v5.3): 50 us + 2 us per
    area + 5 us of ``flush_tlb_kernel_range`` IPI per CPU.
    """

    t_core_alloc: float = 0.6e-6
    t_core_free: float = 0.4e-6
    t_check_lock: float = 0.3e-6  # from the preload slot check to spin_lock
    t_map_page: float = 0.1e-6
    purge_base: float = 50e-6
    purge_per_va: float = 2e-6
    purge_ipi_per_cpu: float = 5e-6
    # 6.9 node pools: taking an area from a pool or putting one back is a list operation under the
    # node's pool spinlock; an estimate (not measured) of a few cache lines, an order below a merge
    t_pool_op: float = 0.1e-6
    lazy_max_mb_per_fls_cpu: int = 32
    warn_burst: int = 10  # printk_ratelimit: 10 messages per 5 s
    warn_interval: float = 5.0


class CallChains:
    """The chain of calls that led each task to its current request (``dump_stack`` of a failure
    event, innermost first).  ``with chains.frame(task, "alloc_vmap_area"):`` enters a frame and
    leaves it however the block ends."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: dict[int, list[str]] = {}  # pid -> frames, outermost first

    def frame(self, task: Task, name: str) -> _Frame:
        return _Frame(self.active, task.pid, name)

    def of(self, task: Task) -> str:
        """``innermost <- ... <- outermost`` for ``task`` ("" outside any frame)."""
        return " <- ".join(reversed(self.active.get(task.pid, [])))


class _Frame:
    __slots__ = ("active", "name", "pid")

    def __init__(self, active: dict[int, list[str]], pid: int, name: str) -> None:
        self.active, self.pid, self.name = active, pid, name

    def __enter__(self) -> None:
        self.active.setdefault(self.pid, []).append(self.name)

    def __exit__(self, *exc: object) -> None:
        chain = self.active[self.pid]
        chain.pop()
        if not chain:
            del self.active[self.pid]


@dataclass
class _RateLimit:
    burst: int
    interval: float
    begin: float = -1e18
    printed: int = 0

    def allow(self, now: float) -> bool:
        if now - self.begin >= self.interval:
            self.begin, self.printed = now, 0
        if self.printed < self.burst:
            self.printed += 1
            return True
        return False


class Vmalloc:
    """The vmalloc state of one kernel and its entry points.  The lazy frees and
    purges are :class:`~sim.kernel.mm.vmalloc.purge.LazyFree`'s (``self.lazy``);
    the NE_FIT split's object is the ``strategy``'s."""

    def __init__(
        self,
        sched: Scheduler,
        page_alloc: PageAllocator,
        vmap_area_cache: KmemCache,
        kmalloc: dict[int, KmemCache],
        profile: KernelProfile,
        strategy: SplitStrategy,
        metrics: Metrics,
        params: VmallocParams | None = None,
        console: Console | None = None,
    ) -> None:
        self.sched = sched
        self.env = sched.env
        self.page_alloc = page_alloc
        self.cache = vmap_area_cache
        self.kmalloc = kmalloc  # size class -> cache, e.g. {32: kmalloc-32, 64: kmalloc-64}
        self.profile = profile
        self.strategy = strategy
        self.metrics = metrics
        self.params = params or VmallocParams()
        # printk's console (the page allocator's); none given: a console that costs nothing
        self.console = console if console is not None else Console(sched.env, metrics)
        self.space = VmapSpace(provider=self, search=profile.search)
        self.vmap_area_lock = SpinLock(sched, "vmap_area_lock")
        self.free_lock = SpinLock(sched, "free_vmap_area_lock") if profile.free_vmap_area_lock else self.vmap_area_lock
        # v6.9's vmap nodes (profile.vmap_nodes): pools, per-node busy/lazy/pool locks
        self.nodes: VmapNodes | None = None
        lazy_class = NodeLazyFree if profile.vmap_nodes else LazyFree
        self.lazy = lazy_class(
            sched, self.space, page_alloc, kmalloc, self.free_lock, self.vmap_area_lock,
            # v5.4+ (dd3b8353bae7, with the v5.5 lock split here): lazy areas leave the busy tree at free time
            busy_unlinked_on_free=profile.free_vmap_area_lock,
            lazy_max=lazy_max_pages(sched.ncpus, self.params.lazy_max_mb_per_fls_cpu),
            costs=self.params, metrics=metrics,
        )  # fmt: skip
        self.lazy.resched_per_page = profile.vfree_resched
        if profile.vmap_nodes:
            n = nr_vmap_nodes(sched.ncpus)
            self.nodes = VmapNodes(self.space, n)
            self.busy_locks = [SpinLock(sched, "vmap_node_busy_lock") for _ in range(n)]
            self.pool_locks = [SpinLock(sched, "vmap_node_pool_lock") for _ in range(n)]
            lazy_locks = [SpinLock(sched, "vmap_node_lazy_lock") for _ in range(n)]
            self.lazy.attach_nodes(self.nodes, self.busy_locks, lazy_locks, self.pool_locks)  # type: ignore[attr-defined]
            reclaim = getattr(page_alloc, "reclaim", None)
            if reclaim is not None:  # the "vmap-node" shrinker (vmalloc_init)
                reclaim.shrinkers.append(self._vmap_node_shrink)
        self.notifiers: list[Any] = []  # vmap_notify_list: callables returning pages freed
        self._warn = _RateLimit(self.params.warn_burst, self.params.warn_interval)
        self.calls = CallChains()  # the calls that led each task to its current request
        self._retries: dict[int, int] = {}  # pid -> overflow purges done by its current alloc_vmap_area
        # During alloc_vmap_area's core allocation (which never yields): the objects the task's CPU
        # held when its preload began; None otherwise, i.e. in pcpu_get_vm_areas' carve, the only
        # other caller of adjust_va_to_fit_type.  Tells split_nowait who fell back and why.
        self._held_at_check: int | None = None
        self.lazy.start_workers()

    def objects_held(self) -> int:
        """``vmap_area`` objects held aside for later requests: the strategy's (per-CPU
        preloads, reserves) and, from 6.9, the areas in the node pools."""
        held = self.strategy.objects_held(self.sched.ncpus)
        return held + self.nodes.pooled if self.nodes is not None else held

    def _vmap_node_shrink(self, priority: int) -> None:
        """The "vmap-node" shrinker, called by a reclaim pass (:meth:`VmapNodes.vmap_node_shrink`).
        The pools' areas go back to the free tree at once: the model's reclaimers are not tasks
        that could hold ``free_vmap_area_lock``, so the merges take no time and no lock."""
        nodes = self.nodes
        assert nodes is not None
        shrunk = nodes.vmap_node_shrink(priority)
        if shrunk:
            self.metrics.add("vmap_pool_shrinks")
            self.metrics.add("vmap_pool_decayed", shrunk)

    def busy_lock(self, addr: int) -> SpinLock:
        """The lock of the busy tree that holds an area starting at ``addr``:
        ``vmap_area_lock``, or from 6.9 the busy lock of the address's node."""
        nodes = self.nodes
        if nodes is None:
            return self.vmap_area_lock
        return self.busy_locks[nodes.addr_to_node_id(addr)]

    def frame(self, task: Task, name: str) -> Any:
        """``with vm.frame(task, "alloc_vmap_area"):``: a frame of the call chain that failure
        events report, left however the block ends."""
        return self.calls.frame(task, name)

    # -- the frees (LazyFree's) --------------------------------------------

    def vfree(self, task: Task, vm: VmStruct) -> Generator[Any, Any, None]:
        """``vfree`` from process context (:meth:`LazyFree.vfree`)."""
        return self.lazy.vfree(task, vm)

    def vfree_atomic(self, cpu: int, vm: VmStruct) -> None:
        """``vfree_atomic``: the free deferred to ``cpu``'s worker (:meth:`LazyFree.vfree_atomic`)."""
        self.lazy.vfree_atomic(cpu, vm)

    def purge_vmap_area_lazy(self, task: Task) -> Generator[Any, Any, None]:
        """``purge_vmap_area_lazy``: purge, waiting for the purge mutex (:class:`LazyFree`)."""
        return self.lazy.purge_vmap_area_lazy(task)

    # -- the object provider of the core ------------------------------------

    def alloc_split_object(self, task: Task) -> VmapArea | None:
        """The NE_FIT split's object: asked of the strategy, on the CPU the
        lock-holding ``task`` runs on right now."""
        assert task is not None, "split outside alloc_vmap_area"
        if self._held_at_check is None:
            self.metrics.add("pcpu_ne_splits")
        return self.strategy.split_object(self, task)

    def free_object(self, va: VmapArea, task: Task | None) -> None:
        """``kmem_cache_free(vmap_area_cachep, va)`` on the CPU ``task`` runs on."""
        if va.slab is not None:
            self.cache.free(task.cpu if task is not None else 0, va.slab)
            va.slab = None

    def split_nowait(self, task: Task, gfp: int = _NOWAIT) -> VmapArea | None:
        """``kmem_cache_alloc(vmap_area_cachep, GFP_NOWAIT)`` under the lock, for ``task``:
        a refill's page is asked with it as ``current``, so an RT task's ALLOC_HARDER
        and an OOM victim's ALLOC_OOM apply (``gfp_to_alloc_flags``, ``__gfp_pfmemalloc_flags``).

        Counted by who falls back to it: a percpu carve (``pcpu_split_nowait``, in every
        strategy), or under a preloading strategy an ``alloc_vmap_area`` split whose CPU
        held an object when its preload checked (``preload_race_misses``) or held none
        (``preload_fill_misses``)."""
        metrics = self.metrics
        metrics.add("split_nowait_attempts")
        held = self._held_at_check
        if held is None:
            metrics.add("pcpu_split_nowait")
        elif self.strategy.preloads:
            metrics.add("preload_race_misses" if held else "preload_fill_misses")
        slab = self.cache.alloc_nowait(task.cpu, gfp, task)
        if slab is None:
            metrics.add("split_nowait_failures")
            self._record_failure(task, "split_nowait_failure", gfp, "NE")
            return None
        va = VmapArea()
        va.slab = slab
        return va

    def new_object(self, task: Task, gfp: int) -> Generator[Any, Any, VmapArea | None]:
        """``kmem_cache_alloc(vmap_area_cachep, gfp)``; may sleep if gfp allows."""
        if gfp & _DIRECT_RECLAIM:
            slab = yield from self.cache.alloc(task, gfp)
        else:
            slab = self.cache.alloc_nowait(task.cpu, gfp, task)
            yield from self.console.write_out(task)  # a failure's warn_alloc report
        if slab is None:
            return None
        va = VmapArea()
        va.slab = slab
        return va

    def _record_failure(self, task: Task, kind: str, gfp: int, fit: str | None = None, **extra: Any) -> None:
        """A failure event with the machine state, the fit type (NE for a split),
        the chain of calls that led to it, and ``retry``: how many overflow
        purges this ``alloc_vmap_area`` call had done before (0: first try)."""
        fields: dict[str, Any] = {
            "cpu": task.cpu,
            "task": task.name,
            "pid": task.pid,
            "gfp": gfp_name(gfp),
            "fit": fit,
            "chain": self.calls.of(task),
            "retry": self._retries.get(task.pid, 0),
            **extra,
        }
        if hasattr(self.page_alloc, "failure_state"):
            fields.update(self.page_alloc.failure_state())
        self.metrics.event(kind, self.env.now, **fields)

    # -- alloc_vmap_area ----------------------------------------------------

    def alloc_vmap_area(
        self, task: Task, size: int, align: int, vstart: int, vend: int, gfp: int
    ) -> Generator[Any, Any, VmapArea | int]:
        """Reserve ``size`` bytes of KVA (``alloc_vmap_area``, v5.3).

        Returns the busy ``VmapArea`` or a negative errno (-ENOMEM when the busy
        descriptor cannot be had, -EBUSY when the overflow path gives up).
        """
        if size <= 0 or size % PAGE_SIZE or align & (align - 1):
            raise ValueError(f"alloc_vmap_area({size}, {align}): BUG_ON")
        self.metrics.add("vmap_alloc_calls")
        yield from self.sched.might_resched(task, "alloc_vmap_area")
        with self.frame(task, "alloc_vmap_area"):
            return (yield from self._alloc_vmap_area(task, size, align, vstart, vend, gfp))

    def _alloc_vmap_area(
        self, task: Task, size: int, align: int, vstart: int, vend: int, gfp: int
    ) -> Generator[Any, Any, VmapArea | int]:
        """The body of :meth:`alloc_vmap_area` from the busy descriptor on."""
        sched = self.sched
        nodes = self.nodes
        node = NO_NODE
        if nodes is not None:  # v6.9: node_alloc, the CPU's node pool first
            pooled, node = yield from self._node_alloc(task, nodes, size, align, vstart, vend)
            if pooled is not None:
                return pooled
        busy = yield from self.new_object(task, gfp & _RECLAIM_MASK)
        if busy is None:
            self.metrics.add("vmap_alloc_failures")
            return ENOMEM
        purged = False
        split_retried = False
        metrics = self.metrics
        strategy = self.strategy
        while True:  # retry:
            # the preload's check is its first step, at this instant and on this CPU
            held = strategy.preloaded(task.cpu)
            yield from strategy.lock_for_alloc(self, task, gfp)
            self._held_at_check = held
            addr = self.space.alloc(size, align, vstart, vend, task)
            self._held_at_check = None
            # a failed split object's warn_alloc report goes out with the lock held
            yield from self.console.write_out(task, self.free_lock)
            yield from sched.run(task, self.params.t_core_alloc)
            if addr >= 0:
                metrics.add(("fit_fl", "fit_le", "fit_re", "fit_ne")[self.space.last_fit - 1])
                if purged:
                    metrics.add("overflow_retry_successes")
                    metrics.event("vmap_retry", self.env.now, task=task.name, pid=task.pid, cpu=task.cpu, ok=True)
                busy_lock = self.vmap_area_lock if nodes is None else self.busy_lock(addr)
                if self.free_lock is not busy_lock:
                    yield from self.free_lock.unlock(task)
                    yield from busy_lock.lock(task)
                busy.va_start, busy.va_end = addr, addr + size
                busy.va_size = size
                busy.fit = self.space.last_fit
                self.space.insert_busy(busy)
                if nodes is not None:
                    nodes.take_busy(busy, node)
                yield from busy_lock.unlock(task)
                self._retries.pop(task.pid, None)
                return busy
            # overflow:
            metrics.add(f"vmap_fail_{FAILURE_CAUSE.get(addr, 'other')}")
            yield from self.free_lock.unlock(task)
            if addr == ENOMEM and not split_retried and strategy.retry_split_unlocked:
                split_retried = True  # a counterfactual strategy's retry (strategies/base.py)
                metrics.add("split_retries_unlocked")
                continue
            if not purged:
                metrics.add("overflow_purges")
                start, before = self.env.now, metrics.counters["purged_areas"]
                yield from self.lazy.purge_vmap_area_lazy(task)
                metrics.event(
                    "vmap_overflow_purge", self.env.now, task=task.name, pid=task.pid, cpu=task.cpu,
                    purged=int(metrics.counters["purged_areas"] - before), seconds=self.env.now - start,
                )  # fmt: skip
                purged = True
                self._retries[task.pid] = self._retries.get(task.pid, 0) + 1
                metrics.add("overflow_retries")
                continue
            if gfp & _DIRECT_RECLAIM and self.notifiers:
                freed = sum(fn() for fn in self.notifiers)  # blocking_notifier_call_chain
                if freed > 0:
                    purged = False
                    continue
            break
        if purged:
            metrics.event("vmap_retry", self.env.now, task=task.name, pid=task.pid, cpu=task.cpu, ok=False)
        metrics.add("vmap_ebusy")
        metrics.add("vmap_alloc_failures")
        if not gfp & _NOWARN and self._warn.allow(self.env.now):
            metrics.add("vmap_warnings_printed")
            self.console.printk(task.cpu, vmap_warn_bytes(size))
            yield from self.console.write_out(task)
        cause = FAILURE_CAUSE.get(addr, "other")
        # log2 of the alignment: test_vmalloc's align_shift case asks for up to 2^63, past int64
        self._record_failure(task, "vmap_ebusy", gfp, cause=cause, size=size, align_shift=align.bit_length() - 1)
        self.free_object_of(task, busy)
        self._retries.pop(task.pid, None)
        return EBUSY

    def _node_alloc(
        self, task: Task, nodes: VmapNodes, size: int, align: int, vstart: int, vend: int
    ) -> Generator[Any, Any, tuple[VmapArea | None, int]]:
        """``node_alloc`` (v6.9): an area of exactly ``size`` from the pool of the CPU's node,
        taken under the node's pool lock when that pool is not empty, then made busy under
        the busy lock of its address's node.  ``(area or None, requesting node)``."""
        pooled = None
        node = nodes.requesting_node(vstart, vend, task.cpu)
        if node != NO_NODE and nodes.pools[node].get((size - 1) // PAGE_SIZE):  # the lock only for a pool
            lock = self.pool_locks[node]
            yield from lock.lock(task)
            pooled = nodes.node_pool_del_va(node, size, align, vstart, vend)  # the node read before
            yield from lock.unlock(task)
        if pooled is None:
            if node != NO_NODE:
                self.metrics.add("vmap_pool_misses")
            return None, node
        self.metrics.add("vmap_pool_hits")
        yield from self.sched.run(task, self.params.t_pool_op)
        lock = self.busy_lock(pooled.va_start)
        yield from lock.lock(task)
        self.space.busy[pooled.va_start] = pooled
        nodes.take_busy(pooled, node)
        yield from lock.unlock(task)
        return pooled, node

    def free_object_of(self, task: Task, va: VmapArea) -> None:
        """Give a descriptor back to the cache outside the core."""
        if va.slab is not None:
            self.cache.free(task.cpu, va.slab)
            va.slab = None

    # -- __get_vm_area_node and __vmalloc_node_range --------------------------

    def get_vm_area_node(
        self, task: Task, size: int, align: int, flags: int, vstart: int, vend: int, gfp: int, caller: str, pool: str
    ) -> Generator[Any, Any, VmStruct | None]:
        """Reserve KVA for ``size`` bytes (``__get_vm_area_node``, v5.3)."""
        size = -(-size // PAGE_SIZE) * PAGE_SIZE
        if size == 0:
            return None
        if flags & VM_IOREMAP:
            order = max((size - 1).bit_length(), PAGE_SHIFT)
            align = 1 << min(order, IOREMAP_MAX_ORDER)
        vm_slab = yield from self._kmalloc(task, 64, gfp & _RECLAIM_MASK)
        if vm_slab is None:
            return None
        if not flags & VM_NO_GUARD:
            size += PAGE_SIZE
        with self.frame(task, "__get_vm_area_node"):
            va = yield from self.alloc_vmap_area(task, size, align, vstart, vend, gfp)
        if isinstance(va, int):
            self.kmalloc[64].free(task.cpu, vm_slab)
            return None
        return VmStruct(va, size, flags, caller, pool, vm_slab=vm_slab)

    def _kmalloc(self, task: Task, size_class: int, gfp: int) -> Generator[Any, Any, Any]:
        cache = self.kmalloc[size_class]
        if gfp & _DIRECT_RECLAIM:
            return (yield from cache.alloc(task, gfp))
        slab = cache.alloc_nowait(task.cpu, gfp, task)
        yield from self.console.write_out(task)  # a failure's warn_alloc report
        return slab

    def vmalloc_node_range(
        self,
        task: Task,
        size: int,
        align: int,
        vstart: int,
        vend: int,
        gfp: int,
        *,
        flags: int = 0,
        caller: str = "vmalloc",
        pool: str = "slab_unreclaimable",
        owner: Any = None,
    ) -> Generator[Any, Any, VmStruct | None]:
        """Allocate and map ``size`` bytes (``__vmalloc_node_range`` +
        ``__vmalloc_area_node``, v5.3).  None on failure."""
        gfp = int(gfp)  # plain int arithmetic from here on
        with self.frame(task, caller), self.frame(task, "__vmalloc_node_range"):
            vm = yield from self.get_vm_area_node(task, size, align, flags | VM_ALLOC, vstart, vend, gfp, caller, pool)
            if vm is None:
                self.metrics.add("vmalloc_failures")
                return None
            vm.owner = owner
            nr_pages = (vm.size - (0 if flags & VM_NO_GUARD else PAGE_SIZE)) >> PAGE_SHIFT
            ok = yield from self._vmalloc_area_node(task, vm, nr_pages, gfp, caller, pool, owner)
        if not ok:
            yield from self.lazy.vunmap(task, vm)
            return None
        yield from self.sched.run(task, self.params.t_map_page * nr_pages)
        return vm

    def _vmalloc_area_node(
        self, task: Task, vm: VmStruct, nr_pages: int, gfp: int, caller: str, pool: str, owner: Any
    ) -> Generator[Any, Any, bool]:
        """The page-pointer array and the pages of ``vm``, one order-0 page at a time
        (``__vmalloc_area_node``, v5.3); False (and a failure event) if one cannot be had."""
        nested = (gfp & _RECLAIM_MASK) | _ZERO
        vm.pages_slab = yield from self._kmalloc(task, 32, nested)
        ok = vm.pages_slab is not None
        if ok:
            blocking = gfp & _DIRECT_RECLAIM
            for _ in range(nr_pages):
                ok = yield from self.page_alloc.alloc_pages(task, gfp | _NOWARN, 0, pool=pool, site=caller, owner=owner)
                if not ok:
                    break
                vm.nr_pages += 1
                if blocking:
                    yield from self.sched.cond_resched(task)
        if not ok:  # warn_alloc "vmalloc: allocation failure, allocated %ld of %ld bytes"
            self.metrics.add("vmalloc_page_failures")
            self.metrics.add("vmalloc_failures")
            stage = "pages" if vm.pages_slab is not None else "page_array"
            with self.frame(task, "__vmalloc_area_node"):
                self._record_failure(task, "vmalloc_page_failure", gfp, stage=stage, allocated=vm.nr_pages,
                                     wanted=nr_pages)  # fmt: skip
        return bool(ok)
