"""vmalloc on the machine: strategies, the overflow path, lazy purges, BUG checks."""

from __future__ import annotations

import numpy as np
import pytest

from sim.kernel.gfp import GFP_KERNEL, GFP_THREAD_STACK
from sim.kernel.machine import Machine, MachineConfig
from sim.kernel.oom import MemoryOwner
from sim.kernel.strategies import NowaitSplit
from sim.kernel.vmalloc import lazy_max_pages
from sim.kernel.vmap import VMALLOC_END, VMALLOC_START
from sim.kernel.zones import MemoryParams

STACK = 16384


def machine(strategy="nowait", seed=1, **config):
    return Machine(MachineConfig(strategy=strategy, **config), np.random.SeedSequence(seed))


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
    m = machine(strategy)
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
    m = machine("preload")
    stacks(m, 400)
    m.env.run(until=2)
    vm = m.vmalloc
    preloaded = sum(c.percpu["ne_fit_preload_node"] is not None for c in m.sched.cpus)
    free_blocks = sum(1 for _ in vm.space.free_areas()) - 1  # the boot block is not a slab object
    assert m.vmap_area_cache.objects_in_use == len(vm.space.busy) + free_blocks + preloaded


def test_lazy_frees_purge_past_lazy_max_pages():
    m = machine("nowait", cpus=4)
    assert m.vmalloc.lazy_max == lazy_max_pages(4) == 24576
    stacks(m, 2000, keep=10)
    m.env.run(until=5)
    c = m.metrics.counters
    assert c["lazy_purges"] >= 1
    assert c["tlb_flushes"] == c["lazy_purges"]
    assert m.vmalloc.vmap_lazy_nr <= m.vmalloc.lazy_max


def _leave_one_free_object(m, cpu=0):
    """Take objects from the vmap_area cache until its CPU slab holds exactly one."""
    cache = m.vmap_area_cache
    per_slab = m.profile.vmap_area_objs_per_slab
    held = []
    while cache.objects_in_use % per_slab != per_slab - 1:
        held.append(cache.alloc_nowait(cpu, 0))
    return held


def test_nowait_split_fails_at_min_and_the_overflow_purge_rescues_it():
    m = machine("nowait", cpus=1, memory=MemoryParams(vmstat_drift=False, p_steal=0.0))
    vm = m.vmalloc
    stacks(m, 60, keep=0, per_cpu=False)  # 60 stacks freed lazily, not yet purged
    m.env.run(until=0.5)
    assert vm.vmap_lazy_nr > 0 and m.metrics.counters["lazy_purges"] == 0
    _leave_one_free_object(m)
    squeeze(m)
    result = []

    def fork(task):
        va = yield from vm.alloc_vmap_area(task, STACK + 4096, STACK, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        result.append(va)

    m.spawn("stress-ng-fork", fork, cpu=0)
    m.env.run(until=1)
    c = m.metrics.counters
    assert not isinstance(result[0], int)  # the fork gets its stack
    assert c["split_nowait_failures"] == 1  # the busy descriptor took the last object
    assert c["overflow_purges"] == 1 and c["overflow_retry_successes"] == 1
    (fail,) = m.metrics.events_of("split_nowait_failure")
    assert fail["DMA32_free"] <= fail["DMA32_min"] and fail["gfp"] == "GFP_NOWAIT"
    assert fail["chain"].startswith("alloc_vmap_area")


def test_preload_fills_with_gfp_kernel_at_min_and_never_takes_nowait():
    m = machine("preload", cpus=1, memory=MemoryParams(vmstat_drift=False, p_steal=0.0))
    vm = m.vmalloc
    stacks(m, 60, keep=0, per_cpu=False)
    m.env.run(until=0.5)
    _leave_one_free_object(m)
    squeeze(m)
    m.vmalloc.sched.cpus[0].percpu["ne_fit_preload_node"] = None
    result = []

    def fork(task):
        va = yield from vm.alloc_vmap_area(task, STACK + 4096, STACK, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        result.append(va)

    m.spawn("stress-ng-fork", fork, cpu=0)
    m.env.run(until=1)
    c = m.metrics.counters
    assert not isinstance(result[0], int)
    assert c["split_nowait_attempts"] == 0 and c["split_from_preload"] >= 1
    assert c["allocstall"] >= 1  # the GFP_KERNEL fill went through direct reclaim


class KernelUnderLock(NowaitSplit):
    """A deliberately wrong strategy: GFP_KERNEL for the split, under the lock."""

    name = "kernel-under-lock"

    def split_object(self, vm, task):
        vm.sched.might_sleep(task, "kmem_cache_alloc(vmap_area_cachep, GFP_KERNEL) under vmap_area_lock")
        return vm.split_nowait(task)


def test_gfp_kernel_under_the_lock_is_caught_as_a_bug():
    m = machine("nowait")
    m.vmalloc.strategy = KernelUnderLock()
    stacks(m, 5, per_cpu=False)
    m.env.run(until=1)
    assert m.metrics.counters["sleep_in_atomic_bugs"] == 5
    bug = m.metrics.events_of("bug_sleeping_in_atomic")[0]
    assert "GFP_KERNEL" in bug["site"] and bug["preempt_count"] == 1


def test_v53_preload_on_preempt_rt_is_a_bug_and_v55_is_not():
    for strategy, bugs in (("preload", True), ("preload-lockless", False)):
        m = machine(strategy, preemption="rt")
        stacks(m, 20, per_cpu=False)
        m.env.run(until=1)
        assert (m.metrics.counters["sleep_in_atomic_bugs"] > 0) is bugs, strategy


def test_exhausted_window_fails_with_ebusy_after_one_purge():
    m = machine("preload")
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


def test_same_seed_same_counters():
    def run():
        m = machine("preload-lockless", preemption="full")
        stacks(m, 200)
        m.env.run(until=1)
        return dict(m.metrics.counters)

    assert run() == run()
