"""``nowait``: no preload; the split allocates with GFP_NOWAIT under the lock.

Models ``alloc_vmap_area`` -> ``adjust_va_to_fit_type`` of v5.2 (68ad4a330433, "mm/vmap:
keep track of free blocks for vmap allocation"): the NE_FIT split's ``kmem_cache_alloc(vmap_area_cachep,
GFP_NOWAIT)`` under ``vmap_area_lock``, which fails when the cache needs a page and free memory
is at the zone's min.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.mm.vmalloc.strategies.base import SplitHost, SplitStrategy
from sim.kernel.sched.cpu import Task


class NowaitSplit(SplitStrategy):
    """v5.2: no preload; the split allocates with GFP_NOWAIT under the lock."""

    name = "nowait"
    commit = "68ad4a330433 (v5.2)"
    colour = "#D55E00"
    order = 10

    def lock_for_alloc(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, None]:
        yield from vm.free_lock.lock(task)

    def split_object(self, vm: SplitHost, task: Task) -> VmapArea | None:
        return vm.split_nowait(task)
