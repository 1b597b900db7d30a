"""The vmap nodes of Linux 6.9: per-node lazy lists and pools of lazily freed areas.

The series "mm: vmalloc: Mitigate a vmap lock contention" (Uladzislau Rezki, merged for
6.9) cut the vmalloc space into zones of 16 pages spread round-robin over
``nr_vmap_nodes = clamp(num_possible_cpus(), 1, 128)`` nodes.  Each node has its own busy
tree, its own lazy tree (areas freed and not yet purged) and 256 pools, one per exact size
of 1 to 256 pages, of purged areas kept for reuse.  :class:`VmapNodes` is that layer over
the global free tree (:class:`~sim.kernel.mm.vmalloc.space.VmapSpace`), following
mm/vmalloc.c of v6.9:

* ``node_alloc``: a request for the whole vmalloc window on a machine of more than one
  node first looks in the pool of its CPU's node (``cpu % nr_vmap_nodes``) for the exact
  size; the first area of that pool is taken if its start has the alignment, else it moves
  to the pool's tail and the request falls back to the global free tree.  Either way the
  area is tagged with the requesting node (``vn_id``), so that its purge brings it back to
  that node's pool;
* ``free_vmap_area_noflush``: a freed area joins the lazy tree of the node that asked for
  it (of the node its address maps to when untagged);
* ``__purge_vmap_area_lazy``: for every node in order, the pools are decayed
  (``decay_va_pool_node``: a quarter of each pool, its most recent entries, or all of it
  when the pool holds fewer than four areas or the decay is full), the decayed areas are
  merged among themselves first and then, in address order, into the free tree
  (``reclaim_list_global``); the node's lazy list is detached.  Then each node's lazy
  areas (``purge_vmap_node``), in address order, go to the node's pool when tagged, small
  enough and the purge is not a full one (``skip_populate``); the others are merged into
  the free tree in the reverse order (they were gathered with ``list_add``).

The busy trees are not kept per node: the busy areas stay in the space's one dict, which
never influences placement; the per-node busy and lazy locks are the machine's
(:mod:`sim.kernel.mm.vmalloc.alloc`).  This module does no I/O and takes no time; the
machine charges the time and takes the locks around these steps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from sim.kernel.mm.vmalloc.area import PAGE_SIZE, VMALLOC_END, VMALLOC_START, VmapArea
from sim.kernel.mm.vmalloc.space import VmapSpace

VMAP_ZONE_PAGES: Final = 16  # vmap_init_nodes: "Node partition is 16 pages"
MAX_VA_SIZE_PAGES: Final = 256  # pools of 1..256 pages (areas up to 1 MiB, guard included)
MAX_VMAP_NODES: Final = 128  # the clamp of vmap_init_nodes on 64-bit
NO_NODE: Final = -1  # an area not tagged with a requesting node (vn_id 0)
SHRINK_BATCH: Final = 128  # include/linux/shrinker.h: SHRINK_BATCH, the shrinker's default batch
SHRINKER_SEEKS: Final = 2  # DEFAULT_SEEKS, which shrinker_alloc gives the vmap-node shrinker


def nr_vmap_nodes(ncpus: int) -> int:
    """``nr_vmap_nodes`` after ``vmap_init_nodes`` (v6.9, 64-bit): one node per possible CPU,
    at most 128."""
    return min(max(ncpus, 1), MAX_VMAP_NODES)


@dataclass
class PurgeCounts:
    """What one purge (or one of its steps) did: lazy areas purged, of them put in pools,
    areas taken out of pools by the decay, and ``vmap_area`` objects freed by its merges."""

    purged: int = 0
    pooled: int = 0
    decayed: int = 0
    objs_free: int = 0

    def add(self, other: PurgeCounts) -> None:
        """Add ``other``'s counts to these."""
        self.purged += other.purged
        self.pooled += other.pooled
        self.decayed += other.decayed
        self.objs_free += other.objs_free


class VmapNodes:
    """The vmap-node layer of one kernel (v6.9): pools, lazy lists and node tags.

    ``requested_by`` maps the start of a busy or lazily freed area to the node that asked
    for it (the kernel's ``vn_id`` in ``va->flags``; untagged areas are absent).  Pools are
    deques with the kernel list's head on the left: ``node_pool_add_va`` adds there and
    ``node_pool_del_va`` takes from there.  A pooled area stays on the space's address list
    as an occupied range, as a lazily freed one does, so that its merge finds its
    neighbours there.
    """

    def __init__(self, space: VmapSpace, nr_nodes: int) -> None:
        if not 1 <= nr_nodes <= MAX_VMAP_NODES:
            raise ValueError(f"nr_vmap_nodes must be 1..{MAX_VMAP_NODES}, not {nr_nodes}")
        self.space = space
        self.nr_nodes = nr_nodes
        # vmap_zone_size stays 1 while the layer is off (one node)
        self.zone_size = VMAP_ZONE_PAGES * PAGE_SIZE if nr_nodes > 1 else 1
        self.pools: list[dict[int, deque[VmapArea]]] = [{} for _ in range(nr_nodes)]
        self.lazy: list[dict[int, VmapArea]] = [{} for _ in range(nr_nodes)]
        self.requested_by: dict[int, int] = {}
        self.pooled = 0  # areas in all pools now
        self.pooled_pages = 0  # their pages (guard pages included)

    # -- addresses and nodes --------------------------------------------------

    def addr_to_node_id(self, addr: int) -> int:
        """``addr_to_node_id``: the node of the 16-page zone holding ``addr``."""
        return (addr // self.zone_size) % self.nr_nodes

    # -- pools ------------------------------------------------------------------

    def node_pool_add_va(self, node: int, va: VmapArea) -> bool:
        """``node_pool_add_va``: put ``va`` at the head of ``node``'s pool of its size;
        False when it is larger than the largest pool."""
        size = va.va_end - va.va_start
        idx = (size - 1) // PAGE_SIZE
        if idx >= MAX_VA_SIZE_PAGES:
            return False
        pools = self.pools[node]
        pool = pools.get(idx)
        if pool is None:
            pools[idx] = pool = deque()
        pool.appendleft(va)
        self.pooled += 1
        self.pooled_pages += size // PAGE_SIZE
        return True

    def node_pool_del_va(self, node: int, size: int, align: int, vstart: int, vend: int) -> VmapArea | None:
        """``node_pool_del_va``: the first area of ``node``'s pool for ``size`` if its start
        is aligned (taken out), else None, the area moved to the pool's tail.  The kernel's
        sanity checks (exact size, inside the window) cannot fail here: a pool only holds
        areas of its own size that came from the whole window."""
        idx = (size - 1) // PAGE_SIZE
        if idx >= MAX_VA_SIZE_PAGES:
            return None
        pool = self.pools[node].get(idx)
        if not pool:
            return None
        va = pool[0]
        if va.va_start & (align - 1):
            pool.rotate(-1)  # list_move_tail of the head
            return None
        if va.va_end - va.va_start != size or va.va_start < vstart or va.va_end > vend:
            return None  # the kernel's WARN_ON_ONCE path
        pool.popleft()
        self.pooled -= 1
        self.pooled_pages -= size // PAGE_SIZE
        return va

    def node_alloc(self, size: int, align: int, vstart: int, vend: int, cpu: int) -> tuple[VmapArea | None, int]:
        """``node_alloc``: ``(pooled area or None, requesting node or NO_NODE)``.  Only a
        request for the whole vmalloc window on more than one node is tagged and may be
        served from a pool."""
        node = self.requesting_node(vstart, vend, cpu)
        if node == NO_NODE:
            return None, NO_NODE
        return self.node_pool_del_va(node, size, align, vstart, vend), node

    def requesting_node(self, vstart: int, vend: int, cpu: int) -> int:
        """The node a request from ``cpu`` is tagged with (``cpu % nr_vmap_nodes``), or
        NO_NODE: only requests for the whole vmalloc window, on more than one node."""
        if vstart != VMALLOC_START or vend != VMALLOC_END or self.nr_nodes == 1:
            return NO_NODE
        return cpu % self.nr_nodes

    def take_busy(self, va: VmapArea, node: int) -> None:
        """Record the busy area ``va`` (from a pool or the free tree) as asked for by
        ``node`` (the kernel's ``va->flags |= vn_id``)."""
        if node != NO_NODE:
            self.requested_by[va.va_start] = node

    # -- lazy freeing -------------------------------------------------------------

    def free_vmap_area_noflush(self, va: VmapArea) -> int:
        """``free_vmap_area_noflush`` after ``find_unlink_vmap_area``: ``va`` (already out of
        the busy areas) joins the lazy tree of the node that asked for it, or of the node its
        address maps to; returns that node."""
        node = self.lazy_node(va)
        self.lazy[node][va.va_start] = va
        return node

    def lazy_node(self, va: VmapArea) -> int:
        """The node whose lazy tree takes ``va`` when it is freed: the one that asked for it,
        else the one its address maps to."""
        node = self.requested_by.get(va.va_start, NO_NODE)
        return self.addr_to_node_id(va.va_start) if node == NO_NODE else node

    def lazy_count(self) -> int:
        """Areas in all lazy trees."""
        return sum(len(lazy) for lazy in self.lazy)

    def detach_lazy(self, node: int) -> list[VmapArea]:
        """The node's lazy list, in address order, taken off the node (the purge's
        ``list_replace_init`` into ``purge_list``)."""
        lazy = self.lazy[node]
        if not lazy:
            return []
        batch = [lazy[start] for start in sorted(lazy)]
        lazy.clear()
        return batch

    # -- decay and purge -------------------------------------------------------------

    def decay_va_pool_node(self, node: int, full: bool, task: object = None) -> tuple[PurgeCounts, list[VmapArea]]:
        """``decay_va_pool_node`` up to its ``reclaim_list_global``: take from each of
        ``node``'s pools, smallest size first, all its areas (``full``) or ``len >> 2`` from
        its head, which is all of them when the pool holds fewer than four (the kernel's
        countdown from zero wraps and does not stop), and merge the taken areas among
        themselves (the local ``decay_root``).  Returns the counts and the merged ranges in
        address order, for :meth:`reclaim_list_global`."""
        counts = PurgeCounts()
        pools = self.pools[node]
        taken: list[VmapArea] = []
        for idx in sorted(pools):
            pool = pools[idx]
            if not pool:
                continue
            n = len(pool)
            n_decay = n if full else (n >> 2 or n)
            for _ in range(n_decay):
                taken.append(pool.popleft())
            self.pooled_pages -= n_decay * (idx + 1)
        self.pooled -= len(taken)
        counts.decayed = len(taken)
        taken.sort(key=_start)
        provider = self.space.provider
        merged: list[VmapArea] = []
        for va in taken:
            last = merged[-1] if merged else None
            if last is not None and last.va_end == va.va_start:
                # the local tree's merge: one range grows over the other, whose object goes
                last.va_end = va.va_end
                after = va.va_next
                last.va_next = after
                after.va_prev = last  # type: ignore[union-attr]
                va.va_prev = va.va_next = None
                provider.free_object(va, task)
                counts.objs_free += 1
            else:
                merged.append(va)
        for va in merged:
            va.va_size = va.va_end - va.va_start
        return counts, merged

    def purge_vmap_node(
        self, node: int, batch: list[VmapArea], skip_populate: bool
    ) -> tuple[PurgeCounts, list[VmapArea]]:
        """``purge_vmap_node`` up to its ``reclaim_list_global``: each of ``batch`` (the
        node's lazy list, in address order) goes to the node's pool when tagged with a node,
        small enough and ``skip_populate`` is off.  Returns the counts and the rest in the
        order they are merged into the free tree: last first (``list_add`` built the kernel's
        local list in reverse)."""
        counts = PurgeCounts(purged=len(batch))
        requested_by = self.requested_by
        back: list[VmapArea] = []
        for va in batch:
            tagged = requested_by.pop(va.va_start, NO_NODE) != NO_NODE
            if tagged and not skip_populate and self.node_pool_add_va(node, va):
                counts.pooled += 1
                continue
            back.append(va)
        back.reverse()
        return counts, back

    def reclaim_list_global(self, vas: list[VmapArea], task: object = None) -> int:
        """``reclaim_list_global``: merge each of ``vas``, in order, into the free tree
        (``merge_or_add_vmap_area_augment``); returns the objects freed."""
        merge = self.space.merge_or_add_vmap_area
        freed = 0
        for va in vas:
            freed += merge(va, task)
        return freed

    def purge(self, full: bool, task: object = None) -> PurgeCounts:
        """``__purge_vmap_area_lazy(ULONG_MAX, 0, full)`` with no helper workers (what the
        kernel does while ``vmap_lazy_nr`` is below twice ``lazy_max_pages``): every node's
        pools decayed and lazy list detached, in node order, then every node purged in node
        order."""
        total = PurgeCounts()
        batches: list[list[VmapArea]] = []
        for node in range(self.nr_nodes):
            step, merged = self.decay_va_pool_node(node, full, task)
            step.objs_free += self.reclaim_list_global(merged, task)
            total.add(step)
            batches.append(self.detach_lazy(node))
        for node, batch in enumerate(batches):
            if batch:
                step, back = self.purge_vmap_node(node, batch, full)
                step.objs_free += self.reclaim_list_global(back, task)
                total.add(step)
        return total

    def vmap_node_shrink(self, priority: int, task: object = None) -> int:
        """The "vmap-node" shrinker as ``do_shrink_slab`` calls it at reclaim ``priority``
        (v6.9): ``count_objects`` is every pool's length; ``scan_objects`` (a full decay of
        every node, whatever the count asked) runs when the pass's scan target,
        ``(count >> priority) * 4 / DEFAULT_SEEKS`` capped at twice the count, reaches a
        batch of 128 or the whole count.  The deferred count the kernel carries from pass to
        pass is left out.  Returns the areas given back to the free tree."""
        count = self.pooled
        if not count:
            return 0
        total_scan = min((count >> priority) * 4 // SHRINKER_SEEKS, 2 * count)
        if total_scan < SHRINK_BATCH and total_scan < count:
            return 0
        for node in range(self.nr_nodes):
            _, merged = self.decay_va_pool_node(node, True, task)
            self.reclaim_list_global(merged, task)
        return count

    # -- inspection -----------------------------------------------------------------

    def pool_listing(self) -> list[list]:
        """Every non-empty pool as ``[node, pages, [start, ...]]`` (head first), by node
        then size: the vectors' ``check`` form."""
        return [
            [node, idx + 1, [va.va_start for va in pools[idx]]]
            for node, pools in enumerate(self.pools)
            for idx in sorted(pools)
            if pools[idx]
        ]

    def lazy_listing(self) -> list[list]:
        """Every non-empty lazy list as ``[node, [start, ...]]`` in address order."""
        return [[node, sorted(lazy)] for node, lazy in enumerate(self.lazy) if lazy]


def _start(va: VmapArea) -> int:
    return va.va_start


__all__ = ["MAX_VA_SIZE_PAGES", "NO_NODE", "VMAP_ZONE_PAGES", "PurgeCounts", "VmapNodes", "nr_vmap_nodes"]
