"""kswapd, direct reclaim, refaults, swap and the OOM killer (pressure.md sections 3, 8.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.kernel.mm.gfp import GFP_KERNEL, GFP_NOWAIT, Gfp
from sim.kernel.mm.oom_kill import KernelPanic, MemoryOwner
from sim.kernel.mm.zones import ALLOC_CPUSET, ALLOC_WMARK_HIGH, OomKillLatency
from tests.test_page_alloc import make, nowait, run_task, set_free, zone


class Busy:
    """A stand-in scheduler that only answers nr_running (for kswapd's CPU share)."""

    ncpus = 4
    slowdown = 1.0

    def __init__(self, nr: int) -> None:
        self.nr = nr

    def nr_running(self, cpu: int) -> int:
        return self.nr


def trace_reclaim(env, metrics, step=2.5e-4):
    """(time, kswapd_reclaimed) every ``step`` seconds."""
    log = []

    def monitor():
        while True:
            log.append((env.now, metrics.counters["kswapd_reclaimed"]))
            yield env.timeout(step)

    env.process(monitor())
    return log


def low_machine(**params):
    """256 MB with 20k clean file pages and DMA32 empty: any allocation wakes kswapd."""
    env, pa, metrics = make(**params)
    pa.populate("file_clean", 20000, zone="DMA32")
    set_free(pa, DMA32=0, DMA=240)
    return env, pa, metrics


def pass_totals(file_pages, target):
    """Pages reclaimed after each of a run's passes on one file list: min(target, size >> priority)
    from DEF_PRIORITY down, priority falling after each pass that scans less than the target."""
    totals, total, priority = [], 0, 12
    while priority >= 1:
        n = min(target, file_pages >> priority)
        file_pages -= n
        total += n
        totals.append(total)
        if n < target:
            priority -= 1
        if len(totals) > 1000:
            break
    return totals


def record_passes(pa):
    """(priority, file list size, slab size, reclaimed, scanned, target) of each kswapd pass."""
    r, passes, seen = pa.reclaim, [], {}
    get_scan_count, shrink = r.get_scan_count, r.kswapd_shrink_node

    def spy_count(priority, classzone, may_swap):
        seen.update(priority=priority, file=pa.pools.list_size("file", classzone))
        seen.update(slab=pa.pools.list_size("slab", classzone))
        return get_scan_count(priority, classzone, may_swap)

    def spy_shrink(target, order, budget):
        got, scanned = yield from shrink(target, order, budget)
        passes.append((seen["priority"], seen["file"], seen["slab"], got, scanned, target))
        return got, scanned

    r.get_scan_count, r.kswapd_shrink_node = spy_count, spy_shrink
    return passes


# --- kswapd ---------------------------------------------------------------------------------------


def test_kswapd_wakes_below_low_and_restores_high_at_the_clean_file_rate():
    env, pa, metrics = low_machine()
    log = trace_reclaim(env, metrics)
    assert not nowait(pa) and metrics.counters["kswapd_wake"] == 1
    env.run(until=0.002)
    assert abs(metrics.counters["kswapd_reclaimed"] - 2e5 * 0.002) <= 2 * 32 + 1  # 2e5 pages/s at a full CPU
    env.run(until=0.5)
    z = zone(pa, "DMA32")
    reclaimed = metrics.counters["kswapd_reclaimed"]
    done = next(t for t, r in log if r == reclaimed)
    assert z.vm_free > z.wmark[2] and pa.reclaim.kswapd_sleeping and pa.reclaim.kswapd_failures == 0
    assert reclaimed in pass_totals(20000, 49 + 667)  # whole passes, each within its priority's scan
    assert done == pytest.approx(reclaimed / 2e5, abs=3e-4)
    assert pa.pools.pool["file_clean"].pages == 20000 - reclaimed


@pytest.mark.spies_on_methods
def test_kswapd_reclaims_at_its_share_of_a_busy_cpu():
    env, pa, metrics = low_machine()
    pa.reclaim.scheduler = Busy(3)  # three tasks on kswapd's CPU: a quarter of it
    nowait(pa)
    env.run(until=0.004)
    assert abs(metrics.counters["kswapd_reclaimed"] - 2e5 / 4 * 0.004) <= 2 * 32 + 1


def test_kswapd_gives_up_after_sixteen_runs_without_progress():
    env, pa, metrics = make()
    set_free(pa, DMA32=0, DMA=240)  # anon only, no swap
    nowait(pa)
    env.run(until=1.0)
    r = pa.reclaim
    assert r.kswapd_failures == 16 and r.kswapd_sleeping
    assert metrics.counters["kswapd_reclaimed"] == 0 and len(metrics.events_of("kswapd_hopeless")) == 1
    wakes = metrics.counters["kswapd_wake"]
    nowait(pa)
    env.run(until=2.0)
    assert metrics.counters["kswapd_wake"] == wakes and metrics.counters["pageoutrun"] == 16  # hopeless node


def test_boosted_reclaim_pays_the_boost_back_from_clean_file_pages_only():
    env, pa, metrics = make()
    pa.populate("file_clean", 5000, zone="DMA32")
    pa.populate("slab_reclaimable", 5000, zone="DMA32")
    set_free(pa, DMA32=2000, DMA=300)  # balanced even with the boost
    z = zone(pa, "DMA32")
    pa.boost_watermark(z, True)
    pa.boost_watermark(z, True)
    assert z.boost == 1000
    pa.reclaim.wakeup_kswapd(0, 2, GFP_NOWAIT)  # as rmqueue does for a boosted zone
    env.run(until=0.5)
    assert z.boost == 0 and metrics.counters["kswapd_reclaimed"] >= 1000
    assert pa.pools.pool["slab_reclaimable"].pages == 5000
    assert pa.pools.pool["file_clean"].pages == 5000 - metrics.counters["kswapd_reclaimed"]


@pytest.mark.spies_on_methods  # replaces Reclaimer.get_scan_count on the object
def test_a_boosted_run_on_a_file_lru_below_4096_pages_reclaims_nothing_and_drops_the_boost_at_once():
    # 5.3's get_scan_count gives a list of fewer than 2^DEF_PRIORITY pages no scan at
    # DEF_PRIORITY; a boosted run that reclaims nothing in a pass stops there, and drops
    # the boosts it started with.
    env, pa, metrics = make()
    pa.populate("file_clean", 3000, zone="DMA32")
    set_free(pa, DMA32=2000, DMA=300)  # balanced even with the boost
    z = zone(pa, "DMA32")
    pa.boost_watermark(z, True)
    pa.boost_watermark(z, True)
    passes = record_passes(pa)
    pa.reclaim.wakeup_kswapd(0, 2, GFP_NOWAIT)
    env.run(until=pa.params.kswapd_empty_pass_s * 1.5)  # one empty pass
    assert z.boost == 0 and metrics.counters["kswapd_reclaimed"] == 0
    assert [(p[0], p[3]) for p in passes] == [(12, 0)] and metrics.counters["pageoutrun"] == 1
    assert pa.pools.pool["file_clean"].pages == 3000
    assert pa.reclaim.kswapd_failures == 1  # a run that reclaimed nothing, as balance_pgdat counts it


@pytest.mark.spies_on_methods  # replaces Reclaimer.get_scan_count on the object
def test_a_kswapd_pass_at_priority_p_isolates_no_more_than_each_list_shifted_by_p():
    env, pa, metrics = make()
    for pool, n in (("file_clean", 20000), ("file_mapped_hot", 2000), ("slab_reclaimable", 1500)):
        pa.populate(pool, n, zone="DMA32")
    set_free(pa, DMA32=0, DMA=240)
    passes = record_passes(pa)
    nowait(pa)
    env.run(until=0.5)
    assert passes and passes[0][0] == 12
    for priority, file, slab, got, scanned, target in passes:
        assert scanned <= file >> priority  # shrink_slab's pages are not LRU scans
        assert got <= min(target, (file >> priority) + (slab >> priority) * 4 // 2)
    limited = [p for p in passes if p[3] < p[5]]
    assert limited and [p[0] for p in passes[: len(limited)]] == list(range(12, 12 - len(limited), -1))


@pytest.mark.spies_on_methods  # replaces Reclaimer.get_scan_count on the object
def test_an_unbalanced_node_with_a_small_file_lru_is_balanced_as_kswapd_lowers_its_priority():
    env, pa, metrics = make()
    pa.populate("file_clean", 3000, zone="DMA32")  # nothing to scan at DEF_PRIORITY
    set_free(pa, DMA32=0, DMA=240)
    passes = record_passes(pa)
    nowait(pa)
    env.run(until=0.5)
    z = zone(pa, "DMA32")
    assert z.vm_free > z.wmark[2] and pa.reclaim.kswapd_sleeping and pa.reclaim.kswapd_failures == 0
    assert passes[0][:4] == (12, 3000, 0, 0) and passes[-1][0] <= 3  # 3000 >> 3 < 716 pages a pass
    assert metrics.counters["pageoutrun"] == 1


def test_reclaimed_hot_mapped_pages_fault_back_in_after_the_refault_delay():
    env, pa, metrics = make()
    pa.populate("file_mapped_hot", 3000, zone="DMA32")
    set_free(pa, DMA32=0, DMA=240)
    nowait(pa)
    env.run(until=0.004)  # 2e4 pages/s: about 80 pages, none back yet
    hot = pa.pools.pool["file_mapped_hot"].pages
    assert hot < 3000 and metrics.counters["workingset_refault"] == 0
    env.run(until=0.2)
    assert metrics.counters["workingset_refault"] > 0


def test_swap_makes_anon_reclaimable_at_the_swap_bandwidth():
    env, pa, metrics = make(swap_bw_pages_s=1e4)
    owner = MemoryOwner("p")
    set_free(pa, owner=owner, DMA32=0, DMA=240)
    nowait(pa)
    env.run(until=0.01)
    assert abs(metrics.counters["kswapd_reclaimed"] - 100) <= 2 * 32 + 1
    assert owner.swap == metrics.counters["pswpout"] == metrics.counters["kswapd_reclaimed"]
    assert owner.charged["anon"] + owner.swap == zone(pa, "DMA32").managed + 3977 - 240


# --- direct reclaim -----------------------------------------------------------------------------------


def reclaim_durations(pa, env, n, refill=None):
    def body(task):
        out = []
        for _ in range(n):
            if refill:
                refill()
            start = env.now
            yield from pa.reclaim.try_to_free_pages(task, GFP_KERNEL, 0)
            out.append(env.now - start)
        return out

    return run_task(env, pa, body, until=1e4)[1]["value"]


def test_direct_reclaim_costs_sub_millisecond_cpu_time_with_plenty_of_cache():
    env, pa, metrics = make(sched=True)
    pa.populate("file_clean", 40000)
    durations = reclaim_durations(pa, env, 400)
    assert 0.15e-3 < float(np.median(durations)) < 0.27e-3 and max(durations) < 0.05
    assert metrics.counters["direct_reclaimed"] == 400 * 32 and metrics.counters["direct_reclaim_stall"] == 0


def test_direct_reclaim_stalls_in_100ms_steps_when_the_lru_is_nearly_empty():
    env, pa, metrics = make(sched=True)
    pool = pa.pools.pool["file_clean"]
    durations = reclaim_durations(pa, env, 300, refill=lambda: pa.populate("file_clean", 500 - pool.pages))
    stalls = [d for d in durations if d >= 0.1]
    p_stall = 0.2 * (1 - 500 / (4 * (49 + 667)))
    assert abs(len(stalls) - 300 * p_stall) < 4 * math.sqrt(300 * p_stall)
    assert {round(d, 6) for d in stalls} <= {0.1, 0.2, 0.3}


@pytest.mark.spies_on_methods
def test_user_tasks_are_throttled_until_kswapd_restores_half_of_min_but_kthreads_are_not():
    for kthread in (False, True):
        env, pa, metrics = make(sched=True)
        pa.populate("file_clean", 20000, zone="DMA32")
        set_free(pa, DMA32=100, DMA=200)  # 100 <= 445 / 2 in the zone that has file pages

        released = []
        throttle = pa.reclaim.throttle_direct_reclaim

        def spy(task, gfp, throttle=throttle, pa=pa, released=released):
            killed = yield from throttle(task, gfp)
            z = zone(pa, "DMA32")  # the only zone with file pages
            released.append(z.vm_free > z.wmark[0] // 2)
            return killed

        pa.reclaim.throttle_direct_reclaim = spy

        def body(task, pa=pa):
            return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

        task, out = run_task(env, pa, body, kthread=kthread, until=1.0)
        assert out["value"]
        assert metrics.counters["pgscan_direct_throttle"] == (0 if kthread else 1)
        assert (metrics.seconds["throttle_direct_reclaim"] > 0) is not kthread
        assert released[0] is not kthread  # a user task leaves only above half of min


def test_reclaim_progress_resets_kswapd_failures():
    env, pa, metrics = make(sched=True)
    set_free(pa, DMA32=0, DMA=240)
    nowait(pa)
    env.run(until=0.5)
    assert pa.reclaim.kswapd_failures == 16
    pa.populate("file_clean", 100, zone="DMA")
    reclaim_durations(pa, env, 1)
    assert pa.reclaim.kswapd_failures == 0


# --- OOM ------------------------------------------------------------------------------------------------


def test_the_oom_killer_picks_the_highest_badness():
    env, pa, metrics = make()
    small, big, immune = MemoryOwner("small"), MemoryOwner("big"), MemoryOwner("immune", oom_score_adj=-1000)
    pa.populate("anon", 1000, owner=small)
    pa.populate("anon", 5000, owner=big)
    pa.populate("anon", 9000, owner=immune)
    assert pa.oom.select_bad_process() is big
    small.oom_score_adj = 1000  # stress-ng workers make themselves the preferred victims
    assert pa.oom.select_bad_process() is small
    total = sum(z.managed for z in pa.zones)  # 57,577 pages: adj counts 57 pages per point
    assert small.badness(total) == 1000 + 1000 * (total // 1000)  # integer, as oom_badness


def test_oom_kill_latency_has_the_configured_median_and_95th_percentile():
    lat = OomKillLatency()
    draws = np.random.default_rng(3).lognormal(math.log(lat.median_ms), lat.sigma, 20000)
    assert np.percentile(draws, 50) == pytest.approx(5, rel=0.05)
    assert np.percentile(draws, 95) == pytest.approx(100, rel=0.1)


def test_oom_kill_marks_the_victim_tasks_and_frees_its_memory_when_the_kill_completes():
    env, pa, metrics = make(sched=True, seed=5)
    killed = []
    hog = MemoryOwner("hog", on_kill=killed.append)
    me = MemoryOwner("me")
    pa.populate("pagetables", 500, owner=hog)
    pa.populate("kernel_stack", 40, owner=hog)
    set_free(pa, owner=hog, DMA32=300, DMA=200)

    def sleeper(task):
        hog.tasks.append(task)
        yield from pa.scheduler.sleep(task, 10.0, "pause")

    hog_task = pa.scheduler.spawn("hog", sleeper, cpu=1)

    def body(task):
        task.owner = me
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon", owner=me))

    task, out = run_task(env, pa, body)
    kill, reaped = metrics.events_of("oom_kill")[0], metrics.events_of("oom_reaped")[0]
    assert out["value"] and killed == [hog] and hog_task.oom_victim and hog_task.killed
    assert reaped["pages"] == kill["anon"] + 500 + 40 and hog.pages == 0
    assert out["end"] >= reaped["time"] > kill["time"]


@pytest.mark.spies_on_methods
def test_oom_lock_contenders_sleep_a_jiffy_and_one_victim_is_killed_at_a_time():
    env, pa, metrics = make(sched=True, oom_report_ms=5.0)
    a, b = MemoryOwner("a"), MemoryOwner("b")
    pa.populate("anon", 20000, owner=a)
    set_free(pa, owner=b, DMA32=300, DMA=200)
    done = []

    def body(task):
        ok = yield from pa.alloc_pages(task, GFP_KERNEL, pool="slab_unreclaimable")
        done.append(ok)

    naps = []
    sleep = pa.scheduler.sleep

    def spy(task, seconds, site):
        if site == "oom_lock":
            naps.append(seconds)
        yield from sleep(task, seconds, site)

    pa.scheduler.sleep = spy
    for cpu in range(3):
        pa.scheduler.spawn(f"t{cpu}", body, cpu=cpu)
    env.run(until=5.0)
    assert done == [True, True, True]
    assert metrics.counters["oom_lock_contended"] >= 1 and metrics.counters["oom_kill"] == 1
    assert len(naps) == metrics.counters["oom_lock_contended"] and set(naps) == {1 / 250}


@pytest.mark.spies_on_methods
def test_the_last_attempt_before_the_oom_killer_is_at_the_high_mark_without_direct_reclaim():
    env, pa, metrics = make(sched=True)
    hog = MemoryOwner("hog")
    set_free(pa, owner=hog, DMA32=300, DMA=200)
    calls = []
    get_page = pa.get_page_from_freelist
    out_of_memory = pa.oom.out_of_memory

    def spy_get(cpu, gfp, order, flags, *args):
        calls.append((gfp, flags))
        return get_page(cpu, gfp, order, flags, *args)

    def spy_oom(task, gfp, order):
        calls.append(("oom", pa.oom.lock_holder is task))
        return (yield from out_of_memory(task, gfp, order))

    pa.get_page_from_freelist = spy_get
    pa.oom.out_of_memory = spy_oom

    def body(task):
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

    task, out = run_task(env, pa, body)
    at = calls.index(("oom", True))  # under oom_lock
    gfp, flags = calls[at - 1]
    assert out["value"] and flags == ALLOC_WMARK_HIGH | ALLOC_CPUSET
    assert gfp == (int(GFP_KERNEL) | int(Gfp.HARDWALL)) & ~int(Gfp.DIRECT_RECLAIM)


def test_no_killable_process_panics():
    env, pa, metrics = make(sched=True)
    set_free(pa, DMA32=300, DMA=200)  # anon without an owner

    def body(task):
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

    pa.scheduler.spawn("t", body)
    with pytest.raises(KernelPanic):
        env.run(until=5.0)
    assert metrics.events_of("oom_panic")


# --- fixes: livelock, refaults, exits, reaped owners ------------------------------------------------------


def test_a_kswapd_run_on_a_balanced_node_costs_time_so_throttled_tasks_cannot_livelock():
    # DMA32 (no file pages) is above high + reserve, so the node is balanced; Normal, the
    # only zone with reclaimable pages, is at <= half its min, so direct reclaim throttles.
    env, pa, metrics = make(sched=True, zones=(("DMA", 3977), ("DMA32", 50000), ("Normal", 30000)))
    pa.populate("file_clean", 20000, zone="Normal")
    set_free(pa, Normal=100, DMA32=10000, DMA=0)

    def body(task):
        return (yield from pa.reclaim.try_to_free_pages(task, GFP_KERNEL, 0))

    pa.scheduler.spawn("t", body)
    for _ in range(20000):  # kswapd and the throttled task wake each other
        if env.peek() > 0.05:
            break
        env.step()
    assert env.now > 0.04  # without a cost per kswapd run, simulated time never advanced
    assert metrics.counters["pgscan_direct_throttle"] == 1 and metrics.counters["kswapd_low_wmark_hit_quickly"] > 10


def test_nothing_wakes_kswapd_between_low_and_high_not_even_refaults():
    env, pa, metrics = make()
    set_free(pa, DMA32=650, DMA=0)  # low 556 < 650 <= high 667
    env.run(until=0.001)
    assert nowait(pa)
    pa.reclaim._refault(20)  # hot file pages faulting back in: the fault's fast path suffices
    env.run(until=0.01)
    assert metrics.counters["workingset_refault"] == 20
    assert metrics.counters["kswapd_wake"] == 0 and pa.reclaim.kswapd_sleeping
    set_free(pa, DMA32=500)  # below low: the refault's slow path wakes kswapd
    pa.reclaim._refault(1)
    assert metrics.counters["kswapd_wake"] == 1


def test_an_exited_process_frees_its_swap_entries_and_is_no_oom_candidate():
    env, pa, metrics = make(sched=True, swap_bw_pages_s=1e5)
    hog, other = MemoryOwner("hog"), MemoryOwner("other")
    pa.populate("anon", 100, owner=other)  # swap takes the largest owner first: the hog

    def body(task):
        got = yield from pa.alloc_pages_bulk(task, GFP_KERNEL, 5000, pool="anon", owner=hog)
        yield from pa.scheduler.sleep(task, 0.5, "hold")  # kswapd swaps part of it out
        pa.free_pages(task.cpu, pool="anon", nr=hog.charged["anon"], owner=hog)
        return got

    task = pa.scheduler.spawn("hog", body)
    hog.tasks.append(task)
    set_free(pa, pool="slab_unreclaimable", DMA32=5300, DMA=240)
    env.run(until=0.4)
    assert hog.swap > 0 and pa.pools.swap_used == hog.swap
    env.run(until=1.0)
    assert task.state == "dead" and hog.swap == 0 and pa.pools.swap_used == 0
    assert hog not in pa.pools.owners and pa.oom.select_bad_process() is other


def test_pages_of_a_reaped_owner_are_not_freed_twice():
    env, pa, metrics = make(sched=True)
    hog, me = MemoryOwner("hog"), MemoryOwner("me")
    pa.populate("kernel_stack", 40, owner=hog)  # e.g. a vmalloc'ed stack charged to the process
    set_free(pa, owner=hog, DMA32=300, DMA=200)

    def body(task):
        task.owner = me
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon", owner=me))

    task, out = run_task(env, pa, body)
    assert out["value"] and hog.reaped and hog.pages == 0
    free = [(z.nr_free, z.vm_free, list(z.pcp_count)) for z in pa.zones]
    pa.free_pages(0, pool="kernel_stack", nr=40, owner=hog)  # vfree of the stack after the reap
    assert [(z.nr_free, z.vm_free, list(z.pcp_count)) for z in pa.zones] == free
    with pytest.raises(ValueError):
        pa.free_pages(0, pool="anon", nr=2, owner=me)  # a live owner still may not over-free
