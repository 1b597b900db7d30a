"""Split-object strategies: what the preload costs, as counted per fill."""

from __future__ import annotations

import numpy as np

from sim.kernel.machine import Machine, MachineConfig
from sim.kernel.mm.gfp import GFP_THREAD_STACK
from sim.kernel.mm.oom_kill import MemoryOwner
from sim.kernel.mm.vmalloc.space import VMALLOC_END, VMALLOC_START
from sim.kernel.mm.vmalloc.strategies import STRATEGIES, make_strategy
from sim.kernel.mm.zones import MemoryParams


def _stacks(m, n):
    vm = m.vmalloc

    def body(task):
        for _ in range(n):
            yield from vm.vmalloc_node_range(
                task, 16384, 16384, VMALLOC_START, VMALLOC_END, GFP_THREAD_STACK, caller="copy_process",
                pool="kernel_stack",
            )  # fmt: skip

    m.spawn("forker", body, cpu=0)


def _latency_buckets(counters):
    return {int(k.rsplit("_", 1)[1]): v for k, v in counters.items() if k.startswith("preload_fill_latency_le_")}


def test_every_preload_fill_lands_in_one_latency_bucket():
    m = Machine(MachineConfig(strategy="preload", cpus=1), np.random.SeedSequence(3))
    _stacks(m, 200)
    m.env.run(until=1)
    c = m.metrics.counters
    buckets = _latency_buckets(c)
    assert sum(buckets.values()) == c["preload_fills"] == 200
    assert set(buckets) == {0}  # no pressure: every fill came from a per-CPU cache at once


def test_a_fill_that_reclaims_is_counted_in_a_slower_bucket():
    m = Machine(
        MachineConfig(strategy="preload", cpus=1, memory=MemoryParams(vmstat_drift=False, watermark_boost_factor=0)),
        np.random.SeedSequence(3),
    )
    cache, pa = m.vmap_area_cache, m.page_alloc
    for kmalloc in m.kmalloc.values():  # warm caches: the vm_struct and page array need no page
        kmalloc.free(0, kmalloc.alloc_nowait(0, 0))
    per_slab = m.profile.vmap_area_objs_per_slab
    cache.alloc_nowait(0, 0)  # the first slab
    while cache.objects_in_use % per_slab != per_slab - 1:  # leave one object: the busy descriptor's
        cache.alloc_nowait(0, 0)
    hog = MemoryOwner("hog")
    for z in pa.zones:  # every zone down to its min: the fill's new slab page must reclaim
        reserve = z.info.lowmem_reserve[pa.classzone] if z.idx == 0 else 0
        pa.populate("anon", z.nr_free - z.wmark[0] - reserve, zone=z.name, owner=hog)
    _stacks(m, 1)
    m.env.run(until=5)
    c = m.metrics.counters
    buckets = _latency_buckets(c)
    assert c["preload_fills"] == 1 and sum(buckets.values()) == 1
    (k,) = buckets
    assert k > 0 and m.metrics.seconds["preload_fill"] > 0


def test_every_strategy_has_a_name_and_the_commit_it_models():
    for name, cls in STRATEGIES.items():
        strategy = make_strategy(name, 2)
        assert strategy.name == name and cls.commit
