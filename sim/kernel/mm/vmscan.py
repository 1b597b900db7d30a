"""Page reclaim of Linux 5.3 (mm/vmscan.c): what is reclaimable, kswapd, direct reclaim.

* :class:`MemoryPools` (in :mod:`sim.kernel.mm.pools`, re-exported here): every
  allocated page is charged to one pool (clean, dirty and hot mapped file pages,
  anon, shmem, reclaimable slab; kernel stacks, page tables and unreclaimable
  slab are not reclaimable); reclaim isolates pages from it, cheapest first.
* :class:`Reclaimer`: one node's kswapd (a SimPy process: ``kswapd``,
  ``kswapd_try_to_sleep``, ``balance_pgdat``, ``wakeup_kswapd``) and direct
  reclaim (``try_to_free_pages`` with ``throttle_direct_reclaim``).  Reclaim is
  modelled by rates, not by LRU scanning: kswapd reclaims 32-page batches whose
  time is the sum of pages / rate of their pools, divided by its CPU share, and
  each of its passes takes no more than the kernel's scan count at the pass's
  priority allows (``get_scan_count``: list size >> priority); a direct reclaim
  call takes up to 32 pages after a latency that is an estimate shaped after
  bcc's tools/drsnoop_example.txt (commit 11bf5d02c895: 0.03-0.6 ms, outliers at
  multiples of the 100 ms sleep in ``shrink_inactive_list``), see
  :class:`sim.kernel.mm.zones.DirectReclaimLatency`.  Reclaimed hot mapped file
  pages fault back in after ``refault_delay_ms`` (thrashing).  Anon and shmem are reclaimable only with swap.

kswapd is a plain SimPy process, not a scheduler task: its CPU use is modelled by
its share 1 / (1 + tasks on the least busy CPU) and is not taken from the tasks.
The OOM killer is in :mod:`sim.kernel.mm.oom_kill` (split off to keep modules short).
The page allocator builds the :class:`Reclaimer` and is reached back only through
:class:`sim.kernel.mm.internal.ZoneOps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any, Final

import numpy as np

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.gfp import GFP_HIGHUSER_MOVABLE, Gfp
from sim.kernel.mm.internal import ZoneOps
from sim.kernel.mm.pools import ANON_POOLS, BOOST_ORDER, DIRECT_ORDER, KSWAPD_ORDER, POOL_LIST, MemoryPools
from sim.kernel.mm.watermarks import zone_watermark_ok_safe
from sim.kernel.mm.zones import (
    ALLOC_KSWAPD,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MIN,
    MAX_RECLAIM_RETRIES,
    SWAP_CLUSTER_MAX,
    WMARK_HIGH,
    WMARK_MIN,
    ZONE_NORMAL,
    MemoryParams,
)
from sim.kernel.profile import KernelProfile
from sim.kernel.sched.cpu import Scheduler
from sim.record.metrics import Metrics

__all__ = ["MemoryPools", "Reclaimer"]
REFAULT_GFP = int(GFP_HIGHUSER_MOVABLE & ~Gfp.DIRECT_RECLAIM)
DEF_PRIORITY: Final = 12  # mm/vmscan.c: a reclaim pass first scans 1/4096 of each list
DEFAULT_SEEKS: Final = 2  # include/linux/shrinker.h: the slab shrinkers' default cost
_FS: Final = Gfp.FS


class Reclaimer:
    """kswapd and direct reclaim of the machine's one node (``pg_data_t`` reclaim state)."""

    def __init__(
        self,
        env: eventloop.Environment,
        zone_ops: ZoneOps,
        pools: MemoryPools,
        profile: KernelProfile,
        params: MemoryParams,
        metrics: Metrics,
        rng: np.random.Generator,
        scheduler: Scheduler | None,
        ncpus: int,
    ) -> None:
        self.env = env
        self.zone_ops = zone_ops
        self.pools = pools
        self.profile = profile
        self.params = params
        self.metrics = metrics
        self.rng = rng  # the page allocator's stream (refault delays and CPUs, direct reclaim)
        self.scheduler = scheduler  # None: kswapd has a whole CPU and cpu_slowdown is 1
        self.ncpus = ncpus
        self.pools.swap_enabled = self.params.swap_bw_pages_s is not None
        rates = self.params.reclaim_rates
        swap = self.params.swap_bw_pages_s or 0.0
        self.rate = {
            "file_clean": rates.file_clean, "file_mapped_hot": rates.file_mapped, "slab_reclaimable": rates.slab,
            "file_dirty": rates.file_dirty, "anon": swap, "shmem": swap,
        }  # fmt: skip
        self.jiffy = 1.0 / self.params.hz
        # registered shrinkers that are not reclaimable slab pages (6.9's "vmap-node"), each
        # called with the priority of every reclaim pass (shrink_slab)
        self.shrinkers: list[Callable[[int], None]] = []
        self.kswapd_failures = 0
        self.kswapd_order = 0
        self.kswapd_classzone_idx: int | None = None  # None stands for MAX_NR_ZONES
        self.kswapd_sleeping = True  # on pgdat->kswapd_wait: asleep since boot
        self.kswapd_cpu = 0
        self._kswapd_wait: eventloop.Event | None = self.env.event()
        self._pfmemalloc_wait: eventloop.Event | None = None
        self.process = self.env.process(self.kswapd())

    # -- node state ----------------------------------------------------------------------

    def pgdat_balanced(self, order: int, classzone: int) -> bool:
        """``pgdat_balanced``: any eligible zone above its high mark (plus boost and reserve)."""
        seen = False
        for zone in self.zone_ops.zones:
            if zone.idx > classzone:
                break
            seen = True
            if zone_watermark_ok_safe(self.profile, zone, order, zone.wmark_pages(WMARK_HIGH), classzone):
                return True
        return not seen

    def pgdat_watermark_boosted(self, classzone: int) -> bool:
        return any(z.boost for z in self.zone_ops.zones if z.idx <= classzone)

    def allow_direct_reclaim(self) -> bool:
        """``allow_direct_reclaim``: free pages above half the summed min marks of the
        zones that have reclaimable pages; wakes kswapd when it is not."""
        if self.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return True
        reserve = free = 0
        for zone in self.zone_ops.zones:
            if self.pools.zone_reclaimable_pages(zone.idx):
                reserve += zone.wmark_pages(WMARK_MIN)
                free += max(zone.vm_free, 0)
        if not reserve:
            return True
        ok = free > reserve // 2
        if not ok and self.kswapd_sleeping:
            cz = self.kswapd_classzone_idx
            self.kswapd_classzone_idx = ZONE_NORMAL if cz is None else min(cz, ZONE_NORMAL)
            self._kick_kswapd()
        return ok

    def wake_pfmemalloc_waiters(self) -> None:
        """``wake_up_all(&pgdat->pfmemalloc_wait)``."""
        ev = self._pfmemalloc_wait
        if ev is not None:
            self._pfmemalloc_wait = None
            ev.succeed()

    # -- kswapd ---------------------------------------------------------------------------

    def wakeup_kswapd(self, order: int, classzone: int, gfp: int) -> None:
        """``wakeup_kswapd`` (5.3): record the request; wake kswapd only if it sleeps, the
        node is not hopeless, and it is unbalanced or boosted."""
        cz = self.kswapd_classzone_idx
        self.kswapd_classzone_idx = classzone if cz is None else max(cz, classzone)
        self.kswapd_order = max(self.kswapd_order, order)
        if not self.kswapd_sleeping or self.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return
        if self.pgdat_balanced(order, classzone) and not self.pgdat_watermark_boosted(classzone):
            return
        self._kick_kswapd()

    def _kick_kswapd(self) -> None:
        ev = self._kswapd_wait
        if ev is not None and not ev.triggered:
            ev.succeed()
            self.metrics.add("kswapd_wake")

    def _slowdown(self) -> float:
        """The scheduler's CPU-cost factor (``SchedParams.cpu_slowdown``)."""
        sched = self.scheduler
        return 1.0 if sched is None else sched.slowdown

    def kswapd_cpu_share(self) -> float:
        share = self.params.kswapd_cpu_share
        if share is not None:
            return share
        sched = self.scheduler
        return 1.0 if sched is None else 1.0 / (1 + sched.nr_running(self.kswapd_cpu))

    def kswapd(self) -> Generator[Any, Any, None]:
        """The ``kswapd`` thread loop (5.3): asleep since boot; when woken, ``balance_pgdat``,
        then try to sleep again."""
        yield from self._sleep_until_woken()
        classzone = ZONE_NORMAL
        while True:
            order = self.kswapd_order
            classzone = self._woken_classzone(classzone)
            self.kswapd_order = 0
            self.kswapd_classzone_idx = None
            yield from self.balance_pgdat(order, classzone)
            order = self.kswapd_order
            classzone = self._woken_classzone(classzone)
            yield from self.kswapd_try_to_sleep(order, classzone)

    def _woken_classzone(self, classzone: int) -> int:
        """The classzone a wake-up asked for, else ``classzone``.  A method, not an inline
        test: the attribute changes while kswapd sleeps, and the compiled build (mypyc)
        would trust a type narrowed before the ``yield``."""
        cz = self.kswapd_classzone_idx
        return classzone if cz is None else cz

    def prepare_kswapd_sleep(self, order: int, classzone: int) -> bool:
        """``prepare_kswapd_sleep``: release throttled reclaimers; sleep if balanced or hopeless."""
        self.wake_pfmemalloc_waiters()
        return self.kswapd_failures >= MAX_RECLAIM_RETRIES or self.pgdat_balanced(order, classzone)

    def kswapd_try_to_sleep(self, order: int, classzone: int) -> Generator[Any, Any, None]:
        """``kswapd_try_to_sleep``: nap HZ/10 if balanced, then sleep until woken (with the
        normal vmstat thresholds); a wake-up during the nap goes straight back to work."""
        env = self.env
        remaining = False
        if self.prepare_kswapd_sleep(order, classzone):
            self.kswapd_sleeping = True
            ev = self._kswapd_wait = env.event()
            yield ev | env.timeout((self.params.hz // 10) * self.jiffy)
            remaining = ev.triggered
            self._kswapd_wait = None
            self.kswapd_sleeping = False
            if remaining:  # woken early: the order it reclaimed for stays requested
                self.kswapd_order = max(self.kswapd_order, order)
        if not remaining and self.prepare_kswapd_sleep(order, classzone):
            self.zone_ops.set_pgdat_percpu_threshold(False)
            self.kswapd_sleeping = True
            self._kswapd_wait = env.event()
            yield from self._sleep_until_woken()
        else:
            self.metrics.add("kswapd_low_wmark_hit_quickly" if remaining else "kswapd_high_wmark_hit_quickly")

    def _sleep_until_woken(self) -> Generator[Any, Any, None]:
        """The full sleep (``schedule()``): woken, kswapd takes the pressure thresholds and
        runs on the least busy CPU (``select_task_rq``)."""
        assert self._kswapd_wait is not None
        yield self._kswapd_wait
        self._kswapd_wait = None
        self.kswapd_sleeping = False
        self.zone_ops.set_pgdat_percpu_threshold(True)
        sched = self.scheduler
        if sched is not None:
            self.kswapd_cpu = min(range(sched.ncpus), key=sched.nr_running)

    def balance_pgdat(self, order: int, classzone: int) -> Generator[Any, Any, int]:
        """``balance_pgdat`` (5.3): passes of up to Σ max(high, 32) pages, each within the
        scan count of its priority (:meth:`get_scan_count`), until one eligible zone is
        balanced.  Priority starts at DEF_PRIORITY and falls by one after a pass that
        scanned less than its target or reclaimed nothing; the run ends after priority 1.
        A boost is reclaimed from clean and mapped file pages only, at priorities no lower
        than DEF_PRIORITY - 2; its first pass that reclaims nothing ends the run, and the
        boost is dropped if the node is really unbalanced.  The boosts found at the start
        are taken off the zones at the end of every run.  A run that reclaims nothing is
        a kswapd failure; one that finds the node balanced at once costs
        ``kswapd_empty_pass_s``."""
        zone_ops = self.zone_ops
        self.metrics.add("pageoutrun")
        zones = [z for z in zone_ops.zones if z.idx <= classzone]
        zone_boosts = [z.boost for z in zones]
        nr_boost = sum(zone_boosts)
        limit_pcp = self.profile.pcp_high_reclaim_limit
        for z in zones:
            z.reclaim_active = limit_pcp
        nr_reclaimed = passes = 0
        balanced_out = restart = False
        while True:
            priority = DEF_PRIORITY
            while priority >= 1:
                balanced = self.pgdat_balanced(order, classzone)
                if not balanced and nr_boost:
                    nr_boost, restart = 0, True
                    break
                if not nr_boost and balanced:
                    balanced_out = True
                    break
                raise_priority = not (nr_boost and priority == DEF_PRIORITY - 2)
                target = sum(max(z.wmark_pages(WMARK_HIGH), SWAP_CLUSTER_MAX) for z in zones)
                budget = self.get_scan_count(priority, classzone, may_swap=not nr_boost)
                pools = BOOST_ORDER if nr_boost else KSWAPD_ORDER
                for shrinker in self.shrinkers:  # shrink_slab of this pass
                    shrinker(priority)
                got, scanned = yield from self.kswapd_shrink_node(target, pools, budget)
                passes += 1
                if scanned >= target:
                    raise_priority = False
                if self._pfmemalloc_wait is not None and self.allow_direct_reclaim():
                    self.wake_pfmemalloc_waiters()
                nr_reclaimed += got
                nr_boost -= min(nr_boost, got)
                if nr_boost and not got:
                    break
                if raise_priority or not got:
                    priority -= 1
            if not restart:
                break
            restart = False
        if not balanced_out and not nr_reclaimed:
            self.kswapd_failures += 1
            self.metrics.add("kswapd_failures")
            if self.kswapd_failures == MAX_RECLAIM_RETRIES:
                self.metrics.event("kswapd_hopeless", self.env.now, free=zone_ops.nr_free_pages())
        for z, b in zip(zones, zone_boosts):
            if b:
                z.set_boost(z.boost - min(z.boost, b), zone_ops.classzone)
            z.reclaim_active = False
        if not passes:  # balanced at once, e.g. woken by allow_direct_reclaim: without a cost,
            # kswapd and throttled tasks could wake each other forever at one instant
            yield self.env.timeout(self.params.kswapd_empty_pass_s)
        return order

    def get_scan_count(self, priority: int, classzone: int, may_swap: bool) -> dict[str, int]:
        """``get_scan_count`` (5.3), as kswapd meets it: the pages one pass may scan on each
        reclaim list (:data:`sim.kernel.mm.pools.POOL_LIST`), ``size >> priority`` of the
        list's pages in zones up to ``classzone``.  A list smaller than 2^priority is not
        scanned at that priority: the machine has one memcg, the root, which is online, so
        the scrape of an offline cgroup's last pages does not apply.

        The kernel counts the inactive and the active list each by its own size and
        reclaims (and counts as scanned) only from the inactive one; the model has one list
        per kind and may reclaim the whole list's ``size >> priority``: an upper bound, at
        most twice the kernel's on a machine below 1 GiB, where ``inactive_list_is_low``
        keeps the inactive list no smaller than the active one.
        The anon list is scanned only when the pass may swap (swap on, not a boosted run),
        else SCAN_FILE.  With swap both lists get their whole ``size >> priority``
        (SCAN_EQUAL's counts); SCAN_FRACT's split by swappiness and recent rotations and the
        cache-trap SCAN_ANON are not modelled, and the pools' cheapest-first order (file
        before anon) stands for them.  ``shrink_slab`` scans ``(freeable >> priority) * 4 /
        DEFAULT_SEEKS`` objects per shrinker (``do_shrink_slab``); the model takes that in
        pages of reclaimable slab, without the deferred work and the 128-object batches.
        Pages charged to child memcgs (not modelled) would be shifted per cgroup, which
        gives the kernel smaller counts still."""
        pools = self.pools
        anon = pools.list_size("anon", classzone) if may_swap and pools.swap_enabled else 0
        return {
            "file": pools.list_size("file", classzone) >> priority,
            "anon": anon >> priority,
            "slab": (pools.list_size("slab", classzone) >> priority) * 4 // DEFAULT_SEEKS,
        }

    def kswapd_shrink_node(
        self, target: int, order: tuple[str, ...], budget: dict[str, int]
    ) -> Generator[Any, Any, tuple[int, int]]:
        """One pass (``kswapd_shrink_node``, ``shrink_node``; 5.3): 32-page batches at the
        pools' rates scaled by kswapd's CPU share, until ``target`` pages are reclaimed,
        the pass's scan ``budget`` (:meth:`get_scan_count`, spent in place) is used up or
        nothing is left.  Returns the pages reclaimed and the LRU pages scanned
        (``sc->nr_scanned``: reclaimable slab is not counted).  Every page isolated is
        reclaimed: no referenced page rotates back."""
        got = scanned = 0
        while got < target:
            take = self.pools.isolate(min(SWAP_CLUSTER_MAX, target - got), order, budget)
            if not take:
                break
            scanned += sum(k for name, k in take if POOL_LIST[name] != "slab")
            cost = sum(k / self.rate[name] for name, k in take)
            yield self.env.timeout(cost * self._slowdown() / self.kswapd_cpu_share())
            freed = self.putback_reclaimed(self.kswapd_cpu, take)
            self.metrics.add("kswapd_reclaimed", freed)
            got += freed
        if got:
            self.kswapd_failures = 0
        else:
            yield self.env.timeout(self.params.kswapd_empty_pass_s)
        return got, scanned

    # -- reclaimed pages -------------------------------------------------------------------

    def putback_reclaimed(self, cpu: int, take: list[tuple[str, int]]) -> int:
        """Free isolated pages (``free_unref_page_list``); schedule refaults of hot pages."""
        zone_ops, pools = self.zone_ops, self.pools
        total = 0
        for name, k in take:
            p = pools.pool[name]
            k = min(k, p.isolated)
            p.isolated -= k
            if not k:
                continue
            if name == "anon":
                self._swap_out_anon(cpu, k)
            else:
                zone_ops.free_pages(cpu, pool=name, nr=k)
            if name in ANON_POOLS:
                pools.swap_used += k
                self.metrics.add("pswpout", k)
            elif name == "file_mapped_hot":
                self._schedule_refault(k)
            total += k
        return total

    def _swap_out_anon(self, cpu: int, k: int) -> None:
        """Anon pages written to swap: unowned memory first, then owners, largest first."""
        owned = sorted(self.pools.owners, key=lambda o: o.charged["anon"], reverse=True)
        unowned = self.pools.pool["anon"].pages - sum(o.charged["anon"] for o in owned)
        n = min(k, unowned)
        if n > 0:
            self.zone_ops.free_pages(cpu, pool="anon", nr=n)
            k -= n
        for owner in owned:
            n = min(k, owner.charged["anon"])
            if n <= 0:
                break
            self.zone_ops.free_pages(cpu, pool="anon", nr=n, owner=owner)
            owner.swap += n
            k -= n

    def _schedule_refault(self, n: int) -> None:
        """Hot file pages reclaimed now are touched again after ``refault_delay_ms``: the
        workload's own pace, so it stretches with the CPU (``cpu_slowdown``) too."""
        lo, hi = self.params.refault_delay_ms
        ev = self.env.timeout(self.rng.uniform(lo, hi) / 1000.0 * self._slowdown())
        assert ev.callbacks is not None  # a timeout just made: not processed yet
        ev.callbacks.append(lambda _ev: self._refault(n))

    def _refault(self, n: int) -> None:
        """Hot file pages fault back in: at the low mark (``__alloc_pages_nodemask``'s
        fast path), then, waking kswapd as the slow path does, down to min; the rest
        later.  (A real fault would reclaim directly; this stands for it without a task.)"""
        zone_ops = self.zone_ops
        zones, classzone, high = zone_ops.zonelist_for(REFAULT_GFP)
        cpu = int(self.rng.integers(self.ncpus))
        args = (zones, classzone, "file_mapped_hot", None)
        got = zone_ops.get_page_from_freelist(cpu, REFAULT_GFP, 0, ALLOC_WMARK_LOW | ALLOC_KSWAPD, *args, n)
        if got < n:
            self.wakeup_kswapd(0, high, REFAULT_GFP)
            got += zone_ops.get_page_from_freelist(cpu, REFAULT_GFP, 0, ALLOC_WMARK_MIN | ALLOC_KSWAPD, *args, n - got)
        self.metrics.add("workingset_refault", got)
        if got < n:
            self._schedule_refault(n - got)

    # -- direct reclaim ----------------------------------------------------------------------

    def throttle_direct_reclaim(self, task: Any, gfp: int) -> Generator[Any, Any, bool]:
        """``throttle_direct_reclaim`` (5.3): a user task waits, killably, until kswapd lifts
        free pages above half the summed min marks (at most 1 s without __GFP_FS).
        Returns True if the task was killed meanwhile."""
        if getattr(task, "kthread", False) or getattr(task, "killed", False) or self.allow_direct_reclaim():
            return False
        self.metrics.add("pgscan_direct_throttle")
        sched, env = self.scheduler, self.env
        start = env.now
        deadline = start + self.params.hz * self.jiffy if not gfp & _FS else math.inf
        while not task.killed and env.now < deadline and not self.allow_direct_reclaim():
            if self._pfmemalloc_wait is None:
                self._pfmemalloc_wait = env.event()
            timeout = None if deadline == math.inf else deadline - env.now
            yield from sched.wait_event(task, self._pfmemalloc_wait, "throttle_direct_reclaim", timeout=timeout)
        self.metrics.add_time("throttle_direct_reclaim", env.now - start)
        return bool(task.killed)

    def try_to_free_pages(self, task: Any, gfp: int, order: int) -> Generator[Any, Any, int]:
        """``try_to_free_pages``: after throttling, one direct reclaim of up to 32 pages
        that costs CPU time (lognormal) or, with probability p_stall, a 100 ms x k stall."""
        if (yield from self.throttle_direct_reclaim(task, gfp)):
            return 1
        env, rng, lat = self.env, self.rng, self.params.direct_reclaim_latency
        sched = self.scheduler
        self.metrics.add("allocstall")
        start = env.now
        reclaimable = self.pools.reclaimable(DIRECT_ORDER)
        take = self.pools.isolate(SWAP_CLUSTER_MAX, DIRECT_ORDER)
        for shrinker in self.shrinkers:  # shrink_slab of the first pass, at DEF_PRIORITY
            shrinker(DEF_PRIORITY)
        knee = lat.stall_knee_high * sum(z.wmark_pages(WMARK_HIGH) for z in self.zone_ops.zones)
        # stalls come from isolating pages (too_many_isolated, congestion): none on empty LRUs
        p_stall = lat.p_stall_max * min(1.0, max(0.0, 1.0 - reclaimable / knee)) if knee and reclaimable else 0.0
        if rng.random() < p_stall:
            self.metrics.add("direct_reclaim_stall")
            k = int(rng.integers(1, lat.stall_k_max + 1))
            yield from sched.sleep(task, k * lat.stall_ms / 1000.0, "direct_reclaim")
        else:
            yield from sched.run(task, rng.lognormal(math.log(lat.median_ms / 1000.0), lat.sigma))
        got = self.putback_reclaimed(task.cpu, take)
        if got:
            self.kswapd_failures = 0
            self.metrics.add("direct_reclaimed", got)
        self.metrics.add_time("direct_reclaim", env.now - start)
        if not got and self.profile.reclaim_throttle:  # 5.16: VMSCAN_THROTTLE_NOPROGRESS
            yield from sched.sleep(task, self.jiffy, "reclaim_throttle")
        return got
