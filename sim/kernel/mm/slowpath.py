"""``__alloc_pages_slowpath`` and ``warn_alloc`` (mm/page_alloc.c, Linux 5.3).

Without ``__GFP_DIRECT_RECLAIM`` (GFP_NOWAIT, GFP_ATOMIC) the slow path is a plain
function: wake kswapd, try at min with the class's reductions, try once more at
the retry label (with OOM-victim reserves), then fail and warn.
With it (GFP_KERNEL and friends), after the fast path failed at the low mark:
wake kswapd, try at min, then loop over {wake kswapd (until reserve flags
replace the alloc flags); reserve flags for OOM victims and PF_MEMALLOC; try;
direct reclaim (with throttling) and try; drain the per-CPU lists and try;
``should_reclaim_retry`` (MAX_RECLAIM_RETRIES loops without progress); the OOM
killer under oom_lock}.  Every way out that fails goes through "nopage", where a
__GFP_NOFAIL request takes some reserves and loops instead.
An order-0 request of a task that is not an OOM victim never fails: it sleeps
until reclaim or a kill frees memory.  Split off page_alloc.py to keep both short.

:class:`SlowPath` is built by :class:`sim.kernel.mm.page_alloc.PageAllocator` with
what it calls: the allocator's zone operations (:class:`sim.kernel.mm.internal.ZoneOps`),
reclaim, the OOM killer, the pools, the scheduler, the clock and the console
(:class:`sim.kernel.printk.Console`), which ``warn_alloc``'s report is written to.  A
request comes in as an :class:`sim.kernel.mm.internal.AllocContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Final

from sim.kernel.mm.gfp import Gfp, gfp_name
from sim.kernel.mm.internal import AllocContext, ZoneOps
from sim.kernel.mm.oom_kill import OomKiller
from sim.kernel.mm.pools import MemoryPools
from sim.kernel.mm.vmscan import Reclaimer
from sim.kernel.mm.watermarks import gfp_pfmemalloc_flags, gfp_to_alloc_flags, zone_watermark_ok
from sim.kernel.mm.zones import (
    ALLOC_CPUSET,
    ALLOC_HARDER,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_OOM,
    ALLOC_WMARK_HIGH,
    MAX_RECLAIM_RETRIES,
    PAGE_ALLOC_COSTLY_ORDER,
    WMARK_MIN,
    ZONE_NORMAL,
    MemoryParams,
)
from sim.kernel.printk import Console, warn_alloc_bytes
from sim.kernel.profile import KernelProfile
from sim.kernel.sched.cpu import Scheduler
from sim.record.metrics import Metrics

# the gfp bits this module tests (Final: inlined by the compiled build)
_G_ATOMIC: Final = Gfp.ATOMIC
_G_NORETRY: Final = Gfp.NORETRY
_G_RETRY_MAYFAIL: Final = Gfp.RETRY_MAYFAIL
_G_NOMEMALLOC: Final = Gfp.NOMEMALLOC
_G_NOFAIL: Final = Gfp.NOFAIL
_G_HARDWALL: Final = Gfp.HARDWALL
_G_DIRECT_RECLAIM: Final = Gfp.DIRECT_RECLAIM
_G_THISNODE: Final = Gfp.THISNODE
_G_KSWAPD_RECLAIM: Final = Gfp.KSWAPD_RECLAIM
_G_NOWARN: Final = Gfp.NOWARN
_G_SILENT_UNLESS: Final = Gfp.DIRECT_RECLAIM | Gfp.HIGH | Gfp.ATOMIC  # 6.8 GFP_NOWAIT implies NOWARN

_KSWAPD_BIT: Final = Gfp.KSWAPD_RECLAIM
SHOW_MEM_RATELIMIT = (1.0, 1)  # warn_alloc_show_mem's show_mem_rs: HZ jiffies (1 s), burst 1
Attempt = Callable[..., int]  # get_page_from_freelist with the request bound: (alloc_flags, gfp=) -> blocks


class SlowPath:
    """``__alloc_pages_slowpath`` and ``warn_alloc`` for the node's page allocator."""

    def __init__(
        self,
        zone_ops: ZoneOps,
        reclaim: Reclaimer,
        oom: OomKiller,
        pools: MemoryPools,
        profile: KernelProfile,
        params: MemoryParams,
        metrics: Metrics,
        scheduler: Scheduler | None,
        clock: Callable[[], float],
        console: Console,
    ) -> None:
        self.zone_ops = zone_ops
        self.reclaim = reclaim
        self.oom = oom
        self.pools = pools
        self.profile = profile
        self.params = params
        self.metrics = metrics
        self.scheduler = scheduler  # a blocking request needs one (PageAllocator checks)
        self.clock = clock
        self.console = console
        self.warn_ratelimit: list[Any] = [None, 0]  # warn_alloc's ratelimit (nopage_rs): window start, printed
        self.show_mem_ratelimit: list[Any] = [None, 0]  # warn_alloc_show_mem's (show_mem_rs)

    # -- without __GFP_DIRECT_RECLAIM ---------------------------------------------------

    def alloc_pages_slowpath_nonblocking(self, cpu: int, ac: AllocContext, n: int, task: Any) -> int:
        """``__alloc_pages_slowpath`` up to "if (!can_direct_reclaim) goto nopage": never
        sleeps; returns how many of ``n`` blocks it got before the first failure."""
        ops = self.zone_ops
        gfp, order = ac.gfp, ac.order
        self.metrics.add("alloc_slowpath")
        ops.vmstat_due()
        flags = gfp_to_alloc_flags(self.profile, gfp, order, task)
        got = 0
        for attempt in range(2):  # after waking kswapd, then at the retry: label
            if flags & ALLOC_KSWAPD:
                ops.wake_all_kswapds(order, gfp, ac.high_zoneidx)
            if attempt:
                flags = gfp_pfmemalloc_flags(gfp, task) or flags
            got += ops.get_page_from_freelist(
                cpu, gfp, order, flags, ac.zones, ac.classzone_idx, ac.pool, ac.owner, n - got
            )
            if got == n:
                return got
        if gfp & _KSWAPD_BIT:  # GFP_NOWAIT / GFP_ATOMIC, not a slab's no-reclaim probe (gfp_exact_node)
            self.metrics.add("nowait_page_failures")
        self.warn_alloc(cpu, gfp, order, ac.site, task)
        return got

    def warn_alloc(self, cpu: int, gfp: int, order: int, site: str, task: Any) -> None:
        """Count a failed allocation; ``warn_alloc`` prints it (records an event) unless
        __GFP_NOWARN (implied for GFP_NOWAIT from 6.8), at most 10 per 5 s (``nopage_rs``),
        with the Mem-Info block at most once a second (``show_mem_rs``).  What reaches the
        console is owed by ``cpu`` (:meth:`Console.printk`): the caller pays it where printk
        would have returned (``console.write_out``), since this may not yield."""
        m = self.metrics
        m.add("alloc_fail")
        if site:
            m.add(f"alloc_fail:{site}")
        if gfp & _G_NOWARN or (self.profile.nowait_implies_nowarn and not gfp & _G_SILENT_UNLESS):
            m.add("alloc_fail_nowarn")
            return
        now = self.clock()
        if not _ratelimit(self.warn_ratelimit, now, self.params.warn_ratelimit_s, self.params.warn_ratelimit_burst):
            m.add("warn_alloc_suppressed")
            return
        m.add("warn_alloc")
        m.event(
            "warn_alloc", now, message=f"page allocation failure: order:{order}", gfp=gfp_name(gfp), mode=hex(gfp),
            order=order, site=site, cpu=cpu, task=getattr(task, "name", None), **self.zone_ops.failure_state(),
        )  # fmt: skip
        show_mem = _ratelimit(self.show_mem_ratelimit, now, *SHOW_MEM_RATELIMIT)
        m.add("warn_alloc_show_mem" if show_mem else "warn_alloc_show_mem_suppressed")
        self.console.printk(cpu, warn_alloc_bytes(len(self.zone_ops.zones), show_mem))

    # -- with __GFP_DIRECT_RECLAIM --------------------------------------------------------

    def alloc_pages_slowpath(self, task: Any, ac: AllocContext, n: int) -> Generator[Any, Any, int]:
        """``__alloc_pages_slowpath`` for a blocking gfp; returns how many of ``n`` blocks it
        got at the attempt that first succeeded (0: the allocation failed)."""
        ops, prof, sched = self.zone_ops, self.profile, self.scheduler
        gfp, order = ac.gfp, ac.order
        if prof.gfp_atomic_bit and gfp & _G_ATOMIC:  # WARN_ON_ONCE: atomic reserves need !blocking
            gfp &= ~_G_ATOMIC
        self.metrics.add("alloc_slowpath")
        ops.vmstat_due()
        zones, classzone, high = ac.zones, ac.classzone_idx, ac.high_zoneidx
        start = self.clock()

        def attempt(flags: int, mask: int = gfp) -> int:
            return ops.get_page_from_freelist(task.cpu, mask, order, flags, zones, classzone, ac.pool, ac.owner, n)

        def done(got: int) -> int:
            self.metrics.add_time("alloc_slowpath", self.clock() - start)
            return got

        alloc_flags = gfp_to_alloc_flags(prof, gfp, order, task)
        if alloc_flags & ALLOC_KSWAPD:
            ops.wake_all_kswapds(order, gfp, high)
        got = attempt(alloc_flags)
        if got:
            return done(got)
        costly = order > PAGE_ALLOC_COSTLY_ORDER
        no_progress_loops = 0
        # 6.3 (ab3508854353) gives a __GFP_NOFAIL request the __GFP_HIGH share instead
        nofail_flags = ALLOC_MIN_RESERVE if prof.alloc_non_block else ALLOC_HARDER
        while True:  # retry:
            if alloc_flags & ALLOC_KSWAPD:  # a reserve mapping below has no ALLOC_KSWAPD
                ops.wake_all_kswapds(order, gfp, high)
            alloc_flags = gfp_pfmemalloc_flags(gfp, task) or alloc_flags  # replaces them for good
            got = attempt(alloc_flags)
            if got:
                return done(got)
            nopage = bool(getattr(task, "pf_memalloc", False))  # no recursion into reclaim
            if not nopage:
                got, retry, no_progress_loops = yield from self._reclaim_and_retry(
                    task, gfp, ac, n, alloc_flags, costly, no_progress_loops, attempt
                )
                if got:
                    return done(got)
                nopage = not retry
            if nopage:
                if not gfp & _G_NOFAIL:
                    break
                # nopage with __GFP_NOFAIL: some reserves, then back to retry:
                got = attempt(nofail_flags)
                if got:
                    return done(got)
                if getattr(task, "pf_memalloc", False):  # nothing below sleeps: the spin costs CPU
                    yield from sched.run(task, 1.0 / self.params.hz)
                yield from sched.cond_resched(task)
        self.warn_alloc(task.cpu, gfp, order, ac.site, task)
        yield from self.console.write_out(task)
        return done(0)

    def _reclaim_and_retry(
        self, task: Any, gfp: int, ac: AllocContext, n: int, alloc_flags: int, costly: bool,
        no_progress_loops: int, attempt: Attempt,
    ) -> Generator[Any, Any, tuple[int, bool, int]]:  # fmt: skip
        """The part of one ``__alloc_pages_slowpath`` loop after the retry: attempt (5.3):
        direct reclaim and its attempts, the retry policy, the OOM step.  Returns
        (blocks, go back to retry:, no_progress_loops); (0, False, _) is "goto nopage"."""
        order = ac.order
        progress = yield from self.perform_reclaim(task, gfp, order)
        if progress:  # __alloc_pages_direct_reclaim
            got = attempt(alloc_flags)
            if not got:
                self.zone_ops.unreserve_highatomic_pageblock(ac)
                yield from self.drain_all_pages(task)
                got = attempt(alloc_flags)
            if got:
                return got, False, no_progress_loops
        if gfp & _G_NORETRY or (costly and not gfp & _G_RETRY_MAYFAIL):
            return 0, False, no_progress_loops
        retry, no_progress_loops = yield from self.should_reclaim_retry(
            task, ac, alloc_flags, progress > 0, no_progress_loops
        )
        if retry:
            return 0, True, no_progress_loops
        got, oom_progress = yield from self.alloc_pages_may_oom(task, gfp, order, n, ac.high_zoneidx, attempt)
        if got:
            return got, False, no_progress_loops
        if getattr(task, "oom_victim", False) and (alloc_flags == ALLOC_OOM or gfp & _G_NOMEMALLOC):
            return 0, False, no_progress_loops  # no looping on reserves
        if oom_progress:
            return 0, True, 0
        return 0, False, no_progress_loops

    def perform_reclaim(self, task: Any, gfp: int, order: int) -> Generator[Any, Any, int]:
        """``__perform_reclaim``: direct reclaim as PF_MEMALLOC, between two cond_resched."""
        sched = self.scheduler
        yield from sched.cond_resched(task)
        saved = task.pf_memalloc
        task.pf_memalloc = True
        try:
            progress = yield from self.reclaim.try_to_free_pages(task, gfp, order)
        finally:
            task.pf_memalloc = saved
        yield from sched.cond_resched(task)
        return progress

    def drain_all_pages(self, task: Any) -> Generator[Any, Any, None]:
        """``drain_all_pages``: every CPU's lists go back to the buddy lists; the caller
        waits for the per-CPU work to finish."""
        self.metrics.add("pcp_drain")
        self.zone_ops.drain_all_pages()
        yield from self.scheduler.sleep(task, self.params.pcp_drain_ms / 1000.0, "drain_all_pages")

    def should_reclaim_retry(
        self, task: Any, ac: AllocContext, flags: int, did_progress: bool, no_progress_loops: int
    ) -> Generator[Any, Any, tuple[bool, int]]:
        """``should_reclaim_retry`` (5.3): give up after MAX_RECLAIM_RETRIES loops without
        progress (giving back a high-atomic pageblock first: retry if there was one), or
        when no zone would pass min even if all its reclaimable pages were freed; without
        progress and mostly dirty pages, wait HZ/10 first (before 5.16)."""
        order, zones, classzone = ac.order, ac.zones, ac.classzone_idx
        if did_progress and order <= PAGE_ALLOC_COSTLY_ORDER:
            no_progress_loops = 0
        else:
            no_progress_loops += 1
        if no_progress_loops > MAX_RECLAIM_RETRIES:
            return self.zone_ops.unreserve_highatomic_pageblock(ac, force=True), no_progress_loops
        sched, pools, prof, params = self.scheduler, self.pools, self.profile, self.params
        ret = False
        for zone in zones:
            reclaimable = pools.zone_reclaimable_pages(zone.idx)
            available = reclaimable + zone.nr_free  # zone_page_state_snapshot
            if zone_watermark_ok(prof, zone, order, zone.wmark_pages(WMARK_MIN), classzone, flags, available):
                if not did_progress and not prof.reclaim_throttle:
                    if 2 * pools.write_pending(zone.idx) > reclaimable:
                        self.metrics.add("congestion_wait")
                        yield from sched.sleep(task, (params.hz // 10) / params.hz, "congestion_wait")
                        return True, no_progress_loops
                ret = True
                break
        yield from sched.cond_resched(task)
        return ret, no_progress_loops

    def alloc_pages_may_oom(
        self, task: Any, gfp: int, order: int, n: int, high_zoneidx: int, attempt: Attempt
    ) -> Generator[Any, Any, tuple[int, bool]]:
        """``__alloc_pages_may_oom`` (5.3): take oom_lock or sleep a jiffy (counts as
        progress); one last try at the high mark; then the OOM killer unless the request
        is costly, RETRY_MAYFAIL, below ZONE_NORMAL or THISNODE.  Returns (blocks, progress)."""
        oom = self.oom
        if oom.lock_holder is not None:
            self.metrics.add("oom_lock_contended")
            yield from self.scheduler.sleep(task, 1.0 / self.params.hz, "oom_lock")
            return 0, True
        oom.lock_holder = task
        try:
            got = attempt(ALLOC_WMARK_HIGH | ALLOC_CPUSET, (gfp | _G_HARDWALL) & ~_G_DIRECT_RECLAIM)
            if got:
                return got, False
            if order > PAGE_ALLOC_COSTLY_ORDER or gfp & (_G_RETRY_MAYFAIL | _G_THISNODE) or high_zoneidx < ZONE_NORMAL:
                return 0, False
            progress = yield from oom.out_of_memory(task, gfp, order)
            if gfp & _G_NOFAIL:  # help a non-failing request with all the reserves
                progress = True
                got = attempt(ALLOC_NO_WATERMARKS)
            return got, progress
        finally:
            oom.lock_holder = None


def _ratelimit(state: list[Any], now: float, interval: float, burst: int) -> bool:
    """``__ratelimit`` (lib/ratelimit.c): a new window once ``interval`` has passed since
    the window began (``state[0]``), then at most ``burst`` True answers (``state[1]``)
    in it."""
    if state[0] is None or state[0] + interval < now:
        state[0], state[1] = now, 0
    if state[1] >= burst:
        return False
    state[1] += 1
    return True
