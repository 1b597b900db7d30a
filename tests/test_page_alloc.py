"""Zones, watermarks and the GFP classes of the page allocator (pressure.md sections 1-2, 5)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.freelists import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from sim.kernel.mm.gfp import GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, Gfp
from sim.kernel.mm.internal import AllocContext
from sim.kernel.mm.oom_kill import MemoryOwner
from sim.kernel.mm.page_alloc import PageAllocator
from sim.kernel.mm.zones import GIB, MIB, MemoryParams, build_zones
from sim.kernel.profile import get_profile
from sim.kernel.sched.cpu import Scheduler
from sim.record.metrics import Metrics


def make(ram=256 * MIB, kernel="5.2", ncpus=4, thp=False, sched=False, seed=1, **params):
    """A machine with one PageAllocator; drift off unless asked for."""
    params.setdefault("vmstat_drift", False)
    env = eventloop.Environment()
    metrics = Metrics()
    profile = get_profile(kernel)
    mp = MemoryParams(**params)
    scheduler = Scheduler(env, ncpus, np.random.default_rng(seed + 100), "none", metrics=metrics) if sched else None
    pa = PageAllocator(
        env, build_zones(ram, ncpus, thp, profile, mp), profile, mp,
        rng=np.random.default_rng(seed), metrics=metrics, scheduler=scheduler,
    )  # fmt: skip
    return env, pa, metrics


def zone(pa, name):
    return next(z for z in pa.zones if z.name == name)


def set_free(pa, pool="anon", owner=None, **free):
    """Fill zones with ``pool`` pages so that each named zone has exactly that many free."""
    for name, n in free.items():
        z = zone(pa, name)
        pa.populate(pool, z.nr_free - n, zone=name, owner=owner)
        assert z.nr_free == z.vm_free == n


def nowait(pa, cpu=0, gfp=GFP_NOWAIT, pool="slab_unreclaimable", task=None):
    return pa.alloc_pages_nowait(cpu, gfp, pool=pool, task=task)


# --- boot-time tables: pressure.md 2.2 ------------------------------------------------------

# RAM: (min_free_kbytes, {zone: (min, low, high)}, {zone: lowmem_reserve seen by GFP_KERNEL}, {zone: max boost})
SQRT_TABLES = {
    256 * MIB: (1919, {"DMA32": (445, 556, 667), "DMA": (33, 41, 49)}, {"DMA": 209}, {"DMA32": 1000, "DMA": 512}),
    1 * GIB: (4013, {"DMA32": (987, 1234, 1481), "DMA": (15, 18, 21)}, {"DMA": 967}, {"DMA32": 2221}),
    4 * GIB: (
        8162,
        {"Normal": (499, 754, 1009), "DMA32": (1532, 2314, 3096), "DMA": (7, 10, 13)},
        {"DMA32": 996, "DMA": 4050},
        {"Normal": 1513, "DMA32": 4644},
    ),
    16 * GIB: (
        16151,
        {"Normal": (3258, 6548, 9838), "DMA32": (774, 1556, 2338)},
        {"DMA32": 12851, "DMA": 15906},
        {"Normal": 14757},
    ),
}
THP_TABLES = {
    1 * GIB: (45056, {"DMA32": (11086, 13857, 16628)}),
    4 * GIB: (67584, {"DMA32": (12692, 15865, 19038), "Normal": (4138, 5172, 6206)}),
    16 * GIB: (67584, {"Normal": (13637, 17046, 20455)}),
}


def close(got, want):
    return abs(got - want) <= 0.01 * want


@pytest.mark.parametrize("ram", list(SQRT_TABLES), ids=lambda r: f"{r >> 20}MiB")
def test_sqrt_rule_tables_match_pressure_md_within_one_percent(ram):
    kb, marks, reserves, boosts = SQRT_TABLES[ram]
    table = build_zones(ram, 4, False, get_profile("5.2"))
    zones = {z.name: z for z in table.zones}
    top = table.zones[-1].idx  # GFP_KERNEL's classzone
    assert close(table.min_free_kbytes, kb)
    for name, (wmin, low, high) in marks.items():
        z = zones[name]
        assert close(z.min, wmin) and close(z.low, low) and close(z.high, high), (name, z)
    for name, reserve in reserves.items():
        assert close(zones[name].lowmem_reserve[top], reserve), name
    for name, boost in boosts.items():
        assert close(zones[name].max_boost, boost), name


@pytest.mark.parametrize("ram", list(THP_TABLES), ids=lambda r: f"{r >> 20}MiB")
def test_thp_rule_tables_match_pressure_md_within_one_percent(ram):
    kb, marks = THP_TABLES[ram]
    table = build_zones(ram, 4, True, get_profile("5.2"))
    zones = {z.name: z for z in table.zones}
    assert table.thp_enabled and table.min_free_kbytes == kb
    for name, (wmin, low, high) in marks.items():
        z = zones[name]
        assert close(z.min, wmin) and close(z.low, low) and close(z.high, high), (name, z)


def test_managed_pages_model_reproduces_the_assumed_zone_sizes():
    sizes = {256 * MIB: 57.6e3, 1 * GIB: 251.7e3, 4 * GIB: 1.04e6, 16 * GIB: 4.08e6}
    for ram, managed in sizes.items():
        table = build_zones(ram, 4, False, get_profile("5.2"))
        assert abs(table.managed - managed) <= 0.005 * managed
        assert table.zones[0].name == "DMA" and table.zones[0].managed == 3977
    assert [z.name for z in build_zones(4 * GIB, 4, False, get_profile("5.2")).zones] == ["DMA", "DMA32", "Normal"]
    assert [z.name for z in build_zones(3 * GIB, 4, False, get_profile("5.2")).zones] == ["DMA", "DMA32"]


def test_thp_is_off_below_512mb_of_managed_memory_as_hugepage_init_decides():
    for ram in (256 * MIB, 512 * MIB):  # a 512 MiB guest manages less than 512 MiB
        table = build_zones(ram, 4, True, get_profile("5.2"))
        assert not table.thp_enabled and table.min_free_kbytes == table.sqrt_min_free_kbytes
    assert build_zones(640 * MIB, 4, True, get_profile("5.2")).thp_enabled


def test_explicit_zone_sizes_override_the_model():
    params = MemoryParams(zones=(("DMA", 3977), ("DMA32", 53600)))
    table = build_zones(300 * MIB, 4, False, get_profile("5.2"), params)
    assert [(z.name, z.managed, z.min, z.low, z.high) for z in table.zones] == [
        ("DMA", 3977, 33, 41, 49),
        ("DMA32", 53600, 445, 556, 667),
    ]
    with pytest.raises(ValueError):
        build_zones(300 * MIB, 4, False, get_profile("5.2"), MemoryParams(zones=(("DMA32", 10), ("DMA", 5))))


def test_pcp_sizes_and_vmstat_thresholds_follow_the_kernel_formulas():
    small = {z.name: z for z in build_zones(256 * MIB, 4, False, get_profile("5.2")).zones}
    assert (small["DMA32"].pcp_batch, small["DMA32"].pcp_high) == (15, 90)
    assert (small["DMA"].pcp_batch, small["DMA"].pcp_high) == (1, 0)
    assert small["DMA32"].stat_threshold == 12 and small["DMA32"].pressure_threshold == 27
    assert small["DMA32"].percpu_drift_mark == 0  # 4 x 12 < low - min: no pressure threshold
    big = build_zones(4 * GIB, 4, False, get_profile("5.2")).zones[-1]
    assert (big.pcp_batch, big.pcp_high) == (63, 378)
    many = {z.name: z for z in build_zones(256 * MIB, 16, False, get_profile("5.2")).zones}
    assert many["DMA32"].stat_threshold == 20 and many["DMA32"].percpu_drift_mark == 667 + 16 * 20


# --- GFP_NOWAIT ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dma32", "dma", "ok"),
    [(446, 242, True), (445, 242, False), (445, 243, True), (300, 100, False), (557, 0, True)],
)
def test_gfp_nowait_fails_exactly_at_or_below_min_plus_reserve(dma32, dma, ok):
    env, pa, metrics = make()
    set_free(pa, DMA32=dma32, DMA=dma)
    assert nowait(pa) is ok
    assert metrics.counters["alloc_fail"] == (0 if ok else 1)


def test_gfp_nowait_never_sleeps_and_its_fast_path_schedules_no_events():
    env, pa, metrics = make()
    set_free(pa, DMA32=20000)
    scheduled = env._eid  # the event loop's count of events ever scheduled
    for _ in range(1000):
        assert nowait(pa) is True
    assert env._eid == scheduled and env.now == 0
    set_free(pa, DMA32=300, DMA=0)
    result = nowait(pa)
    assert result is False and env.now == 0  # a plain bool, not a generator


def test_pages_on_the_pcp_lists_are_not_free_and_do_not_rescue_gfp_nowait():
    env, pa, metrics = make()
    set_free(pa, DMA32=446, DMA=242)
    assert nowait(pa)  # takes a batch of 15 to the CPU's list: the counter drops to 431
    z = zone(pa, "DMA32")
    assert z.pcp_count[0] == 14 and z.vm_free == 431
    assert not nowait(pa)  # 14 pages sit on this CPU's list, yet the zone is below min
    assert metrics.counters["warn_alloc"] == 1


def test_fast_path_needs_low_and_slow_path_wakes_kswapd():
    env, pa, metrics = make()
    set_free(pa, DMA32=500, DMA=242)  # between min and low
    env.run(until=0.001)
    assert nowait(pa)
    assert metrics.counters["alloc_slowpath"] == 1 and metrics.counters["kswapd_wake"] == 1


def test_warn_alloc_prints_at_most_ten_per_five_seconds_but_counts_every_failure():
    env, pa, metrics = make()
    set_free(pa, DMA32=100, DMA=0)
    for _ in range(25):
        assert not nowait(pa)
    assert metrics.counters["alloc_fail"] == 25
    assert len(metrics.events_of("warn_alloc")) == 10 and metrics.counters["warn_alloc_suppressed"] == 15
    env.run(until=5.001)
    for _ in range(12):
        nowait(pa)
    assert len(metrics.events_of("warn_alloc")) == 20 and metrics.counters["alloc_fail"] == 37
    event = metrics.events_of("warn_alloc")[0]
    assert event["gfp"] == "GFP_NOWAIT" and event["DMA32_free"] == 100 and event["DMA32_min"] == 445


def test_nowarn_failures_are_counted_but_not_printed_and_6_8_nowait_is_silent():
    env, pa, metrics = make()
    set_free(pa, DMA32=100, DMA=0)
    assert not nowait(pa, gfp=GFP_NOWAIT | Gfp.NOWARN)
    assert metrics.counters["alloc_fail"] == 1 and not metrics.events_of("warn_alloc")
    env, pa, metrics = make(kernel="6.8")
    set_free(pa, DMA32=100, DMA=0)
    assert not nowait(pa)
    assert metrics.counters["alloc_fail_nowarn"] == 1 and not metrics.events_of("warn_alloc")


# --- GFP_ATOMIC, __GFP_HIGH, RT and OOM reserves ------------------------------------------------------


@pytest.mark.parametrize("kernel", ["5.2", "6.3"])
def test_gfp_atomic_may_dip_to_three_eighths_of_min_and_nowait_may_not(kernel):
    # min 445: __GFP_HIGH leaves 223, the atomic quarter 168; DMA keeps 13 + 209 back
    for free, atomic_ok in ((169, True), (168, False)):
        env, pa, metrics = make(kernel=kernel)
        set_free(pa, DMA32=free, DMA=222)
        assert not nowait(pa)
        assert nowait(pa, gfp=GFP_ATOMIC) is atomic_ok
    # GFP_NOWAIT | __GFP_HIGH: M/2 on 5.2; on 6.3 that is GFP_ATOMIC itself (NON_BLOCK + MIN_RESERVE)
    high_only = 223 if kernel == "5.2" else 168
    for free, ok in ((high_only + 1, True), (high_only, False)):
        env, pa, metrics = make(kernel=kernel)
        set_free(pa, DMA32=free, DMA=0)
        assert nowait(pa, gfp=GFP_NOWAIT | Gfp.HIGH) is ok


def test_rt_tasks_dip_below_min_with_gfp_nowait_only_before_6_3():
    rt = SimpleNamespace(rt=True, pf_memalloc=False, oom_victim=False, name="rt")
    for kernel, ok in (("5.2", True), ("6.3", False)):
        env, pa, metrics = make(kernel=kernel)
        set_free(pa, DMA32=335, DMA=0)  # ALLOC_HARDER: 445 - 111 = 334
        assert nowait(pa, task=rt) is ok


def test_highatomic_reserve_escapes_the_order0_shortcut_and_6_3_lets_nowait_use_it():
    for kernel, order1_ok in (("5.2", False), ("6.3", True)):
        env, pa, metrics = make(kernel=kernel, highatomic_pages=100)
        set_free(pa, DMA32=500, DMA=0)
        assert nowait(pa)  # zone_watermark_fast's order-0 test does not subtract the reserve
        env, pa, metrics = make(kernel=kernel, highatomic_pages=100)
        set_free(pa, DMA32=500, DMA=0)
        ok = pa.alloc_pages_nowait(0, GFP_NOWAIT, 1, pool="slab_unreclaimable")
        assert ok is order1_ok, kernel  # 5.2: 500 - 1 - 100 <= 445; 6.3: NON_BLOCK keeps the reserve


def test_oom_victims_get_half_of_min():
    victim = SimpleNamespace(rt=False, pf_memalloc=False, oom_victim=True, name="victim")
    env, pa, metrics = make()
    set_free(pa, DMA32=224, DMA=0)
    assert nowait(pa, task=victim)
    assert not nowait(pa, task=SimpleNamespace(rt=False, pf_memalloc=False, oom_victim=False, name="t"))


# --- watermark boost -------------------------------------------------------------------------------


def fragment(pa, name, free, pool="anon"):
    """Fill zone ``name`` with ``pool`` pages, then free ``free`` of them back: the free pages
    sit in partly used pageblocks (none whole), as after long use."""
    z = zone(pa, name)
    owner = MemoryOwner(f"filler-{name}")
    pa.populate(pool, z.nr_free, zone=name, owner=owner if pool == "anon" else None)
    pa.free_pages(0, pool=pool, nr=free, owner=owner if pool == "anon" else None)
    pa.drain_all_pages()
    pa.vmstat_update()
    assert z.nr_free == free and z.area.whole == [0, 0, 0]
    return z


def test_an_unmovable_request_takes_over_a_whole_free_movable_pageblock_without_a_boost():
    env, pa, metrics = make()
    set_free(pa, DMA32=1200, DMA=0)  # anon: 1200 free movable pages, two whole pageblocks among them
    z = zone(pa, "DMA32")
    assert z.area.whole[MIGRATE_MOVABLE] == 2
    assert nowait(pa)  # slab_unreclaimable: the unmovable list is empty
    assert z.area.blocks[MIGRATE_UNMOVABLE] == 1 and z.area.whole[MIGRATE_MOVABLE] == 1
    assert z.boost == 0 and metrics.counters["watermark_boost"] == 0


def test_a_steal_below_pageblock_order_boosts_all_marks_and_gfp_nowait_fails_with_a_thousand_pages_free():
    env, pa, metrics = make()
    set_free(pa, pool="file_clean", DMA=0)
    z = fragment(pa, "DMA32", 1200)
    env.run(until=0.001)
    assert nowait(pa)  # the batch refill steals ~11 pages a time: +512 per steal up to 1.5 x high
    assert metrics.counters["fallback_steals"] >= 2
    assert z.boost == 1000 and z.wmark_pages(0) == 1445
    assert metrics.counters["kswapd_wake"] == 1
    assert 1100 < z.nr_free < 1200 and z.pcp_lists[MIGRATE_UNMOVABLE][0] > 0
    assert not nowait(pa)  # below the boosted min with over a thousand pages free
    assert metrics.events_of("warn_alloc")[0]["free"] > 1000


def test_movable_requests_steal_and_boost_too():
    env, pa, metrics = make()
    set_free(pa, pool="file_clean", DMA=0)
    z = fragment(pa, "DMA32", 1200, pool="slab_unreclaimable")  # the free pages are on the unmovable list
    assert z.area.nr[MIGRATE_MOVABLE] == 0
    assert nowait(pa, gfp=GFP_NOWAIT, pool="anon")
    assert metrics.counters["fallback_steals"] >= 1 and z.boost > 0


def test_pages_stolen_without_their_pageblock_go_home_when_freed():
    """A stolen page that leaves its pageblock movable returns to the movable list when freed
    (free_unref_page_prepare reads the pageblock's type), so the unmovable list runs dry again."""
    env, pa, metrics = make()
    set_free(pa, pool="file_clean", DMA=0)
    z = fragment(pa, "DMA32", 1200)
    before = z.area.blocks[:]
    assert nowait(pa)
    assert z.area.blocks == before  # ~11 free pages of 512: the pageblock is not claimed
    assert z.area.held[MIGRATE_UNMOVABLE][MIGRATE_MOVABLE] == pytest.approx(1.0)
    pa.drain_all_pages()  # the rest of the batch goes back to the unmovable list it was taken for
    movable, unmovable = z.area.nr[MIGRATE_MOVABLE], z.area.nr[MIGRATE_UNMOVABLE]
    pa.free_pages(0, pool="slab_unreclaimable", nr=1)
    pa.drain_all_pages()
    assert z.area.held[MIGRATE_UNMOVABLE][MIGRATE_MOVABLE] == pytest.approx(0.0)
    assert (z.area.nr[MIGRATE_MOVABLE], z.area.nr[MIGRATE_UNMOVABLE]) == (movable + 1, unmovable)


def test_a_steal_claims_the_pageblock_when_half_of_it_is_free():
    env, pa, metrics = make()
    set_free(pa, pool="file_clean", DMA=0)
    z = fragment(pa, "DMA32", 120 * 512 // 2 + 600)  # ~300 free pages in each movable pageblock
    before = z.area.blocks[MIGRATE_UNMOVABLE]
    assert nowait(pa)
    assert z.area.blocks[MIGRATE_UNMOVABLE] == before + 1
    assert metrics.counters["fallback_steals"] == 1


def test_with_a_normal_zone_the_fast_path_falls_back_to_dma32_before_fragmenting_normal():
    """ALLOC_NOFRAGMENT (5.0, alloc_flags_nofragment): no steal below pageblock order in
    Normal while DMA32 still has a whole pageblock to give."""
    env, pa, metrics = make(ram=8 * GIB)
    normal, dma32 = zone(pa, "Normal"), zone(pa, "DMA32")
    assert pa.nofragment
    fragment(pa, "Normal", normal.wmark[2] * 3)
    assert nowait(pa)
    assert metrics.counters["fallback_steals"] == 0 and normal.boost == 0
    assert dma32.area.blocks[MIGRATE_UNMOVABLE] == 1  # a whole DMA32 pageblock taken over


def test_without_a_normal_zone_there_is_no_nofragment_pass():
    env, pa, metrics = make()
    assert not pa.nofragment


def test_from_5_9_gfp_atomic_ignores_the_boost_at_min_but_gfp_nowait_does_not():
    for kernel, atomic_ok in (("5.2", False), ("5.18", True), ("6.3", True)):
        env, pa, metrics = make(kernel=kernel)
        set_free(pa, DMA32=400, DMA=0)
        z = zone(pa, "DMA32")
        pa.boost_watermark(z, False)
        pa.boost_watermark(z, False)
        assert z.boost == 1000
        assert nowait(pa, gfp=GFP_ATOMIC) is atomic_ok, kernel  # 5.2: 1445 -> 543 > 400
        assert not nowait(pa)


def test_boost_factor_zero_disables_boosting():
    env, pa, metrics = make(watermark_boost_factor=0)
    set_free(pa, pool="file_clean", DMA=0)
    fragment(pa, "DMA32", 1200)
    assert nowait(pa) and nowait(pa)
    assert metrics.counters["fallback_steals"] >= 1
    assert zone(pa, "DMA32").boost == 0


# --- vmstat drift -------------------------------------------------------------------------------------


def test_per_cpu_differentials_fold_only_past_the_threshold():
    env, pa, metrics = make(vmstat_drift=True)
    z = zone(pa, "DMA32")  # threshold 12 with 4 CPUs
    start = z.vm_free
    z.free_to_buddy(1, 12)
    assert z.vm_free == start and z.nr_free == start + 12 and z.vm_diff[1] == 12
    z.free_to_buddy(1, 1)
    assert z.vm_free == start + 13 and z.vm_diff[1] == 0
    z.mod_free(2, -12)
    assert z.vm_free == start + 13 and z.vm_diff[2] == -12
    z.mod_free(2, -15)
    assert z.vm_free == z.nr_free == start - 14


def test_the_watermark_check_reads_the_folded_counter_until_vmstat_update():
    env, pa, metrics = make(vmstat_drift=True)
    set_free(pa, DMA32=445, DMA=0)
    z = zone(pa, "DMA32")
    for cpu in range(4):  # 48 pages freed, none folded yet
        z.free_to_buddy(cpu, 12)
    assert z.nr_free == 493 and z.vm_free == 445
    assert not nowait(pa)
    env.run(until=1.0)
    pa.vmstat_update()
    assert z.vm_free == 493 and nowait(pa)


def test_drift_off_folds_every_change_and_pressure_threshold_needs_a_drift_mark():
    env, pa, metrics = make(vmstat_drift=False)
    z = zone(pa, "DMA32")
    z.free_to_buddy(3, 1)
    assert z.vm_free == z.nr_free
    env, pa, metrics = make(vmstat_drift=True, ncpus=16)
    pa.set_pgdat_percpu_threshold(True)
    assert zone(pa, "DMA32").stat_threshold == 111 // 16
    env, pa, metrics = make(vmstat_drift=True)
    pa.set_pgdat_percpu_threshold(True)
    assert zone(pa, "DMA32").stat_threshold == 12 and zone(pa, "DMA").stat_threshold == 2


# --- bulk and free ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gfp", [GFP_NOWAIT, GFP_ATOMIC])
def test_bulk_allocation_leaves_the_same_state_as_page_by_page(gfp):
    one = make(vmstat_drift=True)
    bulk = make(vmstat_drift=True)
    for _, pa, _ in (one, bulk):
        set_free(pa, DMA32=800, DMA=300)
    n = 0
    while n < 2000 and one[1].alloc_pages_nowait(1, gfp, pool="anon"):
        n += 1
    got = bulk[1].alloc_pages_bulk_nowait(1, gfp, 2000, pool="anon")
    assert got == n and 0 < n < 2000
    for a, b in zip(one[1].zones, bulk[1].zones):
        assert (a.nr_free, a.vm_free, a.vm_diff, a.pcp_count) == (b.nr_free, b.vm_free, b.vm_diff, b.pcp_count)
    assert one[2].counters["alloc_fail"] == bulk[2].counters["alloc_fail"] == 1


def test_freed_pages_wait_on_the_cpu_list_until_it_reaches_high():
    env, pa, metrics = make()
    set_free(pa, pool="slab_unreclaimable", DMA32=10000, DMA=0)
    z = zone(pa, "DMA32")
    pa.populate("anon", 200, zone="DMA32")
    buddy = z.nr_free
    pa.free_pages(2, pool="anon", nr=89)
    assert z.pcp_count[2] == 89 and z.nr_free == buddy
    pa.free_pages(2, pool="anon")
    assert z.pcp_count[2] == 75 and z.nr_free == buddy + 15
    assert pa.drain_all_pages() == 75 and z.nr_free == buddy + 90
    with pytest.raises(ValueError):
        pa.free_pages(0, pool="shmem")


def test_owners_are_charged_for_anon_page_tables_and_stacks_only():
    env, pa, metrics = make()
    owner = MemoryOwner("p")
    for pool in ("anon", "pagetables", "kernel_stack", "file_clean"):
        assert pa.alloc_pages_nowait(0, GFP_NOWAIT, pool=pool, owner=owner)
    assert owner.pages == 3 and owner in pa.pools.owners
    pa.free_pages(0, pool="anon", owner=owner)
    assert owner.charged["anon"] == 0


# --- GFP_KERNEL (with the real scheduler) -----------------------------------------------------------


def run_task(env, pa, body, cpu=0, until=30.0, **kw):
    out = {}

    def wrapper(task):
        out["value"] = yield from body(task)
        out["end"] = env.now

    task = pa.scheduler.spawn("t", wrapper, cpu=cpu, **kw)
    env.run(until=until)
    return task, out


def test_gfp_kernel_sleeps_in_direct_reclaim_and_succeeds_under_pressure():
    env, pa, metrics = make(sched=True, kswapd_cpu_share=1e-3)  # kswapd too slow to help
    pa.populate("file_clean", 3000)
    set_free(pa, DMA32=450, DMA=242)

    def body(task):
        oks = []
        for _ in range(2000):
            ok = yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon")
            oks.append(ok)
        return oks

    task, out = run_task(env, pa, body)
    assert all(out["value"]) and len(out["value"]) == 2000
    assert metrics.counters["allocstall"] >= 40
    assert metrics.counters["direct_reclaimed"] >= 1500
    assert metrics.seconds["direct_reclaim"] > 0 and out["end"] >= metrics.seconds["direct_reclaim"]
    assert metrics.counters["alloc_fail"] == 0


def test_gfp_kernel_in_atomic_context_is_reported_as_a_bug():
    env, pa, metrics = make(sched=True)

    def body(task):
        task.preempt_count += 1
        ok = yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon", site="under_spinlock")
        task.preempt_count -= 1
        return ok

    task, out = run_task(env, pa, body)
    assert out["value"] and metrics.events_of("bug_sleeping_in_atomic")[0]["site"] == "under_spinlock"


def test_gfp_kernel_reaches_the_oom_killer_when_only_anon_remains():
    env, pa, metrics = make(sched=True)
    hog, me = MemoryOwner("hog"), MemoryOwner("me")
    set_free(pa, owner=hog, DMA32=400, DMA=200)

    def body(task):
        task.owner = me
        oks = []
        for _ in range(100):
            ok = yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon", owner=me)
            oks.append(ok)
        return oks

    task, out = run_task(env, pa, body)
    assert all(out["value"]) and not task.oom_victim
    kill = metrics.events_of("oom_kill")[0]
    assert kill["victim"] == "hog" and hog.oom_killed and hog.reaped and hog.pages == 0
    assert metrics.events_of("oom_reaped")[0]["time"] > kill["time"]
    assert zone(pa, "DMA32").nr_free > 40000 and me.charged["anon"] == 100


def test_an_oom_victim_may_get_half_of_min_and_then_fail():
    env, pa, metrics = make(sched=True)
    me = MemoryOwner("me")
    set_free(pa, DMA32=230, DMA=0)

    def body(task):
        task.oom_victim = task.killed = True
        first = yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon", owner=me)
        rest = yield from pa.alloc_pages_bulk(task, GFP_KERNEL, 100, pool="anon", owner=me)
        return first, rest

    task, out = run_task(env, pa, body)
    first, rest = out["value"]
    # 230 > 445/2 passes; the refill takes the counter to 215, below the victim's reserve
    assert first and rest == 0 and metrics.counters["alloc_fail"] == 1
    assert metrics.counters["oom_invoke"] == 1 and not metrics.events_of("oom_kill")


# --- the slow path's retry loop ---------------------------------------------------------------------


def test_gfp_nowait_fails_at_once_without_reclaim_even_with_reclaimable_cache():
    env, pa, metrics = make(sched=True)
    pa.populate("file_clean", 20000, zone="DMA32")
    set_free(pa, DMA32=400, DMA=0)

    def body(task):
        gen = pa.alloc_pages(task, GFP_NOWAIT, pool="slab_unreclaimable")
        with pytest.raises(StopIteration) as stop:
            next(gen)  # the generator API returns at its first step: nothing to wait for
        return stop.value.value, env.now, pa.pools.pool["file_clean"].pages
        yield  # pragma: no cover

    task, out = run_task(env, pa, body, until=0.001)
    ok, when, cache = out["value"]
    assert ok is False and when == 0.0 and cache == 20000  # kswapd reclaims only later
    assert metrics.counters["allocstall"] == 0 and metrics.counters["pcp_drain"] == 0
    assert metrics.counters["alloc_fail"] == 1 and metrics.counters["kswapd_wake"] == 1


def test_reclaimed_pages_wait_on_the_cpu_list_until_the_failed_attempt_drains_them():
    env, pa, metrics = make(sched=True, kswapd_cpu_share=1e-9)
    pa.populate("file_clean", 1000, zone="DMA32")
    set_free(pa, DMA32=430, DMA=0)  # below min; the 32 reclaimed pages would lift it above
    z = zone(pa, "DMA32")

    def body(task):
        ok = yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon")
        return ok, list(z.pcp_count), z.nr_free

    task, out = run_task(env, pa, body, until=1.0)
    ok, pcp, free = out["value"]
    assert ok and metrics.counters["allocstall"] == 1 and metrics.counters["pcp_drain"] == 1
    assert sum(pcp) == 14 and free == 430 + 32 - 15  # drained, then one refill of 15


@pytest.mark.spies_on_methods
def test_should_reclaim_retry_gives_up_after_sixteen_loops_without_progress():
    # dirty file pages count as reclaimable but direct reclaim cannot write them back:
    # every loop waits HZ/10 in congestion_wait, the seventeenth goes to the OOM killer
    env, pa, metrics = make(sched=True, kswapd_cpu_share=1e-9)
    hog = MemoryOwner("hog")
    pa.populate("file_dirty", 5000, zone="DMA32")
    set_free(pa, owner=hog, DMA32=300, DMA=0)
    seen = []
    out_of_memory = pa.oom.out_of_memory

    def spy(task, gfp, order):
        seen.append((metrics.counters["allocstall"], metrics.counters["congestion_wait"], env.now))
        return (yield from out_of_memory(task, gfp, order))

    pa.oom.out_of_memory = spy

    def body(task):
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

    task, out = run_task(env, pa, body)
    assert out["value"] and hog.oom_killed
    assert seen[0][:2] == (17, 16) and seen[0][2] >= 1.6


@pytest.mark.spies_on_methods
def test_retries_exhausted_unreserve_the_last_highatomic_pageblock_before_the_oom_killer():
    # as above, with one reserved pageblock: the seventeenth loop gives it back
    # (unreserve_highatomic_pageblock(ac, true)) and retries; the eighteenth goes to the OOM killer
    env, pa, metrics = make(sched=True, kswapd_cpu_share=1e-9)
    hog = MemoryOwner("hog")
    pa.populate("file_dirty", 5000, zone="DMA32")
    set_free(pa, owner=hog, DMA32=300, DMA=0)
    z = zone(pa, "DMA32")
    reserve(z, 512, free=16)
    seen = []
    out_of_memory = pa.oom.out_of_memory

    def spy(task, gfp, order):
        seen.append((metrics.counters["allocstall"], metrics.counters["congestion_wait"], z.highatomic))
        return (yield from out_of_memory(task, gfp, order))

    pa.oom.out_of_memory = spy

    def body(task):
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

    task, out = run_task(env, pa, body)
    assert out["value"] and hog.oom_killed
    assert seen[0] == (18, 16, 0) and metrics.counters["highatomic_unreserved"] == 1


@pytest.mark.spies_on_methods
def test_a_failed_attempt_after_direct_reclaim_unreserves_a_pageblock_before_the_drain():
    env, pa, metrics = make(sched=True, kswapd_cpu_share=1e-9)
    pa.populate("file_clean", 1000, zone="DMA32")
    set_free(pa, DMA32=430, DMA=0)
    z = zone(pa, "DMA32")
    reserve(z, 1024, free=16)
    at_drain = []
    drain = pa.drain_all_pages

    def spy():
        at_drain.append(z.highatomic)
        return drain()

    pa.drain_all_pages = spy

    def body(task):
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

    run_task(env, pa, body, until=0.05)
    assert at_drain[0] == 512  # the zone keeps its last pageblock: no force here
    assert metrics.counters["allocstall"] >= 1 and metrics.counters["highatomic_unreserved"] == 1


@pytest.mark.spies_on_methods
def test_reserve_flags_replace_the_alloc_flags_so_an_oom_victim_stops_waking_kswapd():
    env, pa, metrics = make(sched=True)
    pa.populate("file_clean", 5000, zone="DMA32")
    set_free(pa, DMA32=100, DMA=0)  # below the victim's min/2 until reclaim lifts it
    wakes = []
    pa.wake_all_kswapds = lambda order, gfp, high: wakes.append(env.now)

    def body(task):
        task.oom_victim = task.killed = True
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

    task, out = run_task(env, pa, body)
    assert out["value"] and metrics.counters["allocstall"] >= 2
    assert len(wakes) == 2  # slow-path entry and the first retry:, not after ALLOC_OOM


def reserve(z, pages, free=0, held=0):
    """Give zone ``z`` a high-atomic reserve of ``pages`` with ``free`` of its free pages on
    the reserve's list (off the other lists) and ``held`` pages handed out of it."""
    z.highatomic, z.highatomic_held = pages, held
    z.highatomic_free = z.area.take_free(free)
    assert z.highatomic_free == free


def request(pa, pool="anon", zones=None):
    """The alloc context of a ``pool`` request over ``zones`` (default: every zone)."""
    return AllocContext(int(GFP_KERNEL), 0, zones or pa.zonelist, pa.classzone, 2, pool)


def test_unreserve_highatomic_releases_one_pageblock_from_the_first_zone_that_has_one():
    env, pa, metrics = make()
    dma32, dma = zone(pa, "DMA32"), zone(pa, "DMA")
    reserve(dma32, 1024, free=100)  # the search needs a free page on the reserve's list
    reserve(dma, 1024, free=100)
    ac = request(pa)  # a movable request: the pageblock becomes movable
    movable_before = dma32.area.nr[MIGRATE_MOVABLE]
    assert pa.unreserve_highatomic_pageblock(ac)
    assert (dma32.highatomic, dma.highatomic) == (512, 1024) and dma32.highatomic_free == 50
    assert dma32.area.nr[MIGRATE_MOVABLE] == movable_before + 50  # its free pages join the requester's list
    assert pa.unreserve_highatomic_pageblock(ac) and (dma32.highatomic, dma.highatomic) == (512, 512)
    assert not pa.unreserve_highatomic_pageblock(ac)  # each zone keeps its last block
    assert pa.unreserve_highatomic_pageblock(ac, force=True) and (dma32.highatomic, dma.highatomic) == (0, 512)
    assert dma32.highatomic_free == 0
    assert not pa.unreserve_highatomic_pageblock(request(pa, zones=(dma32,)), force=True)  # the request's zones
    assert metrics.counters["highatomic_unreserved"] == 3
    for z in (dma32, dma):
        assert z.nr_free == z.area.free_pages() + z.highatomic_free


def test_unreserve_finds_nothing_in_a_reserve_without_a_free_page():
    env, pa, metrics = make()
    dma32 = zone(pa, "DMA32")
    reserve(dma32, 1024, held=1024)  # every reserved page handed out
    assert not pa.unreserve_highatomic_pageblock(request(pa), force=True)
    assert dma32.highatomic == 1024


# --- the high-atomic reserve (reserve_highatomic_pageblock, 5.3) ----------------------------------

ATOMIC_FRAG = GFP_ATOMIC | Gfp.COMP | Gfp.NOWARN | Gfp.NORETRY  # skb_page_frag_refill's order-3 mask


def frag(pa, gfp=ATOMIC_FRAG, order=3, cpu=0):
    return pa.alloc_pages_nowait(cpu, gfp, order, pool="slab_unreclaimable")


def test_an_order3_gfp_atomic_allocation_in_the_slow_path_reserves_a_pageblock():
    env, pa, metrics = make()
    set_free(pa, DMA32=2000, DMA=0)
    dz = zone(pa, "DMA32")
    assert frag(pa) and dz.highatomic == 0  # the fast path has no ALLOC_HARDER: nothing reserved
    set_free(pa, DMA32=540)  # below low + 7: the slow path, ALLOC_HARDER at 3M/8
    assert frag(pa)
    assert dz.highatomic == 512
    assert pa.last_block_highatomic  # the block sits in the pageblock it reserved
    assert metrics.counters["highatomic_reserved"] == 1
    assert pa.failure_state()["DMA32_highatomic"] == 512


def scattered(pa, free=540):
    """DMA32 with ``free`` free pages spread over its unmovable pageblocks (none of them whole,
    a few free pages each), and DMA full."""
    set_free(pa, pool="shmem", DMA=0)
    set_free(pa, pool="slab_unreclaimable", DMA32=0)  # every pageblock taken over as unmovable
    pa.free_pages(0, 2, pool="slab_unreclaimable", nr=free // 4)  # straight back to the buddy lists
    dz = zone(pa, "DMA32")
    assert dz.nr_free == free and dz.area.whole == [0, 0, 0]
    return dz


def test_a_whole_free_pageblock_reserved_brings_its_free_pages_into_the_reserve():
    env, pa, metrics = make()
    set_free(pa, DMA32=540, DMA=0)  # 540 free: one whole free pageblock and 28 pages
    dz = zone(pa, "DMA32")
    assert frag(pa)  # unmovable: takes the whole movable pageblock over, and reserves it
    assert (dz.highatomic, dz.highatomic_free, dz.highatomic_held) == (512, 504, 8)
    assert dz.area.free_pages() == 28


def test_the_reserve_grows_a_pageblock_at_a_time_up_to_one_percent_of_the_zone_plus_a_pageblock():
    env, pa, metrics = make()
    dz = scattered(pa)
    cap = dz.managed // 100 + 512
    assert cap == 1048
    seen = []
    for _ in range(20):
        assert frag(pa)
        seen.append(dz.highatomic)
    # a block from outside the reserve adds a pageblock; one from the reserve's few free pages does not;
    # the cap is tested before a block is added: 1024 < 1048 lets a third block in
    assert seen == sorted(seen) and sorted(set(seen)) == [512, 1024, 1536] and seen[-1] == 1536
    assert metrics.counters["highatomic_reserved"] == 3
    assert dz.nr_free == dz.area.free_pages() + dz.highatomic_free  # the reserve's free pages left the lists


def test_napi_alloc_frags_nomemalloc_mask_gets_no_alloc_harder_and_reserves_nothing():
    env, pa, metrics = make()
    set_free(pa, DMA32=540, DMA=0)
    assert frag(pa, ATOMIC_FRAG | Gfp.NOMEMALLOC)  # __page_frag_cache_refill: ALLOC_HIGH only, M/2
    assert zone(pa, "DMA32").highatomic == 0 and not pa.last_block_highatomic


def test_a_reserved_pageblock_fails_an_order1_gfp_nowait_that_passed_before_but_not_an_order0_one():
    env, pa, metrics = make()
    set_free(pa, DMA32=532, DMA=0)
    assert pa.alloc_pages_nowait(0, GFP_NOWAIT, 1, pool="slab_unreclaimable")  # no reserve: 531 > min 445
    env, pa, metrics = make()
    set_free(pa, DMA32=540, DMA=0)
    assert frag(pa)  # reserves a pageblock; 532 free
    dz = zone(pa, "DMA32")
    assert dz.nr_free == 532 and dz.highatomic == 512
    assert not pa.alloc_pages_nowait(0, GFP_NOWAIT, 1, pool="slab_unreclaimable")  # 531 - 512 <= 445
    # order 0: zone_watermark_fast's shortcut (532 > 445) never subtracts the reserve
    assert nowait(pa)


def test_alloc_harder_requests_take_blocks_from_the_reserve_and_skip_its_subtraction():
    env, pa, metrics = make()
    set_free(pa, DMA32=540, DMA=0)
    dz = zone(pa, "DMA32")
    assert frag(pa) and dz.highatomic == 512
    pa.free_pages(0, 3, pool="slab_unreclaimable", highatomic=1)  # back onto the reserve's lists
    assert dz.highatomic_free >= 8 and dz.highatomic_held == 0
    before = dz.highatomic_free
    # 540 - 7 - 512 would fail even 3M/8 = 168; ALLOC_HARDER does not subtract the reserve
    assert frag(pa) and pa.last_block_highatomic
    assert dz.highatomic_free == before - 8 and dz.highatomic_held == 8 and dz.highatomic == 512
    assert metrics.counters["highatomic_reserved"] == 1  # served from the reserve: nothing new reserved
    assert dz.nr_free == dz.area.free_pages() + dz.highatomic_free
    assert not frag(pa, GFP_NOWAIT | Gfp.COMP, 3)  # without the right: 532 - 7 - 512 <= 445


def test_the_reserves_free_pages_are_not_on_the_lists_other_requests_take_from():
    env, pa, metrics = make()
    set_free(pa, DMA32=1000, DMA=0)
    dz = zone(pa, "DMA32")
    reserve(dz, 1024, free=1000)  # every free page sits in the reserve
    assert dz.vm_free > dz.fast_mark  # the watermark passes: the order-0 shortcut ignores the reserve
    assert not nowait(pa)  # but rmqueue_bulk finds no page outside the reserve
    assert not nowait(pa, gfp=GFP_ATOMIC)  # order 0 never takes from MIGRATE_HIGHATOMIC (5.3)
    assert frag(pa, GFP_ATOMIC | Gfp.COMP, 3)  # a high-order ALLOC_HARDER request does (slow path)
    assert dz.highatomic_free == 992


def test_pages_of_other_users_freed_in_reserved_pageblocks_join_the_reserve():
    env, pa, metrics = make()
    dz = scattered(pa)
    assert frag(pa)
    free0, held = dz.highatomic_free, dz.highatomic_held
    others = dz.highatomic - free0 - held
    assert free0 == 5 and others == 499  # a pageblock under pressure holds few free pages: 532 over 105 blocks
    before = dz.nr_free
    pa.free_pages(0, 3, pool="slab_unreclaimable", nr=500)  # slab pages, 8 at a time, straight to the buddy lists
    k = dz.nr_free - before
    assert k == 4000
    gained = dz.highatomic_free - free0
    share = k * others / (dz.managed - before - held)
    assert abs(gained - share) <= 1 and gained > 0
    assert dz.highatomic_free + dz.highatomic_held <= dz.highatomic
    assert dz.nr_free == dz.area.free_pages() + dz.highatomic_free


def test_an_initial_reserve_is_free_pageblocks_boot_memory_does_not_take():
    env, pa, metrics = make(highatomic_pages=1024)
    dz = zone(pa, "DMA32")
    assert dz.highatomic == dz.highatomic_free == 1024
    assert dz.area.free_pages() == dz.nr_free - 1024
    pa.populate("anon", dz.nr_free - 1024, zone="DMA32")
    assert dz.nr_free == 1024
    with pytest.raises(ValueError):
        pa.populate("anon", 1, zone="DMA32")


@pytest.mark.parametrize(
    ("kernel", "extra", "free"),
    [("5.2", Gfp.NORETRY, 400), ("6.3", Gfp.RETRY_MAYFAIL, 300)],
)
def test_gfp_nofail_never_fails_and_loops_on_the_reserves_of_its_kernel(kernel, extra, free):
    # no reclaimable pages: NORETRY or RETRY_MAYFAIL reach nopage, where __GFP_NOFAIL
    # retries with ALLOC_HARDER (5.2: 3M/4 = 334) or ALLOC_MIN_RESERVE (6.3: M/2 = 223)
    env, pa, metrics = make(sched=True, kernel=kernel)
    set_free(pa, DMA32=free, DMA=0)

    def body(task):
        return (yield from pa.alloc_pages(task, GFP_KERNEL | Gfp.NOFAIL | extra, pool="anon"))

    task, out = run_task(env, pa, body, until=5.0)
    assert out.get("value") is True and metrics.counters["alloc_fail"] == 0


def test_pf_memalloc_ignores_the_watermarks_and_never_recurses_into_reclaim():
    reclaimer = SimpleNamespace(rt=False, pf_memalloc=True, oom_victim=False, name="kswapd")
    env, pa, metrics = make(sched=True)
    pa.populate("file_clean", 5000, zone="DMA32")
    set_free(pa, DMA32=10, DMA=0)
    assert nowait(pa, task=reclaimer)  # ALLOC_NO_WATERMARKS at the retry: label
    pa.drain_all_pages()
    set_free(pa, DMA32=0)

    def body(task):
        task.pf_memalloc = True
        return (yield from pa.alloc_pages(task, GFP_KERNEL, pool="anon"))

    task, out = run_task(env, pa, body, until=0.001)
    assert out["value"] is False and out["end"] == 0.0
    assert metrics.counters["allocstall"] == 0 and metrics.counters["alloc_fail"] == 1


# --- frees go back to the page's own zone (page_zone) -------------------------------------------


def test_an_owners_pages_return_to_the_zone_they_came_from():
    env, pa, _ = make()
    dma, dma32 = zone(pa, "DMA"), zone(pa, "DMA32")
    owner = MemoryOwner("p")
    pa.populate("anon", 500, zone="DMA", owner=owner)
    pa.populate("anon", 5000, zone="DMA32")  # another process's anon, unowned
    before = dma.nr_free, dma32.nr_free
    pa.free_pages(0, pool="anon", nr=500, owner=owner)
    pa.drain_all_pages()
    assert (dma.nr_free - before[0], dma32.nr_free - before[1]) == (500, 0)
    assert owner.zones["anon"] == [0, 0, 0] and pa.pools.pool["anon"].by_zone[0] == 0


def test_unowned_pages_are_freed_from_the_zones_in_proportion_to_where_they_sit():
    env, pa, _ = make()
    pa.populate("file_clean", 1000, zone="DMA")
    pa.populate("file_clean", 3000, zone="DMA32")
    pa.free_pages(0, pool="file_clean", nr=400)
    assert pa.pools.pool["file_clean"].by_zone[:2] == [900, 2700]
    owner = MemoryOwner("q")
    pa.populate("anon", 100, zone="DMA", owner=owner)
    pa.populate("anon", 100, zone="DMA32")
    pa.free_pages(0, pool="anon", nr=100)  # the unowned ones: all in DMA32
    assert pa.pools.pool["anon"].by_zone[:2] == [100, 0] and owner.zones["anon"][0] == 100


def test_a_refilled_dma_zone_balances_the_node_for_kswapd():
    """pgdat_balanced asks for any eligible zone above high: pages freed back to DMA can
    satisfy it while DMA32 stays low (before the fix they went to DMA32)."""
    env, pa, _ = make()
    dma, dma32 = zone(pa, "DMA"), zone(pa, "DMA32")
    owner = MemoryOwner("p")
    set_free(pa, pool="anon", owner=MemoryOwner("other"), DMA32=100)
    pa.populate("anon", dma.nr_free, zone="DMA", owner=owner)
    assert not pa.reclaim.pgdat_balanced(0, dma32.idx)
    # 300 pages: above DMA's high + lowmem_reserve (49 + 209) but not DMA32's high (667)
    pa.free_pages(0, pool="anon", nr=300, owner=owner)
    pa.drain_all_pages()
    pa.vmstat_update()
    assert (dma.nr_free, dma32.nr_free) == (300, 100)
    assert pa.reclaim.pgdat_balanced(0, dma32.idx)


def test_take_in_proportion_splits_by_largest_remainder():
    from sim.kernel.mm.pools import take_in_proportion

    assert take_in_proportion([1, 3, 0], 2) == [(1, 2)]  # 0.5 and 1.5: the larger remainder, then higher zone
    assert take_in_proportion([1, 1, 0], 1) == [(1, 1)]
    assert take_in_proportion([0, 7, 0], 5) == [(1, 5)]
    assert take_in_proportion([2, 0, 2], 4) == [(2, 2), (0, 2)]
    assert take_in_proportion([10, 20, 30], 6) == [(2, 3), (1, 2), (0, 1)]
