"""The vm-backed chunks of the percpu allocator (mm/percpu.c, mm/percpu-vm.c, Linux 5.3).

Percpu chunks are the only vmap caller that allocates top-down: when the percpu
allocator runs out of room it creates a chunk (``pcpu_create_chunk``,
mm/percpu-vm.c), whose areas come from ``pcpu_get_vm_areas`` just below
``VMALLOC_END`` at PMD_SIZE granularity, with no guard page and no preload; a fully
free chunk is destroyed by ``pcpu_balance_workfn``, which keeps one, and its areas
are freed lazily.

:class:`PercpuAllocator` is a small model of ``pcpu_alloc`` / ``free_percpu`` over
vm-backed chunks: each chunk is a bump region of ``unit_size`` bytes that is reset
when its last allocation is freed (the bitmap allocator gives the same chunk count
for allocate-all-then-free-all patterns), and only what reaches the vmap allocator
is modelled: no page population, no chunk bitmaps.  On x86_64 there is one NUMA
group in the model (``nr_groups = 1``): one area of ``nr_units * unit_size`` per
chunk (:func:`pcpu_group_size`), a multiple of the atom.

Callers that count their chunks (the workloads in :mod:`sim.workloads.percpu`)
override :meth:`PercpuAllocator.pcpu_create_chunk` and ``pcpu_destroy_chunk``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from sim.kernel.mm.vmalloc.alloc import Vmalloc, VmStruct
from sim.kernel.mm.vmalloc.percpu_vm import pcpu_free_vm_areas, pcpu_get_vm_areas
from sim.kernel.mm.zones import PAGE_SIZE
from sim.kernel.sched.cpu import Scheduler, Task
from sim.kernel.sched.locks import Mutex

PCPU_MIN_ALLOC_SIZE = 4  # 1 << PCPU_MIN_ALLOC_SHIFT (include/linux/percpu.h, v5.3)
PCPU_MIN_UNIT_SIZE = 32 << 10  # the largest single percpu allocation (include/linux/percpu.h)


def pcpu_group_size(unit_size: int, atom_size: int, nr_units: int | None, ncpus: int) -> int:
    """Bytes of the one area each chunk needs (``pcpu_group_sizes[0]`` as
    ``pcpu_build_alloc_info``, v5.3, lays out one group): ``nr_units`` units, by
    default the possible CPUs rounded up to whole atoms."""
    if atom_size % unit_size or unit_size % PAGE_SIZE:
        raise ValueError("unit_size must divide atom_size and be a multiple of PAGE_SIZE")
    upa = atom_size // unit_size
    units = nr_units if nr_units is not None else -(-ncpus // upa) * upa
    size = units * unit_size
    if size % atom_size:
        raise ValueError("nr_units * unit_size must be a multiple of atom_size")
    return size


@dataclass(eq=False)
class PercpuChunk:
    """``struct pcpu_chunk``: its areas and, in the bump model, its fill level."""

    vms: list[VmStruct]
    fits: list[int] = field(default_factory=list)  # fit types of its areas' carves, for callers' counts
    offset: int = 0  # bytes handed out from the start of each unit
    live: int = 0  # allocations not yet freed


class PercpuAllocator:
    """vm-backed percpu chunks and the allocations in them (``pcpu_alloc``,
    ``free_percpu``, ``pcpu_balance_workfn``, mm/percpu.c v5.3, simplified).

    ``empty`` is the last slot list (fully free chunks), head first: a new or
    newly emptied chunk goes to its head, and the balance work spares the head.
    """

    def __init__(self, sched: Scheduler, vmalloc: Vmalloc, unit_size: int, atom_size: int, group_size: int) -> None:
        self.sched = sched
        self.vmalloc = vmalloc
        self.unit_size = unit_size  # pcpu_unit_size
        self.atom_size = atom_size  # pcpu_atom_size: the alignment of a chunk's area
        self.size = group_size  # the area of each chunk (pcpu_group_size)
        self.chunks: list[PercpuChunk] = []
        self.empty: list[PercpuChunk] = []
        self.balance_pending = False
        self.mutex = Mutex(sched, "pcpu_alloc_mutex")

    def pcpu_create_chunk(self, task: Task) -> Generator[Any, Any, PercpuChunk | None]:
        """A new chunk at the head of the empty list (``pcpu_create_chunk``,
        mm/percpu-vm.c v5.3); its area comes from ``pcpu_get_vm_areas``."""
        vms, fits, _ = yield from pcpu_get_vm_areas(self.vmalloc, task, [0], [self.size], self.atom_size)
        if vms is None:
            return None
        chunk = PercpuChunk(vms, fits)
        self.chunks.append(chunk)
        self.empty.insert(0, chunk)
        return chunk

    def pcpu_destroy_chunk(self, task: Task, chunk: PercpuChunk) -> Generator[Any, Any, None]:
        """Free a chunk's areas lazily (``pcpu_destroy_chunk``, v5.3)."""
        self.chunks.remove(chunk)
        if chunk in self.empty:
            self.empty.remove(chunk)
        yield from pcpu_free_vm_areas(self.vmalloc, task, chunk.vms)

    def pcpu_alloc(self, task: Task, size: int, align: int) -> Generator[Any, Any, PercpuChunk | None]:
        """A non-atomic percpu allocation (``pcpu_alloc``, v5.3): the fullest
        chunk that fits, else a new chunk under ``pcpu_alloc_mutex``."""
        align = max(align, PCPU_MIN_ALLOC_SIZE)
        size = -(-size // PCPU_MIN_ALLOC_SIZE) * PCPU_MIN_ALLOC_SIZE
        if not 0 < size <= PCPU_MIN_UNIT_SIZE or align > PAGE_SIZE or align & (align - 1):
            raise ValueError(f"illegal size ({size}) or align ({align}) for percpu allocation")
        yield from self.mutex.lock(task)
        chunk = self._find_chunk(size, align)
        if chunk is None:
            chunk = yield from self.pcpu_create_chunk(task)
        if chunk is not None:
            if chunk.live == 0:
                self.empty.remove(chunk)
            chunk.offset = -(-chunk.offset // align) * align + size
            chunk.live += 1
        self.mutex.unlock(task)
        return chunk

    def _find_chunk(self, size: int, align: int) -> PercpuChunk | None:
        """The chunk the slot scan reaches first: partly used chunks with the
        least room left before empty ones (a stand-in for the slot order)."""
        unit = self.unit_size
        best, best_key = None, None
        for chunk in self.chunks:
            start = -(-chunk.offset // align) * align
            if start + size > unit:
                continue
            key = (chunk.live == 0, (unit - start).bit_length())
            if best_key is None or key < best_key:
                best, best_key = chunk, key
        return best

    def free_percpu(self, task: Task, chunk: PercpuChunk) -> None:
        """``free_percpu``: a chunk whose last allocation goes becomes empty and,
        if another empty chunk exists, the balance work is scheduled."""
        chunk.live -= 1
        if chunk.live:
            return
        chunk.offset = 0
        self.empty.insert(0, chunk)
        if len(self.empty) > 1 and not self.balance_pending:
            self.balance_pending = True
            self.sched.spawn("kworker/pcpu_balance", self.pcpu_balance_workfn, kthread=True)

    def pcpu_balance_workfn(self, task: Task) -> Generator[Any, Any, None]:
        """Destroy every empty chunk but the first (``pcpu_balance_workfn``, v5.3)."""
        yield from self.mutex.lock(task)
        self.balance_pending = False
        doomed = self.empty[1:]
        for chunk in doomed:
            yield from self.pcpu_destroy_chunk(task, chunk)
            yield from self.sched.cond_resched(task)
        self.mutex.unlock(task)
