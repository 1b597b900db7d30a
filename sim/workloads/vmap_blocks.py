"""``vm_map_ram`` and the per-CPU vmap blocks behind it (mm/vmalloc.c, v5.3).

Small mappings (at most VMAP_MAX_ALLOC = 64 pages) do not get an area each:
``vb_alloc`` carves 2^order pages from a block on this CPU's queue, and only a
new block reaches the vmap allocator, ``new_vmap_block`` ->
``alloc_vmap_area(VMAP_BLOCK_SIZE, VMAP_BLOCK_SIZE, VMALLOC_START,
VMALLOC_END)``, a 4 MiB request at 4 MiB alignment (VMAP_BBMAP_BITS = 1024
pages for NR_CPUS <= 2048).  Behind an ordinary vmalloc frontier, which is not
block-aligned, that is an NE_FIT split (``classify_va_fit_type``, mm/vmalloc.c,
v5.3).  A block's free space is handed out in order and never reused; the block
goes back, lazily (``free_vmap_block`` -> ``free_vmap_area_noflush``), when all
of it has been unmapped.  Larger mappings take an area of their own at page alignment.

The mappers are XFS-buffer-like: multi-page metadata buffers (inode clusters,
directory blocks) mapped with ``vm_map_ram`` and unmapped when the buffer is
released; a failed mapping is retried after ``vm_unmap_aliases``, as
``_xfs_buf_map_pages`` does.

Counters under ``vmap_blocks.`` (or the spec's name): ``maps``,
``map_failures``, ``unmaps``, ``blocks``, ``blocks_freed``,
``fragmented_purged``, and the fit types and failure causes of the block
allocations (``vmap_blocks.fit_ne``...).
"""

from __future__ import annotations

import heapq
from collections.abc import Generator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from sim.kernel.mm.gfp import GFP_KERNEL, GFP_NOFS, Gfp
from sim.kernel.mm.vmalloc.space import PAGE_SHIFT, PAGE_SIZE, VMALLOC_END, VMALLOC_START, VmapArea
from sim.kernel.mm.vmalloc.vm_struct import VM_ALLOC, VmStruct
from sim.schema.units import Duration, Rate
from sim.workloads.base import WorkloadSpec
from sim.workloads.tally import VmapTally

VMAP_MAX_ALLOC = 64  # BITS_PER_LONG pages: the largest vm_map_ram served from blocks


def get_order(pages: int) -> int:
    """The smallest order with 2^order >= pages (``get_order`` of the size)."""
    return max(pages - 1, 0).bit_length()


@dataclass(eq=False)
class VmapBlock:
    """``struct vmap_block``: one block area and its carve/unmap counts (pages)."""

    va: VmapArea
    free: int
    dirty: int = 0


class VmapBlocksSpec(WorkloadSpec):
    """XFS-buffer-like ``vm_map_ram`` users (rates and sizes: estimates)."""

    kind: Literal["vmap_blocks"] = "vmap_blocks"
    rate: Rate = Field(1000.0, description="vm_map_ram calls per second, all mappers (Poisson); estimate")
    mappers: int | None = Field(None, ge=1, description="mapping tasks (unbound); None: one per CPU")
    # XFS inode cluster buffers (8-32 KiB) and directory blocks (up to 64 KiB); estimate
    pages: list[Annotated[int, Field(ge=1)]] = Field([2, 4, 8, 16], min_length=1, description="pages per mapping")
    lifetime: Duration = Field(0.5, description="mean time a mapping is held (exponential); estimate")
    # VMAP_BBMAP_BITS = min(1024, max(128, 128 GiB / PAGE_SIZE / roundup_pow_of_two(NR_CPUS) / 16)):
    # 1024 pages (4 MiB) for NR_CPUS <= 2048, 512 for 4096, 256 for 8192 (mm/vmalloc.c v5.3)
    vmap_bbmap_bits: int = Field(1024, ge=2 * VMAP_MAX_ALLOC, description="pages per vmap block")
    alloc_pages: bool = Field(True, description="the buffers' own pages (GFP_NOFS), freed at release")
    map_retries: int = Field(2, ge=0, description="vm_unmap_aliases + retry after a failure (_xfs_buf_map_pages)")


class VmapBlocks:
    """The running ``vmap_blocks`` workload.  Its block queues (one per CPU) and
    block index are its own: two instances stand for two sets of users that
    do not share blocks."""

    def __init__(self, spec: VmapBlocksSpec) -> None:
        self.spec = spec
        self.prefix = spec.name or "vmap_blocks"
        self.block_size = spec.vmap_bbmap_bits * PAGE_SIZE
        self.blocks: dict[int, VmapBlock] = {}  # vmap_block_tree, by block index

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        self.vm = machine.vmalloc
        self.tally = VmapTally(machine)
        self.queues: list[list[VmapBlock]] = [[] for _ in range(machine.sched.ncpus)]  # vmap_block_queue
        self.vm.lazy.purge_hooks.append(self.purge_fragmented_blocks_allcpus)  # run by purge_vmap_area_lazy
        n = self.spec.mappers or machine.sched.ncpus
        for i, r in enumerate(rng.spawn(n)):
            machine.env.process(self._start_mapper(i, r, n))

    def _start_mapper(self, index: int, rng: np.random.Generator, n: int) -> Generator[Any, Any, None]:
        if self.spec.start:
            yield self.m.env.timeout(self.spec.start)
        self.m.spawn(f"xfs-buf/{index}", lambda t: self._mapper(t, rng, self.spec.rate / n))

    # -- the mapper ----------------------------------------------------------------

    def _mapper(self, task: Any, rng: np.random.Generator, rate: float) -> Generator[Any, Any, None]:
        """Map buffers at ``rate`` and unmap each when its lifetime ends, in
        time order, from one task."""
        if rate <= 0:
            return
        spec, sched, env = self.spec, self.m.sched, self.m.env
        due: list[tuple[float, int, int, int]] = []  # (time, seq, addr, pages)
        seq = 0
        next_map = env.now + rng.exponential(1.0 / rate)
        while True:
            if due and due[0][0] <= next_map:
                when, _, addr, count = heapq.heappop(due)
                if when > env.now:
                    yield from sched.sleep(task, when - env.now, "xfs_buf_rele")
                yield from self._release_buffer(task, addr, count)
                continue
            if next_map > env.now:
                yield from sched.sleep(task, next_map - env.now, "xfs_buf_get")
            count = int(rng.choice(spec.pages))
            life = rng.exponential(spec.lifetime)
            next_map = env.now + rng.exponential(1.0 / rate)
            addr = yield from self._map_buffer(task, count)
            if addr is not None:
                seq += 1
                heapq.heappush(due, (env.now + life, seq, addr, count))

    def _map_buffer(self, task: Any, count: int) -> Generator[Any, Any, int | None]:
        """The buffer's pages, then ``vm_map_ram`` with the XFS retry loop."""
        m, spec, prefix = self.m, self.spec, self.prefix
        if spec.alloc_pages:
            got = yield from m.page_alloc.alloc_pages_bulk(
                task, GFP_NOFS | Gfp.NOWARN, count, pool="slab_reclaimable", site="xfs_buf_allocate_memory"
            )
            if got < count:
                if got:
                    m.page_alloc.free_pages(task.cpu, pool="slab_reclaimable", nr=got)
                m.metrics.add(prefix + ".page_failures")
                return None
        for attempt in range(spec.map_retries + 1):
            addr = yield from self.vm_map_ram(task, count)
            if addr is not None:
                m.metrics.add(prefix + ".maps")
                return addr
            if attempt < spec.map_retries:
                yield from self.vm_unmap_aliases(task)
        m.metrics.add(prefix + ".map_failures")
        if spec.alloc_pages:
            m.page_alloc.free_pages(task.cpu, pool="slab_reclaimable", nr=count)
        return None

    def _release_buffer(self, task: Any, addr: int, count: int) -> Generator[Any, Any, None]:
        """``vm_unmap_ram`` of a released buffer, then its pages."""
        yield from self.vm_unmap_ram(task, addr, count)
        if self.spec.alloc_pages:
            self.m.page_alloc.free_pages(task.cpu, pool="slab_reclaimable", nr=count)

    # -- the kernel side ---------------------------------------------------------

    def vm_map_ram(self, task: Any, count: int) -> Generator[Any, Any, int | None]:
        """``vm_map_ram`` (v5.3): a block carve for up to 64 pages, else an area
        of its own; then the page tables."""
        if count <= VMAP_MAX_ALLOC:
            addr = yield from self.vb_alloc(task, count)
        else:
            addr = yield from self._alloc_area(task, count * PAGE_SIZE, PAGE_SIZE)
        if addr is None:
            return None
        yield from self.m.sched.run(task, self.vm.params.t_map_page * count)  # vmap_page_range
        return addr

    def vm_unmap_ram(self, task: Any, addr: int, count: int) -> Generator[Any, Any, None]:
        """``vm_unmap_ram`` (v5.3): back to its block, or a lazy free of its area."""
        yield from self.m.sched.run(task, self.vm.params.t_map_page * count)  # vunmap_page_range
        if count <= VMAP_MAX_ALLOC:
            yield from self.vb_free(task, addr, count)
        else:
            va = self.vm.space.find_vmap_area(addr)
            yield from self.vm.lazy.free_vmap_area_noflush(task, _vm_of(va, "vm_map_ram"))
        self.m.metrics.add(self.prefix + ".unmaps")

    def vb_alloc(self, task: Any, count: int) -> Generator[Any, Any, int | None]:
        """``vb_alloc`` (v5.3): the first block on this CPU's queue with 2^order
        free pages, carved from its unused end; else a new block."""
        need = 1 << get_order(count)
        queue = self.queues[task.cpu]  # get_cpu_var: the CPU of this instant
        bits = self.spec.vmap_bbmap_bits
        for vb in queue:
            if vb.free >= need:
                addr = vb.va.va_start + ((bits - vb.free) << PAGE_SHIFT)
                vb.free -= need
                if vb.free == 0:
                    queue.remove(vb)
                return addr
        return (yield from self.new_vmap_block(task, need))

    def new_vmap_block(self, task: Any, need: int) -> Generator[Any, Any, int | None]:
        """``new_vmap_block`` (v5.3): a block-aligned block from ``alloc_vmap_area``,
        its first ``need`` pages handed out, queued on the CPU the task is on
        once it has it."""
        addr = yield from self._alloc_area(task, self.block_size, self.block_size, label=self.prefix)
        if addr is None:
            return None
        va = self.vm.space.find_vmap_area(addr)
        vb = VmapBlock(va, free=self.spec.vmap_bbmap_bits - need)
        self.blocks[self.addr_to_vb_idx(addr)] = vb
        self.queues[task.cpu].append(vb)
        self.m.metrics.add(self.prefix + ".blocks")
        return addr

    def vb_free(self, task: Any, addr: int, count: int) -> Generator[Any, Any, None]:
        """``vb_free`` (v5.3): the pages become dirty; a fully dirty block is freed."""
        vb = self.blocks[self.addr_to_vb_idx(addr)]
        vb.dirty += 1 << get_order(count)
        if vb.dirty == self.spec.vmap_bbmap_bits:
            assert vb.free == 0
            yield from self.free_vmap_block(task, vb)

    def free_vmap_block(self, task: Any, vb: VmapBlock) -> Generator[Any, Any, None]:
        """``free_vmap_block``: forget the block, free its area lazily."""
        del self.blocks[self.addr_to_vb_idx(vb.va.va_start)]
        self.m.metrics.add(self.prefix + ".blocks_freed")
        yield from self.vm.lazy.free_vmap_area_noflush(task, _vm_of(vb.va, "vmap_block"))

    def purge_fragmented_blocks_allcpus(self, task: Any) -> Generator[Any, Any, None]:
        """``purge_fragmented_blocks_allcpus`` (v5.3): blocks whose every used
        page is unmapped but which still have free pages leave their queues
        and are freed."""
        bits = self.spec.vmap_bbmap_bits
        for queue in self.queues:
            purge = [vb for vb in queue if vb.free + vb.dirty == bits and vb.dirty != bits]
            for vb in purge:
                vb.free, vb.dirty = 0, bits
                queue.remove(vb)
            for vb in purge:
                self.m.metrics.add(self.prefix + ".fragmented_purged")
                yield from self.free_vmap_block(task, vb)

    def vm_unmap_aliases(self, task: Any) -> Generator[Any, Any, None]:
        """``vm_unmap_aliases``: purge fragmented blocks, then the lazy areas
        (``purge_vmap_area_lazy`` runs the fragmented-block purge as its hook)."""
        yield from self.vm.purge_vmap_area_lazy(task)

    def addr_to_vb_idx(self, addr: int) -> int:
        """``addr_to_vb_idx``: the block index of an address."""
        return (addr - (VMALLOC_START & ~(self.block_size - 1))) // self.block_size

    def _alloc_area(
        self, task: Any, size: int, align: int, label: str | None = None
    ) -> Generator[Any, Any, int | None]:
        """``alloc_vmap_area`` with GFP_KERNEL in the vmalloc window, counted under
        ``label`` (the block allocations) or ``<prefix>.large``."""
        label = label or self.prefix + ".large"
        before = self.tally.begin()
        va = yield from self.vm.alloc_vmap_area(task, size, align, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        if isinstance(va, int):
            self.tally.failure(label, before)
            return None
        self.tally.success(label, before, va)
        return va.va_start


def _vm_of(va: VmapArea, caller: str) -> VmStruct:
    """A ``vm_struct``-less area as the lazy-free path takes it (no pages, no slabs)."""
    return VmStruct(va, va.va_end - va.va_start, VM_ALLOC, caller, "slab_unreclaimable")
