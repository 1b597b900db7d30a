"""The SLAB allocator (mm/slab.c, v5.3) for one cache on one NUMA node.

Objects move in batches between three levels:

1. the per-CPU array cache (``limit`` 120, ``batchcount`` 60 for objects of
   at most 256 B): allocation pops, free pushes, a few attribute operations;
2. the node's shared array (``shared`` x ``batchcount`` = 480 entries when
   there is more than one CPU);
3. the node's slab lists (partial, full, free) with ``free_objects`` and
   ``free_limit`` = (1 + ncpus) x batchcount + objects per slab.

``cache_alloc_refill`` fills an empty array from the shared array, else from
partial then free slabs, else grows the cache by one page.  ``cache_flusharray``
moves ``batchcount`` objects from a full array to the shared array, else back to
their slabs (``free_block``), where free slabs beyond ``free_limit`` objects are
destroyed.  A free from another CPU simply lands in the freeing CPU's array.

With ``numa`` (CONFIG_NUMA, as on x86_64 distribution kernels and in Rezki's
2019 trace) the refill's page request drops reclaim and warnings
(``gfp_exact_node``), ``____cache_alloc_node`` tries once more the same way,
and ``fallback_alloc`` finally grows with the caller's gfp: a GFP_NOWAIT failure
is reported from ``cache_grow_begin`` <- ``fallback_alloc`` with mode
GFP_NOWAIT|__GFP_COMP.  Without ``numa`` the refill grows once with the
caller's gfp.  An array entry is the slab page of the object it stands for.
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

BATCHREFILL_LIMIT: Final = 16
REAPTIMEOUT_AC: Final = 2.0  # seconds between cache_reap runs on each CPU (2*HZ)
REAPTIMEOUT_NODE: Final = 4.0  # seconds between node-level reaps (4*HZ)
SLAB_MAX_ORDER_LO: Final = 0
SLAB_MAX_ORDER_HI: Final = 1  # slab_max_order once totalram_pages() > 32 MiB (kmem_cache_init)
KMALLOC_MAX_ORDER: Final = 10  # KMALLOC_SHIFT_MAX - PAGE_SHIFT with MAX_ORDER 11
SLAB_OBJ_MAX_NUM: Final = 255  # a one-byte freelist index (4 KiB pages)
_PAGE: Final = 4096


def slab_max_order(totalram_pages: int) -> int:
    """``slab_max_order`` after ``kmem_cache_init`` (v5.2): 1 on machines with more than
    32 MiB of RAM, else 0 (no ``slab_max_order=`` on the command line)."""
    return SLAB_MAX_ORDER_HI if totalram_pages > (32 << 20) // _PAGE else SLAB_MAX_ORDER_LO


def calculate_slab_order(size: int, max_order: int) -> tuple[int, int]:
    """(gfporder, objects per slab) of a cache of ``size``-byte objects (already aligned)
    whose freelist index lives in a free object: ``calculate_slab_order`` with
    CFLGS_OBJFREELIST_SLAB (``set_objfreelist_slab_cache``, mm/slab.c v5.2), the
    layout of every cache without a constructor or SLAB_TYPESAFE_BY_RCU whose index
    array fits in one object.  The first order that holds an object is taken if it
    is ``max_order`` or above, or if it wastes at most 1/8 of the slab; else the next.
    On a machine over 32 MiB that gives ``task_struct`` (2.7-9 KiB on x86_64) order 1
    with one object per slab for 4-8 KiB and two or more below 3.5 KiB, order 0 in
    between, and order 2 above 8 KiB."""
    best: tuple[int, int] | None = None
    for order in range(KMALLOC_MAX_ORDER + 1):
        slab_bytes = _PAGE << order
        num, left_over = divmod(slab_bytes, size)
        if not num:
            continue
        if num > SLAB_OBJ_MAX_NUM:
            break
        if num > size:  # num * sizeof(freelist_idx_t) > object_size: not OBJFREELIST_SLAB
            raise ValueError(f"objects of {size} B do not keep their freelist index inside a free object")
        best = (order, num)
        if order >= max_order or left_over * 8 <= slab_bytes:
            break
    if best is None:
        raise ValueError(f"objects of {size} B fit no slab of SLAB's orders")
    return best


def enable_cpucache(size: int, ncpus: int) -> tuple[int, int, int]:
    """``(limit, batchcount, shared)`` of a cache (``enable_cpucache``, v5.3, no DEBUG)."""
    if size > 131072:
        limit = 1
    elif size > 4096:
        limit = 8
    elif size > 1024:
        limit = 24
    elif size > 256:
        limit = 54
    else:
        limit = 120
    shared = 8 if size <= 4096 and ncpus > 1 else 0
    return limit, (limit + 1) // 2, shared


class ArrayCache:
    """``struct array_cache``: a LIFO of objects (here: their slab pages)."""

    __slots__ = ("batchcount", "entry", "limit", "touched")

    def __init__(self, limit: int, batchcount: int) -> None:
        self.entry: list[Slab] = []
        self.limit = limit
        self.batchcount = batchcount
        self.touched = False


class SlabCache(KmemCache):
    """A SLAB ``kmem_cache`` (mm/slab.c v5.3); see the module docstring."""

    allocator = "SLAB"

    def __init__(
        self,
        name: str,
        size: int,
        objs_per_slab: int,
        ncpus: int,
        page_alloc: PageAllocator,
        *,
        limit: int | None = None,
        batchcount: int | None = None,
        shared: int | None = None,
        numa: bool = True,
        order: int = 0,
        pool: str = "slab_unreclaimable",
        metrics: Metrics | None = None,
        scheduler: Any = None,
        clock: Any = None,
    ) -> None:
        super().__init__(
            name, size, objs_per_slab, ncpus, page_alloc, order=order, pool=pool, metrics=metrics,
            scheduler=scheduler, clock=clock,
        )  # fmt: skip
        d_limit, d_batch, d_shared = enable_cpucache(size, ncpus)
        self.limit = d_limit if limit is None else limit
        self.batchcount = d_batch if batchcount is None else batchcount
        self.shared_factor = d_shared if shared is None else shared
        self.numa = numa
        self.array = [ArrayCache(self.limit, self.batchcount) for _ in range(ncpus)]
        # the one kmem_cache_node
        self.shared = ArrayCache(self.shared_factor * self.batchcount, 0xBAADF00D) if self.shared_factor else None
        self.slabs_partial = SlabList("slabs_partial")
        self.slabs_full = SlabList("slabs_full")
        self.slabs_free = SlabList("slabs_free")
        self.free_objects = 0
        self.free_limit = (1 + ncpus) * self.batchcount + objs_per_slab
        self.free_touched = False
        self.next_reap = REAPTIMEOUT_NODE

    # -- allocation ----------------------------------------------------------

    def alloc_nowait(self, cpu: int, gfp: int, task: Any = None) -> Slab | None:
        """``kmem_cache_alloc`` that may not sleep: ``____cache_alloc``'s array hit
        inline, the rest run to completion without simulated time, for ``task``
        (``current``: its reserves reach a refill's page, see :class:`OnCpu`)."""
        ac = self.array[cpu]
        entry = ac.entry
        if entry:
            ac.touched = True
            self.allocs += 1
            return entry.pop()
        self.check_nowait(gfp)
        return run_sync(self.do_cache_alloc(OnCpu(cpu, task), gfp))

    def alloc(self, task: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """``kmem_cache_alloc`` from a task: a blocking gfp may sleep in the page
        allocator, after which the task may be on another CPU."""
        self.might_sleep(task, gfp)
        ac = self.array[task.cpu]
        if ac.entry:
            ac.touched = True
            self.allocs += 1
            return ac.entry.pop()
        return (yield from self.do_cache_alloc(task, gfp))

    def do_cache_alloc(self, ctx: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """``__do_cache_alloc`` after an array miss: refill, then (NUMA) the node
        path and its fallback."""
        self.count("refill", gfp)
        page = yield from self.cache_alloc_refill(ctx, gfp)
        if page is None and self.numa:
            page = yield from self.cache_alloc_node(ctx, gfp)
        if page is None:
            self.count("refill_fail", gfp)
            return None
        self.allocs += 1
        return page

    def gfp_exact_node(self, gfp: int) -> int:
        """``gfp_exact_node``: NUMA drops reclaim and warnings and stays on the node."""
        if self.numa:
            return (gfp | Gfp.THISNODE | Gfp.NOWARN) & ~(RECLAIM | Gfp.NOFAIL)
        return gfp & ~Gfp.NOFAIL

    def cache_alloc_refill(self, ctx: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """Refill the empty array and take one object (``cache_alloc_refill``, v5.3).

        An array untouched since the last reap refills only 16.  Objects come
        from the shared array if it has any, else from partial then free
        slabs; with none, the cache grows by one page.
        """
        ac = self.array[ctx.cpu]
        batchcount = ac.batchcount
        if not ac.touched and batchcount > BATCHREFILL_LIMIT:
            batchcount = BATCHREFILL_LIMIT
        shared = self.shared
        if self.free_objects or (shared is not None and shared.entry):
            if shared is not None and self.transfer_objects(ac, shared, batchcount):
                shared.touched = True
            else:
                while batchcount > 0:
                    page = self.get_first_slab()
                    if page is None:
                        break
                    batchcount = self.alloc_block(ac, page, batchcount)
                    self.fixup_slab_list(page)
                self.free_objects -= len(ac.entry)
        if not ac.entry:
            self.count("grow", gfp)
            page = yield from self.cache_grow_begin(ctx, self.gfp_exact_node(gfp))
            ac = self.array[ctx.cpu]  # the task may have moved while it slept
            if not ac.entry and page is not None:
                self.alloc_block(ac, page, batchcount)
            self.cache_grow_end(page)
            if not ac.entry:
                return None
        ac.touched = True
        return ac.entry.pop()

    def transfer_objects(self, to: ArrayCache, src: ArrayCache, limit: int) -> int:
        """Move up to ``limit`` of the newest entries of ``src`` to ``to``
        (``transfer_objects``)."""
        nr = min(len(src.entry), limit, to.limit - len(to.entry))
        if nr:
            to.entry.extend(src.entry[-nr:])
            del src.entry[-nr:]
        return nr

    def get_first_slab(self) -> Slab | None:
        """The first partial slab, else the first free one (``get_first_slab``)."""
        page = self.slabs_partial.first()
        if page is None:
            self.free_touched = True
            page = self.slabs_free.first()
        return page

    def alloc_block(self, ac: ArrayCache, page: Slab, batchcount: int) -> int:
        """Move up to ``batchcount`` free objects of ``page`` into ``ac``
        (``alloc_block``); returns the batch still wanted."""
        take = min(page.objects - page.inuse, batchcount)
        page.inuse += take
        ac.entry.extend([page] * take)
        return batchcount - take

    def fixup_slab_list(self, page: Slab) -> None:
        """Put ``page`` at the head of the full or partial list (``fixup_slab_list``)."""
        if page.slab_list is not None:
            page.slab_list.remove(page)
        if page.inuse == page.objects:
            self.slabs_full.add(page)
        else:
            self.slabs_partial.add(page)

    def cache_alloc_node(self, ctx: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """One object straight from the node's slabs, growing if there are none,
        then ``fallback_alloc`` (``____cache_alloc_node``, v5.3)."""
        page = self.get_first_slab()
        if page is not None:
            page.inuse += 1
            self.free_objects -= 1
            self.fixup_slab_list(page)
            return page
        page = yield from self.cache_grow_begin(ctx, self.gfp_exact_node(gfp))
        if page is not None:
            page.inuse += 1
        self.cache_grow_end(page)
        if page is not None:
            return page
        return (yield from self.fallback_alloc(ctx, gfp))

    def fallback_alloc(self, ctx: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """Last resort on one node (``fallback_alloc``, v5.3): take a free object if
        one appeared, else grow with the caller's own gfp and retry."""
        if gfp & Gfp.THISNODE:
            return None
        exact = self.gfp_exact_node(gfp)
        while True:
            if self.free_objects:
                page = yield from self.cache_alloc_node(ctx, exact)
                if page is not None:
                    return page
            page = yield from self.cache_grow_begin(ctx, gfp)
            self.cache_grow_end(page)
            if page is None:
                return None
            obj = yield from self.cache_alloc_node(ctx, exact)
            if obj is not None:
                return obj

    def cache_grow_begin(self, ctx: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        """A new slab page (``cache_grow_begin`` + ``kmem_getpages``, v5.3): the gfp
        masked to its reclaim and constraint bits, plus __GFP_COMP."""
        flags = (gfp & GFP_RECLAIM_AND_CONSTRAINT) | Gfp.COMP
        page = yield from self.alloc_slab_page(ctx, flags, "cache_grow_begin")
        if page is None:
            self.slab_out_of_memory(ctx.cpu, flags)
        return page

    def cache_grow_end(self, page: Slab | None) -> None:
        """List a new page and count its free objects (``cache_grow_end``)."""
        if page is None:
            return
        if page.inuse == 0:
            self.slabs_free.add_tail(page)
        else:
            self.fixup_slab_list(page)
        self.free_objects += page.objects - page.inuse

    # -- free ----------------------------------------------------------------

    def free(self, cpu: int, slab: Slab) -> None:
        """``kmem_cache_free`` on ``cpu`` (``___cache_free``): push onto this CPU's
        array, flushing a batch first when it is full."""
        self.frees += 1
        ac = self.array[cpu]
        if len(ac.entry) >= ac.limit:
            self.cache_flusharray(cpu, ac)
        ac.entry.append(slab)

    def cache_flusharray(self, cpu: int, ac: ArrayCache) -> None:
        """Move the oldest ``batchcount`` entries to the shared array if it has
        room, else back to their slabs (``cache_flusharray``, v5.3)."""
        batchcount = ac.batchcount
        shared = self.shared
        if shared is not None:
            room = shared.limit - len(shared.entry)
            if room:
                batchcount = min(batchcount, room)
                shared.entry.extend(ac.entry[:batchcount])
                del ac.entry[:batchcount]
                return
        self.free_block(cpu, ac.entry[:batchcount])
        del ac.entry[:batchcount]

    def free_block(self, cpu: int, objects: list[Slab]) -> None:
        """Return objects to their slabs and destroy free slabs while the node has
        more than ``free_limit`` free objects (``free_block``, v5.3)."""
        self.free_objects += len(objects)
        for page in objects:
            page.slab_list.remove(page)  # type: ignore[union-attr]
            page.inuse -= 1
            if page.inuse == 0:
                self.slabs_free.add(page)
            else:
                self.slabs_partial.add_tail(page)
        doomed: list[Slab] = []
        while self.free_objects > self.free_limit and self.slabs_free:
            self.free_objects -= self.objs_per_slab
            last = self.slabs_free.last()
            assert last is not None  # the loop tests that the list is not empty
            self.slabs_free.remove(last)
            doomed.append(last)
        for page in reversed(doomed):
            self.slab_destroy(cpu, page)

    def slab_destroy(self, cpu: int, page: Slab) -> None:
        self.free_slab_page(cpu, page)  # slab_destroy: the page goes back

    # -- reaping and shrinking -----------------------------------------------

    def cache_reap(self, cpu: int, now: float) -> None:
        """The periodic reaper on ``cpu`` (``cache_reap``, v5.3); whoever runs the
        model calls it every REAPTIMEOUT_AC seconds per CPU.  An array untouched
        since the last run gives back a fifth of its limit; every
        REAPTIMEOUT_NODE the shared array too, and free slabs are destroyed
        unless a refill used one since."""
        self.drain_array(cpu, self.array[cpu])
        if now < self.next_reap:
            return
        self.next_reap = now + REAPTIMEOUT_NODE
        self.drain_array(cpu, self.shared)
        if self.free_touched:
            self.free_touched = False
        else:
            per = 5 * self.objs_per_slab
            self.drain_freelist(cpu, (self.free_limit + per - 1) // per)

    def drain_array(self, cpu: int, ac: ArrayCache | None) -> None:
        """``drain_array`` + ``drain_array_locked`` (not all)."""
        if ac is None or not ac.entry:
            return
        if ac.touched:
            ac.touched = False
            return
        tofree = (ac.limit + 4) // 5
        if tofree > len(ac.entry):
            tofree = (len(ac.entry) + 1) // 2
        self.free_block(cpu, ac.entry[:tofree])
        del ac.entry[:tofree]

    def drain_freelist(self, cpu: int, tofree: int) -> int:
        """Destroy up to ``tofree`` free slabs, last first (``drain_freelist``)."""
        freed = 0
        while freed < tofree and self.slabs_free:
            page = self.slabs_free.last()
            self.slabs_free.remove(page)  # type: ignore[arg-type]
            self.free_objects -= self.objs_per_slab
            self.slab_destroy(cpu, page)  # type: ignore[arg-type]
            freed += 1
        return freed

    def kmem_cache_shrink(self, cpu: int) -> None:
        """Empty every array, each CPU's on that CPU (``drain_cpu_caches``), then
        destroy every free slab (``drain_freelist`` of ``__kmem_cache_shrink``)."""
        for i, ac in enumerate(self.array):
            self.free_block(i, ac.entry)
            ac.entry = []
        if self.shared is not None:
            self.free_block(cpu, self.shared.entry)
            self.shared.entry = []
        self.drain_freelist(cpu, len(self.slabs_free))

    def check(self) -> None:
        """Each page is on the list its count says; ``free_objects`` matches the
        lists; arrays respect their limits; objects callers hold (in use minus
        array entries) add up to allocs - frees."""
        held: dict[Slab, int] = {}
        for lst, ok in (
            (self.slabs_full, lambda p: p.inuse == p.objects),
            (self.slabs_partial, lambda p: 0 < p.inuse < p.objects),
            (self.slabs_free, lambda p: p.inuse == 0),
        ):
            for page in lst:
                assert ok(page) and page not in held, (lst.name, page)
                held[page] = page.inuse
        assert self.free_objects == sum(p.objects - p.inuse for p in held), self.free_objects
        arrays = [*self.array, *([self.shared] if self.shared is not None else [])]
        for ac in arrays:
            assert len(ac.entry) <= ac.limit
            for page in ac.entry:
                held[page] -= 1
        self._check_common(held)
