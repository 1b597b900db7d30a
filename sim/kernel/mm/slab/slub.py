"""The SLUB allocator (mm/slub.c, v5.3) for one cache on one NUMA node.

Levels an allocation tries, in order:

1. the CPU slab's lockless freelist (``c.freelist`` objects of ``c.page``):
   the fast path, a few attribute operations;
2. objects freed into the CPU slab by other CPUs (``get_freelist``);
3. the per-CPU partial slabs, frozen pages kept up to ``cpu_partial`` free
   objects (30 for objects under 256 B);
4. the node's partial list: ``get_partial_node`` takes slabs until more than
   ``cpu_partial / 2`` objects are available;
5. ``new_slab``: the page allocator with the caller's gfp masked by
   GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK, first with __GFP_NOWARN |
   __GFP_NORETRY added, then with the plain flags.

A free into the CPU's own slab goes onto its freelist; any other free goes to
the slab page (``__slab_free``): a page that was full is frozen onto the
*freeing* CPU's partial list, and a page that becomes empty on the node list is
discarded once the node keeps ``min_partial`` (5) partial slabs.

The lockless freelist is a count: which object of a page is returned does not
matter, only which page.  The per-CPU partial list is a stack of pages whose
``pobjects`` are the kernel's running totals, stale counts included.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final

from sim.kernel.mm.gfp import RECLAIM, Gfp
from sim.kernel.mm.slab.common import (
    GFP_RECLAIM_AND_CONSTRAINT,
    KmemCache,
    OnCpu,
    PageAllocator,
    Slab,
    SlabList,
    run_sync,
)
from sim.record.metrics import Metrics

MIN_PARTIAL: Final = 5
MAX_PARTIAL: Final = 10
SHRINK_PROMOTE_MAX: Final = 32  # __kmem_cache_shrink: free counts sorted to the list head
SLUB_MAX_ORDER: Final = 3  # slub_max_order = PAGE_ALLOC_COSTLY_ORDER
MAX_OBJS_PER_PAGE: Final = 32767
_PAGE: Final = 4096


def get_order(size: int) -> int:
    """``get_order``: the smallest order whose block holds ``size`` bytes."""
    order = 0
    while _PAGE << order < size:
        order += 1
    return order


def order_objects(order: int, size: int) -> int:
    """``order_objects``: objects of ``size`` bytes in a slab of ``order``."""
    return (_PAGE << order) // size


def slab_order(size: int, min_objects: int, max_order: int, fract_leftover: int) -> int:
    """``slab_order`` (mm/slub.c v5.2), ``slub_min_order`` 0: the first order from the one
    that holds ``min_objects`` whose leftover is at most 1/``fract_leftover`` of the slab."""
    if order_objects(0, size) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    order = get_order(min_objects * size)
    while order <= max_order:
        slab_bytes = _PAGE << order
        if slab_bytes % size <= slab_bytes // fract_leftover:
            break
        order += 1
    return order


def calculate_order(size: int, nr_cpu_ids: int) -> int:
    """``calculate_order`` (mm/slub.c v5.2) with the default boot parameters: at least
    4 x (fls(nr_cpu_ids) + 1) objects if slub_max_order (3) allows, at most 1/16 of the
    slab wasted, then 1/8 and 1/4, then fewer objects.  Objects of 88 B get order 0
    below 1024 CPUs; ``task_struct`` (2.7-9 KiB) gets order 3."""
    min_objects = 4 * (nr_cpu_ids.bit_length() + 1)
    min_objects = min(min_objects, order_objects(SLUB_MAX_ORDER, size))
    while min_objects > 1:
        fraction = 16
        while fraction >= 4:
            order = slab_order(size, min_objects, SLUB_MAX_ORDER, fraction)
            if order <= SLUB_MAX_ORDER:
                return order
            fraction //= 2
        min_objects -= 1
    order = slab_order(size, 1, SLUB_MAX_ORDER, 1)
    if order <= SLUB_MAX_ORDER:
        return order
    return slab_order(size, 1, 10, 1)


def set_cpu_partial(size: int) -> int:
    """Objects a CPU may keep on partial slabs (``set_cpu_partial``, v5.3)."""
    if size >= 4096:
        return 2
    if size >= 1024:
        return 6
    if size >= 256:
        return 13
    return 30


def set_min_partial(size: int) -> int:
    """Partial slabs a node keeps even when empty: ilog2(size) / 2 clamped to
    [5, 10] (``kmem_cache_open`` and ``set_min_partial``, v5.3)."""
    return min(max((size.bit_length() - 1) // 2, MIN_PARTIAL), MAX_PARTIAL)


class KmemCacheCpu:
    """``struct kmem_cache_cpu``: the CPU slab, its freelist, the partial stack."""

    __slots__ = ("freelist", "page", "partial")

    def __init__(self) -> None:
        self.freelist = 0  # objects on the lockless freelist of ``page``
        self.page: Slab | None = None
        self.partial: list[Slab] = []  # top of the stack last (``c->partial`` first)


class SlubCache(KmemCache):
    """A SLUB ``kmem_cache`` (mm/slub.c v5.3); see the module docstring."""

    allocator = "SLUB"

    def __init__(
        self,
        name: str,
        size: int,
        objs_per_slab: int,
        ncpus: int,
        page_alloc: PageAllocator,
        *,
        cpu_partial: int | None = None,
        min_partial: int | None = None,
        order: int = 0,
        min_order: int | None = None,
        pool: str = "slab_unreclaimable",
        metrics: Metrics | None = None,
        scheduler: Any = None,
        clock: Any = None,
    ) -> None:
        super().__init__(
            name, size, objs_per_slab, ncpus, page_alloc, order=order, pool=pool, metrics=metrics,
            scheduler=scheduler, clock=clock,
        )  # fmt: skip
        # s->min: the smallest slab that holds one object, new_slab's fallback
        self.min_order = get_order(size) if min_order is None else min_order
        if not 0 <= self.min_order <= order:
            raise ValueError(f"{name}: min_order {self.min_order} must lie in [0, order {order}]")
        self.min_objects = objs_per_slab if self.min_order == order else order_objects(self.min_order, size)
        self.cpu_partial = set_cpu_partial(size) if cpu_partial is None else cpu_partial
        self.min_partial = set_min_partial(size) if min_partial is None else min_partial
        self.cpu_slab = [KmemCacheCpu() for _ in range(ncpus)]
        self.partial = SlabList("node partial")  # kmem_cache_node->partial (one node)

    # -- allocation ------------------------------------------------------------

    def alloc_nowait(self, cpu: int, gfp: int, task: Any = None) -> Slab | None:
        """``kmem_cache_alloc`` that may not sleep: ``slab_alloc_node``'s fast path
        inline, the slow path run to completion without simulated time, for
        ``task`` (``current``: its reserves reach a refill's page, see :class:`OnCpu`)."""
        c = self.cpu_slab[cpu]
        if c.freelist:
            c.freelist -= 1
            self.allocs += 1
            return c.page
        self.check_nowait(gfp)
        return run_sync(self.slab_alloc(OnCpu(cpu, task), gfp))

    def alloc(self, task: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """``kmem_cache_alloc`` from a task: a blocking gfp may sleep in the page
        allocator, after which the task may be on another CPU."""
        self.might_sleep(task, gfp)
        c = self.cpu_slab[task.cpu]
        if c.freelist:
            c.freelist -= 1
            self.allocs += 1
            return c.page
        return (yield from self.slab_alloc(task, gfp))

    def slab_alloc(self, ctx: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """The slow path (``___slab_alloc``, v5.3): levels 2 to 5."""
        self.count("refill", gfp)
        cpu = ctx.cpu
        c = self.cpu_slab[cpu]
        page = c.page
        while True:
            if page is not None:
                n = self.get_freelist(page)
                if n:
                    c.freelist = n - 1
                    self.allocs += 1
                    return page
                c.page = None  # full: it leaves the CPU, on no list
            if not c.partial:
                break
            page = c.page = c.partial.pop()  # slub_set_percpu_partial
        n = self.get_partial(cpu, c)
        if n:
            c.freelist = n - 1
            self.allocs += 1
            return c.page
        self.count("grow", gfp)
        page = yield from self.new_slab(ctx, gfp)
        cpu = ctx.cpu  # a blocking allocation may come back on another CPU
        if page is None:
            self.count("refill_fail", gfp)
            self.slab_out_of_memory(cpu, gfp)
            return None
        c = self.cpu_slab[cpu]
        if c.page is not None:
            self.flush_slab(cpu, c)  # new_slab_objects
        page.inuse = page.objects
        page.frozen = True
        c.page = page
        c.freelist = page.objects - 1
        self.allocs += 1
        return page

    def get_freelist(self, page: Slab) -> int:
        """Take the objects other CPUs freed into the CPU slab (``get_freelist``);
        with none, the page is unfrozen and, being full, on no list."""
        n = page.objects - page.inuse
        page.inuse = page.objects
        page.frozen = n > 0
        return n

    def get_partial(self, cpu: int, c: KmemCacheCpu) -> int:
        """Refill from the node partial list (``get_partial_node``, v5.3).

        The first slab becomes the CPU slab with its whole freelist; further
        slabs go to the CPU partial list until more than ``cpu_partial / 2``
        objects were found.  Returns the objects of the first slab (0: none).
        """
        if not self.partial:
            return 0
        first = 0
        available = 0
        for page in self.partial:
            objects = self.acquire_slab(page, take_freelist=not first)
            available += objects
            if not first:
                c.page = page
                first = objects
            else:
                self.put_cpu_partial(cpu, page, drain=False)
            if available > self.cpu_partial // 2:
                break
        return first

    def acquire_slab(self, page: Slab, take_freelist: bool) -> int:
        """Freeze a node partial slab and unlink it (``acquire_slab``); returns its
        free objects.  With ``take_freelist`` they move to the CPU's freelist."""
        objects = page.objects - page.inuse
        if take_freelist:
            page.inuse = page.objects
        page.frozen = True
        self.partial.remove(page)
        return objects

    def new_slab(self, ctx: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """A fresh slab (``new_slab`` and ``allocate_slab``, v5.3): the caller's gfp masked
        to its reclaim and constraint bits (plus __GFP_COMP for a high-order cache), tried
        once at the cache's order with __GFP_NOWARN|__GFP_NORETRY, then at ``s->min`` as
        it is.  When the cache's order is above ``s->min`` the first try also drops
        __GFP_RECLAIM (no kswapd wake-up, no direct reclaim) and adds __GFP_NOMEMALLOC,
        "let the initial higher-order allocation fail under memory pressure"; an order-0
        cache keeps direct reclaim on its first try."""
        flags = gfp & GFP_RECLAIM_AND_CONSTRAINT
        if self.order:
            flags |= Gfp.COMP  # s->allocflags
        first_try = (flags | Gfp.NOWARN | Gfp.NORETRY) & ~Gfp.NOFAIL
        if first_try & Gfp.DIRECT_RECLAIM and self.order > self.min_order:
            first_try = (first_try | Gfp.NOMEMALLOC) & ~(RECLAIM | Gfp.NOFAIL)
        page = yield from self.alloc_slab_page(ctx, first_try, "allocate_slab")
        if page is None:
            page = yield from self.alloc_slab_page(ctx, flags, "allocate_slab", self.min_order, self.min_objects)
            if page is not None and self.min_order != self.order:
                self.count("order_fallback")
        return page

    # -- CPU slab and partial lists ------------------------------------------

    def flush_slab(self, cpu: int, c: KmemCacheCpu) -> None:
        """``flush_slab``: deactivate the CPU slab."""
        assert c.page is not None
        self.deactivate_slab(cpu, c.page, c.freelist, c)

    def deactivate_slab(self, cpu: int, page: Slab, freelist: int, c: KmemCacheCpu) -> None:
        """Give the CPU freelist back to its page and unfreeze it (``deactivate_slab``):
        empty beyond ``min_partial`` it is discarded, with free objects it joins
        the node partial list (at the tail if others freed into it meanwhile),
        full it is on no list."""
        remote_frees = page.inuse < page.objects
        page.inuse -= freelist
        page.frozen = False
        if page.inuse == 0 and len(self.partial) >= self.min_partial:
            self.discard_slab(cpu, page)
        elif page.inuse < page.objects:
            if remote_frees:
                self.partial.add_tail(page)
            else:
                self.partial.add(page)
        c.page = None
        c.freelist = 0

    def put_cpu_partial(self, cpu: int, page: Slab, drain: bool) -> None:
        """Push a just-frozen page on ``cpu``'s partial stack (``put_cpu_partial``);
        when draining and the stack already holds more than ``cpu_partial``
        objects, the stack goes to the node list first."""
        c = self.cpu_slab[cpu]
        stack = c.partial
        pobjects = 0
        if stack:
            pobjects = stack[-1].pobjects
            if drain and pobjects > self.cpu_partial:
                self.unfreeze_partials(cpu, c)
                pobjects = 0
        page.pobjects = pobjects + page.objects - page.inuse
        stack.append(page)
        if not self.cpu_partial:
            self.unfreeze_partials(cpu, c)

    def unfreeze_partials(self, cpu: int, c: KmemCacheCpu) -> None:
        """Move the CPU partial stack to the node list, discarding empty pages once
        the node keeps ``min_partial`` (``unfreeze_partials``, v5.3)."""
        stack = c.partial
        discard: list[Slab] = []
        while stack:
            page = stack.pop()
            page.frozen = False
            if page.inuse == 0 and len(self.partial) >= self.min_partial:
                discard.append(page)
            else:
                self.partial.add_tail(page)
        for page in reversed(discard):
            self.discard_slab(cpu, page)

    def discard_slab(self, cpu: int, page: Slab) -> None:
        """Return an empty slab's page to the page allocator (``discard_slab``)."""
        self.free_slab_page(cpu, page)

    # -- free ----------------------------------------------------------------

    def free(self, cpu: int, slab: Slab) -> None:
        """``kmem_cache_free`` on ``cpu``: onto the CPU freelist if ``slab`` is this
        CPU's slab (``do_slab_free``), else to the page (``__slab_free``)."""
        self.frees += 1
        c = self.cpu_slab[cpu]
        if slab is c.page:
            c.freelist += 1
            return
        self.slab_free(cpu, slab)

    def slab_free(self, cpu: int, page: Slab) -> None:
        """``__slab_free`` (v5.3): the object goes on the page's freelist; a full
        unfrozen page is frozen onto this CPU's partial list; a page on the node
        list that empties is discarded if the node keeps ``min_partial``."""
        if page.inuse <= 0:
            raise AssertionError(f"double free into {page!r}")
        prior = page.inuse < page.objects  # the page freelist had objects
        page.inuse -= 1
        if page.frozen:
            return
        if not prior:
            page.frozen = True
            self.put_cpu_partial(cpu, page, drain=True)
            return
        if page.inuse == 0 and len(self.partial) >= self.min_partial:
            self.partial.remove(page)
            self.discard_slab(cpu, page)

    # -- whole cache ---------------------------------------------------------

    def kmem_cache_shrink(self, cpu: int) -> None:
        """``__kmem_cache_shrink`` (v5.3) called on ``cpu``.

        ``flush_all`` deactivates every CPU slab and unfreezes every partial
        stack, each on its own CPU (so a discarded page goes back on that
        CPU).  Then every empty node partial slab is discarded, ``min_partial``
        notwithstanding, and the slabs with at most SHRINK_PROMOTE_MAX free
        objects move to the head of the list, fewest free first (each group in
        reverse list order, as ``list_move`` and ``list_splice`` leave it).
        """
        for i, c in enumerate(self.cpu_slab):
            if c.page is not None:
                self.flush_slab(i, c)
            self.unfreeze_partials(i, c)
        discard: list[Slab] = []
        promote: list[list[Slab]] = [[] for _ in range(SHRINK_PROMOTE_MAX)]
        for page in self.partial:
            free = page.objects - page.inuse
            if free == page.objects:
                self.partial.remove(page)
                discard.append(page)
            elif free <= SHRINK_PROMOTE_MAX:
                self.partial.remove(page)
                promote[free - 1].append(page)
        for group in reversed(promote):
            for page in group:
                self.partial.add(page)
        for page in reversed(discard):
            self.discard_slab(cpu, page)

    def check(self) -> None:
        """Every page is in exactly one state: a CPU slab, on one CPU partial
        stack (frozen), on the node partial list (unfrozen, not full) or full
        and unlisted; the objects callers hold add up to allocs - frees."""
        held: dict[Slab, int] = {}
        for c in self.cpu_slab:
            if c.page is None:
                assert c.freelist == 0
            else:
                page = c.page
                assert page.frozen and page not in held and page.slab_list is None
                assert c.freelist <= page.inuse
                held[page] = page.inuse - c.freelist
            for page in c.partial:
                assert page.frozen and page not in held and page.slab_list is None
                assert page.inuse < page.objects, page
                held[page] = page.inuse
        for page in self.partial:
            assert not page.frozen and page not in held and page.inuse < page.objects
            held[page] = page.inuse
        for page in self.slabs:
            if page not in held:
                assert not page.frozen and page.slab_list is None and page.inuse == page.objects, page
                held[page] = page.inuse
        self._check_common(held)
