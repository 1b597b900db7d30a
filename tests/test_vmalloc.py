"""vmalloc on the machine: strategies, the overflow path, lazy purges, BUG checks."""

from __future__ import annotations

import pytest

from sim.kernel.mm.gfp import GFP_KERNEL, GFP_THREAD_STACK
from sim.kernel.mm.oom_kill import MemoryOwner
from sim.kernel.mm.vmalloc.alloc import EBUSY, lazy_max_pages
from sim.kernel.mm.vmalloc.percpu_vm import PMD_SIZE, pcpu_get_vm_areas
from sim.kernel.mm.vmalloc.space import VMALLOC_END, VMALLOC_START
from sim.kernel.mm.vmalloc.strategies import NowaitSplit
from sim.kernel.mm.zones import MemoryParams
from tests.conftest import make_machine, race_machine

STACK = 16384


def stacks(m, n, keep=50, per_cpu=True, log=None):
    """Tasks that vmalloc ``n`` thread stacks each, keeping ``keep`` alive."""
    vm = m.vmalloc

    def body(task):
        live = []
        for _ in range(n):
            area = yield from vm.vmalloc_node_range(
                task,
                STACK,
                STACK,
                VMALLOC_START,
                VMALLOC_END,
                GFP_THREAD_STACK,
                caller="copy_process",
                pool="kernel_stack",
            )
            if log is not None:
                log.append(area)
            if area is not None:
                live.append(area)
            if len(live) > keep:
                vm.vfree_atomic(task.cpu, live.pop(0))
            yield from m.sched.run(task, 1e-5)

    for c in range(m.config.cpus if per_cpu else 1):
        m.spawn(f"stress-ng-fork/{c}", body, cpu=c)


def squeeze(m, to_min_plus=0):
    """Charge anon memory until every zone sits at min (+ a margin)."""
    pa = m.page_alloc
    hog = MemoryOwner("hog")
    for z in pa.zones:
        extra = z.nr_free - (z.wmark[0] + to_min_plus)
        if z.idx == 0:
            extra = z.nr_free - (z.wmark[0] + z.info.lowmem_reserve[pa.classzone] + to_min_plus)
        if extra > 0:
            pa.populate("anon", extra, zone=z.name, owner=hog)
    return hog


@pytest.mark.parametrize("strategy", ["nowait", "preload", "preload-lockless", "preload-gfp", "atomic"])
def test_stacks_are_ne_splits_under_every_strategy(strategy):
    m = make_machine(strategy)
    stacks(m, 300)
    m.env.run(until=2)
    c = m.metrics.counters
    assert c["fit_ne"] == 1200 and c["fit_le"] == c["fit_re"] == c["fit_fl"] == 0
    if strategy in ("nowait", "atomic"):
        assert c["split_nowait_attempts"] == 1200 and c["split_from_preload"] == 0
    else:
        assert c["split_from_preload"] == 1200 and c["split_nowait_attempts"] == 0
        assert c["preload_fills"] == 1200
    assert c["sleep_in_atomic_bugs"] == 0


def test_objects_in_use_equal_busy_lazy_free_blocks_and_preloads():
    m = make_machine("preload")
    stacks(m, 400)
    m.env.run(until=2)
    vm = m.vmalloc
    preloaded = sum(m.vmalloc.strategy.preloaded(c.id) for c in m.sched.cpus)
    free_blocks = sum(1 for _ in vm.space.free_areas()) - 1  # the boot block is not a slab object
    assert m.vmap_area_cache.objects_in_use == len(vm.space.busy) + free_blocks + preloaded


def test_lazy_frees_purge_past_lazy_max_pages():
    m = make_machine("nowait", cpus=4)
    assert m.vmalloc.lazy.lazy_max == lazy_max_pages(4) == 24576
    stacks(m, 2000, keep=10)
    m.env.run(until=5)
    c = m.metrics.counters
    assert c["lazy_purges"] >= 1
    assert c["tlb_flushes"] == c["lazy_purges"]
    assert m.vmalloc.lazy.vmap_lazy_nr <= m.vmalloc.lazy.lazy_max


def _leave_one_free_object(m, cpu=0):
    """Take objects from the vmap_area cache until its CPU slab holds exactly one."""
    cache = m.vmap_area_cache
    per_slab = m.profile.vmap_area_objs_per_slab
    held = []
    while cache.objects_in_use % per_slab != per_slab - 1:
        held.append(cache.alloc_nowait(cpu, 0))
    return held


def _one_stack(m):
    """One fork's alloc_vmap_area for a stack, on CPU 0; returns the list it lands in."""
    result = []

    def fork(task):
        va = yield from m.vmalloc.alloc_vmap_area(task, STACK + 4096, STACK, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        result.append(va)

    m.spawn("stress-ng-fork", fork, cpu=0)
    m.env.run(until=1)
    return result


def test_nowait_split_fails_at_min_and_the_overflow_purge_rescues_it():
    m = make_machine("nowait", cpus=1, memory=MemoryParams(vmstat_drift=False, watermark_boost_factor=0))
    vm = m.vmalloc
    stacks(m, 60, keep=0, per_cpu=False)  # 60 stacks freed lazily, not yet purged
    m.env.run(until=0.5)
    assert vm.lazy.vmap_lazy_nr > 0 and m.metrics.counters["lazy_purges"] == 0
    _leave_one_free_object(m)
    squeeze(m)
    result = _one_stack(m)
    c = m.metrics.counters
    assert not isinstance(result[0], int)  # the fork gets its stack
    assert c["split_nowait_failures"] == 1  # the busy descriptor took the last object
    assert c["overflow_purges"] == 1 and c["overflow_retry_successes"] == 1
    (fail,) = m.metrics.events_of("split_nowait_failure")
    assert fail["DMA32_free"] <= fail["DMA32_min"] and fail["gfp"] == "GFP_NOWAIT"
    assert fail["chain"].startswith("alloc_vmap_area")
    assert fail["retry"] == 0 and fail["fit"] == "NE"  # the first try; the retry after the purge succeeded


def test_preload_fills_with_gfp_kernel_at_min_and_never_takes_nowait():
    m = make_machine("preload", cpus=1, memory=MemoryParams(vmstat_drift=False, watermark_boost_factor=0))
    stacks(m, 60, keep=0, per_cpu=False)
    m.env.run(until=0.5)
    _leave_one_free_object(m)
    squeeze(m)
    m.vmalloc.strategy.ne_fit_preload_node[0] = None
    result = _one_stack(m)
    c = m.metrics.counters
    assert not isinstance(result[0], int)
    assert c["split_nowait_attempts"] == 0 and c["split_from_preload"] >= 1
    assert c["allocstall"] >= 1  # the GFP_KERNEL fill went through direct reclaim


class KernelUnderLock(NowaitSplit, register=False):
    """A deliberately wrong strategy: GFP_KERNEL for the split, under the lock."""

    name = "kernel-under-lock"

    def split_object(self, vm, task):
        vm.sched.might_sleep(task, "kmem_cache_alloc(vmap_area_cachep, GFP_KERNEL) under vmap_area_lock")
        return vm.split_nowait(task)


def test_gfp_kernel_under_the_lock_is_caught_as_a_bug():
    m = make_machine("nowait")
    m.vmalloc.strategy = KernelUnderLock(m.sched.ncpus)
    stacks(m, 5, per_cpu=False)
    m.env.run(until=1)
    assert m.metrics.counters["sleep_in_atomic_bugs"] == 5
    bug = m.metrics.events_of("bug_sleeping_in_atomic")[0]
    assert "GFP_KERNEL" in bug["site"] and bug["preempt_count"] == 1


def test_v53_preload_on_preempt_rt_is_a_bug_and_v55_is_not():
    for strategy, bugs in (("preload", True), ("preload-lockless", False)):
        m = make_machine(strategy, preemption="rt")
        stacks(m, 20, per_cpu=False)
        m.env.run(until=1)
        assert (m.metrics.counters["sleep_in_atomic_bugs"] > 0) is bugs, strategy


def test_exhausted_window_fails_with_ebusy_after_one_purge():
    m = make_machine("preload")
    vm = m.vmalloc
    out = []

    def body(task):
        # a window of 3 pages holds one 2-page area plus guard only
        for _ in range(2):
            area = yield from vm.vmalloc_node_range(task, 8192, 1, VMALLOC_START, VMALLOC_START + 3 * 4096, GFP_KERNEL)
            out.append(area)

    m.spawn("t", body, cpu=0)
    m.env.run(until=1)
    assert out[0] is not None and out[1] is None
    c = m.metrics.counters
    assert c["vmap_ebusy"] == 1 and c["overflow_purges"] == 1 and c["vmap_fail_no_space"] == 2
    (ebusy,) = m.metrics.events_of("vmap_ebusy")
    assert ebusy["cause"] == "no_space" and ebusy["retry"] == 1
    assert ebusy["size"] == 3 * 4096 and ebusy["align_shift"] == 0
    assert "alloc_vmap_area <- __get_vm_area_node <- __vmalloc_node_range" in ebusy["chain"]


def test_same_seed_same_counters():
    def run():
        m = make_machine("preload-lockless", preemption="full")
        stacks(m, 200)
        m.env.run(until=1)
        return dict(m.metrics.counters)

    assert run() == run()


def _lazy_stacks(m, n, cpu=0):
    """A task on ``cpu`` that vmallocs ``n`` stacks and vfrees them all (lazily)."""
    vm = m.vmalloc

    def body(task):
        areas = []
        for _ in range(n):
            area = yield from vm.vmalloc_node_range(
                task, STACK, STACK, VMALLOC_START, VMALLOC_END, GFP_KERNEL, pool="kernel_stack"
            )
            areas.append(area)
        for area in areas:
            yield from vm.vfree(task, area)

    m.spawn("maker", body, cpu=cpu, pinned=True)


@pytest.mark.parametrize("model, offered", [("full", True), ("none", False)])
def test_a_purge_offers_the_lock_after_each_area_under_full_preemption(model, offered):
    m = make_machine("nowait", cpus=2, preemption=model)
    vm = m.vmalloc
    _lazy_stacks(m, 200)
    m.env.run(until=0.1)
    assert len(vm.lazy.purge_list) == 200 and m.metrics.counters["lazy_purges"] == 0
    m.metrics.seconds["lock_wait:vmap_area_lock"] = 0.0
    start = m.env.now

    def purger(task):
        yield from vm.purge_vmap_area_lazy(task)

    def allocator(task):
        yield from m.sched.run(task, 1e-4)  # the purger holds the lock by now
        va = yield from vm.alloc_vmap_area(task, 2 * 4096, 4096, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        assert not isinstance(va, int)

    m.spawn("purger", purger, cpu=0, pinned=True)
    m.spawn("allocator", allocator, cpu=1, pinned=True)
    m.env.run(until=start + 0.01)
    wait = m.metrics.seconds["lock_wait:vmap_area_lock"]
    per_va = vm.params.purge_per_va
    if offered:  # spin_needbreak: the allocator waits for one merge at most
        assert 0 < wait <= per_va + 1e-9
    else:  # PREEMPT_NONE, nothing to run on the purger's CPU: the whole batch
        assert wait > 150 * per_va
    assert not vm.lazy.purge_list and vm.lazy.vmap_lazy_nr == 0


def test_v55_lazy_areas_leave_the_busy_tree_when_freed_and_merge_at_the_purge():
    m = make_machine("preload-gfp", cpus=1, kernel="5.5")
    vm = m.vmalloc
    _lazy_stacks(m, 50)
    m.env.run(until=0.1)
    assert len(vm.lazy.purge_list) == 50 and not vm.space.busy  # dd3b8353bae7 (v5.4)
    preloaded = sum(m.vmalloc.strategy.preloaded(c.id) for c in m.sched.cpus)
    free_blocks = sum(1 for _ in vm.space.free_areas()) - 1
    assert m.vmap_area_cache.objects_in_use == len(vm.lazy.purge_list) + free_blocks + preloaded

    def purger(task):
        yield from vm.purge_vmap_area_lazy(task)

    m.spawn("purger", purger, cpu=0)
    m.env.run(until=0.2)
    assert not vm.lazy.purge_list and len(vm.space.free_blocks()) == 1  # everything merged back


def test_v55_lockless_preload_misses_when_preempted_and_migrated_before_the_lock():
    m, lock_cpus = race_machine("preload-lockless")
    c = m.metrics.counters
    assert lock_cpus == [1] and c["migrations"] >= 1
    assert c["preload_misses"] == 1 and c["split_nowait_attempts"] == 1 and c["split_from_preload"] == 1
    assert m.vmalloc.strategy.ne_fit_preload_node[0] is not None  # the object stayed behind
    # x's check saw CPU 0's object, so it did not fill: a race miss, not a fill miss or a percpu carve
    assert c["preload_race_misses"] == 1 and c["preload_fill_misses"] == 0
    assert c["pcpu_ne_splits"] == 0 and c["pcpu_split_nowait"] == 0


def test_v53_preload_keeps_the_checked_cpu_until_the_lock():
    m, lock_cpus = race_machine("preload")
    c = m.metrics.counters
    assert c["preload_misses"] == 0 and c["split_from_preload"] == 2 and c["split_nowait_attempts"] == 0
    assert c["preemptions"] >= 1  # x was preempted after the lock was dropped, not inside the window
    assert c["preload_race_misses"] == 0 and c["preload_fill_misses"] == 0


def _one_page(m):
    """One task vmallocs one page on a fresh machine (an NE_FIT split) and the run ends; the counters."""
    vm = m.vmalloc

    def x(task):
        area = yield from vm.vmalloc_node_range(task, 4096, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        assert area is not None

    m.spawn("x", x, cpu=0)
    m.env.run(until=0.1)
    return m.metrics.counters


@pytest.mark.parametrize("strategy", ["preload", "preload-lockless", "preload-gfp"])
def test_a_split_after_a_fill_that_got_no_object_is_a_fill_miss_not_a_race(strategy, monkeypatch):
    m = make_machine(strategy, cpus=1)

    def no_object(vm, task, gfp):  # the preload's kmem_cache_alloc_node returns NULL
        return None
        yield

    monkeypatch.setattr(m.vmalloc.strategy, "fill", no_object)
    c = _one_page(m)
    assert c["fit_ne"] == 1 and c["preload_misses"] == 1 and c["split_nowait_attempts"] == 1
    assert c["preload_fill_misses"] == 1 and c["preload_race_misses"] == 0 and c["pcpu_split_nowait"] == 0


@pytest.mark.parametrize("strategy", ["nowait", "atomic"])
def test_without_a_preload_an_alloc_vmap_area_split_is_no_miss(strategy):
    c = _one_page(make_machine(strategy, cpus=1))
    assert c["fit_ne"] == 1 and c["split_nowait_attempts"] == 1
    assert c["preload_misses"] == c["preload_fill_misses"] == c["preload_race_misses"] == c["pcpu_ne_splits"] == 0


def test_page_loop_is_a_preemption_point_under_preempt_none():
    m = make_machine("nowait", cpus=1)
    vm = m.vmalloc
    log = []

    def big(task):
        yield from m.sched.run(task, 0.02)  # past its slice with another task waiting
        area = yield from vm.vmalloc_node_range(task, 64 * 4096, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        log.append(("vmalloc done", area.nr_pages))

    def other(task):
        log.append(("other ran", vm.space.busy and next(iter(vm.space.busy.values())).va_start > 0))
        yield from m.sched.run(task, 1e-4)

    m.spawn("big", big, cpu=0)
    m.spawn("other", other, cpu=0)
    m.env.run(until=1)
    assert [e[0] for e in log] == ["other ran", "vmalloc done"]  # cond_resched after a page
    assert log[0][1]  # the area was already reserved: other ran inside __vmalloc_area_node


@pytest.mark.spies_on_methods
def test_vunmap_frees_the_range_before_the_pages():
    m = make_machine("nowait", cpus=1)
    vm = m.vmalloc
    order = []
    free_pages = m.page_alloc.free_pages
    noflush = vm.lazy.free_vmap_area_noflush

    def logged_free_pages(*args, **kwargs):
        order.append(("pages", kwargs.get("pool")))
        return free_pages(*args, **kwargs)

    def logged_noflush(task, v):
        order.append(("range", v.pool))
        yield from noflush(task, v)

    m.page_alloc.free_pages = logged_free_pages
    vm.lazy.free_vmap_area_noflush = logged_noflush

    def body(task):
        area = yield from vm.vmalloc_node_range(
            task, STACK, STACK, VMALLOC_START, VMALLOC_END, GFP_KERNEL, pool="kernel_stack"
        )
        yield from vm.vfree(task, area)

    m.spawn("t", body)
    m.env.run(until=1)
    assert order == [("range", "kernel_stack"), ("pages", "kernel_stack")]


@pytest.mark.spies_on_methods
def test_a_page_failure_of_vmalloc_is_an_event_with_its_chain():
    m = make_machine("nowait", cpus=1)
    vm = m.vmalloc
    calls = []
    alloc_pages = m.page_alloc.alloc_pages

    def failing_alloc_pages(task, gfp, order=0, **kwargs):
        if kwargs.get("site") != "copy_process":  # slab pages
            return (yield from alloc_pages(task, gfp, order, **kwargs))
        calls.append(1)
        return len(calls) < 3  # two pages of the area, then a failure

    m.page_alloc.alloc_pages = failing_alloc_pages
    out = []

    def body(task):
        out.append(
            (
                yield from vm.vmalloc_node_range(
                    task, 4 * 4096, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL, caller="copy_process"
                )
            )
        )

    m.spawn("t", body)
    m.env.run(until=1)
    assert out == [None] and m.metrics.counters["vmalloc_page_failures"] == 1
    (e,) = m.metrics.events_of("vmalloc_page_failure")
    assert e["stage"] == "pages" and e["allocated"] == 2 and e["wanted"] == 4
    assert e["chain"] == "__vmalloc_area_node <- __vmalloc_node_range <- copy_process"
    assert not vm.calls.active  # every frame entered was left


# -- the split's GFP_NOWAIT refill runs for the task that splits ----------------------------


def _split_at(kernel, path, kind, free):
    """One NE_FIT split by a task of ``kind`` on one CPU whose vmap_area cache must take a
    page, with ``free(min)`` pages free in the top zone (the DMA zone empty): whether the
    request succeeded, and the split failures counted."""
    m = make_machine("nowait", cpus=1, kernel=kernel, memory=MemoryParams(vmstat_drift=False, watermark_boost_factor=0))
    _leave_one_free_object(m)  # the busy descriptor takes it: the split needs a new slab
    m.vmalloc.kmalloc[64].free(0, m.vmalloc.kmalloc[64].alloc_nowait(0, 0))  # pcpu's vm_struct without a page
    pa, hog = m.page_alloc, MemoryOwner("hog")
    for z in pa.zones:
        pa.populate("anon", z.nr_free - (free(z.wmark[0]) if z.idx == pa.classzone else 0), zone=z.name, owner=hog)
    out = []

    def body(task):
        if kind == "victim":  # as oom_kill_process marks the victim's tasks (tsk_is_oom_victim)
            task.oom_victim = task.killed = True
        if path == "alloc_vmap_area":
            va = yield from m.vmalloc.alloc_vmap_area(task, STACK + 4096, STACK, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
            out.append(va != EBUSY)
        else:
            vms, _, error = yield from pcpu_get_vm_areas(m.vmalloc, task, [0], [PMD_SIZE])
            out.append(not error)

    m.spawn("splitter", body, cpu=0, rt=kind == "rt")
    m.env.run(until=1)
    c = m.metrics.counters
    assert c["split_nowait_attempts"] >= 1 and c["sleep_in_atomic_bugs"] == 0
    return out[0], c["split_nowait_failures"]


@pytest.mark.parametrize("path", ["alloc_vmap_area", "pcpu_get_vm_areas"])
@pytest.mark.parametrize("kernel", ["5.2", "6.3"])
def test_an_oom_victims_and_an_rt_tasks_split_get_their_reserves(path, kernel):
    """The NE_FIT split's GFP_NOWAIT slab refill asks the page allocator for the splitting
    task (current): an OOM victim gets ALLOC_OOM (M/2) at the slow path's retry:, an RT task
    ALLOC_HARDER (M - M/4) before 6.3; an ordinary task still fails at M."""
    half, three_quarters = (lambda m: m - m // 2 + 1), (lambda m: m - m // 4 + 1)  # just above each mark
    assert _split_at(kernel, path, "plain", lambda m: m) == (False, 2)  # the split fails before and after the purge
    assert _split_at(kernel, path, "plain", lambda m: m + 1) == (True, 0)
    assert _split_at(kernel, path, "victim", half) == (True, 0)
    assert _split_at(kernel, path, "victim", lambda m: m - m // 2) == (False, 2)
    assert _split_at(kernel, path, "rt", three_quarters) == ((True, 0) if kernel == "5.2" else (False, 2))
    assert _split_at(kernel, path, "rt", lambda m: m - m // 4) == (False, 2)
