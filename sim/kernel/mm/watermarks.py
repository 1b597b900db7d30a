"""A zone at run time and the watermark tests (mm/page_alloc.c, mm/vmstat.c, Linux 5.3).

:class:`Zone` holds the buddy free count, the folded ``NR_FREE_PAGES`` counter
with its per-CPU differentials (vmstat drift), the watermarks, the boost, the
lowmem_reserve, the per-CPU list counts by migratetype and the buddy lists by
migratetype (:class:`sim.kernel.mm.freelists.FreeArea`).  The functions are the tests every
allocation makes: :func:`zone_watermark_ok` (``__zone_watermark_ok``),
:func:`zone_watermark_fast`, :func:`zone_watermark_ok_safe`, and the mapping of a
gfp to alloc_flags (:func:`gfp_to_alloc_flags`, :func:`gfp_pfmemalloc_flags`).
The rules that changed later (5.9 boost exemption, 6.3 ALLOC_NON_BLOCK and
ALLOC_MIN_RESERVE) follow the :class:`KernelProfile`.  Split off page_alloc.py.
"""

from __future__ import annotations

from typing import Any, Final

from sim.kernel.mm.freelists import MIGRATE_PCPTYPES, FreeArea
from sim.kernel.mm.gfp import Gfp
from sim.kernel.mm.zones import (
    ALLOC_CPUSET,
    ALLOC_HARDER,
    ALLOC_HIGH,
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_NON_BLOCK,
    ALLOC_OOM,
    ALLOC_RESERVES,
    ALLOC_WMARK_MASK,
    ALLOC_WMARK_MIN,
    WMARK_LOW,
    WMARK_MIN,
    ZoneInfo,
)
from sim.kernel.profile import KernelProfile

# the gfp bits this module tests (Final: inlined by the compiled build)
_G_ATOMIC: Final = Gfp.ATOMIC
_G_HIGH: Final = Gfp.HIGH
_G_KSWAPD_RECLAIM: Final = Gfp.KSWAPD_RECLAIM
_G_DIRECT_RECLAIM: Final = Gfp.DIRECT_RECLAIM
_G_NOMEMALLOC: Final = Gfp.NOMEMALLOC
_G_MEMALLOC: Final = Gfp.MEMALLOC


class Zone:
    """Run-time state of one zone (``struct zone`` and its per-CPU pagesets)."""

    __slots__ = (
        "area", "boost", "boosted", "fast_mark", "highatomic", "highatomic_carry", "highatomic_free",
        "highatomic_held", "idx", "info", "lowmem_reserve", "managed", "max_boost", "name", "nr_free", "pcp_batch",
        "pcp_count", "pcp_high", "pcp_lists", "reclaim_active", "stat_threshold", "vm_diff", "vm_free", "wmark",
    )  # fmt: skip

    def __init__(self, info: ZoneInfo, ncpus: int, drift: bool) -> None:
        self.info = info
        self.idx = info.idx
        self.name = info.name
        self.managed = info.managed
        self.wmark = (info.min, info.low, info.high)
        self.boost = 0  # watermark_boost
        self.max_boost = info.max_boost
        self.boosted = False  # ZONE_BOOSTED_WATERMARK
        self.lowmem_reserve = info.lowmem_reserve
        # the high-atomic reserve (sim.kernel.mm.highatomic): nr_reserved_highatomic, the free pages on
        # the MIGRATE_HIGHATOMIC lists (part of nr_free), the pages of high-order atomic blocks that sit
        # in reserved pageblocks, and the fraction of a page carried between returns to the buddy lists
        self.highatomic = 0
        self.highatomic_free = 0
        self.highatomic_held = 0
        self.highatomic_carry = 0.0
        self.nr_free = info.managed  # pages on the buddy lists (zone_page_state_snapshot)
        self.vm_free = info.managed  # NR_FREE_PAGES as folded into the zone (zone_page_state)
        self.vm_diff = [0] * ncpus  # per-CPU vm_stat_diff[NR_FREE_PAGES]
        self.stat_threshold = info.stat_threshold if drift else 0
        self.pcp_count = [0] * ncpus  # pcp->count: pages on all of a CPU's lists
        self.pcp_lists = [[0] * ncpus for _ in range(MIGRATE_PCPTYPES)]  # pcp->lists[migratetype]
        self.area = FreeArea(info.managed)  # the buddy lists by migratetype
        self.pcp_batch = info.pcp_batch
        self.pcp_high = info.pcp_high
        self.reclaim_active = False  # ZONE_RECLAIM_ACTIVE (5.14)
        self.fast_mark = info.low  # low + boost + lowmem_reserve[preferred classzone]

    def wmark_pages(self, which: int) -> int:
        """``wmark_pages``: the mark plus the boost (5.2 adds it to min, low and high)."""
        return self.wmark[which] + self.boost

    def set_boost(self, boost: int, classzone: int) -> None:
        self.boost = boost
        self.fast_mark = self.wmark[WMARK_LOW] + boost + self.lowmem_reserve[classzone]

    def mod_free(self, cpu: int, delta: int) -> None:
        """``__mod_zone_page_state(zone, NR_FREE_PAGES, delta)`` on ``cpu``: the change
        stays in the CPU's differential until it passes the stat threshold."""
        self.nr_free += delta
        x = self.vm_diff[cpu] + delta
        t = self.stat_threshold
        if x > t or x < -t:
            self.vm_free += x
            x = 0
        self.vm_diff[cpu] = x

    def free_to_buddy(self, cpu: int, nr: int) -> None:
        """``nr`` pages back to the buddy lists on ``cpu``, each a +1 ``__free_one_page``
        update (folded at threshold + 1, as that many single increments would)."""
        self.nr_free += nr
        total = self.vm_diff[cpu] + nr
        t1 = self.stat_threshold + 1
        if total >= t1:
            folded = total // t1 * t1
            self.vm_free += folded
            total -= folded
        self.vm_diff[cpu] = total

    def fold(self) -> None:
        """``refresh_cpu_vm_stats`` on every CPU: the counter becomes exact."""
        self.vm_free = self.nr_free
        self.vm_diff = [0] * len(self.vm_diff)

    def __repr__(self) -> str:
        return f"Zone({self.name}, free={self.nr_free}, counter={self.vm_free}, wmark={self.wmark}, boost={self.boost})"


def zone_watermark_ok(
    profile: KernelProfile, zone: Zone, order: int, mark: int, classzone: int, flags: int, free: int
) -> bool:
    """``__zone_watermark_ok`` (5.3): pass iff free - (2^order - 1) [- highatomic] >
    reduced mark + lowmem_reserve[classzone].  5.2: ALLOC_HIGH halves the mark,
    ALLOC_HARDER takes a further quarter, ALLOC_OOM a half instead; 6.3
    (ab3508854353): MIN_RESERVE halves, NON_BLOCK takes a quarter only with
    MIN_RESERVE, OOM halves; any reserve flag skips the highatomic subtraction.
    A high-order request then needs a free block: outside the reserve's free pages,
    unless it may use them (5.3: ALLOC_HARDER or ALLOC_OOM; 6.3: ALLOC_HIGHATOMIC or
    ALLOC_OOM, eb2e2b425c69)."""
    free -= (1 << order) - 1
    wmin = mark
    if profile.alloc_non_block:
        harder = flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)
        if not flags & ALLOC_RESERVES:
            free -= zone.highatomic
        else:
            if flags & ALLOC_MIN_RESERVE:
                wmin -= wmin // 2
                if flags & ALLOC_NON_BLOCK:
                    wmin -= wmin // 4
            if flags & ALLOC_OOM:
                wmin -= wmin // 2
    else:
        if flags & ALLOC_HIGH:
            wmin -= wmin // 2
        harder = flags & (ALLOC_HARDER | ALLOC_OOM)
        if not harder:
            free -= zone.highatomic
        else:
            wmin -= wmin // 2 if flags & ALLOC_OOM else wmin // 4
    if free <= wmin + zone.lowmem_reserve[classzone]:
        return False
    # no fragmentation in the model: a block is free whenever enough pages are
    return order == 0 or zone.nr_free - (0 if harder else zone.highatomic_free) >= 1 << order


def zone_watermark_fast(
    profile: KernelProfile, zone: Zone, order: int, mark: int, classzone: int, flags: int, gfp: int
) -> bool:
    """``zone_watermark_fast``: the order-0 shortcut on the folded counter, the full test,
    and from 5.9 (f80b08fc4453) a second min test without the boost for
    __GFP_ATOMIC (6.3: ALLOC_MIN_RESERVE) order-0 requests."""
    free = zone.vm_free
    if not order and free > mark + zone.lowmem_reserve[classzone]:
        return True
    if zone_watermark_ok(profile, zone, order, mark, classzone, flags, free):
        return True
    if order or not zone.boost or not profile.atomic_ignores_boost or (flags & ALLOC_WMARK_MASK) != ALLOC_WMARK_MIN:
        return False
    high_prio = flags & ALLOC_MIN_RESERVE if profile.alloc_non_block else gfp & _G_ATOMIC
    return bool(high_prio) and zone_watermark_ok(profile, zone, 0, zone.wmark[WMARK_MIN], classzone, flags, free)


def zone_watermark_ok_safe(profile: KernelProfile, zone: Zone, order: int, mark: int, classzone: int) -> bool:
    """``zone_watermark_ok_safe``: kswapd's test, on the exact count below the drift mark."""
    free = zone.vm_free
    drift_mark = zone.info.percpu_drift_mark
    if drift_mark and free < drift_mark:
        free = zone.nr_free
    return zone_watermark_ok(profile, zone, order, mark, classzone, 0, free)


def gfp_to_alloc_flags(profile: KernelProfile, gfp: int, order: int, task: Any) -> int:
    """``gfp_to_alloc_flags``, the slow path's flags.  5.2/5.3: __GFP_HIGH gives
    ALLOC_HIGH; __GFP_ATOMIC, or an RT task, ALLOC_HARDER.  6.3 (ab3508854353):
    __GFP_HIGH gives ALLOC_MIN_RESERVE; no __GFP_DIRECT_RECLAIM gives
    ALLOC_NON_BLOCK; an RT task gets MIN_RESERVE only when it may block."""
    flags = ALLOC_WMARK_MIN | ALLOC_CPUSET | (gfp & _G_HIGH)
    if gfp & _G_KSWAPD_RECLAIM:
        flags |= ALLOC_KSWAPD
    rt = getattr(task, "rt", False)
    if profile.alloc_non_block:
        if not gfp & _G_DIRECT_RECLAIM:
            if not gfp & _G_NOMEMALLOC:
                flags |= ALLOC_NON_BLOCK | (ALLOC_HIGHATOMIC if order > 0 else 0)
            if flags & ALLOC_MIN_RESERVE:
                flags &= ~ALLOC_CPUSET
        elif rt:
            flags |= ALLOC_MIN_RESERVE
    elif gfp & _G_ATOMIC:
        if not gfp & _G_NOMEMALLOC:
            flags |= ALLOC_HARDER
        flags &= ~ALLOC_CPUSET
    elif rt:
        flags |= ALLOC_HARDER
    return flags


def gfp_pfmemalloc_flags(gfp: int, task: Any) -> int:
    """``__gfp_pfmemalloc_flags``: PF_MEMALLOC tasks and __GFP_MEMALLOC ignore the
    watermarks; OOM victims get ALLOC_OOM (applied from the slow path's retry)."""
    if gfp & _G_NOMEMALLOC:
        return 0
    if gfp & _G_MEMALLOC or getattr(task, "pf_memalloc", False):
        return ALLOC_NO_WATERMARKS
    return ALLOC_OOM if getattr(task, "oom_victim", False) else 0
