"""The vmap address-space allocator core of Linux v5.3 (mm/vmalloc.c).

This is the part of vmalloc that decides *where* a request goes: the augmented
red-black tree of free blocks plus their address-ordered list, the busy areas,
the lowest-match search, the four fit types, and the merge on free.  It is pure
and synchronous: no SimPy, no I/O, no randomness.  Everything that needs memory
(the extra ``struct vmap_area`` of an NE_FIT split) goes through an
:class:`ObjectProvider`, so the slab model and the split-object strategies of
the machine plug in without touching this file.

Two search modes are offered, because the kernel changed the rule:

* ``"v5.3"``: search length ``size + align - 1`` for every request;
* ``"v5.18"``: search length ``size`` when ``align <= PAGE_SIZE`` or the window
  is exactly ``size`` long (9333fe98d0a6, "add adjust_search_size parameter"),
  and ``vstart`` steps past a parent whose right subtree the climb enters
  (9f531973dff3).

Failures are reported with the negative error codes that later kernels (late
2023) return from ``__alloc_vmap_area``, so that "no space" and "no memory for
the split object" can be told apart even though v5.3 itself could not.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Final

from sim.kernel.lib.rbtree import RBRoot, rb_check, rb_erase_augmented, rb_insert_augmented, rb_iter
from sim.kernel.mm.vmalloc.area import (
    EINVAL,
    ENOENT,
    ENOMEM,
    ERANGE,
    FIT_NAMES,
    FL_FIT_TYPE,
    FREE_BLOCK,
    FREE_VMAP_AREA_RB_AUGMENT_CB,
    LE_FIT_TYPE,
    MODULES_END,
    MODULES_VADDR,
    NE_FIT_TYPE,
    NOTHING_FIT,
    PAGE_SHIFT,
    PAGE_SIZE,
    RE_FIT_TYPE,
    SEARCH_MODES,
    ULONG_MAX,
    VMALLOC_END,
    VMALLOC_START,
    CountingProvider,
    FitType,
    ObjectProvider,
    SearchMode,
    VmapArea,
    adjust_search_size,
    align_up,
    augment_tree_grow_from,
    augment_tree_propagate_from,
    classify_va_fit_type,
    compute_subtree_max_size,
    is_within_this_va,
)

__all__ = [
    "EINVAL",
    "ENOENT",
    "ENOMEM",
    "ERANGE",
    "FIT_NAMES",
    "FL_FIT_TYPE",
    "LE_FIT_TYPE",
    "MODULES_END",
    "MODULES_VADDR",
    "NE_FIT_TYPE",
    "NOTHING_FIT",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "RE_FIT_TYPE",
    "SEARCH_MODES",
    "ULONG_MAX",
    "VMALLOC_END",
    "VMALLOC_START",
    "CountingProvider",
    "FitType",
    "ObjectProvider",
    "SearchMode",
    "VmapArea",
    "VmapSpace",
    "adjust_search_size",
    "align_up",
    "classify_va_fit_type",
    "compute_subtree_max_size",
    "is_within_this_va",
]


LINK_WALK: Final = 16  # ranges walked each way on the address list before a tree descent
# Interpreted, every int is an object and sharing one per block size keeps the tree walks on a
# few hot cache lines; compiled (mypyc), a size is stored unboxed in the node and the shared-int
# table is only a dict probe per edge move.  The values are equal either way.
SHARE_SIZES: Final = __file__.endswith(".py")


class VmapSpace:
    """The free blocks and the busy areas of one kernel (the v5.3 globals
    ``free_vmap_area_root``/``free_vmap_area_list`` and ``vmap_area_root``).

    Boot state: one free block ``[1, ULONG_MAX)`` and nothing busy, as
    ``vmap_init_free_space`` leaves it on x86_64.

    Representation.  The free tree is the kernel's augmented rb-tree, node for
    node.  The address-ordered ``free_vmap_area_list`` serves the kernel only to
    reach a freed range's neighbours, after a descent of the free tree.  Here one
    doubly linked *address list* (``va_prev``/``va_next``) tiles the whole space
    ``[0, ULONG_MAX]``: free blocks (``va_free``), busy areas, areas freed lazily
    and not yet purged, and carved ranges whose busy descriptor has not been
    inserted yet, between two sentinels.  A freed area's list neighbours are then
    exactly the blocks it may merge with, found with no search and no hashing
    (at 100k live areas, hash-map probes had been about half of what a free
    cost beyond its cost at 1k).  A
    carve links a placeholder for its range; ``insert_busy`` puts the caller's
    descriptor in its place (``alloc_area`` keeps the placeholder as the busy
    area).  Busy areas also sit in a dict keyed by start address, which stands
    for the busy tree's ``find_vmap_area``: the busy tree never influences
    placement.
    """

    def __init__(self, provider: ObjectProvider | None = None, search: str = "v5.3") -> None:
        if search not in SEARCH_MODES:
            raise ValueError(f"search must be one of {SEARCH_MODES}, not {search!r}")
        self.provider: ObjectProvider = provider if provider is not None else CountingProvider()
        self.search = search
        self.v518 = search == "v5.18"
        self.root = RBRoot()
        self.busy: dict[int, VmapArea] = {}
        self.nr_free_blocks = 0
        # carved ranges awaiting their busy descriptor, by start address
        self._carved: dict[int, VmapArea] = {}
        # one int object per distinct block size, shared by all nodes of that
        # size: the tree walks then touch a few hot ints, not one per node
        self._sizes: dict[int, int] = {}
        self.last_fit = NOTHING_FIT
        self.fit_counts = [0, 0, 0, 0, 0]
        boot = VmapArea(1, ULONG_MAX)
        self.list_head = VmapArea(0, 1)  # sentinel: address 0 is never handed out
        self.list_tail = VmapArea(ULONG_MAX, ULONG_MAX)  # sentinel past the last block
        self.list_head.va_next = boot
        boot.va_prev = self.list_head
        boot.va_next = self.list_tail
        self.list_tail.va_prev = boot
        self._link_va(boot, None, False)

    # -- free tree ---------------------------------------------------------

    def _link_va(self, va: VmapArea, parent: VmapArea | None, is_left: bool) -> None:
        """Insert free block ``va`` at an empty link (``link_va`` plus the
        propagate of ``insert_vmap_area_augment``)."""
        va.rb_parent = parent
        va.rb_red = True
        va.rb_left = va.rb_right = None
        va.subtree_max_size = 0
        va.va_size = self._shared_size(va.va_end - va.va_start)
        if parent is None:
            self.root.rb_node = va
        elif is_left:
            parent.rb_left = va
        else:
            parent.rb_right = va
        augment_tree_grow_from(va)
        rb_insert_augmented(va, self.root, FREE_VMAP_AREA_RB_AUGMENT_CB)
        va.fit = FREE_BLOCK
        self.nr_free_blocks += 1

    def _shared_size(self, size: int) -> int:
        """``size`` as the one int object that all blocks of this size share
        (interpreted only: see ``SHARE_SIZES``)."""
        if not SHARE_SIZES:
            return size
        sizes = self._sizes
        shared = sizes.get(size)
        if shared is None:
            if len(sizes) >= 65536:  # bound the table; old ints stay valid
                sizes.clear()
            sizes[size] = shared = size
        return shared

    def _unlink_va(self, va: VmapArea) -> None:
        """Remove free block ``va`` from the tree (``unlink_va``); the caller
        mends the address list."""
        rb_erase_augmented(va, self.root, FREE_VMAP_AREA_RB_AUGMENT_CB)
        va.fit = NOTHING_FIT
        self.nr_free_blocks -= 1

    def _find_va_links(self, va_start: int, va_end: int) -> tuple[VmapArea | None, bool]:
        """Descend to the empty link where ``[va_start, va_end)`` belongs
        (``find_va_links``): ``(parent, is_left)``.  An overlap is a bug."""
        node = self.root.rb_node
        parent = None
        is_left = False
        while node is not None:
            parent = node
            if va_end <= node.va_start:  # type: ignore[attr-defined]
                node = node.rb_left
                is_left = True
            elif va_start >= node.va_end:  # type: ignore[attr-defined]
                node = node.rb_right
                is_left = False
            else:
                raise AssertionError(f"[{va_start:#x}, {va_end:#x}) overlaps free block {parent!r}")
        return parent, is_left  # type: ignore[return-value]

    def _link_near(self, va: VmapArea) -> tuple[VmapArea | None, bool]:
        """The link ``_find_va_links`` returns for occupied range ``va``, found
        from its nearest free blocks on the address list when they are close.

        In a binary search tree the empty link where a key belongs is the right
        link of its in-order predecessor when that is empty, else the left link
        of its in-order successor; the free blocks nearest below and above
        ``va`` are exactly those.  A walk of at most ``LINK_WALK`` ranges each
        way finds them; past that the descent from the root is used.  Both give
        the same link, so the tree's shape is the kernel's either way.
        """
        node = va.va_prev
        for _ in range(LINK_WALK):
            if node.fit < 0:  # type: ignore[union-attr]  # fit < 0: a free block
                right = node.rb_right  # type: ignore[union-attr]
                if right is None:
                    return node, False
                while right.rb_left is not None:
                    right = right.rb_left
                return right, True  # type: ignore[return-value]
            node = node.va_prev  # type: ignore[union-attr]
            if node is None:  # the head sentinel: no free block below
                break
        node = va.va_next
        for _ in range(LINK_WALK):
            if node.fit < 0:  # type: ignore[union-attr]
                left = node.rb_left  # type: ignore[union-attr]
                if left is None:
                    return node, True
                while left.rb_right is not None:
                    left = left.rb_right
                return left, False  # type: ignore[return-value]
            node = node.va_next  # type: ignore[union-attr]
            if node is None:  # past the tail sentinel
                break
        return self._find_va_links(va.va_start, va.va_end)

    # -- allocation --------------------------------------------------------

    def find_vmap_lowest_match(self, size: int, align: int, vstart: int, adjust: bool) -> VmapArea | None:
        """The free block the kernel's tree search returns (``find_vmap_lowest_match``).

        Descend left while the left subtree holds a block of the search length
        and ``vstart`` is below the node; otherwise take the node if it fits
        exactly, else go right if the right subtree can hold the length, else
        climb testing each parent and enter the first right subtree that can
        (in v5.18 mode moving ``vstart`` past that parent).  A search length
        that wraps past 2^64 fails at once: such a request can never succeed,
        and the kernel's loop would not end.
        """
        length = size + align - 1 if adjust else size
        if length > ULONG_MAX:
            return None
        mask = align - 1
        keep = ULONG_MAX ^ mask
        v518 = self.v518
        # once the walk is inside the right subtree of a node starting at or
        # above vstart, every block below starts above vstart: the "vstart <
        # va_start" test of the left turns is then known true, and its load of
        # the start address is skipped (one cold int per level at 100k areas)
        above = False
        node: VmapArea | None = self.root.rb_node  # type: ignore[assignment]  # the free tree holds VmapAreas
        while node is not None:
            left: VmapArea | None = node.rb_left  # type: ignore[assignment]
            va_start = node.va_start
            if left is not None and left.subtree_max_size >= length and (above or vstart < va_start):
                node = left
                continue
            # is_within_this_va, inline, after the cheap necessary condition
            if node.va_size >= size:
                nva = va_start if va_start > vstart else vstart
                if mask:  # ALIGN() is the identity at align 1, and each step is a big-int op
                    nva = (nva + mask) & keep
                end = nva + size
                if end <= node.va_end and end <= ULONG_MAX and nva >= vstart:
                    return node
            right: VmapArea | None = node.rb_right  # type: ignore[assignment]
            if right is not None and right.subtree_max_size >= length:
                if not above:
                    above = vstart <= va_start
                node = right
                continue
            up: VmapArea | None = node.rb_parent  # type: ignore[assignment]  # climb towards the root
            above = False  # the climb may leave the subtree that set it
            while up is not None:
                va_start = up.va_start
                if up.va_size >= size:
                    nva = va_start if va_start > vstart else vstart
                    if mask:
                        nva = (nva + mask) & keep
                    end = nva + size
                    if end <= up.va_end and end <= ULONG_MAX and nva >= vstart:
                        return up
                right = up.rb_right  # type: ignore[assignment]
                if right is not None and right.subtree_max_size >= length and vstart <= va_start:
                    if v518:
                        vstart = va_start + 1
                    above = True  # blocks of that subtree start past va_start + 1
                    break
                up = up.rb_parent  # type: ignore[assignment]
            node = right if up is not None else None
        return None

    def adjust_va_to_fit_type(
        self, va: VmapArea, nva_start_addr: int, size: int, fit: int, task: object = None
    ) -> bool:
        """Carve ``[nva_start_addr, +size)`` out of free block ``va``
        (``adjust_va_to_fit_type``, v5.3).  FL erases the node and frees its
        object; LE and RE shrink it; NE asks the provider for one object for the
        left remainder and, without it, fails with everything unchanged.  The
        carved range enters the address list as a placeholder (see the class).
        ``task`` (the caller, opaque here) goes to the provider with each request."""
        if fit == NE_FIT_TYPE:
            lva = self.provider.alloc_split_object(task)
            if lva is None:
                return False
            nva_end = nva_start_addr + size
            lva.va_start = va.va_start
            lva.va_end = nva_start_addr
            va.va_start = nva_end
            va.va_size = self._shared_size(va.va_end - nva_end)
            augment_tree_propagate_from(va)
            carved = VmapArea(nva_start_addr, nva_end)
            prev = va.va_prev
            prev.va_next = lva
            lva.va_prev = prev
            lva.va_next = carved
            carved.va_prev = lva
            carved.va_next = va
            va.va_prev = carved
            # insert_vmap_area_augment from the split node: lva belongs at the
            # rightmost empty link of va's left subtree (as from the root)
            node = va.rb_left
            if node is None:
                self._link_va(lva, va, True)
            else:
                while node.rb_right is not None:
                    node = node.rb_right
                self._link_va(lva, node, False)  # type: ignore[arg-type]
        elif fit == LE_FIT_TYPE:
            nva_end = va.va_start + size
            carved = VmapArea(nva_start_addr, nva_end)
            va.va_start = nva_end
            va.va_size = self._shared_size(va.va_end - nva_end)
            prev = va.va_prev
            prev.va_next = carved
            carved.va_prev = prev
            carved.va_next = va
            va.va_prev = carved
            augment_tree_propagate_from(va)
        elif fit == RE_FIT_TYPE:
            carved = VmapArea(nva_start_addr, va.va_end)
            va.va_end = nva_start_addr
            va.va_size = self._shared_size(nva_start_addr - va.va_start)
            nxt = va.va_next
            va.va_next = carved
            carved.va_prev = va
            carved.va_next = nxt
            nxt.va_prev = carved
            augment_tree_propagate_from(va)
        elif fit == FL_FIT_TYPE:
            self._unlink_va(va)
            carved = VmapArea(va.va_start, va.va_end)
            self._replace_in_list(va, carved)
            self.provider.free_object(va, task)
        else:
            return False
        self._carved[nva_start_addr] = carved
        return True

    @staticmethod
    def _replace_in_list(old: VmapArea, new: VmapArea) -> None:
        """``new`` takes ``old``'s place in the address list."""
        prev = old.va_prev
        nxt = old.va_next
        prev.va_next = new  # type: ignore[union-attr]
        new.va_prev = prev
        new.va_next = nxt
        nxt.va_prev = new  # type: ignore[union-attr]
        old.va_prev = old.va_next = None

    def alloc(self, size: int, align: int, vstart: int, vend: int, task: object = None) -> int:
        """Find and carve free space (``__alloc_vmap_area``, v5.3).

        Returns the start address, or a negative error: ENOENT (no block),
        ERANGE (past ``vend``), EINVAL (NOTHING_FIT), ENOMEM (the NE split got no
        object).  ``last_fit`` records the fit type of the last success.
        ``task`` is passed to the provider (the machine's needs the CPU it runs on).
        """
        adjust = not (align <= PAGE_SIZE or ((vend - vstart) & ULONG_MAX) == size) if self.v518 else True
        va = self.find_vmap_lowest_match(size, align, vstart, adjust)
        if va is None:
            return ENOENT
        va_start = va.va_start
        nva = va_start if va_start > vstart else vstart
        if align != 1:  # ALIGN() is the identity at align 1
            nva = (nva + align - 1) & (ULONG_MAX ^ (align - 1))
        nva_end = nva + size
        if nva_end > vend:
            return ERANGE
        va_end = va.va_end
        if nva < va_start or nva_end > va_end:
            return EINVAL
        if nva == va_start:
            fit = FL_FIT_TYPE if nva_end == va_end else LE_FIT_TYPE
        elif nva_end == va_end:
            fit = RE_FIT_TYPE
        else:
            fit = NE_FIT_TYPE
        if not self.adjust_va_to_fit_type(va, nva, size, fit, task):
            return ENOMEM
        self.last_fit = fit
        self.fit_counts[fit] += 1
        return nva

    def insert_busy(self, va: VmapArea) -> None:
        """Make ``va`` the busy area of a range carved from this space
        (``insert_vmap_area`` into ``vmap_area_root``).  ``va`` replaces the
        carve's placeholder in the address list; a range that was not carved,
        or whose descriptor is already in, is a caller's bug."""
        if va.fit < 0:
            raise ValueError(f"{va!r} is still a free block of this space")
        carved = self._carved.pop(va.va_start, None)
        if carved is None or carved.va_end != va.va_end:
            if carved is not None:
                self._carved[carved.va_start] = carved
            raise ValueError(f"{va!r} is not a range carved from this space and awaiting its descriptor")
        if carved is not va:
            va.va_start = carved.va_start  # the same int objects as the neighbours' edges
            va.va_end = carved.va_end
            self._replace_in_list(carved, va)
        self.busy[va.va_start] = va

    def alloc_area(self, size: int, align: int, vstart: int, vend: int) -> VmapArea | int:
        """``alloc`` plus a busy descriptor: the new busy area, or a negative error.

        The descriptor is a fresh object, not drawn from the provider, as in the
        vectors, where the busy area's own object is not counted.
        """
        addr = self.alloc(size, align, vstart, vend)
        if addr < 0:
            return addr
        va = self._carved.pop(addr)  # the carve's placeholder becomes the busy area
        self.busy[addr] = va
        return va

    # -- freeing -----------------------------------------------------------

    def find_vmap_area(self, addr: int) -> VmapArea | None:
        """The busy area starting exactly at ``addr`` (``find_vmap_area``)."""
        return self.busy.get(addr)

    def merge_or_add_vmap_area(self, va: VmapArea, task: object = None) -> int:
        """Give ``[va.va_start, va.va_end)`` back to the free space
        (``merge_or_add_vmap_area``, v5.3).

        The block that starts at the range's end absorbs it, then the block that
        ends at its start absorbs the result; when both exist the upper node is
        erased and the lower one extended.  With no neighbour, ``va`` itself
        becomes a new free block.  Returns the objects freed: 0, 1 or 2.  ``va``
        must be a range of this space's address list (a busy area, or one freed
        lazily and not yet purged); its list neighbours are the candidates.
        A free block (a double free) or an object off the list is a caller's
        bug and raises ``ValueError``, as the kernel's overlap check would BUG.
        Objects go back through the provider with ``task``.
        """
        prv = va.va_prev
        nxt = va.va_next
        if prv is None or va.fit < 0:
            state = "already a free block" if va.fit < 0 else "not on this space's address list"
            raise ValueError(f"merging {va!r}: {state}")
        if prv.fit < 0:  # type: ignore[union-attr]  # fit < 0: a free block
            if nxt.fit < 0:  # type: ignore[union-attr]
                # erase the upper block, then grow the lower one over it: the
                # same shape and values as the kernel's order of steps
                self._unlink_va(nxt)  # type: ignore[arg-type]
                after = nxt.va_next  # type: ignore[union-attr]
                prv.va_next = after  # type: ignore[union-attr]
                after.va_prev = prv  # type: ignore[union-attr]
                va.va_prev = va.va_next = None
                nxt.va_prev = nxt.va_next = None  # type: ignore[union-attr]
                self.provider.free_object(va, task)
                va = nxt  # type: ignore[assignment]
                freed = 2
            else:
                prv.va_next = nxt  # type: ignore[union-attr]
                nxt.va_prev = prv  # type: ignore[union-attr]
                va.va_prev = va.va_next = None
                freed = 1
            prv.va_end = va_end = va.va_end  # type: ignore[union-attr]
            prv.va_size = self._shared_size(va_end - prv.va_start)  # type: ignore[union-attr]
            augment_tree_grow_from(prv)  # type: ignore[arg-type]
            self.provider.free_object(va, task)
            return freed
        if nxt.fit < 0:  # type: ignore[union-attr]
            va_start = va.va_start
            nxt.va_start = va_start  # type: ignore[union-attr]
            nxt.va_size = self._shared_size(nxt.va_end - va_start)  # type: ignore[union-attr]
            prv.va_next = nxt  # type: ignore[union-attr]
            nxt.va_prev = prv  # type: ignore[union-attr]
            va.va_prev = va.va_next = None
            augment_tree_grow_from(nxt)  # type: ignore[arg-type]
            self.provider.free_object(va, task)
            return 1
        parent, is_left = self._link_near(va)
        self._link_va(va, parent, is_left)
        return 0

    def free_vmap_area(self, va: VmapArea, task: object = None) -> int:
        """Remove a busy area and merge its range into the free space
        (``__free_vmap_area``); returns the objects freed (0, 1 or 2)."""
        del self.busy[va.va_start]
        return self.merge_or_add_vmap_area(va, task)

    def free(self, addr: int) -> int:
        """Free the busy area starting at ``addr``; -1 if there is none."""
        va = self.busy.pop(addr, None)
        if va is None:
            return -1
        return self.merge_or_add_vmap_area(va)

    # -- inspection --------------------------------------------------------

    def free_areas(self) -> Iterator[VmapArea]:
        """Free blocks in address order (the order of ``free_vmap_area_list``)."""
        return rb_iter(self.root)  # type: ignore[return-value]

    def free_blocks(self) -> list[tuple[int, int]]:
        """Every free block as ``(start, end)``, in address order."""
        return [(va.va_start, va.va_end) for va in self.free_areas()]

    def invariants(self) -> None:
        """Check every structural promise; raise ``AssertionError`` at the first break.

        Free blocks non-empty, sorted, disjoint and never adjacent; the address
        list tiles the space edge to edge and its free ranges are exactly the
        tree's blocks, with busy and carved areas on it as occupied ranges;
        ``subtree_max_size`` exact at every node; red-black rules and parent
        links; no free block overlaps a busy area.
        """
        rb_check(self.root)
        areas = list(self.free_areas())
        blocks = [(va.va_start, va.va_end) for va in areas]
        for s, e in blocks:
            if not s < e:
                raise AssertionError(f"empty or inverted block [{s:#x}, {e:#x})")
        for (s, e), (s2, _) in pairwise(blocks):
            if not e < s2:
                raise AssertionError(f"blocks [{s:#x}, {e:#x}) and {s2:#x} touch or overlap")
        if len(areas) != self.nr_free_blocks:
            raise AssertionError(f"nr_free_blocks {self.nr_free_blocks}, tree {len(areas)}")
        listed = self._check_address_list()
        if [va for va in listed if va.va_free] != areas:
            raise AssertionError("the free blocks of the address list are not the tree's")
        occupied = {id(va) for va in listed if not va.va_free}
        for va in [*self.busy.values(), *self._carved.values()]:
            if id(va) not in occupied:
                raise AssertionError(f"busy or carved {va!r} is not an occupied range of the address list")
        for va in areas:
            if va.subtree_max_size != compute_subtree_max_size(va):
                raise AssertionError(f"subtree_max_size wrong at {va!r}")
            if va.va_size != va.va_end - va.va_start:
                raise AssertionError(f"va_size wrong at {va!r}")
        for key, va in self.busy.items():
            if key != va.va_start or not va.va_start < va.va_end:
                raise AssertionError(f"bad busy entry {key:#x} -> {va!r}")
        busy = sorted((va.va_start, va.va_end) for va in self.busy.values())
        for (_, e), (s2, _) in pairwise(busy):
            if e > s2:
                raise AssertionError(f"busy areas overlap at {s2:#x}")
        _check_disjoint(blocks, busy)

    def _check_address_list(self) -> list[VmapArea]:
        """Walk the address list from the head sentinel: back links right, the
        ranges tiling ``[0, ULONG_MAX]`` edge to edge; return the ranges
        between the sentinels."""
        listed: list[VmapArea] = []
        prev = self.list_head
        node = prev.va_next
        while node is not self.list_tail:
            if node is None or node.va_prev is not prev:
                raise AssertionError(f"address list broken after {prev!r}")
            if node.va_start != prev.va_end or node.va_start >= node.va_end:
                raise AssertionError(f"address list: {prev!r} then {node!r} do not tile")
            if prev.va_free and node.va_free:
                raise AssertionError(f"free blocks {prev!r} and {node!r} touch")
            listed.append(node)
            prev, node = node, node.va_next
        if node.va_prev is not prev or node.va_start != prev.va_end:
            raise AssertionError("address list does not end at the tail sentinel")
        return listed


def _check_disjoint(free: list[tuple[int, int]], busy: list[tuple[int, int]]) -> None:
    """Raise if any free block overlaps any busy area (both lists sorted)."""
    i = 0
    for s, e in free:
        while i < len(busy) and busy[i][1] <= s:
            i += 1
        if i < len(busy) and busy[i][0] < e:
            raise AssertionError(f"free block [{s:#x}, {e:#x}) overlaps busy {busy[i][0]:#x}")
