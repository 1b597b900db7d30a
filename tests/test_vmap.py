"""Unit behaviour of the allocator core: fit types, alignment, windows, frees."""

from __future__ import annotations

import pytest

from sim.kernel.mm.vmalloc.space import (
    EINVAL,
    ENOENT,
    ENOMEM,
    ERANGE,
    FL_FIT_TYPE,
    LE_FIT_TYPE,
    NE_FIT_TYPE,
    PAGE_SIZE,
    RE_FIT_TYPE,
    ULONG_MAX,
    VMALLOC_END,
    VMALLOC_START,
    CountingProvider,
    FitType,
    VmapArea,
    VmapSpace,
    classify_va_fit_type,
    is_within_this_va,
)

P = PAGE_SIZE
STACK = 5 * P
THREAD_ALIGN = 4 * P


def new(search="v5.3"):
    return VmapSpace(CountingProvider(), search)


def test_boot_state_is_one_block_from_1_to_ulong_max():
    s = new()
    assert s.free_blocks() == [(1, ULONG_MAX)]
    assert s.busy == {}
    s.invariants()


def test_first_stack_in_the_vmalloc_window_is_an_ne_split():
    s = new()
    va = s.alloc_area(STACK, THREAD_ALIGN, VMALLOC_START, VMALLOC_END)
    assert va.va_start == VMALLOC_START
    assert s.last_fit == NE_FIT_TYPE
    assert s.provider.allocated == 1
    assert s.free_blocks() == [(1, VMALLOC_START), (VMALLOC_START + STACK, ULONG_MAX)]
    s.invariants()


def test_stack_after_a_stack_is_ne_and_leaves_a_12k_remainder():
    s = new()
    s.alloc_area(STACK, THREAD_ALIGN, VMALLOC_START, VMALLOC_END)
    va = s.alloc_area(STACK, THREAD_ALIGN, VMALLOC_START, VMALLOC_END)
    assert va.va_start == VMALLOC_START + 2 * THREAD_ALIGN
    assert s.last_fit == NE_FIT_TYPE
    assert (VMALLOC_START + STACK, VMALLOC_START + 2 * THREAD_ALIGN) in s.free_blocks()


def test_le_fit_when_the_block_starts_at_the_aligned_address():
    s = new()
    va = s.alloc_area(P, 1, 1, ULONG_MAX)
    assert va.va_start == 1
    assert s.last_fit == LE_FIT_TYPE
    assert s.provider.allocated == s.provider.freed == 0
    assert s.free_blocks() == [(1 + P, ULONG_MAX)]


def test_align_1_places_the_area_exactly_at_an_unaligned_vstart():
    s = new()
    va = s.alloc_area(P, 1, 12345, ULONG_MAX)
    assert va.va_start == 12345
    assert s.last_fit == NE_FIT_TYPE


def _hole(s: VmapSpace, base: int, pages: int) -> int:
    """Make a free hole of ``pages`` pages at ``base`` fenced by busy pages; return its start."""
    s.alloc_area(P, 1, base, base + P)
    hole = s.alloc_area(pages * P, 1, base + P, base + (pages + 1) * P)
    s.alloc_area(P, 1, base + (pages + 1) * P, base + (pages + 2) * P)
    s.free(hole.va_start)
    return base + P


def test_re_fit_when_the_aligned_area_ends_at_the_block_end():
    s = new()
    base = VMALLOC_START + 1024 * P  # base + P is 4 KiB past an 8 KiB boundary
    start = _hole(s, base, 3)
    va = s.alloc_area(2 * P, 2 * P, start, start + 3 * P)
    assert va.va_start == start + P
    assert s.last_fit == RE_FIT_TYPE
    assert (start, start + P) in s.free_blocks()
    s.invariants()


def test_fl_fit_erases_the_block_and_frees_its_object():
    s = new()
    start = _hole(s, VMALLOC_START, 2)
    freed = s.provider.freed
    va = s.alloc_area(2 * P, 1, start, start + 2 * P)
    assert va.va_start == start
    assert s.last_fit == FL_FIT_TYPE
    assert s.provider.freed == freed + 1
    assert all(not (b[0] <= start < b[1]) for b in s.free_blocks())
    s.invariants()


def test_failed_ne_split_leaves_the_free_space_unchanged():
    s = new()
    s.alloc_area(STACK, THREAD_ALIGN, VMALLOC_START, VMALLOC_END)
    before = s.free_blocks()
    s.provider.fail_next_split = True
    assert s.alloc(STACK, THREAD_ALIGN, VMALLOC_START, VMALLOC_END) == ENOMEM
    assert s.free_blocks() == before
    s.invariants()


def test_fail_split_has_no_effect_on_an_le_fit():
    s = new()
    s.provider.fail_next_split = True
    assert s.alloc(P, 1, 1, ULONG_MAX) == 1
    assert s.last_fit == LE_FIT_TYPE


def test_alignment_larger_than_any_usable_block_fails_as_no_space():
    s = new()
    # ALIGN(VMALLOC_START, 2^63) wraps to 0, below vstart
    assert s.alloc(P, 1 << 63, VMALLOC_START, VMALLOC_END) == ENOENT
    assert s.free_blocks() == [(1, ULONG_MAX)]


def test_alignment_of_2_pow_63_can_land_at_2_pow_63():
    s = new()
    assert s.alloc(P, 1 << 63, 0, ULONG_MAX) == 1 << 63
    assert s.last_fit == NE_FIT_TYPE


def test_search_length_that_wraps_fails_at_once():
    s = new()
    assert s.alloc((1 << 63) + P, 1 << 63, 0, ULONG_MAX) == ENOENT
    s.invariants()


def test_area_ending_past_2_pow_64_is_rejected():
    s = new()
    top = (1 << 64) - 2 * P
    assert s.alloc(P, 1, top, ULONG_MAX) == top
    assert s.alloc(2 * P, 1, top + P, ULONG_MAX) == ENOENT  # would wrap past 2^64
    assert s.alloc(P, 1, top + P, ULONG_MAX) == ENOENT  # would end at 2^64, past ULONG_MAX
    s.invariants()


def test_vend_is_an_exclusive_bound():
    s = new()
    assert s.alloc(P, 1, 1 << 40, (1 << 40) + P) == 1 << 40
    assert s.alloc(2 * P, 1, 1 << 41, (1 << 41) + P) == ERANGE


def test_vstart_below_a_block_starts_the_area_at_the_block():
    s = new()
    s.alloc_area(P, 1, 1, ULONG_MAX)  # block now starts at 1 + P
    assert s.alloc(P, 1, 0, ULONG_MAX) == 1 + P
    assert s.last_fit == LE_FIT_TYPE


def test_exact_range_with_page_align_skips_an_exact_hole_in_v53_but_not_v518():
    """v5.3 searches for size + align - 1 bytes, so a 2-page hole off the
    search path is not seen; v5.18 searches for size and takes it as FL."""
    results = {}
    for mode in ("v5.3", "v5.18"):
        s = new(mode)
        areas = [s.alloc_area(2 * P if i == 3 else P, 1, VMALLOC_START, VMALLOC_END) for i in range(5)]
        s.free(areas[1].va_start)
        s.free(areas[3].va_start)
        start = areas[3].va_start
        results[mode] = (s.alloc(2 * P, P, start, start + 2 * P), s.last_fit)
        s.invariants()
    assert results["v5.3"][0] == ERANGE
    assert results["v5.18"] == (VMALLOC_START + 3 * P, FL_FIT_TYPE)


def test_free_with_no_neighbour_makes_the_area_a_new_block():
    s = new()
    a = s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END)
    b = s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END)
    s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END)
    assert s.free(b.va_start) == 0
    assert (b.va_start, b.va_end) in s.free_blocks()
    assert s.free(a.va_start) == 2  # merges with [1, a) below and b above
    s.invariants()


def test_free_merging_one_side_frees_one_object():
    s = new()
    s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END)
    b = s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END)
    assert s.free(b.va_start) == 1  # merges with the block above only


def test_free_of_unknown_inner_or_repeated_address_is_refused():
    s = new()
    a = s.alloc_area(2 * P, 1, VMALLOC_START, VMALLOC_END)
    assert s.free(a.va_start + P) == -1
    assert s.free(12345) == -1
    assert s.free(a.va_start) == 2
    assert s.free(a.va_start) == -1
    assert s.free_blocks() == [(1, ULONG_MAX)]


def test_classify_and_is_within_follow_the_kernel_conditions():
    va = VmapArea(10 * P, 20 * P)
    assert classify_va_fit_type(va, 10 * P, 10 * P) == FitType.FL_FIT_TYPE
    assert classify_va_fit_type(va, 10 * P, 5 * P) == FitType.LE_FIT_TYPE
    assert classify_va_fit_type(va, 15 * P, 5 * P) == FitType.RE_FIT_TYPE
    assert classify_va_fit_type(va, 12 * P, 5 * P) == FitType.NE_FIT_TYPE
    assert classify_va_fit_type(va, 9 * P, 5 * P) == FitType.NOTHING_FIT
    assert classify_va_fit_type(va, 18 * P, 5 * P) == FitType.NOTHING_FIT
    assert is_within_this_va(va, 10 * P, 1, 0)
    assert not is_within_this_va(va, 10 * P, 4 * P, 0)  # aligned up to 12 pages, ends at 22
    assert is_within_this_va(va, 4 * P, 8 * P, 0)  # aligned to 16 pages, ends at 20
    assert not is_within_this_va(va, 5 * P, 8 * P, 0)
    assert not is_within_this_va(va, P, 1, 20 * P)  # vstart past the block


@pytest.mark.parametrize("mode", ["v5.3", "v5.18"])
def test_unknown_search_mode_is_rejected(mode):
    VmapSpace(search=mode)
    with pytest.raises(ValueError):
        VmapSpace(search="v6.0")


def test_errors_are_distinct_negative_codes():
    assert len({ENOENT, ENOMEM, EINVAL, ERANGE}) == 4
    assert max(ENOENT, ENOMEM, EINVAL, ERANGE) < 0


def test_free_far_from_any_free_block_links_where_the_tree_descent_would():
    # 60 packed areas: a free in the middle has no free block within LINK_WALK
    # ranges on the address list, so the tree descent gives the link
    from sim.kernel.mm.vmalloc import space as vmap

    s = new()
    areas = [s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END) for _ in range(60)]
    for va in areas[30], areas[5], areas[55], areas[31 + vmap.LINK_WALK]:
        assert s._link_near(va) == s._find_va_links(va.va_start, va.va_end)
        assert s.free(va.va_start) == 0
        s.invariants()


def test_insert_busy_takes_the_place_of_the_carve_and_refuses_other_ranges():
    s = new()
    addr = s.alloc(2 * P, 1, VMALLOC_START, VMALLOC_END)
    with pytest.raises(ValueError):
        s.insert_busy(VmapArea(addr, addr + P))  # not the carved range
    with pytest.raises(ValueError):
        s.insert_busy(VmapArea(addr + 8 * P, addr + 9 * P))  # never carved
    s.insert_busy(VmapArea(addr, addr + 2 * P))
    s.invariants()
    with pytest.raises(ValueError):
        s.insert_busy(VmapArea(addr, addr + 2 * P))  # its descriptor is already in
    assert s.free(addr) == 2 and s.free_blocks() == [(1, ULONG_MAX)]


def test_a_carve_without_its_descriptor_stays_occupied():
    s = new()
    addr = s.alloc(P, 1, VMALLOC_START, VMALLOC_END)
    b = s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END)
    assert s.free(b.va_start) == 1  # merges above only: the bare carve below is not free
    assert (addr, addr + P) not in s.free_blocks()
    s.invariants()


def test_merging_an_area_twice_or_one_off_the_list_is_refused():
    s = new()
    areas = [s.alloc_area(P, 1, VMALLOC_START, VMALLOC_END) for _ in range(3)]
    middle = areas[1]
    s.busy.pop(middle.va_start)
    assert s.merge_or_add_vmap_area(middle) == 0  # packed: becomes a block of its own
    with pytest.raises(ValueError, match="already a free block"):
        s.merge_or_add_vmap_area(middle)
    with pytest.raises(ValueError, match="not on this space's address list"):
        s.merge_or_add_vmap_area(VmapArea(1 << 50, (1 << 50) + P))
    with pytest.raises(ValueError, match="still a free block"):
        s.insert_busy(middle)
    s.invariants()
