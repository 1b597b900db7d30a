"""Slab caches: creating them, and the ``vmap_area`` cache as an object provider.

``kmem_cache_create`` builds a cache with one of the two allocator models:
SLUB (``slub.py``, mm/slub.c v5.3) or SLAB (``slab.py``, mm/slab.c
v5.3); both share ``common.py``.  Every cache offers (docs/machine-api.md)::

    alloc_nowait(cpu, gfp, task=None) -> Slab | None  # never yields; task: current
    alloc(task, gfp) -> Generator[..., Slab | None]    # blocking gfp may sleep
    free(cpu, slab) -> None

An object is represented by the slab page it lives in.  ``vmap_area_cache``
makes ``vmalloc_init``'s ``KMEM_CACHE(vmap_area, SLAB_PANIC)`` for a kernel
profile (88 B, 46 per page to 5.3; 64 B, 64 per page 5.4-6.2; 72 B, 56 per page
from 6.3: order-0 slabs and no per-object metadata under either allocator, SLAB
keeping its freelist index inside a free object).  ``VmapAreaObjects`` adapts
that cache to the allocator core's ``ObjectProvider``.  ``task_struct_cache``
makes ``fork_init``'s ``task_struct_cachep``, the one cache with high-order slabs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.kernel.mm.gfp import GFP_NOWAIT, gfp_name, gfpflags_allow_blocking
from sim.kernel.mm.slab.common import PAGE_SIZE, KmemCache, PageAllocator, Slab
from sim.kernel.mm.slab.slab import SlabCache, calculate_slab_order, slab_max_order
from sim.kernel.mm.slab.slub import SlubCache, calculate_order, order_objects
from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.profile import KernelProfile
from sim.record.metrics import Metrics

__all__ = [
    "ALLOCATORS",
    "KmemCache",
    "Slab",
    "SlabCache",
    "SlubCache",
    "VmapAreaObjects",
    "default_objs_per_slab",
    "kmem_cache_create",
    "task_struct_cache",
    "vmap_area_cache",
]

ALLOCATORS: dict[str, type[KmemCache]] = {"SLUB": SlubCache, "SLAB": SlabCache}
# mm/slab.c: the smallest SLAB object (sizes below are rounded up), with 4 KiB
# pages the reason a freelist index is one byte
SLAB_OBJ_MIN_SIZE = 16
L1_CACHE_BYTES = 64  # x86_64; fork_init aligns task_struct to max(L1_CACHE_BYTES, ARCH_MIN_TASKALIGN)


def default_objs_per_slab(allocator: str, size: int) -> int:
    """Objects of ``size`` bytes on an order-0 slab of a cache without a constructor.

    SLUB (``calculate_sizes``/``calculate_order``, v5.3) keeps its free pointer
    inside a free object: PAGE_SIZE // size.  SLAB (``__kmem_cache_create``,
    ``set_objfreelist_slab_cache`` and ``cache_estimate``, v5.3) needs a
    one-byte index per object: the index array lives in a free object when it
    fits in one (OBJFREELIST_SLAB: PAGE_SIZE // size again), else at the end
    of the page (PAGE_SIZE // (size + 1): 124 for kmalloc-32), an off-slab
    array never being worth it for objects that small.  ``size`` is the
    already aligned object size.
    """
    if not 0 < size <= PAGE_SIZE:
        raise ValueError(f"objects of {size} B do not fit in one page")
    if allocator != "SLAB":
        return PAGE_SIZE // size
    size = max(size, SLAB_OBJ_MIN_SIZE)
    num = PAGE_SIZE // size
    return num if num <= size else PAGE_SIZE // (size + 1)


def kmem_cache_create(
    name: str,
    size: int,
    *,
    allocator: str,
    ncpus: int,
    page_alloc: PageAllocator,
    objs_per_slab: int | None = None,
    order: int = 0,
    pool: str = "slab_unreclaimable",
    metrics: Metrics | None = None,
    scheduler: Any = None,
    clock: Callable[[], float] | None = None,
    **tunables: Any,
) -> KmemCache:
    """A cache of ``size``-byte objects on slabs of ``order`` (``kmem_cache_create``).

    ``objs_per_slab`` defaults to what the allocator fits in an order-0 slab
    (:func:`default_objs_per_slab`); a higher ``order`` needs it given.  ``tunables`` go to the
    allocator model: SLUB ``cpu_partial``, ``min_partial``; SLAB ``limit``,
    ``batchcount``, ``shared``, ``numa``.  Pages are charged to ``pool``.
    """
    try:
        cls = ALLOCATORS[allocator]
    except KeyError:
        raise ValueError(f"allocator must be one of {', '.join(ALLOCATORS)}, not {allocator!r}") from None
    return cls(
        name,
        size,
        default_objs_per_slab(allocator, size) if objs_per_slab is None else objs_per_slab,
        ncpus,
        page_alloc,
        order=order,
        pool=pool,
        metrics=metrics,
        scheduler=scheduler,
        clock=clock,
        **tunables,
    )


def vmap_area_cache(
    profile: KernelProfile,
    *,
    allocator: str,
    ncpus: int,
    page_alloc: PageAllocator,
    pool: str = "slab_unreclaimable",
    metrics: Metrics | None = None,
    scheduler: Any = None,
    clock: Callable[[], float] | None = None,
    **tunables: Any,
) -> KmemCache:
    """The ``vmap_area`` cache of ``profile`` (``vmalloc_init``); the allocator must
    be one the profile's kernel still has (SLAB is gone from 6.8)."""
    if allocator not in profile.slab_allocators:
        raise ValueError(f"kernel {profile.name} has no {allocator}; it has {', '.join(profile.slab_allocators)}")
    return kmem_cache_create(
        "vmap_area",
        profile.vmap_area_size,
        allocator=allocator,
        ncpus=ncpus,
        page_alloc=page_alloc,
        objs_per_slab=profile.vmap_area_objs_per_slab,
        pool=pool,
        metrics=metrics,
        scheduler=scheduler,
        clock=clock,
        **tunables,
    )


def task_struct_cache(
    size: int,
    *,
    allocator: str,
    ncpus: int,
    totalram_pages: int,
    page_alloc: PageAllocator,
    pool: str = "slab_unreclaimable",
    metrics: Metrics | None = None,
    scheduler: Any = None,
    clock: Callable[[], float] | None = None,
) -> KmemCache:
    """``task_struct_cachep`` as ``fork_init`` makes it (kernel/fork.c v5.2):
    ``kmem_cache_create_usercopy("task_struct", arch_task_struct_size, L1_CACHE_BYTES,
    SLAB_PANIC|SLAB_ACCOUNT, ...)``, no constructor.

    ``size`` is ``arch_task_struct_size``: sizeof(struct task_struct) less its 4 KiB
    ``union fpregs_state`` placeholder plus the CPU's XSAVE context
    (``fpu__init_task_struct_size``).  Objects are rounded up to the 64 B alignment.
    The slab order is the allocator's own choice for that size: SLAB
    ``calculate_slab_order`` with ``slab_max_order`` 1 above 32 MiB of RAM (order 1,
    one object per slab from 4 KiB), SLUB ``calculate_order`` (order 3 for any
    task_struct) with ``s->min`` = get_order(size) as its fallback.
    """
    aligned = -(-size // L1_CACHE_BYTES) * L1_CACHE_BYTES
    if allocator == "SLAB":
        order, objs = calculate_slab_order(aligned, slab_max_order(totalram_pages))
    else:
        order = calculate_order(aligned, ncpus)
        objs = order_objects(order, aligned)
    return kmem_cache_create(
        "task_struct",
        aligned,
        allocator=allocator,
        ncpus=ncpus,
        page_alloc=page_alloc,
        objs_per_slab=objs,
        order=order,
        pool=pool,
        metrics=metrics,
        scheduler=scheduler,
        clock=clock,
    )


class VmapAreaObjects:
    """The ``vmap_area`` cache as the allocator core's ``ObjectProvider``.

    ``alloc_split_object`` is the NE_FIT split's ``kmem_cache_alloc`` under the
    vmap_area lock: one object with ``gfp`` (GFP_NOWAIT, as in v5.2) on the
    CPU ``current_cpu()`` names, for the task the core passes (``current``,
    whose RT policy and OOM-victim mark the page allocator reads), or None
    when the cache needs a page and the page allocator refuses.
    ``free_object`` is ``kmem_cache_free`` on the current CPU; objects the
    slab model did not make (``slab is None``: the boot free block, busy
    descriptors made by the core itself) are ignored.
    """

    __slots__ = ("cache", "current_cpu", "gfp")

    def __init__(self, cache: KmemCache, current_cpu: Callable[[], int], gfp: int = GFP_NOWAIT) -> None:
        if gfpflags_allow_blocking(gfp):
            raise ValueError(f"the split object is taken under a spinlock; {gfp_name(gfp)} may sleep")
        self.cache = cache
        self.current_cpu = current_cpu
        self.gfp = gfp

    def alloc_split_object(self, task: Any = None) -> VmapArea | None:
        slab = self.cache.alloc_nowait(self.current_cpu(), self.gfp, task)
        if slab is None:
            return None
        va = VmapArea()
        va.slab = slab
        return va

    def free_object(self, va: VmapArea, task: Any = None) -> None:
        slab = va.slab
        if slab is not None:
            va.slab = None
            self.cache.free(self.current_cpu(), slab)
