"""The objects and helpers of the vmap allocator core (mm/vmalloc.c, v5.3).

``struct vmap_area``, the fit types, the x86_64 address-space constants, the
augmented-tree callbacks that keep ``subtree_max_size`` exact, and the pure
tests ``is_within_this_va`` and ``classify_va_fit_type``.  The allocator itself
(:class:`sim.kernel.mm.vmalloc.space.VmapSpace`) builds on these.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final, Literal, Protocol

from sim.kernel.lib.rbtree import RBNode

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
ULONG_MAX: Final = (1 << 64) - 1

# x86_64, 4-level paging (arch/x86/include/asm/pgtable_64_types.h, v5.3).
VMALLOC_START: Final = 0xFFFFC90000000000
VMALLOC_END: Final = 0xFFFFE8FFFFFFFFFF
MODULES_VADDR: Final = 0xFFFFFFFFC0000000  # __START_KERNEL_map + 1 GiB (KASLR image size)
MODULES_END: Final = 0xFFFFFFFFFF000000

# Error codes of __alloc_vmap_area since late 2023 (negative errno).
ENOENT: Final = -2  # no free block satisfies the search
ENOMEM: Final = -12  # the NE_FIT split could not get its extra vmap_area
EINVAL: Final = -22  # the found block does not contain the area (NOTHING_FIT)
ERANGE: Final = -34  # the aligned start plus size passes vend

SearchMode = Literal["v5.3", "v5.18"]
SEARCH_MODES: tuple[str, ...] = ("v5.3", "v5.18")


class FitType(IntEnum):
    """``enum fit_type`` of mm/vmalloc.c."""

    NOTHING_FIT = 0
    FL_FIT_TYPE = 1
    LE_FIT_TYPE = 2
    RE_FIT_TYPE = 3
    NE_FIT_TYPE = 4


FIT_NAMES = {1: "FL", 2: "LE", 3: "RE", 4: "NE"}
NOTHING_FIT: Final = 0  # hot-path ints
FL_FIT_TYPE: Final = 1
LE_FIT_TYPE: Final = 2
RE_FIT_TYPE: Final = 3
NE_FIT_TYPE: Final = 4
FREE_BLOCK: Final = -1  # VmapArea.fit of an object that is a free block (tested as fit < 0)


class VmapArea(RBNode):
    """``struct vmap_area``: one object describes either a free block or a busy area.

    ``subtree_max_size`` is the augmented value of the free tree: the largest
    block size in the node's subtree.  ``va_size`` caches ``va_end - va_start``
    (the kernel's ``va_size()``) so that the tree walks read one shared int
    instead of two per node; whoever moves an edge of a free block updates it.
    ``slab`` is the machine model's handle on the slab page holding the object
    (the kernel finds it with ``virt_to_slab``); the core never reads it.
    ``va_prev``/``va_next`` place the object in the space's address list of
    free blocks and occupied ranges (:class:`sim.kernel.mm.vmalloc.space.VmapSpace`).
    ``fit`` is, for a busy area the machine made, the fit type that placed it
    (0 when unknown), and ``FREE_BLOCK`` while the object is a free block.

    Twelve slots, not thirteen, on purpose: with its GC header the object
    then fills a 128-byte pymalloc block, which always starts on a cache line,
    so a node is exactly two lines (at 100k areas the walks are bound by cache
    misses, and a 13th slot measurably slowed them).
    """

    __slots__ = ("fit", "slab", "subtree_max_size", "va_end", "va_next", "va_prev", "va_size", "va_start")

    def __init__(self, va_start: int = 0, va_end: int = 0) -> None:
        # RBNode.__init__ inlined: one object is made per split and per area
        self.rb_left = None
        self.rb_right = None
        self.rb_parent = None
        self.rb_red = True
        self.va_start = va_start
        self.va_end = va_end
        self.va_size = va_end - va_start
        self.subtree_max_size = 0
        self.slab: Any = None  # the slab page the object came from, when a slab model provides it
        self.fit = 0  # for a busy area made by the machine: the fit type that placed it
        # the space's address list (see VmapSpace)
        self.va_prev: VmapArea | None = None
        self.va_next: VmapArea | None = None

    @property
    def va_free(self) -> bool:
        """Whether the object is a free block of its space (not for hot paths)."""
        return self.fit == FREE_BLOCK

    def __repr__(self) -> str:
        return f"VmapArea({self.va_start:#x}, {self.va_end:#x})"


class ObjectProvider(Protocol):
    """Where the core takes ``vmap_area`` objects from and gives them back to.

    ``alloc_split_object`` is the NE_FIT split's object (in v5.2 a GFP_NOWAIT
    ``kmem_cache_alloc`` under the lock; in v5.3 the per-CPU preload first).
    It returns ``None`` when no object can be had, and the split then fails
    with the free space untouched.  ``free_object`` is ``kmem_cache_free``.
    Both receive the ``task`` the core was called with (None from callers that
    have none): the machine's provider works on the CPU that task runs on.
    """

    def alloc_split_object(self, task: Any) -> VmapArea | None: ...

    def free_object(self, va: VmapArea, task: Any) -> None: ...


class CountingProvider:
    """An object provider with unlimited objects that counts traffic.

    ``fail_next_split`` makes the next split request fail once (the vectors'
    ``fail_split`` flag).  ``in_use`` is objects taken minus objects returned.
    """

    __slots__ = ("allocated", "fail_next_split", "failed", "freed")

    def __init__(self) -> None:
        self.allocated = 0
        self.freed = 0
        self.failed = 0
        self.fail_next_split = False

    def alloc_split_object(self, task: Any = None) -> VmapArea | None:
        if self.fail_next_split:
            self.fail_next_split = False
            self.failed += 1
            return None
        self.allocated += 1
        return VmapArea()

    def free_object(self, va: VmapArea, task: Any = None) -> None:
        self.freed += 1

    @property
    def in_use(self) -> int:
        return self.allocated - self.freed


class _SubtreeMaxSize:
    """``free_vmap_area_rb_augment_cb``: the propagate, copy and rotate callbacks
    of RB_DECLARE_CALLBACKS with compute_subtree_max_size (v5.3)."""

    @staticmethod
    def propagate(node: RBNode | None, stop: RBNode | None) -> None:
        va: VmapArea | None = node  # type: ignore[assignment]  # the free tree holds VmapAreas
        while va is not stop:
            best = compute_subtree_max_size(va)  # type: ignore[arg-type]
            if va.subtree_max_size == best:
                break
            va.subtree_max_size = best
            va = va.rb_parent  # type: ignore[assignment]

    @staticmethod
    def copy(old: RBNode, new: RBNode) -> None:
        new_va: VmapArea = new  # type: ignore[assignment]
        old_va: VmapArea = old  # type: ignore[assignment]
        new_va.subtree_max_size = old_va.subtree_max_size

    @staticmethod
    def rotate(old: RBNode, new: RBNode) -> None:
        new_va: VmapArea = new  # type: ignore[assignment]
        old_va: VmapArea = old  # type: ignore[assignment]
        new_va.subtree_max_size = old_va.subtree_max_size
        old_va.subtree_max_size = compute_subtree_max_size(old_va)


FREE_VMAP_AREA_RB_AUGMENT_CB = _SubtreeMaxSize()


def augment_tree_propagate_from(va: VmapArea) -> None:
    """Recompute ``subtree_max_size`` from ``va`` towards the root, stopping at
    the first node whose value does not change (``augment_tree_propagate_from``,
    v5.3).  Needed after a block shrinks."""
    node: VmapArea | None = va
    while node is not None:
        best = node.va_size
        left: VmapArea | None = node.rb_left  # type: ignore[assignment]
        if left is not None and left.subtree_max_size > best:
            best = left.subtree_max_size
        right: VmapArea | None = node.rb_right  # type: ignore[assignment]
        if right is not None and right.subtree_max_size > best:
            best = right.subtree_max_size
        if node.subtree_max_size == best:
            return
        node.subtree_max_size = best
        node = node.rb_parent  # type: ignore[assignment]


def augment_tree_grow_from(va: VmapArea) -> None:
    """``augment_tree_propagate_from`` for a block that only grew: each value on
    the way up becomes at least the new size, and the walk stops at the first
    node that already holds that much (the same result, fewer loads)."""
    size = va.va_size
    node: VmapArea | None = va
    while node is not None and node.subtree_max_size < size:
        node.subtree_max_size = size
        node = node.rb_parent  # type: ignore[assignment]


def compute_subtree_max_size(va: VmapArea) -> int:
    """max(own size, left child's max, right child's max) (v5.3)."""
    best = va.va_size
    left: VmapArea | None = va.rb_left  # type: ignore[assignment]
    if left is not None and left.subtree_max_size > best:
        best = left.subtree_max_size
    right: VmapArea | None = va.rb_right  # type: ignore[assignment]
    if right is not None and right.subtree_max_size > best:
        best = right.subtree_max_size
    return best


def align_up(addr: int, align: int) -> int:
    """``ALIGN(addr, align)`` on an unsigned long: wraps modulo 2^64."""
    return (addr + align - 1) & (ULONG_MAX ^ (align - 1))


def is_within_this_va(va: VmapArea, size: int, align: int, vstart: int) -> bool:
    """Exact fit test of one free block (``is_within_this_va``, v5.3)."""
    start = va.va_start if va.va_start > vstart else vstart
    nva_start_addr = align_up(start, align)
    if nva_start_addr + size > ULONG_MAX or nva_start_addr < vstart:
        return False
    return nva_start_addr + size <= va.va_end


def classify_va_fit_type(va: VmapArea, nva_start_addr: int, size: int) -> FitType:
    """How ``[nva_start_addr, +size)`` sits in the block (``classify_va_fit_type``)."""
    nva_end = nva_start_addr + size
    if nva_start_addr < va.va_start or nva_end > va.va_end:
        return FitType.NOTHING_FIT
    if va.va_start == nva_start_addr:
        return FitType.FL_FIT_TYPE if va.va_end == nva_end else FitType.LE_FIT_TYPE
    if va.va_end == nva_end:
        return FitType.RE_FIT_TYPE
    return FitType.NE_FIT_TYPE


def adjust_search_size(search: str, size: int, align: int, vstart: int, vend: int) -> bool:
    """Whether the search length includes the alignment overhead.

    Always in v5.3; from 9333fe98d0a6 (v5.18) not when ``align <= PAGE_SIZE``
    or when the window is exactly ``size`` long.
    """
    if search == "v5.3":
        return True
    return not (align <= PAGE_SIZE or ((vend - vstart) & ULONG_MAX) == size)
