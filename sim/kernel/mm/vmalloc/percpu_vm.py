"""Top-down congruent areas for percpu chunks: ``pcpu_get_vm_areas`` (mm/vmalloc.c, v5.3).

The percpu allocator backs each new chunk (``pcpu_create_chunk``,
mm/percpu-vm.c) with one area per NUMA group, all at the same offsets from a
common base, so that a percpu pointer plus a unit offset reaches every CPU's
copy.  Unlike every other vmap caller it does not use ``alloc_vmap_area``: it
scans the free blocks from ``VMALLOC_END`` downwards at ``atom`` (PMD_SIZE,
2 MiB on x86_64) granularity, with no guard page and no preload of its own,
and carves the blocks it chose with ``classify_va_fit_type`` and
``adjust_va_to_fit_type``.  An NE_FIT carve therefore takes whatever object
the split strategy gives on this CPU at that instant: the per-CPU preload slot
if it happens to be full (v5.3+), else a GFP_NOWAIT slab allocation, in every
strategy (counted as ``pcpu_ne_splits`` and ``pcpu_split_nowait``, apart from
``alloc_vmap_area``'s preload misses).

The pure part (the scan and the carve) works on a :class:`VmapSpace` through
its tree and its ``adjust_va_to_fit_type``; the SimPy part
(:func:`pcpu_get_vm_areas`) adds what the kernel does around it: the busy
descriptors and ``vm_struct``s with GFP_KERNEL before the lock, the free-tree
lock, the one purge-and-retry on failure, and no warning or notifier.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from sim.kernel.lib.rbtree import rb_prev
from sim.kernel.mm.gfp import GFP_KERNEL
from sim.kernel.mm.vmalloc.space import (
    EINVAL,
    ENOENT,
    ENOMEM,
    FIT_NAMES,
    NOTHING_FIT,
    PAGE_SIZE,
    ULONG_MAX,
    VMALLOC_END,
    VMALLOC_START,
    VmapArea,
    VmapSpace,
    align_up,
    classify_va_fit_type,
)
from sim.kernel.mm.vmalloc.vm_struct import VM_ALLOC, VmStruct

PMD_SIZE = 2 << 20  # pcpu_atom_size on x86_64 (setup_per_cpu_areas, v5.3)


def pvm_find_va_enclose_addr(space: VmapSpace, addr: int) -> VmapArea | None:
    """The free block holding ``addr`` (its end counts as inside), else the
    highest block that starts at or below it, else None
    (``pvm_find_va_enclose_addr``, v5.3)."""
    node = space.root.rb_node
    found = None
    while node is not None:
        if node.va_start <= addr:  # type: ignore[attr-defined]
            found = node
            if node.va_end >= addr:  # type: ignore[attr-defined]
                break
            node = node.rb_right
        else:
            node = node.rb_left
    return found  # type: ignore[return-value]


def pvm_determine_end_from_reverse(va: VmapArea | None, align: int) -> tuple[VmapArea | None, int]:
    """Walk the free blocks downwards from ``va`` to the first one that has an
    ``align``-aligned end (capped at the aligned ``VMALLOC_END``) above its
    start (``pvm_determine_end_from_reverse``, v5.3).

    The kernel passes ``va`` in and out by reference; here the block reached is
    returned with the end: ``(block, end)``, or ``(None, 0)`` when the walk runs
    off the bottom of the list.
    """
    mask = ULONG_MAX ^ (align - 1)
    vmalloc_end = VMALLOC_END & mask
    while va is not None:
        addr = min(va.va_end & mask, vmalloc_end)
        if va.va_start < addr:
            return va, addr
        va = rb_prev(va)  # type: ignore[assignment]
    return None, 0


def pcpu_find_base(space: VmapSpace, offsets: Sequence[int], sizes: Sequence[int], align: int) -> int | None:
    """The scan of ``pcpu_get_vm_areas`` (v5.3): the highest base at which every
    area ``[base + offsets[i], + sizes[i])`` lies inside one free block, or
    None (the kernel's ``goto overflow``).

    Starts with the highest area just below the aligned ``VMALLOC_END`` and
    pulls the base down whenever an area does not fit its block, until a full
    round over the areas needs no move.  Arithmetic wraps at 2^64 as the
    kernel's unsigned longs do; the underflow test is the kernel's.
    """
    nr_vms = len(offsets)
    vmalloc_start = align_up(VMALLOC_START, align)
    last_area = max(range(nr_vms), key=lambda i: (offsets[i], -i))
    last_end = offsets[last_area] + sizes[last_area]
    area = term_area = last_area
    start, end = offsets[area], offsets[area] + sizes[area]
    va, top = pvm_determine_end_from_reverse(pvm_find_va_enclose_addr(space, VMALLOC_END & ~(align - 1)), align)
    base = (top - end) & ULONG_MAX
    while True:
        if (base + last_end) & ULONG_MAX < vmalloc_start + last_end or va is None:
            return None
        if base + end > va.va_end:
            va, top = pvm_determine_end_from_reverse(va, align)
            base = (top - end) & ULONG_MAX
            term_area = area
            continue
        if base + start < va.va_start:
            va, top = pvm_determine_end_from_reverse(rb_prev(va), align)  # type: ignore[arg-type]
            base = (top - end) & ULONG_MAX
            term_area = area
            continue
        area = (area + nr_vms - 1) % nr_vms
        if area == term_area:
            return base
        start, end = offsets[area], offsets[area] + sizes[area]
        va = pvm_find_va_enclose_addr(space, base + end)


def pcpu_carve_areas(
    space: VmapSpace,
    base: int,
    offsets: Sequence[int],
    sizes: Sequence[int],
    vas: list[VmapArea | None],
    task: object = None,
) -> tuple[int, list[int]]:
    """Carve every area at ``base`` and make ``vas[i]`` its busy descriptor (the
    insert loop of ``pcpu_get_vm_areas``, v5.3).

    Returns ``(0, fit types)``, or ``(negative errno, [])`` after the kernel's
    ``recovery:``: the areas already carved are freed back (merging, which may
    free their descriptors; their slots become None, to be refilled before the
    retry).  EINVAL stands for the WARN_ON_ONCE cases (no enclosing block,
    NOTHING_FIT), ENOMEM for an NE_FIT carve that got no object.
    """
    fits: list[int] = []
    for area, offset in enumerate(offsets):
        start, size = base + offset, sizes[area]
        va = pvm_find_va_enclose_addr(space, start)
        error = 0
        if va is None:
            error = EINVAL
        else:
            fit = int(classify_va_fit_type(va, start, size))
            if fit == NOTHING_FIT:
                error = EINVAL
            elif not space.adjust_va_to_fit_type(va, start, size, fit, task):
                error = ENOMEM
        if error:
            for done in range(area):
                space.free_vmap_area(vas[done], task)  # type: ignore[arg-type]
                vas[done] = None
            return error, []
        busy = vas[area]
        assert busy is not None
        busy.va_start, busy.va_end = start, start + size
        busy.va_size = size
        space.insert_busy(busy)
        space.last_fit = fit
        space.fit_counts[fit] += 1
        fits.append(fit)
    return 0, fits


def pcpu_get_vm_areas(
    vmalloc: Any, task: Any, offsets: Sequence[int], sizes: Sequence[int], align: int = PMD_SIZE
) -> Generator[Any, Any, tuple[list[VmStruct] | None, list[int], int]]:
    """Reserve congruent areas for one percpu chunk (``pcpu_get_vm_areas``, v5.3).

    Returns ``(vm_structs, fit types, 0)`` or ``(None, [], errno)``: -ENOMEM
    when a descriptor or ``vm_struct`` cannot be had (GFP_KERNEL, before the
    lock), -ENOENT when no base fits, the carve's error otherwise.  Each
    failure under the lock unlocks, purges lazily freed areas once (the purge
    mutex), refills the descriptors the recovery gave away, and retries; the
    second failure gives up without the warning and notifier chain of
    ``alloc_vmap_area``.  Counts ``fit_*`` and ``vmap_fail_*`` like the
    ordinary path, so that the machine's totals see every carve.
    """
    if align % PAGE_SIZE or align & (align - 1):
        raise ValueError(f"pcpu_get_vm_areas: align {align} is not a power-of-two multiple of PAGE_SIZE")
    if any(o % align or s % align for o, s in zip(offsets, sizes)):
        raise ValueError("pcpu_get_vm_areas: offsets and sizes must be multiples of align")
    metrics = vmalloc.metrics
    metrics.add("pcpu_get_vm_areas_calls")
    last_end = max(o + s for o, s in zip(offsets, sizes))
    if (VMALLOC_END & ~(align - 1)) - align_up(VMALLOC_START, align) < last_end:
        return None, [], EINVAL
    with vmalloc.frame(task, "pcpu_get_vm_areas"):  # the call chain of failure events
        return (yield from _get_vm_areas(vmalloc, task, offsets, sizes, align))


def _get_vm_areas(
    vmalloc: Any, task: Any, offsets: Sequence[int], sizes: Sequence[int], align: int
) -> Generator[Any, Any, tuple[list[VmStruct] | None, list[int], int]]:
    """The body of :func:`pcpu_get_vm_areas` from the first allocations on."""
    metrics = vmalloc.metrics
    vas: list[VmapArea | None] = []
    vms: list[Any] = []
    error = yield from _refill(vmalloc, task, vas, vms, len(offsets))
    purged = False
    while not error:  # retry:
        lock = vmalloc.free_lock
        yield from lock.lock(task)
        base = pcpu_find_base(vmalloc.space, offsets, sizes, align)
        error, fits = ENOENT, []
        if base is not None:
            error, fits = pcpu_carve_areas(vmalloc.space, base, offsets, sizes, vas, task)
        yield from vmalloc.console.write_out(task, lock)  # a failed split object's report, under the lock
        yield from vmalloc.sched.run(task, vmalloc.params.t_core_alloc * len(offsets))
        if not error:
            if vmalloc.nodes is not None:  # 6.9: each area into the busy tree of its node
                yield from lock.unlock(task)
                for va in vas:
                    busy_lock = vmalloc.busy_lock(va.va_start)  # type: ignore[union-attr]
                    yield from busy_lock.lock(task)
                    yield from busy_lock.unlock(task)
            else:
                if lock is not vmalloc.vmap_area_lock:  # v5.5+: busy areas under their own lock
                    yield from lock.unlock(task)
                    yield from vmalloc.vmap_area_lock.lock(task)
                    lock = vmalloc.vmap_area_lock
                yield from lock.unlock(task)
            for fit in fits:
                metrics.add("fit_" + FIT_NAMES[fit].lower())
            # the chunk's pages are the percpu allocator's (nr_pages stays 0)
            areas = [
                VmStruct(va, va.va_end - va.va_start, VM_ALLOC, "pcpu_get_vm_areas", "slab_unreclaimable", vm_slab=slab)
                for va, slab in zip(vas, vms)  # type: ignore[misc]
            ]
            return areas, fits, 0
        # overflow:
        metrics.add("vmap_fail_" + ("no_split_object" if error == ENOMEM else "no_space"))
        yield from lock.unlock(task)
        if purged:
            break
        metrics.add("overflow_purges")
        yield from vmalloc.purge_vmap_area_lazy(task)
        purged = True
        error = yield from _refill(vmalloc, task, vas, vms, len(offsets))
    # err_free:
    for va in vas:
        if va is not None:
            vmalloc.free_object_of(task, va)
    for slab in vms:
        if slab is not None:
            vmalloc.kmalloc[64].free(task.cpu, slab)
    metrics.add("pcpu_get_vm_areas_failures")
    return None, [], error


def _refill(
    vmalloc: Any, task: Any, vas: list[VmapArea | None], vms: list[Any], nr_vms: int
) -> Generator[Any, Any, int]:
    """Give every area a busy descriptor (``kmem_cache_zalloc(vmap_area_cachep,
    GFP_KERNEL)``) and a ``vm_struct`` (``kzalloc``) where it has none; -ENOMEM
    if one cannot be had."""
    while len(vas) < nr_vms:
        vas.append(None)
        vms.append(None)
    for i in range(nr_vms):
        if vas[i] is None:
            vas[i] = yield from vmalloc.new_object(task, GFP_KERNEL)
            if vas[i] is None:
                return ENOMEM
        if vms[i] is None:
            vms[i] = yield from vmalloc.kmalloc[64].alloc(task, GFP_KERNEL)
            if vms[i] is None:
                return ENOMEM
    return 0


def pcpu_free_vm_areas(vmalloc: Any, task: Any, vms: Sequence[VmStruct]) -> Generator[Any, Any, None]:
    """Give a chunk's areas back (``pcpu_free_vm_areas`` -> ``free_vm_area``,
    v5.3): each is unmapped and freed lazily, its ``vm_struct`` kfree'd."""
    for vm in vms:
        yield from vmalloc.vfree(task, vm)
