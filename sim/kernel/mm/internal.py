"""What the page allocator hands to its own helpers (mm/internal.h, Linux 5.3).

* :class:`AllocContext` is ``struct alloc_context``: what ``__alloc_pages_nodemask``
  works out once and passes down to the slow path (the eligible zones, the
  classzone and high zone index) together with the request itself (gfp, order)
  and what the model charges it to (pool, owner, call site).  The alloc flags
  are not in it, as in the kernel: the slow path changes them as it goes.
* :class:`ZoneOps` is the part of the page allocator that the slow path
  (:mod:`sim.kernel.mm.slowpath`), reclaim (:mod:`sim.kernel.mm.vmscan`) and the
  OOM killer (:mod:`sim.kernel.mm.oom_kill`) call back into: taking and freeing
  pages, the per-CPU lists, vmstat and the zones themselves.  They are built with
  it by :class:`sim.kernel.mm.page_alloc.PageAllocator`, which satisfies it, and
  import only this module, so that no import runs back to page_alloc.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sim.kernel.mm.mm_types import MemoryOwner
from sim.kernel.mm.watermarks import Zone


@dataclass(slots=True)
class AllocContext:
    """``struct alloc_context`` (5.3) with the request it was prepared for."""

    gfp: int  # gfp_mask as the caller gave it
    order: int
    zones: tuple[Zone, ...]  # ac->zonelist: the eligible zones, highest first
    classzone_idx: int  # ac_classzone_idx(): the index of the preferred zone
    high_zoneidx: int  # ac->high_zoneidx = gfp_zone(gfp_mask)
    pool: str  # the pool the pages are charged to (sim.kernel.mm.pools.POOLS)
    owner: MemoryOwner | None = None  # the process charged for anon, page tables and stacks
    site: str = ""  # the caller, for warn_alloc and the failure counters


class ZoneOps(Protocol):
    """The zone operations of the page allocator (mm/page_alloc.c, mm/vmstat.c) that
    the slow path, reclaim and the OOM killer use.

    Who calls what: the slow path ``get_page_from_freelist``, ``wake_all_kswapds``,
    ``vmstat_due``, ``drain_all_pages``, ``unreserve_highatomic_pageblock`` and
    ``failure_state``; reclaim ``zones``, ``classzone``, ``zonelist_for``,
    ``get_page_from_freelist`` (refaults), ``free_pages``,
    ``set_pgdat_percpu_threshold`` and ``nr_free_pages``; the OOM killer ``zones``,
    ``free_pages`` and ``nr_free_pages``.
    """

    @property
    def zones(self) -> Sequence[Zone]:
        """The node's zones, lowest first (``pgdat->node_zones``)."""
        ...

    @property
    def classzone(self) -> int:
        """The index of the preferred zone of an unrestricted allocation."""
        ...

    def zonelist_for(self, gfp: int) -> tuple[tuple[Zone, ...], int, int]:
        """(eligible zones high to low, classzone_idx, high_zoneidx) for ``gfp``."""
        ...

    def get_page_from_freelist(
        self, cpu: int, gfp: int, order: int, flags: int, zones: tuple[Zone, ...], classzone: int,
        pool: str, owner: MemoryOwner | None, n: int = 1,
    ) -> int:  # fmt: skip
        """Up to ``n`` blocks of ``order`` at the watermark ``flags`` name; how many."""
        ...

    def wake_all_kswapds(self, order: int, gfp: int, high_zoneidx: int) -> None: ...

    def free_pages(
        self, cpu: int, order: int = 0, *, pool: str, nr: int = 1, owner: MemoryOwner | None = None
    ) -> None: ...

    def drain_all_pages(self) -> int:
        """Every CPU's lists back to the buddy lists; the pages moved."""
        ...

    def unreserve_highatomic_pageblock(self, ac: AllocContext, force: bool = False) -> bool:
        """One reserved pageblock of the first of the request's zones that can spare one
        becomes the request's migratetype."""
        ...

    def vmstat_due(self) -> None:
        """Fold the vmstat differentials if their interval has passed."""
        ...

    def set_pgdat_percpu_threshold(self, pressure: bool) -> None: ...

    def nr_free_pages(self) -> int: ...

    def failure_state(self) -> dict[str, Any]:
        """The Mem-Info snapshot that ``warn_alloc`` prints."""
        ...
