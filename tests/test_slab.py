"""The slab allocator models (SLUB and SLAB, v5.3) and the vmap_area object provider."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.gfp import GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, Gfp
from sim.kernel.mm.slab.caches import VmapAreaObjects, default_objs_per_slab, kmem_cache_create, vmap_area_cache
from sim.kernel.mm.slab.slab import SlabCache
from sim.kernel.mm.slab.slub import SlubCache
from sim.kernel.mm.vmalloc.area import ENOMEM
from sim.kernel.mm.vmalloc.space import NE_FIT_TYPE, VMALLOC_END, VMALLOC_START, VmapSpace
from sim.kernel.profile import PROFILES, get_profile

ALLOCATORS = ("SLUB", "SLAB")
STACK, STACK_ALIGN = 20480, 16384


class FakeTask:
    def __init__(self, cpu: int = 0) -> None:
        self.cpu = cpu
        self.preempt_count = 0


class FakeScheduler:
    """sleep = env.timeout; ``migrate_to`` moves a sleeper to another CPU."""

    def __init__(self, env: eventloop.Environment) -> None:
        self.env = env
        self.bugs: list[str] = []
        self.migrate_to: int | None = None

    def might_sleep(self, task, site):
        if task.preempt_count:
            self.bugs.append(site)
            return False
        return True

    def sleep(self, task, seconds, site):
        self.might_sleep(task, site)
        yield self.env.timeout(seconds)
        if self.migrate_to is not None:
            task.cpu = self.migrate_to


class FakePages:
    """A free-page count and a min watermark: a non-blocking request fails at or
    below min; a blocking one sleeps in "reclaim" (32 pages a round) and succeeds."""

    def __init__(self, free: int = 1_000_000, min_free: int = 0, sched: FakeScheduler | None = None) -> None:
        self.free = free
        self.min = min_free
        self.sched = sched
        self.held = 0
        self.calls: list[tuple[int, str]] = []
        self.tasks: list[object] = []  # the task= (current) of each non-blocking call
        self.sleeps = 0

    def alloc_pages_nowait(self, cpu, gfp, order=0, *, pool, site="", owner=None, task=None):
        assert not gfp & Gfp.DIRECT_RECLAIM and pool == "slab_unreclaimable"
        self.calls.append((int(gfp), site))
        self.tasks.append(task)
        if self.free <= self.min:
            return False
        self.free -= 1
        self.held += 1
        return True

    def alloc_pages(self, task, gfp, order=0, *, pool, site="", owner=None):
        self.calls.append((int(gfp), site))
        while self.free <= self.min:
            self.sleeps += 1
            yield from self.sched.sleep(task, 1e-3, "direct_reclaim")
            self.free += 32
        self.free -= 1
        self.held += 1
        return True

    def free_pages(self, cpu, order=0, *, pool, nr=1, owner=None):
        self.free += nr
        self.held -= nr


def make(allocator="SLUB", version="5.2", ncpus=4, pages=None, **kw):
    pages = pages if pages is not None else FakePages()
    cache = vmap_area_cache(get_profile(version), allocator=allocator, ncpus=ncpus, page_alloc=pages, **kw)
    return cache, pages


def drive(env, gen):
    """Run a kernel path as a SimPy process and return its value."""
    proc = env.process(gen)
    env.run(proc)
    return proc.value


# -- sizes and defaults -------------------------------------------------------


# struct vmap_area: 88 B / 46 a page to 5.3, 64 / 64 for 5.4-6.2, 72 / 56 from 6.3
VMAP_AREA = {"5.2": (88, 46), "5.3": (88, 46), "5.5": (64, 64), "5.18": (64, 64), "6.1": (64, 64), "6.3": (72, 56)}
VMAP_AREA |= {"6.8": (72, 56), "6.9": (72, 56)}


def test_every_profile_has_a_vmap_area_layout_pinned_here():
    assert set(VMAP_AREA) == set(PROFILES)


@pytest.mark.parametrize(("version", "size", "objs"), [(v, *VMAP_AREA[v]) for v in VMAP_AREA])
def test_vmap_area_cache_has_the_profiles_object_size_and_objects_per_page(version, size, objs):
    for allocator in get_profile(version).slab_allocators:
        cache, _ = make(allocator, version)
        assert (cache.size, cache.objs_per_slab) == (size, objs)
        assert default_objs_per_slab(allocator, size) == objs  # what the allocator itself would fit


def test_default_objects_per_slab_follow_each_allocators_layout():
    """SLUB fits PAGE_SIZE // size; SLAB too when the one-byte index array fits in
    one object (OBJFREELIST_SLAB), else it keeps the array on the page."""
    pages = FakePages()
    for size, slub, slab in ((32, 128, 124), (64, 64, 64), (16, 256, 240), (8, 512, 240), (2048, 2, 2)):
        assert default_objs_per_slab("SLUB", size) == slub, size
        assert default_objs_per_slab("SLAB", size) == slab, size
    assert kmem_cache_create("kmalloc-32", 32, allocator="SLAB", ncpus=2, page_alloc=pages).objs_per_slab == 124
    assert kmem_cache_create("kmalloc-32", 32, allocator="SLUB", ncpus=2, page_alloc=pages).objs_per_slab == 128
    with pytest.raises(ValueError, match="fit"):
        kmem_cache_create("big", 8192, allocator="SLAB", ncpus=2, page_alloc=pages)


def test_slub_and_slab_tunables_for_vmap_area_are_the_kernels():
    slub, _ = make("SLUB")
    assert isinstance(slub, SlubCache) and (slub.cpu_partial, slub.min_partial) == (30, 5)
    slab, _ = make("SLAB", ncpus=4)
    assert isinstance(slab, SlabCache)
    assert (slab.limit, slab.batchcount, slab.shared.limit) == (120, 60, 480)
    assert slab.free_limit == 5 * 60 + 46
    assert make("SLAB", ncpus=1)[0].shared is None  # no shared array on one CPU


def test_slab_is_not_offered_on_kernels_without_it():
    with pytest.raises(ValueError, match="no SLAB"):
        make("SLAB", "6.8")
    with pytest.raises(ValueError, match="allocator"):
        kmem_cache_create("x", 64, allocator="SLOB", ncpus=1, page_alloc=FakePages())


# -- page demand --------------------------------------------------------------


@pytest.mark.parametrize("allocator", ALLOCATORS)
@pytest.mark.parametrize("version", ["5.2", "5.5", "6.3"])
def test_cold_cache_needs_a_page_once_per_slab_of_objects_on_one_cpu(allocator, version):
    cache, pages = make(allocator, version)
    n = cache.objs_per_slab
    for i in range(1, 5 * n + 1):
        assert cache.alloc_nowait(0, GFP_NOWAIT) is not None
        assert pages.held == cache.nr_slabs == math.ceil(i / n), i
    assert cache.metrics.counters["slab.vmap_area.grow.GFP_NOWAIT"] == 5
    assert cache.levels() == {"slab.vmap_area.objects": 5 * n, "slab.vmap_area.slabs": 5}
    cache.record_totals()
    assert cache.metrics.counters["slab.vmap_area.allocs"] == 5 * n
    assert cache.metrics.counters["slab.vmap_area.slabs_max"] == 5


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_cold_cache_needs_about_a_page_per_slab_of_objects_on_several_cpus(allocator):
    cache, pages = make(allocator, ncpus=4)
    total = 46 * 40
    for i in range(total):
        assert cache.alloc_nowait(i % 4, GFP_NOWAIT) is not None
    assert 40 <= pages.held <= 40 + 4
    if allocator == "SLUB":  # each CPU grows its own CPU slab
        assert pages.held == 4 * math.ceil(total / 4 / 46)
    cache.check()


# -- memory pressure ----------------------------------------------------------


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_nowait_refill_fails_at_min_while_kernel_refill_sleeps_and_succeeds(allocator):
    env = eventloop.Environment()
    sched = FakeScheduler(env)
    pages = FakePages(free=100, min_free=100, sched=sched)
    cache, _ = make(allocator, pages=pages, scheduler=sched)
    assert cache.alloc_nowait(0, GFP_NOWAIT) is None
    assert cache.alloc_nowait(0, GFP_ATOMIC) is None
    assert pages.held == 0 and env.now == 0
    task = FakeTask(0)
    assert drive(env, cache.alloc(task, GFP_NOWAIT)) is None and env.now == 0
    slab = drive(env, cache.alloc(task, GFP_KERNEL))
    assert slab is not None and env.now > 0 and pages.sleeps >= 1
    assert cache.objects_in_use == 1 and cache.nr_slabs == 1
    counters = cache.metrics.counters
    assert counters["slab.vmap_area.refill_fail.GFP_NOWAIT"] == 2
    assert counters["slab.vmap_area.refill_fail.GFP_ATOMIC"] == 1
    assert counters["slab.vmap_area.refill_fail.GFP_KERNEL"] == 0
    assert cache.alloc_nowait(0, GFP_NOWAIT) is slab  # the new slab now serves GFP_NOWAIT
    cache.check()


def test_slub_new_slab_asks_twice_first_with_noretry_nowarn():
    cache, pages = make("SLUB", pages=FakePages(free=5, min_free=5))
    assert cache.alloc_nowait(0, GFP_NOWAIT | Gfp.ZERO) is None
    first = int(GFP_NOWAIT | Gfp.NOWARN | Gfp.NORETRY)
    assert pages.calls == [(first, "allocate_slab"), (int(GFP_NOWAIT), "allocate_slab")]  # __GFP_ZERO masked off
    [event] = cache.metrics.events_of("slab_out_of_memory")
    assert event["gfp"] == "GFP_NOWAIT|__GFP_ZERO" and event["allocator"] == "SLUB"


def test_slab_numa_failure_comes_from_fallback_alloc_with_gfp_nowait_comp():
    cache, pages = make("SLAB", pages=FakePages(free=5, min_free=5))
    assert cache.alloc_nowait(0, GFP_NOWAIT) is None
    exact = int(Gfp.THISNODE | Gfp.NOWARN | Gfp.COMP)  # gfp_exact_node: no reclaim, no warning
    plain = int(GFP_NOWAIT | Gfp.COMP)
    assert [gfp for gfp, _ in pages.calls] == [exact, exact, plain]
    [event] = cache.metrics.events_of("slab_out_of_memory")
    assert event["gfp"] == "GFP_NOWAIT|__GFP_COMP" and event["allocator"] == "SLAB"


def test_slab_without_numa_grows_once_with_the_callers_gfp_and_comp():
    cache, pages = make("SLAB", pages=FakePages(free=5, min_free=5), numa=False)
    assert cache.alloc_nowait(0, GFP_NOWAIT) is None
    assert pages.calls == [(int(GFP_NOWAIT | Gfp.COMP), "cache_grow_begin")]


def test_nowarn_failures_record_no_out_of_memory_event():
    for allocator in ALLOCATORS:
        cache, _ = make(allocator, pages=FakePages(free=0))
        assert cache.alloc_nowait(0, GFP_NOWAIT | Gfp.NOWARN) is None
        assert cache.metrics.events_of("slab_out_of_memory") == []


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_alloc_nowait_refuses_a_blocking_gfp_when_it_would_need_a_page(allocator):
    cache, _ = make(allocator)
    with pytest.raises(ValueError, match="blocking"):
        cache.alloc_nowait(0, GFP_KERNEL)


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_blocking_alloc_in_atomic_context_is_a_bug_even_from_the_per_cpu_cache(allocator):
    env = eventloop.Environment()
    sched = FakeScheduler(env)
    cache, _ = make(allocator, scheduler=sched)
    cache.alloc_nowait(0, GFP_NOWAIT)  # fills CPU 0's cache
    task = FakeTask(0)
    task.preempt_count = 1
    assert drive(env, cache.alloc(task, GFP_KERNEL)) is not None
    assert sched.bugs == ["kmem_cache_alloc(vmap_area)"]
    assert drive(env, cache.alloc(task, GFP_NOWAIT)) is not None and len(sched.bugs) == 1


@pytest.mark.parametrize(("allocator", "kw"), [("SLUB", {}), ("SLAB", {"numa": False}), ("SLAB", {})])
def test_task_that_migrates_while_growing_fills_the_new_cpus_cache(allocator, kw):
    env = eventloop.Environment()
    sched = FakeScheduler(env)
    pages = FakePages(free=10, min_free=10, sched=sched)
    cache, _ = make(allocator, pages=pages, scheduler=sched, **kw)
    sched.migrate_to = 1
    task = FakeTask(0)
    slab = drive(env, cache.alloc(task, GFP_KERNEL))
    assert slab is not None and task.cpu == 1 and pages.sleeps >= 1
    if allocator == "SLUB":  # the new page is CPU 1's slab, CPU 0 was left without one
        assert (cache.cpu_slab[1].page, cache.cpu_slab[1].freelist) == (slab, 45)
        assert cache.cpu_slab[0].page is None
    elif not kw:  # NUMA: fallback_alloc took one object from the node lists, no array filled
        assert all(not ac.entry for ac in cache.array) and slab.inuse == 1
    else:  # the refill re-reads the array after the sleep: CPU 1's got the batch of 16
        assert (len(cache.array[1].entry), cache.array[0].entry) == (15, [])
    pages.min = 0
    assert cache.alloc_nowait(1, GFP_NOWAIT) is slab  # CPU 1 holds the new objects
    assert pages.held == 1
    other = cache.alloc_nowait(0, GFP_NOWAIT)
    if allocator == "SLUB":  # the page is CPU 1's slab: CPU 0 needs its own
        assert other is not slab and pages.held == 2
    else:  # CPU 0 refills from the objects left on the node
        assert other is slab and pages.held == 1
    cache.check()


# -- reuse, cross-CPU frees, giving pages back --------------------------------


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_freed_objects_are_reused_before_new_pages_are_taken(allocator):
    cache, pages = make(allocator)
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(3 * 46)]
    assert pages.held == 3
    for slab in held:
        cache.free(0, slab)
    assert cache.objects_in_use == 0
    again = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(3 * 46)]
    assert pages.held == 3 and set(again) == set(held)
    cache.check()


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_objects_freed_on_another_cpu_serve_that_cpu(allocator):
    cache, pages = make(allocator)
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(2 * 46)]
    for slab in held:
        cache.free(1, slab)
    cache.check()
    # SLAB: all 92 wait in CPU 1's array.  SLUB: the full first slab went to
    # CPU 1's partial list; the second is still CPU 0's slab and takes its
    # objects back through get_freelist
    takers = [1] * 92 if allocator == "SLAB" else [1, 0] * 46
    for cpu in takers:
        assert cache.alloc_nowait(cpu, GFP_NOWAIT) is not None
    assert pages.held == 2
    cache.check()


def test_slub_full_slab_freed_remotely_joins_the_freeing_cpus_partial_list():
    cache, _ = make("SLUB")
    first = cache.alloc_nowait(0, GFP_NOWAIT)
    for _ in range(46):  # fills the first slab and starts a second
        cache.alloc_nowait(0, GFP_NOWAIT)
    assert cache.cpu_slab[0].page is not first and not first.frozen
    cache.free(2, first)
    assert cache.cpu_slab[2].partial == [first] and first.frozen and first.pobjects == 1
    cache.free(3, first)  # a frozen page just takes the object
    assert cache.cpu_slab[3].partial == [] and first.inuse == 44
    assert cache.alloc_nowait(2, GFP_NOWAIT) is first  # CPU 2 allocates from it
    cache.check()


def test_slub_get_partial_takes_slabs_until_more_than_half_cpu_partial():
    cache, pages = make("SLUB", cpu_partial=30, min_partial=5)
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(46 * 6)]
    slabs = list(dict.fromkeys(held))
    for slab in slabs[:5]:  # five objects back to each of five full slabs, via CPU 1
        for _ in range(5):
            cache.free(1, slab)
    cache.kmem_cache_shrink(0)  # CPU slabs and partial stacks to the node list
    assert len(cache.partial) == 5
    cache.alloc_nowait(3, GFP_NOWAIT)
    c = cache.cpu_slab[3]
    # 5 + 5 + 5 = 15 is not more than 15; + 5 = 20 is: four slabs, one as the
    # CPU slab and three on the stack
    assert c.freelist == 4 and len(c.partial) == 3 and len(cache.partial) == 1
    assert [p.pobjects for p in c.partial] == [5, 10, 15]
    assert pages.held == 6
    cache.check()


def test_slub_shrink_discards_empty_slabs_and_moves_the_fullest_to_the_head():
    cache, pages = make("SLUB")
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(46 * 6)]
    s1, s2, s3, s4, s5, _ = list(dict.fromkeys(held))
    for slab, n in ((s1, 3), (s2, 1), (s3, 40), (s4, 1), (s5, 46)):
        for _ in range(n):
            cache.free(1, slab)
    cache.kmem_cache_shrink(0)
    # the stack unfreezes to s5 s4 s3 s2 s1; s5 is empty, s3 has more than
    # 32 free objects and stays behind the promoted ones: 1 free, then 3 free
    assert list(cache.partial) == [s2, s4, s1, s3]
    assert pages.held == 5
    cache.check()


class PagesByCpu(FakePages):
    """FakePages that also records which CPU each page was freed on."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.freed_on: list[int] = []

    def free_pages(self, cpu, order=0, *, pool, nr=1, owner=None):
        self.freed_on.append(cpu)
        super().free_pages(cpu, order, pool=pool, nr=nr, owner=owner)


def test_slub_shrink_flushes_each_cpu_on_that_cpu():
    pages = PagesByCpu()
    cache, _ = make("SLUB", pages=pages, min_partial=0)
    cache.free(2, cache.alloc_nowait(2, GFP_NOWAIT))  # CPU 2's slab, empty again
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(47)]
    for slab in held[:46]:  # CPU 0's first slab, emptied through CPU 3's partial stack
        cache.free(3, slab)
    cache.kmem_cache_shrink(1)
    assert pages.freed_on == [2, 3] and pages.held == 1
    cache.check()


def test_slab_shrink_drains_each_cpus_array_on_that_cpu():
    pages = PagesByCpu()
    cache, _ = make("SLAB", pages=pages, batchcount=1)  # free_limit = 5 * 1 + 46
    held = [cache.alloc_nowait(2, GFP_NOWAIT) for _ in range(2 * 46)]
    for slab in held:
        cache.free(2, slab)
    assert len(cache.array[2].entry) == 92
    cache.kmem_cache_shrink(0)
    # free_block on CPU 2 ends 92 > 51 free objects with one slab; the last
    # one goes in drain_freelist, on the shrinking CPU
    assert pages.freed_on == [2, 0] and pages.held == 0


def test_slub_empty_slabs_beyond_min_partial_go_back_to_the_page_allocator():
    cache, pages = make("SLUB")
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(46 * 40)]
    assert pages.held == 40
    for slab in held:
        cache.free(1, slab)
    cache.check()
    # each full slab is frozen onto CPU 1's stack at its first free, counted
    # with one free object (pobjects goes stale as the rest follow): the 32nd
    # finds 31 > cpu_partial and drains 31 empty slabs; the node keeps 5
    assert [p.inuse for p in cache.partial] == [0] * cache.min_partial
    assert pages.held == 40 - 26 and cache.metrics.counters["slab.vmap_area.pages_free"] == 26
    assert len(cache.cpu_slab[1].partial) == 8 and cache.cpu_slab[1].partial[-1].pobjects == 8
    cache.kmem_cache_shrink(1)
    assert pages.held == 0 and cache.nr_slabs == 0


def test_slab_free_slabs_beyond_free_limit_go_back_to_the_page_allocator():
    cache, pages = make("SLAB")
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(46 * 20)]
    assert pages.held == 20
    for slab in held:
        cache.free(1, slab)
    cache.check()
    assert len(cache.array[1].entry) <= 120 and len(cache.shared.entry) == 480
    assert cache.free_objects <= cache.free_limit and pages.held < 20
    assert pages.held * 46 >= cache.objects_in_use + len(cache.array[1].entry) + 480
    cache.kmem_cache_shrink(1)
    assert pages.held == 0 and cache.nr_slabs == 0


def test_slab_refill_of_an_untouched_array_takes_16_then_batchcount():
    cache, _ = make("SLAB")
    cache.alloc_nowait(0, GFP_NOWAIT)  # cold: grows one page and takes BATCHREFILL_LIMIT
    assert len(cache.array[0].entry) == 15 and cache.free_objects == 46 - 16
    for _ in range(15 + 1):
        cache.alloc_nowait(0, GFP_NOWAIT)  # touched now: the next refill wants 60, gets the page's 30
    assert len(cache.array[0].entry) == 29 and cache.free_objects == 0
    cache.check()


def test_slab_cache_reap_drains_idle_arrays_and_destroys_free_slabs():
    cache, pages = make("SLAB", ncpus=2)
    held = [cache.alloc_nowait(0, GFP_NOWAIT) for _ in range(46 * 3)]
    for slab in held:
        cache.free(0, slab)
    n = len(cache.array[0].entry)
    cache.cache_reap(0, now=2.0)  # touched since the last reap: only untouched
    assert len(cache.array[0].entry) == n and not cache.array[0].touched
    cache.cache_reap(0, now=4.0)
    assert len(cache.array[0].entry) == n - 24  # a fifth of the limit
    cache.check()
    for t in range(3, 40):
        cache.cache_reap(0, now=2.0 * t)
        cache.cache_reap(1, now=2.0 * t + 1)
    assert cache.array[0].entry == [] and cache.shared.entry == [] and pages.held == 0
    cache.check()


# -- accounting identities ----------------------------------------------------

OPS = st.lists(
    st.tuples(st.sampled_from(["alloc", "free"]), st.integers(0, 3), st.integers(1, 120), st.integers(0, 10**6)),
    min_size=1,
    max_size=60,
)


@pytest.mark.parametrize("allocator", ALLOCATORS)
@settings(max_examples=80, deadline=None)
@given(ops=OPS, budget=st.integers(0, 80))
def test_accounting_identities_hold_under_random_alloc_and_free(allocator, ops, budget):
    """Bursts of allocations and frees (a random held object each) on random
    CPUs, with a page budget that makes some allocations fail."""
    pages = FakePages(free=budget)
    cache, _ = make(allocator, pages=pages)
    held: list = []
    allocs = frees = 0
    for op, cpu, n, pick in ops:
        for k in range(n):
            if op == "alloc":
                slab = cache.alloc_nowait(cpu, GFP_NOWAIT)
                if slab is not None:
                    held.append(slab)
                    allocs += 1
            elif held:
                cache.free(cpu, held.pop((pick + 7919 * k) % len(held)))
                frees += 1
        cache.check()  # includes: objects held per page <= page.inuse <= objects per page
        assert cache.objects_in_use == allocs - frees == len(held)
        assert pages.held == cache.nr_slabs == len(cache.slabs) <= budget
        assert (
            cache.metrics.counters["slab.vmap_area.pages_alloc"] - cache.metrics.counters["slab.vmap_area.pages_free"]
            == pages.held
        )
        if allocator == "SLAB":
            assert cache.free_objects <= cache.free_limit or not cache.slabs_free
    for slab in held:
        cache.free(0, slab)
    cache.kmem_cache_shrink(0)
    assert pages.held == 0 and cache.objects_in_use == 0


# -- the allocator core's object provider -------------------------------------


def _fork_stacks(space, n):
    return [space.alloc_area(STACK, STACK_ALIGN, VMALLOC_START, VMALLOC_END) for _ in range(n)]


def _objects_in_tree(space):
    return sum(va.slab is not None for va in space.free_areas())


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_vmap_area_objects_feed_ne_splits_and_take_back_merged_objects(allocator):
    cache, pages = make(allocator)
    cpu = [0]
    space = VmapSpace(provider=VmapAreaObjects(cache, lambda: cpu[0]))
    areas = []
    for k in range(300):
        cpu[0] = k % 4
        areas += _fork_stacks(space, 1)
    splits = space.fit_counts[NE_FIT_TYPE]
    assert splits >= 290 and cache.allocs == splits
    assert cache.objects_in_use == _objects_in_tree(space)
    for k, va in enumerate(areas[::-1]):
        cpu[0] = k % 3
        space.free_vmap_area(va)
    space.invariants()
    assert cache.frees > 0 and cache.objects_in_use == _objects_in_tree(space)
    assert cache.objects_in_use <= 2
    cache.check()
    assert pages.held == cache.nr_slabs


def test_failed_split_leaves_the_tree_and_the_cache_unchanged():
    cache, pages = make("SLUB", pages=FakePages(free=1))
    space = VmapSpace(provider=VmapAreaObjects(cache, lambda: 0))
    _fork_stacks(space, 46)  # exactly one slab of split objects
    before = space.free_blocks()
    assert space.alloc(STACK, STACK_ALIGN, VMALLOC_START, VMALLOC_END) == ENOMEM
    assert space.free_blocks() == before and cache.objects_in_use == 46
    [event] = cache.metrics.events_of("slab_out_of_memory")
    assert event["gfp"] == "GFP_NOWAIT"


def test_vmap_area_objects_refuse_a_blocking_gfp():
    cache, _ = make("SLUB")
    with pytest.raises(ValueError, match="spinlock"):
        VmapAreaObjects(cache, lambda: 0, GFP_KERNEL)


# -- with the machine's own scheduler -----------------------------------------


def test_kernel_refill_sleeps_under_the_real_scheduler():
    np = pytest.importorskip("numpy")
    cpu_mod = pytest.importorskip("sim.kernel.sched.cpu")
    env = eventloop.Environment()
    sched = cpu_mod.Scheduler(env, 2, np.random.default_rng(1))
    pages = FakePages(free=3, min_free=3, sched=sched)
    for allocator in ALLOCATORS:
        pages.free, sleeps, start = pages.min, pages.sleeps, env.now  # at min again: the refill must reclaim
        cache, _ = make(allocator, ncpus=2, pages=pages, scheduler=sched)
        got = []

        def body(task, cache=cache, got=got):
            got.append((yield from cache.alloc(task, GFP_KERNEL)))
            got.append(cache.alloc_nowait(task.cpu, GFP_NOWAIT))

        sched.spawn("forker", body, cpu=0)
        env.run()
        assert got[0] is not None and got[1] is got[0]
        assert pages.sleeps > sleeps and env.now > start, allocator
        cache.check()
    assert sched.metrics.counters["sleep_in_atomic_bugs"] == 0


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_with_the_machines_page_allocator_nowait_fails_at_min_and_kernel_reclaims(allocator):
    np = pytest.importorskip("numpy")
    page_alloc = pytest.importorskip("sim.kernel.mm.page_alloc")
    zones = pytest.importorskip("sim.kernel.mm.zones")
    from sim.kernel.sched.cpu import Scheduler
    from sim.record.metrics import Metrics

    profile = get_profile("5.2")
    env, metrics = eventloop.Environment(), Metrics()
    sched = Scheduler(env, 4, np.random.default_rng(1), metrics=metrics)
    table = zones.build_zones(256 << 20, 4, True, profile)
    pa = page_alloc.PageAllocator(env, table, profile, rng=np.random.default_rng(2), metrics=metrics, scheduler=sched)
    for zone in pa.zones:  # every zone exactly at its min watermark, the rest clean page cache
        pa.populate("file_clean", zone.nr_free - zone.wmark[0], zone=zone.name)
    cache = vmap_area_cache(profile, allocator=allocator, ncpus=4, page_alloc=pa, metrics=metrics, scheduler=sched)
    assert cache.alloc_nowait(0, GFP_NOWAIT) is None
    # SLUB: NORETRY|NOWARN then plain; SLAB: two exact-node tries without warning, then fallback_alloc
    assert metrics.counters["warn_alloc"] == 1
    assert metrics.counters["alloc_fail"] == (2 if allocator == "SLUB" else 3)
    done = []

    def forker(task):
        slab = yield from cache.alloc(task, GFP_KERNEL)
        done.append((slab, env.now))

    sched.spawn("forker", forker, cpu=0)
    env.run(until=1.0)
    [(slab, when)] = done
    assert slab is not None and when > 0 and metrics.counters["allocstall"] >= 1
    assert cache.nr_slabs == 1 and metrics.counters["sleep_in_atomic_bugs"] == 0
    cache.check()


# -- current's reserves reach a non-blocking refill ----------------------------


def _task(cpu=0, rt=False, oom_victim=False):
    return SimpleNamespace(cpu=cpu, rt=rt, oom_victim=oom_victim, pf_memalloc=False, killed=oom_victim,
                           preempt_count=0, name="t")  # fmt: skip


@pytest.mark.parametrize("allocator", ALLOCATORS)
def test_every_page_request_of_a_refill_names_the_task_it_runs_for(allocator):
    cache, pages = make(allocator, pages=FakePages(free=5, min_free=5))
    task = _task()
    assert cache.alloc_nowait(0, GFP_NOWAIT, task) is None
    assert pages.tasks and all(t is task for t in pages.tasks)  # SLUB 2 tries, SLAB 3
    pages.tasks.clear()
    assert cache.alloc_nowait(0, GFP_NOWAIT) is None  # a context without a task
    assert pages.tasks and all(t is None for t in pages.tasks)
    pages.tasks.clear()
    space = VmapSpace(provider=VmapAreaObjects(cache, lambda: 0))
    assert space.alloc(STACK, STACK_ALIGN, VMALLOC_START + 4096, VMALLOC_END, task) == ENOMEM  # an NE split
    assert pages.tasks and all(t is task for t in pages.tasks)
    pages.tasks.clear()
    assert drive(eventloop.Environment(), cache.alloc(task, GFP_NOWAIT)) is None  # kmem_cache_alloc from a task
    assert pages.tasks and all(t is task for t in pages.tasks)


def _machine_cache(allocator, kernel, free):
    """The vmap_area cache on the machine's page allocator, the top zone at ``free(min)``
    pages free (the lower zone empty) and the cache with no free object."""
    np = pytest.importorskip("numpy")
    from sim.kernel.mm.page_alloc import PageAllocator
    from sim.kernel.mm.zones import MemoryParams, build_zones

    profile = get_profile(kernel)
    params = MemoryParams(vmstat_drift=False, watermark_boost_factor=0)
    table = build_zones(256 << 20, 4, False, profile, params)
    pa = PageAllocator(eventloop.Environment(), table, profile, params, rng=np.random.default_rng(2))
    top = pa.zonelist[0]
    for zone in pa.zones:
        pa.populate("file_clean", zone.nr_free - (free(zone.wmark[0]) if zone is top else 0), zone=zone.name)
    cache = vmap_area_cache(profile, allocator=allocator, ncpus=4, page_alloc=pa)
    return cache, pa


# free pages in the top zone (min M = 445 at 256 MiB) -> {kind: gets the refill's page}
RESERVES = {
    "just above M": (lambda m: m + 1, {"plain": True, "rt": True, "victim": True}),
    "at M": (lambda m: m, {"plain": False, "rt": True, "victim": True}),
    "just above M - M/4": (lambda m: m - m // 4 + 1, {"plain": False, "rt": True, "victim": True}),
    "at M - M/4": (lambda m: m - m // 4, {"plain": False, "rt": False, "victim": True}),
    "just above M - M/2": (lambda m: m - m // 2 + 1, {"plain": False, "rt": False, "victim": True}),
    "at M - M/2": (lambda m: m - m // 2, {"plain": False, "rt": False, "victim": False}),
}


@pytest.mark.parametrize("allocator", ALLOCATORS)
@pytest.mark.parametrize("level", list(RESERVES))
@pytest.mark.parametrize("kernel", ["5.2", "6.3"])
def test_the_nowait_split_refill_gets_an_oom_victims_and_an_rt_tasks_reserves(allocator, level, kernel):
    """__alloc_pages_slowpath with current: an RT task's GFP_NOWAIT has ALLOC_HARDER (M - M/4)
    from gfp_to_alloc_flags before 6.3 (ab3508854353 gives it nothing extra without direct
    reclaim); an OOM victim's is replaced by ALLOC_OOM (M/2) at the retry: label, before
    "!can_direct_reclaim -> nopage"."""
    free, want = RESERVES[level]
    for kind, ok in want.items():
        if kind == "rt" and kernel == "6.3":
            ok = want["plain"]
        cache, pa = _machine_cache(allocator, kernel, free)
        task = _task(rt=kind == "rt", oom_victim=kind == "victim")
        space = VmapSpace(provider=VmapAreaObjects(cache, lambda: 0))
        got = space.alloc(STACK, STACK_ALIGN, VMALLOC_START + 4096, VMALLOC_END, task)  # an NE split
        assert (got != ENOMEM) is ok, (kind, level)
        assert cache.nr_slabs == int(ok)
