"""Random alloc / free / failed-split sequences keep every invariant of the core.

A hypothesis state machine drives the allocator with requests in several
windows (the vmalloc and module windows, the whole space, its low and high
ends, and windows cut around existing block edges), frees of live and of
unknown addresses, and forced split failures, and checks after every step.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sim.kernel.mm.vmalloc.space import (
    MODULES_END,
    MODULES_VADDR,
    PAGE_SIZE,
    ULONG_MAX,
    VMALLOC_END,
    VMALLOC_START,
    CountingProvider,
    VmapSpace,
)

P = PAGE_SIZE
WINDOWS = {
    "vmalloc": (VMALLOC_START, VMALLOC_END),
    "modules": (MODULES_VADDR + 17 * P, MODULES_END),
    "all": (0, ULONG_MAX),
    "low": (1, 1 + 64 * P),
    "high": (ULONG_MAX - 64 * P, ULONG_MAX),
}


class VmapMachine(RuleBasedStateMachine):
    search = "v5.3"

    def __init__(self) -> None:
        super().__init__()
        self.provider = CountingProvider()
        self.space = VmapSpace(self.provider, self.search)
        self.live: list[int] = []
        self.frees = 0

    def _check_alloc(self, size: int, align: int, vstart: int, vend: int, fail_split: bool) -> None:
        before = self.space.free_blocks()
        self.provider.fail_next_split = fail_split
        addr = self.space.alloc(size, align, vstart, vend)
        self.provider.fail_next_split = False
        if addr < 0:
            assert self.space.free_blocks() == before, "a failed request changed the free space"
            return
        assert addr % align == 0 and addr >= vstart and addr + size <= vend
        assert any(s <= addr and addr + size <= e for s, e in before), "area was not inside a free block"
        from sim.kernel.mm.vmalloc.space import VmapArea

        self.space.insert_busy(VmapArea(addr, addr + size))
        self.live.append(addr)

    @rule(
        pages=st.integers(1, 40) | st.sampled_from([256, 4096, 1 << 30]),
        align_shift=st.integers(0, 63),
        window=st.sampled_from(sorted(WINDOWS)),
        fail_split=st.booleans(),
    )
    def alloc_in_window(self, pages, align_shift, window, fail_split):
        vstart, vend = WINDOWS[window]
        self._check_alloc(pages * P, 1 << align_shift, vstart, vend, fail_split)

    @rule(
        data=st.data(),
        pages=st.integers(1, 8),
        align_shift=st.sampled_from([0, 12, 13, 14, 15, 20]),
        fail_split=st.booleans(),
    )
    def alloc_at_block_edges(self, data, pages, align_shift, fail_split):
        """Windows that start or end exactly at, just inside or just outside a free block."""
        blocks = self.space.free_blocks()
        s, e = data.draw(st.sampled_from(blocks))
        shift = data.draw(st.sampled_from([-P, 0, P]))
        vstart = min(max(s + shift, 0), ULONG_MAX)
        vend = data.draw(st.sampled_from([e, min(vstart + pages * P, ULONG_MAX), ULONG_MAX]))
        self._check_alloc(pages * P, 1 << align_shift, vstart, vend, fail_split)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free_live(self, data):
        addr = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        freed = self.space.free(addr)
        assert freed in (0, 1, 2)
        self.frees += 1

    @rule(addr=st.integers(0, ULONG_MAX))
    def free_unknown(self, addr):
        if addr not in self.space.busy:
            before = self.space.free_blocks()
            assert self.space.free(addr) == -1
            assert self.space.free_blocks() == before

    @invariant()
    def structure_holds(self):
        self.space.invariants()

    @invariant()
    def object_identity_holds(self):
        # README identity: allocs - frees of objects + successful area frees = blocks - 1
        blocks = self.space.nr_free_blocks
        assert self.provider.allocated - self.provider.freed + self.frees == blocks - 1

    @invariant()
    def address_list_finds_the_descents_link(self):
        # the link found from the nearest free blocks is the one find_va_links finds
        space = self.space
        for va in space.busy.values():
            assert space._link_near(va) == space._find_va_links(va.va_start, va.va_end)

    @invariant()
    def free_and_busy_tile_the_space(self):
        total = sum(e - s for s, e in self.space.free_blocks())
        total += sum(va.va_end - va.va_start for va in self.space.busy.values())
        assert total == ULONG_MAX - 1


class VmapMachine518(VmapMachine):
    search = "v5.18"


FAST = settings(max_examples=150, stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=600, stateful_step_count=120, deadline=None, suppress_health_check=list(HealthCheck))

TestVmapStateV53 = VmapMachine.TestCase
TestVmapStateV53.settings = FAST
TestVmapStateV518 = VmapMachine518.TestCase
TestVmapStateV518.settings = FAST


@pytest.mark.long
@pytest.mark.parametrize("machine", [VmapMachine, VmapMachine518], ids=["v5.3", "v5.18"])
def test_state_machine_long_run(machine):
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=LONG)
