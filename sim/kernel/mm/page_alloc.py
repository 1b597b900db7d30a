"""The zoned page allocator of Linux 5.3 (mm/page_alloc.c, mm/vmstat.c), order-0 first.

State per zone: the buddy free count (``nr_free``), the folded ``NR_FREE_PAGES``
counter that every watermark check reads (``vm_free``) with its per-CPU
differentials (vmstat drift), the watermarks and their boost, lowmem_reserve, and
per-CPU page lists whose pages no longer count as free.  Memory is counted, not
tracked page by page; each page taken is charged to a pool of
:class:`sim.kernel.mm.pools.MemoryPools` (and to a MemoryOwner for anon, page tables
and kernel stacks); a free returns pages to the zones they sit in (:mod:`sim.kernel.mm.pools`).

Paths:

* :meth:`PageAllocator.alloc_pages_nowait`: gfp without ``__GFP_DIRECT_RECLAIM``; a
  plain function (never yields, creates no SimPy event on the fast path);
* :meth:`PageAllocator.alloc_pages`: any gfp; both slow paths (and ``warn_alloc``)
  are in :mod:`sim.kernel.mm.slowpath`;

* ``*_bulk`` variants charge many order-0 pages at once; each page passes exactly
  the watermark test it would pass alone (the folded counter only falls while a
  bulk request runs, so a test that fails stays failed);
* :meth:`PageAllocator.free_pages`.

High-order atomic requests reserve pageblocks for themselves (the high-atomic
reserve, counted in :mod:`sim.kernel.mm.highatomic`); a caller that frees such a
block later reads :attr:`PageAllocator.last_block_highatomic` after the allocation
and passes it back to ``free_pages``.

The slow path (:class:`sim.kernel.mm.slowpath.SlowPath`), reclaim
(:mod:`sim.kernel.mm.vmscan`) and the OOM killer (:mod:`sim.kernel.mm.oom_kill`) are
built here and call back only through :class:`sim.kernel.mm.internal.ZoneOps`, which
this class satisfies; a request that leaves the fast path goes down to the slow path
as an :class:`sim.kernel.mm.internal.AllocContext`.

Rules that changed by version are read from the :class:`KernelProfile`.
Each CPU has one list per migratetype (``pcp->lists``) and the buddy lists are kept
by migratetype at pageblock grain (:mod:`sim.kernel.mm.freelists`), so a request
that finds its own lists empty steals from another's as ``__rmqueue_fallback`` does,
and a steal below pageblock order boosts the watermarks (``boost_watermark``).
Simplifications: no fragmentation within a migratetype (a high-order request finds a
block whenever enough pages are free); vmstat_update folds every CPU at the first
allocator event after each ``stat_interval_s`` instead of on a timer.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.freelists import MIGRATE_PCPTYPES, POOL_MIGRATETYPE
from sim.kernel.mm.gfp import Gfp, gfp_name
from sim.kernel.mm.highatomic import (
    free_held_blocks,
    free_others_to_buddy,
    reserve_highatomic_pageblock,
    rmqueue_highatomic,
    unreserve_pageblock,
)
from sim.kernel.mm.internal import AllocContext
from sim.kernel.mm.mm_types import MemoryOwner
from sim.kernel.mm.oom_kill import OomKiller
from sim.kernel.mm.pools import MemoryPools
from sim.kernel.mm.slowpath import SlowPath
from sim.kernel.mm.vmscan import Reclaimer
from sim.kernel.mm.watermarks import Zone, zone_watermark_fast
from sim.kernel.mm.zones import (
    ALLOC_HARDER,
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MASK,
    PAGEBLOCK_NR_PAGES,
    WMARK_MIN,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_NORMAL,
    MemoryParams,
    ZoneTable,
    build_zones,
)
from sim.kernel.printk import Console
from sim.kernel.profile import KernelProfile
from sim.kernel.sched.cpu import Scheduler
from sim.record.metrics import Metrics

__all__ = ["MemoryParams", "PageAllocator", "Zone", "build_zones"]  # build_zones lives in zones.py

_DIRECT: Final = Gfp.DIRECT_RECLAIM
_KSWAPD: Final = Gfp.KSWAPD_RECLAIM
_ZONE_BITS: Final = Gfp.DMA | Gfp.DMA32
_DMA: Final = Gfp.DMA
_DMA32: Final = Gfp.DMA32


class PageAllocator:
    """Zones of one node, per-CPU lists, the GFP classes, kswapd, direct reclaim and OOM."""

    def __init__(
        self,
        env: eventloop.Environment,
        table: ZoneTable,
        profile: KernelProfile,
        params: MemoryParams | None = None,
        *,
        rng: np.random.Generator,
        metrics: Metrics | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.env = env
        self.table = table
        self.profile = profile
        self.params = params or MemoryParams()
        self.rng = rng
        self.metrics = metrics if metrics is not None else Metrics()
        self.scheduler = scheduler
        self.ncpus = table.ncpus
        self.zones = [Zone(info, table.ncpus, self.params.vmstat_drift) for info in table.zones]
        self.zonelist = tuple(reversed(self.zones))  # node_zonelist order: highest zone first
        self._by_idx: list[Zone | None] = [None, None, None]
        for zone in self.zones:
            self._by_idx[zone.idx] = zone
        self.classzone = self.zonelist[0].idx
        # an initial reserve of free pageblocks (0 in the kernel at boot), off the buddy lists
        top = self.zonelist[0]
        top.highatomic = self.params.highatomic_pages
        top.highatomic_free = top.area.take_free(top.highatomic)
        # the alloc flag that serves a high-order block from the reserve and reserves its pageblock:
        # ALLOC_HARDER with order > 0 to 6.2, ALLOC_HIGHATOMIC from 6.3 (eb2e2b425c69)
        self._highatomic_flag = ALLOC_HIGHATOMIC if profile.alloc_non_block else ALLOC_HARDER
        # get_pageblock_migratetype(page) == MIGRATE_HIGHATOMIC for the last high-order block handed out
        self.last_block_highatomic = False
        for zone in self.zones:
            zone.set_boost(0, self.classzone)  # fast_mark for the preferred classzone
        self._zonelists: dict[int, tuple[tuple[Zone, ...], int]] = {}
        self.pools = MemoryPools()
        # alloc_flags_nofragment: a preferred Normal zone with a populated DMA32 below it
        self.nofragment = ALLOC_NOFRAGMENT if self.classzone == ZONE_NORMAL and self._by_idx[ZONE_DMA32] else 0
        self._next_vmstat = self.params.stat_interval_s or float("inf")
        # the helpers of mm/internal.h: they reach the zones only through ZoneOps (self)
        ctx = (self.profile, self.params, self.metrics)
        self.reclaim = Reclaimer(env, self, self.pools, *ctx, rng, scheduler, self.ncpus)
        self.oom = OomKiller(env, self, self.pools, self.reclaim, self.params, self.metrics, rng, scheduler)
        # the serial console warn_alloc's reports go to; vmalloc's warning and its callers share it
        self.console = Console(env, self.metrics, self.params.console_baud, self.params.console_loglevel)
        self.slowpath = SlowPath(
            self, self.reclaim, self.oom, self.pools, *ctx, scheduler, lambda: env.now, self.console
        )

    # -- zone lists and watermarks ------------------------------------------------

    def zonelist_for(self, gfp: int) -> tuple[tuple[Zone, ...], int, int]:
        """(eligible zones high to low, classzone_idx, high_zoneidx) for ``gfp`` (``gfp_zone``)."""
        high = ZONE_DMA if gfp & _DMA else ZONE_DMA32 if gfp & _DMA32 else ZONE_NORMAL
        cached = self._zonelists.get(high)
        if cached is None:
            zones = tuple(z for z in self.zonelist if z.idx <= high)
            cached = self._zonelists[high] = (zones, zones[0].idx if zones else 0)
        return cached[0], cached[1], high

    # -- vmstat -------------------------------------------------------------------------

    def vmstat_update(self) -> None:
        """``refresh_cpu_vm_stats`` on every CPU: fold all differentials into the zones."""
        for zone in self.zones:
            zone.fold()
        interval = self.params.stat_interval_s
        if interval:
            self._next_vmstat = (self.env.now // interval + 1) * interval

    def set_pgdat_percpu_threshold(self, pressure: bool) -> None:
        """``set_pgdat_percpu_threshold``: the pressure threshold while kswapd is awake,
        only for zones whose drift could hide a breach of min (a percpu_drift_mark)."""
        if not self.params.vmstat_drift:
            return
        for zone in self.zones:
            if zone.info.percpu_drift_mark:
                zone.stat_threshold = zone.info.pressure_threshold if pressure else zone.info.stat_threshold

    # -- taking pages ---------------------------------------------------------------------

    def boost_watermark(self, zone: Zone, kswapd: bool) -> None:
        """``boost_watermark`` after a fallback steal below pageblock order (5.0+,
        ``steal_suitable_fallback``): one pageblock more, up to max(pageblock, high x
        boost_factor/10000); with ALLOC_KSWAPD the zone is flagged so that ``rmqueue``
        wakes kswapd."""
        if not zone.max_boost:
            return
        zone.set_boost(min(zone.boost + PAGEBLOCK_NR_PAGES, zone.max_boost), self.classzone)
        self.metrics.add("watermark_boost")
        if kswapd:
            zone.boosted = True

    def rmqueue(self, zone: Zone, cpu: int, mt: int, flags: int, nr: int, dst: list[float]) -> int:
        """``nr`` pages of migratetype ``mt`` off the buddy lists (``__rmqueue`` per page, with
        its fallback steals and their boosts), their pageblock shares into ``dst``; the pages
        taken.  A boosted zone wakes kswapd (``rmqueue``, ZONE_BOOSTED_WATERMARK)."""
        # the high-atomic reserve's free pages are not on these lists (sim.kernel.mm.highatomic)
        take, steals = zone.area.rmqueue(
            mt, min(nr, zone.nr_free - zone.highatomic_free), bool(flags & ALLOC_NOFRAGMENT), dst
        )
        if take:
            zone.mod_free(cpu, -take)
        if steals:
            self.metrics.add("fallback_steals", steals)
            kswapd = bool(flags & ALLOC_KSWAPD)
            for _ in range(steals):
                self.boost_watermark(zone, kswapd)
        if zone.boosted:
            zone.boosted = False
            self.reclaim.wakeup_kswapd(0, zone.idx, 0)
        # env._now is SimPy's clock without the ``now`` property call (a hot path)
        if self.env._now >= self._next_vmstat:
            self.vmstat_update()
        return take

    def rmqueue_bulk(self, zone: Zone, cpu: int, mt: int, flags: int) -> int:
        """Refill ``cpu``'s list ``mt`` with up to one batch from the buddy lists
        (``rmqueue_bulk``); returns the pages now on that list."""
        comp = [0.0, 0.0, 0.0]
        take = self.rmqueue(zone, cpu, mt, flags, zone.pcp_batch, comp)
        if not take:
            return 0
        zone.area.to_pcp(mt, take, comp)
        zone.pcp_count[cpu] += take
        lists = zone.pcp_lists[mt]
        lists[cpu] += take
        return lists[cpu]

    def get_page_from_freelist(
        self, cpu: int, gfp: int, order: int, flags: int, zones: tuple[Zone, ...], classzone: int,
        pool: str, owner: MemoryOwner | None, n: int = 1,
    ) -> int:  # fmt: skip
        """Up to ``n`` blocks of ``order`` from the first zone that passes the watermark,
        as many ``get_page_from_freelist`` calls would (5.3); returns how many.  With
        ALLOC_NOFRAGMENT a pass that finds nothing without stealing below a pageblock
        is made again without it."""
        got = 0
        prof = self.profile
        which = flags & ALLOC_WMARK_MASK
        check = not flags & ALLOC_NO_WATERMARKS
        mt = POOL_MIGRATETYPE[pool]
        while got < n:
            for zone in zones:
                if check:
                    mark = zone.wmark[which] + zone.boost
                    # zone_watermark_fast's order-0 shortcut inline; the call only when it fails
                    if (order or zone.vm_free <= mark + zone.lowmem_reserve[classzone]) and not zone_watermark_fast(
                        prof, zone, order, mark, classzone, flags, gfp
                    ):
                        continue
                if order == 0:
                    lists = zone.pcp_lists[mt]
                    c = lists[cpu]
                    if c:  # the counter cannot change while pages come off the list
                        k = min(c, n - got)
                    else:  # a refill lowers the counter: only this page passed the test
                        c = self.rmqueue_bulk(zone, cpu, mt, flags)
                        if not c:
                            continue
                        k = 1
                    lists[cpu] = c - k
                    zone.pcp_count[cpu] -= k
                    zone.area.pcp_to_user(mt, k)
                    self.pools.charge(pool, zone.idx, k, owner)
                else:
                    k = self._rmqueue_block(zone, cpu, order, flags, pool, owner)
                    if not k:
                        continue
                got += k
                break
            else:
                if flags & ALLOC_NOFRAGMENT:  # fragmented everywhere: try again, stealing
                    flags &= ~ALLOC_NOFRAGMENT
                    continue
                break
        return got

    def _rmqueue_block(self, zone: Zone, cpu: int, order: int, flags: int, pool: str, owner: MemoryOwner | None) -> int:
        """``rmqueue`` of one high-order block (5.3): an ALLOC_HARDER request takes it from
        the high-atomic reserve first (``__rmqueue_smallest(.., MIGRATE_HIGHATOMIC)``), else
        ``__rmqueue`` takes it from the other free pages, and for ALLOC_HARDER
        ``get_page_from_freelist`` then calls ``reserve_highatomic_pageblock``.  Returns 1,
        or 0 if the zone has no such block."""
        size = 1 << order
        harder = flags & self._highatomic_flag
        mt = POOL_MIGRATETYPE[pool]
        if harder and rmqueue_highatomic(zone, order):
            zone.mod_free(cpu, -size)  # off the MIGRATE_HIGHATOMIC list: no fallback, no boost
            self.vmstat_due()
            in_reserve = True
        elif zone.nr_free - zone.highatomic_free >= size and zone.area.can_take(
            mt, size, bool(flags & ALLOC_NOFRAGMENT)
        ):
            comp = [0.0, 0.0, 0.0]  # __rmqueue: one block off the buddy lists
            self.rmqueue(zone, cpu, mt, flags, size, comp)
            zone.area.to_user(mt, size, comp)
            in_reserve = bool(harder) and reserve_highatomic_pageblock(zone, order, mt)
            if in_reserve:
                self.metrics.add("highatomic_reserved")
        else:
            return 0
        self.last_block_highatomic = in_reserve
        self.pools.charge(pool, zone.idx, size, owner)
        return 1

    # -- GFP classes ----------------------------------------------------------------------

    def wake_all_kswapds(self, order: int, gfp: int, high_zoneidx: int) -> None:
        """``wake_all_kswapds``: one node, one kswapd."""
        self.reclaim.wakeup_kswapd(order, high_zoneidx, gfp)

    def alloc_pages_nowait(
        self, cpu: int, gfp: int, order: int = 0, *, pool: str, site: str = "", owner: MemoryOwner | None = None,
        task: Any = None,
    ) -> bool:  # fmt: skip
        """One allocation that may not sleep (``__alloc_pages_nodemask`` 5.3 with a gfp
        lacking ``__GFP_DIRECT_RECLAIM``).  Fast path: LOW on each zone, then the CPU's
        list; slow path: wake kswapd, MIN with the class's reductions, once more, fail."""
        gfp = int(gfp)  # a plain int already (sim/kernel/mm/gfp.py): kept from the IntFlag days
        if gfp & _DIRECT:
            raise ValueError(f"alloc_pages_nowait with blocking gfp {gfp_name(gfp)}; use alloc_pages")
        if order == 0 and not gfp & _ZONE_BITS:
            mt = POOL_MIGRATETYPE[pool]
            for zone in self.zonelist:
                if zone.vm_free > zone.fast_mark:
                    lists = zone.pcp_lists[mt]
                    c = lists[cpu] or self.rmqueue_bulk(
                        zone, cpu, mt, (ALLOC_KSWAPD if gfp & _KSWAPD else 0) | self.nofragment
                    )
                    if c:
                        lists[cpu] = c - 1
                        zone.pcp_count[cpu] -= 1
                        zone.area.pcp_to_user(mt, 1)
                        self.pools.charge(pool, zone.idx, 1, owner)
                        return True
        return self.alloc_pages_bulk_nowait(cpu, gfp, 1, order=order, pool=pool, site=site, owner=owner, task=task) == 1

    def alloc_pages_bulk_nowait(
        self, cpu: int, gfp: int, nr: int, *, order: int = 0, pool: str, site: str = "",
        owner: MemoryOwner | None = None, task: Any = None,
    ) -> int:  # fmt: skip
        """``nr`` non-blocking allocations in one step; stops at the first that fails
        (which is warned about and counted).  Returns how many succeeded."""
        gfp = int(gfp)
        if gfp & _DIRECT:
            raise ValueError(f"alloc_pages_bulk_nowait with blocking gfp {gfp_name(gfp)}")
        zones, classzone, high = self.zonelist_for(gfp)
        fast = ALLOC_WMARK_LOW | (ALLOC_KSWAPD if gfp & _KSWAPD else 0) | self.nofragment
        got = self.get_page_from_freelist(cpu, gfp, order, fast, zones, classzone, pool, owner, nr)
        if got == nr:
            return got
        ac = AllocContext(gfp, order, zones, classzone, high, pool, owner, site)
        return got + self.slowpath.alloc_pages_slowpath_nonblocking(cpu, ac, nr - got, task)

    def alloc_pages(
        self, task: Any, gfp: int, order: int = 0, *, pool: str, site: str = "", owner: MemoryOwner | None = None
    ) -> Any:
        """Any gfp (``__alloc_pages_nodemask``); a generator returning success.  A
        blocking gfp checks might_sleep first, then may sleep in direct reclaim,
        throttling, pcp drain and the OOM path."""
        got = yield from self.alloc_pages_bulk(task, gfp, 1, order=order, pool=pool, site=site, owner=owner)
        return got == 1

    def alloc_pages_bulk(
        self, task: Any, gfp: int, nr: int, *, order: int = 0, pool: str, site: str = "",
        owner: MemoryOwner | None = None,
    ) -> Any:  # fmt: skip
        """``nr`` allocations as a generator returning how many succeeded; a blocking
        gfp takes the slow path for the first page the fast path refuses, then
        goes on (a non-blocking gfp stops at the first failure)."""
        gfp = int(gfp)
        if not gfp & _DIRECT:
            return self.alloc_pages_bulk_nowait(
                task.cpu, gfp, nr, order=order, pool=pool, site=site, owner=owner, task=task
            )
            yield  # pragma: no cover - makes this a generator
        if self.scheduler is None:
            raise RuntimeError("a blocking allocation needs the machine's scheduler")
        self.scheduler.might_sleep(task, site or "alloc_pages")
        zones, classzone, high = self.zonelist_for(gfp)
        fast = ALLOC_WMARK_LOW | (ALLOC_KSWAPD if gfp & _KSWAPD else 0) | self.nofragment
        ac = None
        got = 0
        while got < nr:
            got += self.get_page_from_freelist(task.cpu, gfp, order, fast, zones, classzone, pool, owner, nr - got)
            if got == nr:
                break
            if ac is None:
                ac = AllocContext(gfp, order, zones, classzone, high, pool, owner, site)
            k = yield from self.slowpath.alloc_pages_slowpath(task, ac, nr - got)
            if not k:
                break
            got += k
        return got

    # -- freeing -----------------------------------------------------------------------------

    def free_pages(
        self, cpu: int, order: int = 0, *, pool: str, nr: int = 1, owner: MemoryOwner | None = None,
        highatomic: int = 0,
    ) -> None:  # fmt: skip
        """Free ``nr`` blocks of ``order`` charged to ``pool`` (``__free_pages``), each page to
        the list of its pageblock's migratetype: order 0 to ``cpu``'s list, which spills a
        batch to the buddy lists whenever it reaches its high mark
        (``free_unref_page_commit``); higher orders straight back, ``highatomic`` of them
        (blocks that were handed out of reserved pageblocks, :attr:`last_block_highatomic`)
        onto the high-atomic reserve's list."""
        pages = nr << order
        held = highatomic << order
        mt = POOL_MIGRATETYPE[pool]
        for idx, k in self.pools.uncharge(pool, pages, owner):
            zone = self._by_idx[idx]
            assert zone is not None  # pages are charged only to zones that exist
            area = zone.area
            if order:
                # blocks of reserved pageblocks go back to the reserve's list, the rest to their lists
                back = free_held_blocks(zone, min(held, k)) if held and zone.highatomic else 0
                held -= back
                area.freed_to_buddy(area.release(mt, k - back))
                for _ in range(k >> order):  # one __free_one_page per block
                    zone.mod_free(cpu, 1 << order)
                if k & ((1 << order) - 1):  # pages the pool got at another order
                    zone.mod_free(cpu, k & ((1 << order) - 1))
                if zone.highatomic:
                    free_others_to_buddy(zone, k - back)
                continue
            by_block = area.release(mt, k)
            area.freed_to_pcp(by_block)
            for b in range(MIGRATE_PCPTYPES):
                if by_block[b]:
                    zone.pcp_lists[b][cpu] += by_block[b]
            c = zone.pcp_count[cpu]
            high = zone.pcp_high
            if zone.reclaim_active and self.profile.pcp_high_reclaim_limit:
                high = min(zone.pcp_batch << 2, high)
            batch = zone.pcp_batch
            flushed = 0
            while k:  # page by page: each one that brings the count to high spills a batch
                step = max(1, high - c)
                if step > k:
                    c += k
                    break
                c += step
                k -= step
                b = min(batch, c)
                self.free_pcppages_bulk(zone, cpu, b)
                c -= b
                flushed += b
            zone.pcp_count[cpu] = c
            if flushed:
                zone.free_to_buddy(cpu, flushed)
                if zone.highatomic:
                    free_others_to_buddy(zone, flushed)
                self.vmstat_due()

    @staticmethod
    def free_pcppages_bulk(zone: Zone, cpu: int, count: int) -> None:
        """``free_pcppages_bulk`` (5.3): ``count`` pages off ``cpu``'s lists to the buddy lists
        they came from, taken from the lists in turn (the round robin, with a longer turn
        for each empty list met, as the kernel's ``batch_free``)."""
        lists = [zone.pcp_lists[0], zone.pcp_lists[1], zone.pcp_lists[2]]
        area = zone.area
        mt = 0
        batch_free = 0
        while count:
            while True:
                batch_free += 1
                mt = (mt + 1) % MIGRATE_PCPTYPES
                if lists[mt][cpu]:
                    break
            if batch_free == MIGRATE_PCPTYPES:
                batch_free = count
            k = min(batch_free, count, lists[mt][cpu])
            lists[mt][cpu] -= k
            area.pcp_to_buddy(mt, k)
            count -= k
            batch_free -= k

    def drain_all_pages(self) -> int:
        """``drain_all_pages``: every CPU's lists back to the buddy lists; returns pages moved."""
        moved = 0
        for zone in self.zones:
            for cpu, c in enumerate(zone.pcp_count):
                if c:
                    for mt in range(MIGRATE_PCPTYPES):
                        k = zone.pcp_lists[mt][cpu]
                        if k:
                            zone.pcp_lists[mt][cpu] = 0
                            zone.area.pcp_to_buddy(mt, k)
                    zone.pcp_count[cpu] = 0
                    zone.free_to_buddy(cpu, c)
                    if zone.highatomic:
                        free_others_to_buddy(zone, c)
                    moved += c
        return moved

    def unreserve_highatomic_pageblock(self, ac: AllocContext, force: bool = False) -> bool:
        """``unreserve_highatomic_pageblock`` (5.3): one reserved pageblock becomes the
        request's migratetype, from the first of its zones (zonelist order) that has one to
        spare (without ``force`` a zone keeps its last one) and a free page on the
        reserve's list; True if a block was released."""
        mt = POOL_MIGRATETYPE[ac.pool]
        for zone in ac.zones:
            if zone.highatomic and unreserve_pageblock(zone, mt, force):
                self.metrics.add("highatomic_unreserved")
                return True
        return False

    def populate(self, pool: str, nr: int, *, zone: str | None = None, owner: MemoryOwner | None = None) -> None:
        """Boot-time state: charge ``nr`` pages to ``pool`` straight from the buddy lists
        (highest zone first, or only ``zone``), with no watermark test or drift."""
        mt = POOL_MIGRATETYPE[pool]
        for z in self.zonelist:
            if zone is not None and z.name != zone:
                continue
            comp = [0.0, 0.0, 0.0]  # boot: nothing is boosted yet; the reserve's free pages are not on the lists
            k, _ = z.area.rmqueue(mt, min(nr, z.nr_free - z.highatomic_free), False, comp)
            z.area.to_user(mt, k, comp)
            z.nr_free -= k
            z.vm_free -= k
            self.pools.charge(pool, z.idx, k, owner)
            nr -= k
        if nr:
            raise ValueError(f"populate({pool}): {nr} pages more than free")

    # -- failures and state ---------------------------------------------------------------------

    def vmstat_due(self) -> None:
        """Run the periodic ``vmstat_update`` if its interval has passed."""
        if self.env._now >= self._next_vmstat:
            self.vmstat_update()

    def nr_free_pages(self) -> int:
        """Sum of the folded NR_FREE_PAGES counters (what /proc/meminfo shows)."""
        return sum(max(z.vm_free, 0) for z in self.zones)

    def failure_state(self) -> dict[str, Any]:
        """Mem-Info at a failure: free, free_pcp, each zone's free/min/boost and
        reserved_highatomic, the pools."""
        state: dict[str, Any] = {
            "free": self.nr_free_pages(),
            "free_pcp": sum(sum(z.pcp_count) for z in self.zones),
            "kswapd_failures": self.reclaim.kswapd_failures,
        }
        for z in self.zones:
            state[f"{z.name}_free"] = max(z.vm_free, 0)
            state[f"{z.name}_min"] = z.wmark[WMARK_MIN]
            state[f"{z.name}_boost"] = z.boost
            state[f"{z.name}_highatomic"] = z.highatomic
        state.update(self.pools.levels())
        return state

    def sample(self) -> None:
        """Record one time-series sample of the free levels, boosts, high-atomic reserves and pools."""
        self.metrics.sample(self.env.now, **self.failure_state())
