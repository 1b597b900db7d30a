"""The vmap callers besides the fork storm: test_vmalloc cases, modules, BPF, percpu chunks, vmap blocks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from sim.kernel.lib.rbtree import rb_first, rb_next, rb_prev
from sim.kernel.mm.gfp import GFP_KERNEL
from sim.kernel.mm.vmalloc.percpu_vm import (
    PMD_SIZE,
    pcpu_carve_areas,
    pcpu_find_base,
    pvm_determine_end_from_reverse,
    pvm_find_va_enclose_addr,
)
from sim.kernel.mm.vmalloc.space import (
    ENOMEM,
    MODULES_END,
    MODULES_VADDR,
    PAGE_SIZE,
    VMALLOC_END,
    VMALLOC_START,
    CountingProvider,
    VmapArea,
    VmapSpace,
)
from sim.workloads.percpu import PercpuLayout
from sim.workloads.registry import WORKLOADS
from sim.workloads.tally import VmapTally
from sim.workloads.vmalloc_stress import CASES, VmallocTestSpec, shuffle_array
from sim.workloads.vmap_blocks import VmapBlocks, VmapBlocksSpec
from tests.conftest import make_machine

MiB = 1 << 20
TOP = VMALLOC_END & ~(PMD_SIZE - 1)  # the aligned end percpu chunks start below


SMALL = {"cpus": 1, "kernel": "5.3", "ram": 1 << 30}  # the machine these workload tests run on


def run(workloads, until, **config):
    """A machine running ``workloads`` ((kind, spec fields) pairs) until ``until``."""
    m = make_machine(**{**SMALL, **config})
    for i, (kind, fields) in enumerate(workloads):
        spec_cls, cls = WORKLOADS[kind]
        cls(spec_cls(**fields)).start(m, m.workload_rng(i))
    m.env.run(until=until)
    return m


def live_busy(m):
    """Busy areas that are not lazily freed ones waiting for a purge."""
    lazy = {id(vm.va) for vm in m.vmalloc.lazy.purge_list}
    return [va for va in m.vmalloc.space.busy.values() if id(va) not in lazy]


def counters(m, prefix):
    return {k[len(prefix) + 1 :]: v for k, v in m.metrics.counters.items() if k.startswith(prefix + ".")}


def fits(c):
    return {name: c.get(f"fit_{name}", 0) for name in ("fl", "le", "re", "ne")}


def one_case(case, loops=1000, **fields):
    m = run([("test_vmalloc", dict(cases=[case], test_loop_count=loops, single_cpu_test=True, **fields))], until=100)
    return m, counters(m, f"tv.{case}")


# -- rb_prev and the pure top-down search -----------------------------------------------


def space_with_busy(areas):
    """A core with busy ``(start, size)`` areas carved at exact addresses."""
    space = VmapSpace(CountingProvider())
    for start, size in areas:
        assert space.alloc_area(size, PAGE_SIZE, start, start + size).va_start == start
    return space


def test_rb_prev_walks_the_free_blocks_in_reverse_address_order():
    space = space_with_busy([(VMALLOC_START + i * 3 * PAGE_SIZE, PAGE_SIZE) for i in range(40)])
    node, backwards = rb_first(space.root), []
    while rb_next(node) is not None:
        node = rb_next(node)
    while node is not None:
        backwards.append((node.va_start, node.va_end))
        node = rb_prev(node)
    assert backwards == space.free_blocks()[::-1] and len(backwards) == 41


def test_enclose_finds_the_block_holding_an_address_or_the_one_below():
    space = space_with_busy([(TOP - PMD_SIZE, PMD_SIZE)])
    below, above = space.free_blocks()
    assert pvm_find_va_enclose_addr(space, TOP).va_start == TOP == above[0]
    assert pvm_find_va_enclose_addr(space, TOP - PAGE_SIZE).va_end == below[1]
    va, end = pvm_determine_end_from_reverse(pvm_find_va_enclose_addr(space, TOP), PMD_SIZE)
    assert (va.va_end, end) == (TOP - PMD_SIZE, TOP - PMD_SIZE)  # the top block has nothing below TOP


def test_congruent_groups_share_one_base_below_vmalloc_end():
    space = space_with_busy([(TOP - 3 * PMD_SIZE, PMD_SIZE)])  # a busy atom between the two groups' slots
    base = pcpu_find_base(space, [0, 4 * PMD_SIZE], [PMD_SIZE, PMD_SIZE], PMD_SIZE)
    assert base == TOP - 5 * PMD_SIZE  # the upper group ends at TOP; the lower one avoids the busy atom
    base = pcpu_find_base(space, [0, 2 * PMD_SIZE], [PMD_SIZE, PMD_SIZE], PMD_SIZE)
    assert base == TOP - 4 * PMD_SIZE  # at TOP - 3 atoms the lower group would hit the busy atom: one atom down


def test_a_carve_without_its_split_object_leaves_the_free_space_as_it_was():
    space = space_with_busy([])
    blocks = space.free_blocks()
    space.provider.fail_next_split = True
    base = pcpu_find_base(space, [0], [PMD_SIZE], PMD_SIZE)
    assert pcpu_carve_areas(space, base, [0], [PMD_SIZE], [VmapArea()]) == (ENOMEM, [])
    assert space.free_blocks() == blocks and not space.busy
    space.invariants()


# -- test_vmalloc ---------------------------------------------------------------------------


def test_spec_defaults_are_the_module_parameters_and_the_mask_selects_cases():
    spec = VmallocTestSpec()
    assert (spec.test_loop_count, spec.test_repeat_count, spec.sequential_test_order, spec.single_cpu_test) == (
        1_000_000,
        1,
        False,
        False,
    )
    assert all(spec.enabled()) and len(CASES) == 8
    assert [CASES[i] for i, on in enumerate(VmallocTestSpec(run_test_mask=0b1010000).enabled()) if on] == [
        "fix_align_alloc_test",
        "align_shift_alloc_test",
    ]
    with pytest.raises(ValidationError):
        VmallocTestSpec(cases=["fix_size_alloc_test"], run_test_mask=1)
    with pytest.raises(ValidationError):
        VmallocTestSpec(cases=["no_such_test"])


def test_the_module_shuffle_never_leaves_a_case_in_place():
    rng = np.random.default_rng(3)
    for _ in range(50):
        order = list(range(8))
        shuffle_array(order, rng)
        assert sorted(order) == list(range(8)) and all(order[i] != i for i in range(8))


def test_fix_size_takes_the_frontier_le_with_only_the_first_allocation_ne():
    m, c = one_case("fix_size_alloc_test")
    assert fits(c) == {"fl": 0, "le": 999, "re": 0, "ne": 1} and c["passed"] == 1
    assert "fit_ambiguous" not in c
    m.vmalloc.space.invariants()


def test_fix_align_32k_alignment_makes_every_allocation_an_ne_split():
    m, c = one_case("fix_align_alloc_test")
    assert fits(c) == {"fl": 0, "le": 0, "re": 0, "ne": 1000}
    assert m.metrics.counters["split_from_preload"] == 1000  # v5.3: each split used the preload


def test_align_shift_fails_as_no_space_once_the_aligned_start_leaves_the_window():
    m, c = one_case("align_shift_alloc_test")
    assert c["calls"] == 47 and c["failures"] == 1  # 2^0 .. 2^45 fit; 2^46 cannot
    assert c["fail_no_space"] == 1 and "fail_no_memory" not in c and c["failed"] == 1
    assert m.metrics.counters["vmap_fail_no_split_object"] == 0 and m.metrics.counters["vmap_ebusy"] == 1


def test_full_fit_loop_reuses_purged_two_page_holes_exactly():
    m, c = one_case("full_fit_alloc_test")
    assert fits(c) == {"fl": 1000, "le": 0, "re": 0, "ne": 0}
    setup = counters(m, "tv.full_fit_alloc_test.setup")
    assert setup["calls"] == 2 + 2 * 8192  # two pointer arrays, then lazy_max_pages(1) pairs
    m.vmalloc.space.invariants()


def test_random_size_is_mostly_le_and_random_size_align_mixes_all_fit_types():
    _, c = one_case("random_size_alloc_test", loops=500)
    assert c["fit_le"] >= 0.95 * c["calls"]
    _, c = one_case("random_size_align_alloc_test", loops=1000)
    f = fits(c)
    assert 0.25 < f["ne"] / 1000 < 0.5 and f["le"] > f["fl"] > 0  # measured 37.5 % NE, 55.6 % LE, 6.5 % FL


def test_pcpu_alloc_test_creates_chunks_top_down_and_destroys_all_but_one():
    m, c = one_case("pcpu_alloc_test", pcpu_alloc_count=5000)
    assert c["chunks"] >= 10 and c["chunks_destroyed"] == c["chunks"] - 1
    assert fits(c) == {"fl": 0, "le": 0, "re": c["chunks"] - 1, "ne": 1}
    kept = [(va.va_start, va.va_end) for va in live_busy(m) if va.va_start >= TOP - 64 * MiB]
    lowest = TOP - c["chunks"] * 2 * MiB
    assert kept == [(lowest, lowest + 2 * MiB)]  # the spared chunk: the last one emptied


def test_one_pinned_kthread_per_cpu_unless_single_cpu_test():
    spec = dict(cases=["fix_size_alloc_test"], test_loop_count=50)
    m = run([("test_vmalloc", spec)], until=10, cpus=4)
    assert m.metrics.counters["tv.fix_size_alloc_test.passed"] == 4
    m = run([("test_vmalloc", {**spec, "single_cpu_test": True})], until=10, cpus=4)
    assert m.metrics.counters["tv.fix_size_alloc_test.passed"] == 1


def test_tally_takes_a_fit_the_busy_area_reports():
    m = make_machine(**SMALL)
    tally = VmapTally(m)
    assert tally.success("x", tally.begin(), SimpleNamespace(fit=4)) == 4
    assert counters(m, "x") == {"calls": 1, "fit_ne": 1}


# -- modules and BPF ----------------------------------------------------------------------


def module_areas(m):
    return sorted(va.va_start for va in live_busy(m) if va.va_start >= MODULES_VADDR)


def test_first_module_allocation_in_the_window_is_ne_and_later_ones_le():
    m = run([("module_load", dict(rate=50, lifetime=float("inf"), max_loads=30))], until=5)
    c = counters(m, "modules")
    assert c["loads"] == 30 and fits(c) == {"fl": 0, "le": c["calls"] - 1, "re": 0, "ne": 1}
    offset = m.module_load_offset
    assert offset % PAGE_SIZE == 0 and PAGE_SIZE <= offset <= 1024 * PAGE_SIZE
    cores = module_areas(m)
    assert len(cores) == 30 and cores[0] == MODULES_VADDR + offset  # init areas have gone
    m.vmalloc.space.invariants()


def test_module_window_fills_and_then_loads_fail_as_no_space():
    fields = dict(rate=100, lifetime=float("inf"), max_loads=12, modules_len="16MiB", core_pages_min=512,
                  core_pages_max=512, init_pages_max=0, copy_image=False)  # fmt: skip
    m = run([("module_load", fields)], until=5)
    c = counters(m, "modules")
    room = (16 * MiB - m.module_load_offset) // (513 * PAGE_SIZE)
    assert c["loads"] == room and c["load_failures"] == 12 - room
    assert c["fail_no_space"] == 12 - room and "fail_no_memory" not in c
    assert module_areas(m)[-1] + 513 * PAGE_SIZE <= MODULES_END


def test_kasan_module_align_of_32k_turns_most_module_allocations_into_ne_splits():
    m = run([("module_load", dict(rate=50, lifetime=float("inf"), max_loads=30, kasan=True))], until=5)
    c = counters(m, "modules")
    assert all(a % (32 << 10) == 0 for a in module_areas(m))
    assert c["fit_ne"] >= 0.75 * c["calls"]


def test_bpf_images_share_the_module_window_and_unprivileged_loads_hit_bpf_jit_limit():
    fields = dict(rate=100, lifetime=float("inf"), max_loads=10, privileged=False, modules_len="64KiB", kaslr=False)
    m = run([("bpf_jit", fields)], until=5)
    c = counters(m, "bpf")
    assert c["loads"] == 10 and c["jit_eperm"] == 6 and c["calls"] == 4  # limit: a quarter of 16 pages
    assert counters(m, "bpf.prog")["calls"] == 10
    assert len(module_areas(m)) == 4


# -- percpu chunks ------------------------------------------------------------------------


def test_chunk_area_is_the_units_of_the_possible_cpus_in_whole_atoms():
    layout = PercpuLayout()
    assert (layout.group_size(4), layout.group_size(8), layout.group_size(16)) == (2 * MiB, 2 * MiB, 4 * MiB)


def test_percpu_chunks_stack_down_from_vmalloc_end_in_2mib_steps():
    m = run([("percpu_chunks", dict(rate=100, lifetime=float("inf"), max_chunks=10))], until=5, cpus=4)
    c = counters(m, "percpu")
    assert c["chunks"] == 10 and fits(c) == {"fl": 0, "le": 0, "re": 9, "ne": 1}
    starts = sorted((va.va_start for va in live_busy(m)), reverse=True)
    assert starts == [TOP - (i + 1) * 2 * MiB for i in range(10)]
    m.vmalloc.space.invariants()


def test_percpu_chunks_that_come_and_go_are_mostly_re_or_fl():
    m = run([("percpu_chunks", dict(rate=2, lifetime=5))], until=60, cpus=2)
    c = counters(m, "percpu")
    assert c["chunks"] > 50 and c["fit_re"] + c.get("fit_fl", 0) >= 0.9 * c["chunks"]
    m.vmalloc.space.invariants()


@pytest.mark.parametrize(("strategy", "preload_misses"), [("nowait", 0), ("preload", 1), ("preload-lockless", 1)])
def test_the_first_chunk_splits_with_gfp_nowait_because_percpu_does_not_preload(strategy, preload_misses):
    m = run([("percpu_chunks", dict(rate=100, lifetime=float("inf"), max_chunks=3))], until=5, strategy=strategy)
    c = m.metrics.counters
    assert c["split_nowait_attempts"] == 1 and c["preload_fills"] == 0 and c["preload_misses"] == preload_misses
    # counted as percpu's own, in every strategy, and never as an alloc_vmap_area miss
    assert c["pcpu_ne_splits"] == 1 and c["pcpu_split_nowait"] == 1
    assert c["preload_race_misses"] == 0 and c["preload_fill_misses"] == 0


# -- vmap blocks ----------------------------------------------------------------------------


def test_vmap_blocks_alone_are_ne_only_first_and_go_back_when_fully_unmapped():
    m = run([("vmap_blocks", dict(rate=2000, pages=[3], lifetime=0.05))], until=0.5, cpus=2)
    c = counters(m, "vmap_blocks")
    assert c["fit_ne"] == 1 and c["fit_le"] >= 1 and c["blocks_freed"] >= 1
    assert c["maps"] >= 900 and c["blocks"] <= c["maps"] // 256 + 2  # 3 pages take 4: 256 per block per CPU
    m.vmalloc.space.invariants()


def test_a_block_behind_a_misaligned_frontier_is_an_ne_split_at_4mib_and_goes_back_when_unmapped():
    m = make_machine(**SMALL)
    blocks = VmapBlocks(VmapBlocksSpec(rate=0))
    blocks.start(m, m.workload_rng(0))
    out = {}

    def body(task):
        yield from m.vmalloc.vmalloc_node_range(task, 3 * PAGE_SIZE, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        out["maps"] = []
        for _ in range(64):  # one block's worth
            out["maps"].append((yield from blocks.vm_map_ram(task, 16)))
        for addr in out["maps"]:
            yield from blocks.vm_unmap_ram(task, addr, 16)

    m.spawn("mapper", body)
    m.env.run(until=1)
    block = VMALLOC_START + 4 * MiB
    assert out["maps"] == [block + i * 16 * PAGE_SIZE for i in range(64)]
    assert counters(m, "vmap_blocks") == {"calls": 1, "fit_ne": 1, "blocks": 1, "blocks_freed": 1, "unmaps": 64}
    assert (VMALLOC_START + 4 * PAGE_SIZE, block) in m.vmalloc.space.free_blocks()  # the split's left remainder
    assert m.vmalloc.lazy.vmap_lazy_nr == 4 * MiB // PAGE_SIZE  # the block waits for a purge


def test_vmap_blocks_behind_a_moving_vmalloc_frontier_are_mostly_ne_splits_at_4mib():
    blocks = dict(rate=20000, pages=[64], lifetime=0.01)
    churn = dict(cases=["fix_size_alloc_test"], test_loop_count=8000, single_cpu_test=True)
    m = run([("vmap_blocks", blocks), ("test_vmalloc", churn)], until=0.03, cpus=2)
    c = counters(m, "vmap_blocks")
    f = fits(c)
    assert c["blocks"] >= 15 and f["ne"] >= 0.4 * c["calls"] and f["ne"] == max(f.values())  # measured 12 of 20
    block_areas = [va for va in m.vmalloc.space.busy.values() if va.va_end - va.va_start == 4 * MiB]
    assert block_areas and all(va.va_start % (4 * MiB) == 0 for va in block_areas)


# -- all of them ----------------------------------------------------------------------------


def test_every_kind_is_registered_with_a_spec_whose_defaults_validate():
    for kind in ("test_vmalloc", "module_load", "bpf_jit", "percpu_chunks", "vmap_blocks", "net_rx"):
        spec_cls, _ = WORKLOADS[kind]
        assert spec_cls().kind == kind
        with pytest.raises(ValidationError):
            spec_cls(no_such_field=1)


def mixed(seed):
    workloads = [
        ("test_vmalloc", dict(cases=["random_size_align_alloc_test", "fix_align_alloc_test"], test_loop_count=300)),
        ("module_load", dict(rate=20, lifetime=0.2)),
        ("bpf_jit", dict(rate=50, lifetime=0.1)),
        ("percpu_chunks", dict(rate=20, lifetime=0.2)),
        ("vmap_blocks", dict(rate=2000, lifetime=0.05)),
    ]
    m = run(workloads, until=1.0, cpus=2, seed=seed)
    m.vmalloc.space.invariants()
    return dict(m.metrics.counters)


def test_the_same_seed_gives_the_same_counters_and_another_seed_does_not():
    first = mixed(7)
    assert first == mixed(7) and first != mixed(8)
    assert first["modules.loads"] and first["bpf.loads"] and first["percpu.chunks"] and first["vmap_blocks.maps"]


def test_a_workload_stream_depends_only_on_its_index():
    a, b = make_machine(**SMALL), make_machine(**SMALL)
    b.workload_rng(0)  # asking for another stream first changes nothing
    assert a.workload_rng(1).integers(1 << 62) == b.workload_rng(1).integers(1 << 62)
    assert a.workload_rng(0).integers(1 << 62) != a.workload_rng(1).integers(1 << 62)


def test_an_oom_killed_anon_hog_leaves_its_pause_and_is_restarted():
    m = make_machine(**{**SMALL, "ram": 256 * MiB})
    spawned = []
    spawn = m.spawn

    def logged_spawn(name, body, **kwargs):
        task = spawn(name, body, **kwargs)
        spawned.append(task)
        return task

    m.spawn = logged_spawn
    spec_cls, cls = WORKLOADS["anon_hog"]
    cls(spec_cls(name="hog", size=4 * MiB, restart_delay=0.01)).start(m, m.workload_rng(0))
    m.env.run(until=0.5)
    (first,) = spawned
    assert first.owner.charged["anon"] == 1024 and first.state == "sleeping"  # grown, in pause()
    m.page_alloc.oom.oom_kill_process(first.owner, first, 0)
    m.env.run(until=2)
    assert first.state == "dead"
    assert [t.name for t in spawned] == ["hog/0", "hog/1"]
    assert spawned[1].owner.charged["anon"] == 1024


# -- network receive page frags (net_rx) ------------------------------------------------


def test_net_rx_takes_an_order3_frag_per_21_packets_and_frees_it_after_its_packets():
    m = run([("net_rx", dict(packet_rate=10_000, hold=0.01))], until=2.0)
    c = counters(m, "net_rx")
    assert abs(c["frag_blocks"] - 2 * 10_000 / 21) < 60  # 1536-byte buffers, 21 to a 32 KiB page
    assert "frag_fallbacks" not in c and "frag_drops" not in c
    held = m.page_alloc.pools.pool["slab_unreclaimable"].pages
    assert 0 < held <= 8 * 40  # the pages whose packets are still held: a few dozen
    assert m.metrics.counters["highatomic_reserved"] == 0  # no pressure: the fast path, no ALLOC_HARDER


def pressured(refill, until=0.5):
    """net_rx on a 256 MB machine whose DMA32 zone sits below its low mark with nothing to reclaim."""
    m = make_machine(**{**SMALL, "ram": 256 * MiB})
    pa = m.page_alloc
    dma32, dma = (next(z for z in pa.zones if z.name == name) for name in ("DMA32", "DMA"))
    pa.populate("anon", dma32.nr_free - 540, zone="DMA32")
    pa.populate("anon", dma.nr_free, zone="DMA")
    spec_cls, cls = WORKLOADS["net_rx"]
    cls(spec_cls(refill=refill)).start(m, m.workload_rng(0))
    m.env.run(until=until)
    return m, dma32


def test_virtio_net_frags_reserve_highatomic_pageblocks_under_pressure_and_napi_alloc_frags_do_not():
    m, dma32 = pressured("skb_page_frag_refill")
    c = counters(m, "net_rx")
    assert dma32.highatomic >= 512 and m.metrics.counters["highatomic_reserved"] >= 1
    assert c["frag_blocks_highatomic"] > 0
    assert any(s["DMA32_highatomic"] >= 512 for s in m.metrics.samples)
    m, dma32 = pressured("page_frag_alloc")  # __GFP_NOMEMALLOC: no ALLOC_HARDER
    assert dma32.highatomic == 0 and "highatomic_reserved" not in m.metrics.counters
    assert counters(m, "net_rx")["frag_blocks"] > 0
