"""The fork storm's allocations in copy_process order (kernel/fork.c, arch/x86/mm/pgtable.c v5.2):
the task_struct from its high-order slab cache before the stack, the pgd's order with and
without PTI, the task_struct freed an RCU grace period after the reap, and -ENOMEM when the
task_struct cannot be had."""

from __future__ import annotations

from typing import Any

import pytest

from sim.kernel.mm.gfp import GFP_KERNEL
from sim.kernel.mm.oom_kill import MemoryOwner
from sim.kernel.mm.watermarks import zone_watermark_ok
from sim.kernel.mm.zones import ALLOC_WMARK_MIN, WMARK_MIN
from sim.workloads.fork_storm import ForkStorm, ForkStormSpec
from tests.conftest import make_machine

TASK_STRUCT_SIZE = 4872  # arch_task_struct_size of the 5.2 guest, ForkStormSpec's default


def _storm(machine: Any, **spec: Any) -> ForkStorm:
    storm = ForkStorm(ForkStormSpec(**spec))
    storm.start(machine, machine.workload_rng(0))
    return storm


def _log_page_requests(machine: Any) -> list[tuple[str, str, int, int]]:
    """(site, pool, order, blocks) of every page-allocator request, in the order they are made."""
    pa = machine.page_alloc
    log: list[tuple[str, str, int, int]] = []
    bulk, nowait = pa.alloc_pages_bulk, pa.alloc_pages_nowait

    def alloc_pages_bulk(task: Any, gfp: int, nr: int, *, order: int = 0, pool: str, site: str = "", **kw: Any):
        log.append((site, pool, order, nr))
        return (yield from bulk(task, gfp, nr, order=order, pool=pool, site=site, **kw))

    def alloc_pages_nowait(cpu: int, gfp: int, order: int = 0, *, pool: str, site: str = "", **kw: Any):
        log.append((site, pool, order, 1))
        return nowait(cpu, gfp, order, pool=pool, site=site, **kw)

    pa.alloc_pages_bulk = alloc_pages_bulk
    pa.alloc_pages_nowait = alloc_pages_nowait
    return log


# -- the task_struct cache ------------------------------------------------------------------


def test_task_struct_slabs_are_high_order_as_slab_and_slub_choose_them():
    """SLAB (calculate_slab_order, slab_max_order 1 above 32 MiB): order 1, one task_struct
    per slab from 4 KiB; SLUB (calculate_order, 4 CPUs): order 3 with s->min the object's own."""
    from sim.kernel.mm.slab.slab import calculate_slab_order
    from sim.kernel.mm.slab.slub import calculate_order, get_order

    assert ForkStormSpec().task_struct_size == TASK_STRUCT_SIZE
    assert calculate_slab_order(4928, 1) == (1, 1)  # the 5.2 guest's 4872 B, 64 B aligned
    assert calculate_slab_order(7680, 1) == (1, 1)
    assert calculate_slab_order(9984, 1) == (2, 1)  # above 8 KiB: order 2
    assert calculate_slab_order(3008, 1) == (1, 2)
    assert calculate_slab_order(88, 1) == (0, 46)  # vmap_area stays order 0
    assert [calculate_order(s, 4) for s in (2752, 4928, 7680, 9984)] == [3, 3, 3, 3]
    assert [get_order(s) for s in (2752, 4928, 7680, 9984)] == [0, 1, 1, 2]
    assert calculate_order(88, 4) == 0
    m = make_machine("nowait", slab="SLAB")
    cache = m.task_struct_cachep(TASK_STRUCT_SIZE)
    assert (cache.size, cache.order, cache.objs_per_slab) == (4928, 1, 1)
    assert (cache.limit, cache.batchcount, cache.shared) == (8, 4, None)  # enable_cpucache above PAGE_SIZE
    assert m.task_struct_cachep(TASK_STRUCT_SIZE) is cache and cache in m.caches
    with pytest.raises(ValueError, match="task_struct is 4872 B on this machine, not 8000 B"):
        m.task_struct_cachep(8000)
    slub = make_machine("nowait", slab="SLUB").task_struct_cachep(TASK_STRUCT_SIZE)
    assert (slub.order, slub.objs_per_slab, slub.min_order, slub.min_objects) == (3, 6, 1, 1)


@pytest.mark.spies_on_methods
def test_slub_task_struct_slab_first_tries_order_3_without_reclaim_then_falls_back_to_order_1():
    """allocate_slab: the order-3 try drops __GFP_RECLAIM and adds NORETRY|NOMEMALLOC; with
    too few pages free it fails without reclaiming, and s->min (order 1, one object) is taken
    with the caller's GFP_KERNEL."""
    from sim.kernel.mm.slab.caches import task_struct_cache

    m = make_machine("nowait", slab="SLUB", cpus=1)
    pa = m.page_alloc
    cache = task_struct_cache(
        TASK_STRUCT_SIZE, allocator="SLUB", ncpus=1, totalram_pages=1 << 16, page_alloc=pa, metrics=m.metrics,
        scheduler=m.sched,
    )  # fmt: skip
    zone = pa.zonelist[0]  # leave min + 5 pages of the preferred zone: order 3 fails at min, order 1 passes
    for z in pa.zones:
        keep = z.wmark[WMARK_MIN] + z.lowmem_reserve[pa.classzone] + z.highatomic + 5 if z is zone else 0
        pa.populate("slab_unreclaimable", z.nr_free - keep, zone=z.name)
    log = _log_page_requests(m)
    out: dict[str, Any] = {}

    def body(task: Any):
        out["obj"] = yield from cache.alloc(task, GFP_KERNEL)

    m.spawn("forker", body)
    m.env.run(until=0.01)
    assert [(pool, order) for _, pool, order, _ in log] == [("slab_unreclaimable", 3), ("slab_unreclaimable", 1)]
    page = out["obj"]
    assert (page.order, page.objects) == (1, 1)
    c = m.metrics.counters
    assert c["slab.task_struct.order_fallback"] == 1
    assert c["allocstall"] == 0 and c["alloc_fail_nowarn"] == 1  # the first try gave up quietly


# -- copy_process order ---------------------------------------------------------------------


def _first_fork_requests(slab: str = "SLAB", **spec: Any) -> list[tuple[str, str, int, int]]:
    m = make_machine("nowait", slab=slab, cpus=1)
    log = _log_page_requests(m)
    _storm(m, workers=1, worker_rss=0, **spec)
    while m.metrics.counters["forks"] < 1:
        m.env.step()
    return [entry for entry in log if entry[1] != "anon"]


@pytest.mark.spies_on_methods
def test_a_fork_takes_its_task_struct_before_its_stack_then_the_rest_in_copy_process_order():
    """dup_task_struct: alloc_task_struct_node (an order-1 SLAB slab on a fresh cache), then
    alloc_thread_stack_node (the vmalloc'd stack's pages); then copy_creds .. allocate_mm, the
    pgd, dup_mmap's objects and copy_page_range's page tables."""
    log = _first_fork_requests()  # pti by default
    pools = [pool for _, pool, _, _ in log]
    first_stack = pools.index("kernel_stack")
    task_struct = [i for i, (site, pool, order, _) in enumerate(log) if pool == "slab_unreclaimable" and order == 1]
    assert task_struct and task_struct[0] == 0 and task_struct[-1] < first_stack
    assert log[task_struct[0]][0] == "cache_grow_begin"
    rest = [(site, pool, order, n) for site, pool, order, n in log[first_stack:] if pool != "kernel_stack"]
    rest = [entry for entry in rest if entry[0] in ("copy_process", "pgd_alloc", "dup_mmap", "copy_page_range")]
    assert rest == [
        ("copy_process", "slab_unreclaimable", 0, 1),
        ("pgd_alloc", "pagetables", 1, 1),
        ("dup_mmap", "slab_unreclaimable", 0, 3),
        ("copy_page_range", "pagetables", 0, 12),
    ]


@pytest.mark.spies_on_methods
@pytest.mark.parametrize(("pti", "order", "tables"), [(True, 1, 12), (False, 0, 13)])
def test_the_pgd_is_order_1_with_pti_and_order_0_without(pti: bool, order: int, tables: int):
    """PGD_ALLOCATION_ORDER: 1 with CONFIG_PAGE_TABLE_ISOLATION (a pgd and its user copy), else 0;
    pagetable_pages (14) counts the pgd, the rest are copy_page_range's order-0 tables."""
    log = _first_fork_requests(slab="SLUB", pti=pti)
    assert [entry for entry in log if entry[0] == "pgd_alloc"] == [("pgd_alloc", "pagetables", order, 1)]
    assert [entry for entry in log if entry[0] == "copy_page_range"] == [("copy_page_range", "pagetables", 0, tables)]
    assert sum(n << o for _, pool, o, n in log if pool == "pagetables") == 14


# -- the RCU-deferred free ------------------------------------------------------------------


@pytest.mark.spies_on_methods
def test_the_task_struct_goes_back_a_grace_period_after_the_reap_not_at_the_exit():
    """release_task queues delayed_put_task_struct with call_rcu: the object is held (its slab
    cannot be given back) until rcu_grace after the parent reaped the child."""
    grace = 0.05
    m = make_machine("nowait", slab="SLAB", cpus=1)
    storm = _storm(m, workers=1, worker_rss=0, rcu_grace=grace)
    cache = storm.task_cache
    exits: list[float] = []
    reaps: list[tuple[float, Any]] = []
    frees: list[tuple[float, Any]] = []
    child_exit, release, free = storm._child, storm._release_task, cache.free

    def _child(task: Any, child: Any, owner: Any):
        yield from child_exit(task, child, owner)
        exits.append(m.env.now)

    def _release_task(cpu: int, child: Any) -> None:
        reaps.append((m.env.now, child.tsk))
        release(cpu, child)

    def cache_free(cpu: int, slab: Any) -> None:
        frees.append((m.env.now, slab))
        free(cpu, slab)

    storm._child, storm._release_task, cache.free = _child, _release_task, cache_free
    m.env.run(until=grace / 2)
    assert exits and reaps and not frees  # children died and were reaped; no task_struct is back yet
    assert cache.frees == 0 and cache.allocs > len(reaps)
    cache.kmem_cache_shrink(0)
    assert cache.nr_slabs == cache.allocs  # every task_struct still holds its slab (one per order-1 slab)
    m.env.run(until=grace * 1.5)
    assert frees
    first_reap, tsk = reaps[0]
    assert exits[0] <= first_reap
    assert frees[0] == (pytest.approx(first_reap + grace), tsk)
    assert m.metrics.counters["task_structs_rcu_deferred"] >= len(frees)
    freed_by = grace * 1.5 - grace
    assert len(frees) == sum(1 for t, _ in reaps if t <= freed_by)
    cache.kmem_cache_shrink(0)
    assert cache.nr_slabs == cache.allocs - len(frees)  # the slabs of freed task_structs can now go back


# -- -ENOMEM ----------------------------------------------------------------------------------


def test_a_fork_fails_with_enomem_when_its_task_struct_cannot_be_had():
    """An OOM victim forking with no page free: the task_struct cache cannot grow (order-1
    cache_grow_begin fails even with ALLOC_OOM), dup_task_struct returns NULL and copy_process
    -ENOMEM, before any stack is looked for."""
    m = make_machine("nowait", slab="SLAB", cpus=1, ram=64 << 20)
    storm = ForkStorm(ForkStormSpec(workers=1))
    storm.bind(m)  # the machine's parts and caches, without starting a worker
    m.page_alloc.populate("slab_unreclaimable", m.page_alloc.nr_free_pages())
    owner = MemoryOwner("stress-ng-fork/0", oom_score_adj=1000)
    out: dict[str, Any] = {}

    def body(task: Any):
        task.oom_victim = task.killed = True  # SIGKILLed by the OOM killer while forking
        out["child"] = yield from storm._fork(task, owner)

    task = m.spawn("stress-ng-fork/0", body)
    owner.tasks.append(task)
    task.owner = owner
    m.env.run(until=1.0)
    assert "child" in out and out["child"] is None
    c = m.metrics.counters
    assert c["fork_attempts"] == 1 and c["fork_task_struct_failures"] == 1 and c["forks"] == 0
    assert c["stack_vmallocs"] == 0 and c["stack_cache_hits"] == 0  # never got as far as the stack
    assert c["slab.task_struct.refill_fail.GFP_KERNEL"] == 1
    reports = m.metrics.events_of("warn_alloc")
    assert {(e["order"], e["site"]) for e in reports} == {(1, "cache_grow_begin")}  # page allocation failure: order:1
    assert m.page_alloc.pools.pool["pagetables"].pages == 0


# -- order 1 at and below min, without fragmentation -------------------------------------------


def test_order_1_needs_one_page_more_than_order_0_at_min_and_a_block_is_assumed():
    """__zone_watermark_ok less its free-block search: free - (2^order - 1) must exceed the mark;
    without fragmentation two free pages are an order-1 block."""
    m = make_machine("nowait", slab="SLAB")
    pa = m.page_alloc
    zone, classzone = pa.zonelist[0], pa.classzone
    mark = zone.wmark[WMARK_MIN]
    base = mark + zone.lowmem_reserve[classzone] + zone.highatomic

    def ok(order: int, free: int) -> bool:
        return zone_watermark_ok(m.profile, zone, order, mark, classzone, ALLOC_WMARK_MIN, free)

    assert ok(0, base + 1) and not ok(1, base + 1)
    assert ok(1, base + 2)
    assert not ok(0, base) and not ok(1, base)
