"""Percpu chunks: the only vmap caller that allocates top-down (mm/percpu.c, v5.3).

When the percpu allocator runs out of room it creates a chunk
(``pcpu_create_chunk``, mm/percpu-vm.c), whose areas come from
``pcpu_get_vm_areas`` just below ``VMALLOC_END`` at PMD_SIZE granularity, with
no guard page and no preload (kernel.md 5.3); a fully free chunk is destroyed
by ``pcpu_balance_workfn``, which keeps one, and its areas are freed lazily.

Two things drive chunks here:

* :class:`PercpuAllocator`, a small model of ``pcpu_alloc`` / ``free_percpu``
  over vm-backed chunks, used by ``pcpu_alloc_test`` of the test_vmalloc
  module: each chunk is a bump region of ``unit_size`` bytes that is reset when
  its last allocation is freed (the bitmap allocator gives the same chunk
  count for allocate-all-then-free-all patterns), and only what reaches the
  vmap allocator is modelled: no page population, no chunk bitmaps;
* :class:`PercpuChunks`, the ``percpu_chunks`` workload: chunks created at a
  rate (percpu allocations filling chunks) and destroyed after a lifetime.

On x86_64 there is one NUMA group in the model (``nr_groups = 1``): one area of
``nr_units * unit_size`` per chunk, which is a multiple of the atom.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sim.kernel.mm.vmalloc.percpu_vm import PMD_SIZE, pcpu_free_vm_areas, pcpu_get_vm_areas
from sim.kernel.mm.vmalloc.space import PAGE_SIZE
from sim.kernel.sched.locks import Mutex
from sim.schema.units import Duration, Rate, Size
from sim.workloads.base import WorkloadSpec, draw_lifetime, poisson_arrivals
from sim.workloads.tally import VmapTally

PCPU_MIN_ALLOC_SIZE = 4  # 1 << PCPU_MIN_ALLOC_SHIFT (include/linux/percpu.h, v5.3)
PCPU_MIN_UNIT_SIZE = 32 << 10  # the largest single percpu allocation (include/linux/percpu.h)


class PercpuLayout(BaseModel):
    """The geometry of the first chunk, which every later chunk copies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # "pcpu-alloc: s188416 r8192 d28672 u262144 alloc=1*2097152" on x86_64
    # distribution kernels: pcpu_build_alloc_info picks the largest unit that
    # divides the 2 MiB atom into whole pages and holds static+reserved+dynamic
    unit_size: Size = Field(256 << 10, description="pcpu_unit_size")
    atom_size: Size = Field(PMD_SIZE, description="pcpu_atom_size: PMD_SIZE on x86_64 (setup_per_cpu_areas)")
    # None: the possible CPUs rounded up to whole atoms (pcpu_build_alloc_info)
    nr_units: int | None = Field(None, ge=1, description="units of the one group")

    def group_size(self, ncpus: int) -> int:
        """Bytes of the one area each chunk needs (``pcpu_group_sizes[0]``)."""
        if self.atom_size % self.unit_size or self.unit_size % PAGE_SIZE:
            raise ValueError("unit_size must divide atom_size and be a multiple of PAGE_SIZE")
        upa = self.atom_size // self.unit_size
        units = self.nr_units if self.nr_units is not None else -(-ncpus // upa) * upa
        size = units * self.unit_size
        if size % self.atom_size:
            raise ValueError("nr_units * unit_size must be a multiple of atom_size")
        return size


@dataclass(eq=False)
class PercpuChunk:
    """``struct pcpu_chunk``: its areas and, in the bump model, its fill level."""

    vms: list[Any]
    offset: int = 0  # bytes handed out from the start of each unit
    live: int = 0  # allocations not yet freed


class PercpuAllocator:
    """vm-backed percpu chunks and the allocations in them (``pcpu_alloc``,
    ``free_percpu``, ``pcpu_balance_workfn``, mm/percpu.c v5.3, simplified).

    ``empty`` is the last slot list (fully free chunks), head first: a new or
    newly emptied chunk goes to its head, and the balance work spares the head.
    Counters go under ``label``.
    """

    def __init__(self, machine: Any, layout: PercpuLayout, label: str) -> None:
        self.machine = machine
        self.layout = layout
        self.label = label
        self.chunks: list[PercpuChunk] = []
        self.empty: list[PercpuChunk] = []
        self.balance_pending = False
        self.mutex = Mutex(machine.sched, "pcpu_alloc_mutex")
        self.tally = VmapTally(machine)
        self.size = layout.group_size(machine.sched.ncpus)

    def pcpu_create_chunk(self, task: Any) -> Generator[Any, Any, PercpuChunk | None]:
        """A new chunk at the head of the empty list (``pcpu_create_chunk``,
        mm/percpu-vm.c v5.3); its area comes from ``pcpu_get_vm_areas``."""
        m, label = self.machine, self.label
        before = self.tally.begin()
        vms, fits, _ = yield from pcpu_get_vm_areas(m.vmalloc, task, [0], [self.size], self.layout.atom_size)
        if vms is None:
            self.tally.failure(label, before)
            m.metrics.add(label + ".chunk_failures")
            return None
        for fit in fits:
            self.tally.record_fit(label, fit)
        m.metrics.add(label + ".chunks")
        chunk = PercpuChunk(vms)
        self.chunks.append(chunk)
        self.empty.insert(0, chunk)
        return chunk

    def pcpu_destroy_chunk(self, task: Any, chunk: PercpuChunk) -> Generator[Any, Any, None]:
        """Free a chunk's areas lazily (``pcpu_destroy_chunk``, v5.3)."""
        self.chunks.remove(chunk)
        if chunk in self.empty:
            self.empty.remove(chunk)
        self.machine.metrics.add(self.label + ".chunks_destroyed")
        yield from pcpu_free_vm_areas(self.machine.vmalloc, task, chunk.vms)

    def pcpu_alloc(self, task: Any, size: int, align: int) -> Generator[Any, Any, PercpuChunk | None]:
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
        unit = self.layout.unit_size
        best, best_key = None, None
        for chunk in self.chunks:
            start = -(-chunk.offset // align) * align
            if start + size > unit:
                continue
            key = (chunk.live == 0, (unit - start).bit_length())
            if best_key is None or key < best_key:
                best, best_key = chunk, key
        return best

    def free_percpu(self, task: Any, chunk: PercpuChunk) -> None:
        """``free_percpu``: a chunk whose last allocation goes becomes empty and,
        if another empty chunk exists, the balance work is scheduled."""
        chunk.live -= 1
        if chunk.live:
            return
        chunk.offset = 0
        self.empty.insert(0, chunk)
        if len(self.empty) > 1 and not self.balance_pending:
            self.balance_pending = True
            self.machine.spawn("kworker/pcpu_balance", self.pcpu_balance_workfn, kthread=True)

    def pcpu_balance_workfn(self, task: Any) -> Generator[Any, Any, None]:
        """Destroy every empty chunk but the first (``pcpu_balance_workfn``, v5.3)."""
        yield from self.mutex.lock(task)
        self.balance_pending = False
        doomed = self.empty[1:]
        for chunk in doomed:
            yield from self.pcpu_destroy_chunk(task, chunk)
            yield from self.machine.sched.cond_resched(task)
        self.mutex.unlock(task)


class PercpuChunksSpec(WorkloadSpec):
    """Percpu chunks created at a rate and destroyed after a lifetime.

    Rates are estimates: a chunk holds ``unit_size`` bytes per CPU, so a busy
    system (cgroups, BPF maps, network devices) adds one every few seconds to
    minutes, and destroys it when its allocations are gone.
    """

    kind: Literal["percpu_chunks"] = "percpu_chunks"
    rate: Rate = Field(0.1, description="chunks created per second (Poisson); estimate")
    lifetime: Duration = Field(30.0, description="mean life of a chunk (exponential); estimate")
    max_chunks: int | None = Field(None, ge=1, description="stop creating after this many; None: no limit")
    layout: PercpuLayout = Field(default_factory=PercpuLayout)


class PercpuChunks:
    """The running ``percpu_chunks`` workload (counters under ``percpu.``)."""

    def __init__(self, spec: PercpuChunksSpec) -> None:
        self.spec = spec
        self.prefix = spec.name or "percpu"

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        self.rng = rng
        self.pcpu = PercpuAllocator(machine, self.spec.layout, self.prefix)
        spec = self.spec
        machine.env.process(
            poisson_arrivals(machine.env, self.rng, spec.start, spec.rate, spec.max_chunks, self._arrive)
        )

    def _arrive(self, n: int) -> None:
        """Arrival ``n``: a task that needs a chunk (``pcpu_alloc`` finding no
        room); the balance work destroys the chunk after its life."""
        life = draw_lifetime(self.rng, self.spec.lifetime)
        self.m.spawn(f"{self.prefix}-alloc/{n}", lambda t, life=life: self._chunk(t, life))

    def _chunk(self, task: Any, life: float) -> Generator[Any, Any, None]:
        """Create one chunk; after ``life`` let a kworker destroy it."""
        pcpu = self.pcpu
        yield from pcpu.mutex.lock(task)
        chunk = yield from pcpu.pcpu_create_chunk(task)
        if chunk is not None:
            pcpu.empty.remove(chunk)  # it is in use from now on
        pcpu.mutex.unlock(task)
        if chunk is None or not np.isfinite(life):
            return
        self.m.env.process(self._destroy_later(chunk, life))

    def _destroy_later(self, chunk: PercpuChunk, life: float) -> Generator[Any, Any, None]:
        yield self.m.env.timeout(life)
        self.m.spawn("kworker/pcpu_balance", lambda t: self._destroy(t, chunk), kthread=True)

    def _destroy(self, task: Any, chunk: PercpuChunk) -> Generator[Any, Any, None]:
        pcpu = self.pcpu
        yield from pcpu.mutex.lock(task)
        yield from pcpu.pcpu_destroy_chunk(task, chunk)
        pcpu.mutex.unlock(task)
