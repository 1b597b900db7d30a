"""What the two slab allocator models share (mm/slab_common.c and mm/slab.h, v5.3).

A cache hands out objects; the model represents an object by the slab page it
lives in (:class:`Slab`), which is all that memory accounting needs: pages
come from and go back to the page allocator, and each page knows how many of
its objects are out.  :class:`KmemCache` holds the parts common to SLUB
(``slub.py``) and SLAB (``slab.py``): the page-allocator calls, the
accounting and the metrics.  ``caches.py`` creates caches.

A slab is ``1 << order`` pages (a compound page for order > 0).  Order 0 is
what ``calculate_order`` (SLUB) and ``calculate_slab_order`` (SLAB) choose for
``struct vmap_area`` and the small kmalloc caches in every kernel version the
project models; the ``task_struct`` cache takes order 1 (SLAB) or 3 (SLUB,
falling back to the object's own order), see ``caches.task_struct_cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, ClassVar, Final, Protocol

from sim.kernel.mm.gfp import GFP_RECLAIM_MASK, RECLAIM, Gfp, gfp_name
from sim.record.metrics import Metrics

PAGE_SIZE: Final = 4096
# mm/internal.h: the placement bits a slab keeps from its caller
GFP_CONSTRAINT_MASK = Gfp.HARDWALL | Gfp.THISNODE
# new_slab / cache_grow_begin: what of the caller's gfp reaches the page allocator
GFP_RECLAIM_AND_CONSTRAINT: Final = GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK
# the bits that name a caller's class in the per-class counters
_CLASS_MASK = RECLAIM | Gfp.HIGH | Gfp.ATOMIC | Gfp.IO | Gfp.FS
_DIRECT_RECLAIM: Final = Gfp.DIRECT_RECLAIM


class PageAllocator(Protocol):
    """The part of ``page_alloc.PageAllocator`` a slab cache calls (docs/machine-api.md)."""

    def alloc_pages_nowait(
        self, cpu: int, gfp: int, order: int = 0, *, pool: str, site: str = "", owner: object = None,
        task: Any = None,
    ) -> bool: ...  # fmt: skip

    def alloc_pages(
        self, task: Any, gfp: int, order: int = 0, *, pool: str, site: str = "", owner: object = None
    ) -> Generator[Any, Any, bool]: ...

    def free_pages(self, cpu: int, order: int = 0, *, pool: str, nr: int = 1, owner: object = None) -> None: ...


class OnCpu:
    """The execution context of a path that cannot sleep: a CPU id and ``current``.

    The slow paths are written once, as generators reading ``ctx.cpu``; a
    non-blocking caller runs them with an ``OnCpu`` in place of a task.
    ``task`` is the task the path runs for (the kernel's ``current``), whose
    RT policy and OOM-victim mark the page allocator reads when a refill
    needs a page (``gfp_to_alloc_flags``, ``__gfp_pfmemalloc_flags``); None
    for a context without one, which gets no such reserves.
    """

    __slots__ = ("cpu", "task")

    def __init__(self, cpu: int, task: Any = None) -> None:
        self.cpu = cpu
        self.task = task


def run_sync(path: Generator[Any, Any, Any]) -> Any:
    """Run a slow path that must not take simulated time and return its value.

    Raises ``RuntimeError`` if it tried to wait: a non-blocking allocation
    reached a sleeping call, which is a bug in the model.
    """
    try:
        path.send(None)
    except StopIteration as done:
        return done.value
    path.close()
    raise RuntimeError("a non-blocking slab path tried to sleep")


class Slab:
    """One slab page: the slab fields of ``struct page``.

    ``inuse`` is the kernel's counter (SLUB ``page->inuse``, SLAB
    ``page->active``): objects not on the page's own free list.  In SLUB that
    includes the objects of a CPU's lockless freelist, in SLAB the objects in
    array caches, so objects held by callers are derived, not stored
    (:meth:`KmemCache.check`).  ``frozen`` and ``pobjects`` are SLUB's;
    ``prev``/``next``/``slab_list`` link the page into one :class:`SlabList`.
    """

    __slots__ = ("cache", "frozen", "inuse", "next", "objects", "order", "pobjects", "prev", "slab_list")

    def __init__(self, cache: KmemCache, objects: int, order: int = 0) -> None:
        self.cache = cache
        self.objects = objects
        self.order = order  # the page allocator order the slab was taken at
        self.inuse = 0
        self.frozen = False
        self.pobjects = 0
        self.prev: Slab | SlabList | None = None
        self.next: Slab | SlabList | None = None
        self.slab_list: SlabList | None = None

    def __repr__(self) -> str:
        return f"Slab({self.cache.name}, inuse={self.inuse}/{self.objects}{', frozen' if self.frozen else ''})"


class SlabList:
    """A doubly linked list of slab pages (a ``list_head`` through ``page->slab_list``).

    O(1) insertion at either end and removal from anywhere, in the kernel's
    order, so that which page a refill picks is the page the kernel picks.
    """

    __slots__ = ("count", "name", "next", "prev")

    def __init__(self, name: str) -> None:
        self.name = name
        self.prev: Slab | SlabList = self
        self.next: Slab | SlabList = self
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def _link(self, page: Slab, prev: Slab | SlabList, nxt: Slab | SlabList) -> None:
        if page.slab_list is not None:
            raise AssertionError(f"{page!r} is already on {page.slab_list.name}")
        page.prev = prev
        page.next = nxt
        prev.next = page
        nxt.prev = page
        page.slab_list = self
        self.count += 1

    def add(self, page: Slab) -> None:
        """Insert at the head (``list_add``)."""
        self._link(page, self, self.next)

    def add_tail(self, page: Slab) -> None:
        """Insert at the tail (``list_add_tail``)."""
        self._link(page, self.prev, self)

    def remove(self, page: Slab) -> None:
        """Unlink ``page`` (``list_del``)."""
        if page.slab_list is not self:
            raise AssertionError(f"{page!r} is not on {self.name}")
        prev, nxt = page.prev, page.next
        prev.next = nxt  # type: ignore[union-attr]
        nxt.prev = prev  # type: ignore[union-attr]
        page.prev = page.next = page.slab_list = None
        self.count -= 1

    def first(self) -> Slab | None:
        return self.next if self.count else None  # type: ignore[return-value]

    def last(self) -> Slab | None:
        return self.prev if self.count else None  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Slab]:
        node = self.next
        while node is not self:
            nxt = node.next  # safe against removal of the current page
            yield node  # type: ignore[misc]
            node = nxt  # type: ignore[assignment]


class KmemCache:
    """A ``struct kmem_cache``: the parts the SLUB and SLAB models share.

    Subclasses provide ``alloc_nowait(cpu, gfp, task=None)``, ``alloc(task, gfp)`` and
    ``free(cpu, slab)`` (docs/machine-api.md) and ``check()``.  ``allocs`` and
    ``frees`` count objects handed out and returned; ``nr_slabs`` counts the
    slabs held (each ``1 << order`` pages).  Counters go to ``metrics`` as
    ``slab.<cache>.<what>[.<gfp>]``: ``refill`` (allocations that missed the
    per-CPU cache), ``grow`` (refills that asked the page allocator),
    ``refill_fail`` (allocations that got no object), ``pages_alloc`` and
    ``pages_free`` (slabs taken from and given back to the page allocator, one
    per call whatever its order).  A failure without
    ``__GFP_NOWARN`` is also an event ``slab_out_of_memory``.
    """

    allocator: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        size: int,
        objs_per_slab: int,
        ncpus: int,
        page_alloc: PageAllocator,
        *,
        order: int = 0,
        pool: str = "slab_unreclaimable",
        metrics: Metrics | None = None,
        scheduler: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        slab_bytes = PAGE_SIZE << order if order >= 0 else 0
        if not 0 < size <= slab_bytes or not 0 < objs_per_slab <= slab_bytes // size:
            pages = "one page" if order == 0 else f"an order-{order} slab"
            raise ValueError(f"{name}: {objs_per_slab} objects of {size} B do not fit in {pages}")
        if ncpus < 1:
            raise ValueError("ncpus must be at least 1")
        self.name = name
        self.size = size
        self.order = order  # SLUB's s->oo / SLAB's gfporder
        self.objs_per_slab = objs_per_slab
        self.ncpus = ncpus
        self.page_alloc = page_alloc
        self.pool = pool
        self.metrics = metrics if metrics is not None else Metrics()
        self.scheduler = scheduler
        if clock is None:
            clock = (lambda: scheduler.env.now) if scheduler is not None else (lambda: 0.0)
        self.clock = clock
        self.allocs = 0
        self.frees = 0
        self.nr_slabs = 0
        self.max_slabs = 0
        self.slabs: dict[Slab, None] = {}  # every page held, in allocation order
        self._prefix = f"slab.{name}."
        self._site = f"kmem_cache_alloc({name})"
        self._classes: dict[int, str] = {}

    # -- accounting ----------------------------------------------------------

    @property
    def objects_in_use(self) -> int:
        """Objects held by callers: allocations minus frees."""
        return self.allocs - self.frees

    def levels(self) -> dict[str, int]:
        """The cache's levels for a time series sample."""
        return {self._prefix + "objects": self.allocs - self.frees, self._prefix + "slabs": self.nr_slabs}

    def record_totals(self) -> None:
        """Write the running totals into the metrics counters (idempotent)."""
        counters = self.metrics.counters
        counters[self._prefix + "allocs"] = self.allocs
        counters[self._prefix + "frees"] = self.frees
        counters[self._prefix + "slabs_max"] = self.max_slabs

    def gfp_class(self, gfp: int) -> str:
        """The caller class a counter is kept under: ``GFP_NOWAIT``, ``GFP_KERNEL``..."""
        name = self._classes.get(gfp)
        if name is None:
            name = self._classes[gfp] = gfp_name(gfp & _CLASS_MASK)
        return name

    def count(self, what: str, gfp: int | None = None) -> None:
        """Add one to ``slab.<cache>.<what>`` (per caller class if ``gfp`` given)."""
        key = self._prefix + what if gfp is None else f"{self._prefix}{what}.{self.gfp_class(gfp)}"
        self.metrics.add(key)

    def might_sleep(self, task: Any, gfp: int) -> None:
        """``slab_pre_alloc_hook``'s ``might_sleep_if``: a blocking gfp in atomic
        context is a BUG even when the object comes from a per-CPU cache."""
        if gfp & _DIRECT_RECLAIM and self.scheduler is not None:
            self.scheduler.might_sleep(task, self._site)

    def check_nowait(self, gfp: int) -> None:
        """Refuse a blocking gfp on a path that may not yield."""
        if gfp & _DIRECT_RECLAIM:
            raise ValueError(f"alloc_nowait({self.name}) with blocking gfp {gfp_name(gfp)}; use alloc()")

    # -- pages ---------------------------------------------------------------

    def alloc_slab_page(
        self, ctx: Any, gfp: int, site: str, order: int | None = None, objects: int | None = None
    ) -> Generator[Any, Any, Slab | None]:
        """One page-allocator call for a new slab of ``order`` (default the cache's) holding
        ``objects`` (``alloc_slab_page`` / ``kmem_getpages``); it sleeps only if ``gfp``
        allows direct reclaim.  ``ctx`` is a task or an :class:`OnCpu`; either way the page
        allocator is told the task it runs for (``current``), so that an RT task's
        ALLOC_HARDER and an OOM victim's ALLOC_OOM apply to a non-blocking refill as they
        do in the kernel."""
        if order is None:
            order = self.order
        if gfp & _DIRECT_RECLAIM:
            ok = yield from self.page_alloc.alloc_pages(ctx, gfp, order, pool=self.pool, site=site)
        else:
            task = ctx.task if ctx.__class__ is OnCpu else ctx
            ok = self.page_alloc.alloc_pages_nowait(ctx.cpu, gfp, order, pool=self.pool, site=site, task=task)
        if not ok:
            return None
        page = Slab(self, self.objs_per_slab if objects is None else objects, order)
        self.slabs[page] = None
        self.nr_slabs += 1
        if self.nr_slabs > self.max_slabs:
            self.max_slabs = self.nr_slabs
        self.metrics.add(self._prefix + "pages_alloc")
        return page

    def free_slab_page(self, cpu: int, page: Slab) -> None:
        """Give an empty slab's page back (``__free_slab`` / ``kmem_freepages``)."""
        if page.inuse or page.slab_list is not None:
            raise AssertionError(f"freeing {page!r} while in use or listed")
        del self.slabs[page]
        self.nr_slabs -= 1
        self.metrics.add(self._prefix + "pages_free")
        self.page_alloc.free_pages(cpu, page.order, pool=self.pool)

    def slab_out_of_memory(self, cpu: int, gfp: int) -> None:
        """Record ``slab_out_of_memory``'s report unless ``__GFP_NOWARN`` (v5.3: SLUB
        prints it with CONFIG_SLUB_DEBUG, SLAB only with CONFIG_DEBUG_SLAB; the
        model records it for both, and leaves the ratelimit to whoever reads
        the events)."""
        if gfp & Gfp.NOWARN:
            return
        self.metrics.event(
            "slab_out_of_memory",
            self.clock(),
            cache=self.name,
            allocator=self.allocator,
            gfp=gfp_name(gfp),
            cpu=cpu,
            slabs=self.nr_slabs,
            objects=self.nr_slabs * self.objs_per_slab,
            objects_in_use=self.allocs - self.frees,
        )

    # -- interface (subclasses) ---------------------------------------------

    def alloc_nowait(self, cpu: int, gfp: int, task: Any = None) -> Slab | None:
        """``kmem_cache_alloc`` that may not sleep, on ``cpu`` for ``task`` (``current``,
        None without one: see :class:`OnCpu`)."""
        raise NotImplementedError

    def alloc(self, task: Any, gfp: int) -> Generator[Any, Any, Slab | None]:
        raise NotImplementedError

    def free(self, cpu: int, slab: Slab) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Raise ``AssertionError`` if the cache's bookkeeping is inconsistent."""
        raise NotImplementedError

    def _check_common(self, held: dict[Slab, int]) -> None:
        """The identities both models share, given each page's objects held by callers."""
        assert set(held) == set(self.slabs), "a listed page is not registered, or the reverse"
        assert len(self.slabs) == self.nr_slabs, (len(self.slabs), self.nr_slabs)
        for page, n in held.items():
            assert 0 <= n <= page.inuse <= page.objects, (page, n)
        total = sum(held.values())
        assert total == self.allocs - self.frees, (total, self.allocs, self.frees)
