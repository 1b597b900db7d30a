"""A plain, straightforward port of the v5.3 vmap allocator, for comparison only.

This is what a first translation looks like: helper functions called per node
(``get_subtree_max_size``, ``is_within_this_va``), neighbours found through
``find_va_links`` and the address-ordered list, and the generic
``augment_tree_propagate_from`` after every change.  ``bench_vmap.py`` runs it
beside :mod:`sim.kernel.mm.vmalloc.space` in the same process, so the speed of the real core
is reported as a ratio that does not depend on the machine.  It must give the
same addresses, which the benchmark checks.
"""

from __future__ import annotations

from sim.kernel.lib.rbtree import RBNode, RBRoot, rb_erase_augmented, rb_insert_augmented, rb_link_node

ULONG_MAX = (1 << 64) - 1


class Area(RBNode):
    __slots__ = ("va_start", "va_end", "subtree_max_size", "prev", "next")

    def __init__(self, start: int = 0, end: int = 0) -> None:
        super().__init__()
        self.va_start = start
        self.va_end = end
        self.subtree_max_size = 0
        self.prev = self
        self.next = self


def get_subtree_max_size(node):
    return node.subtree_max_size if node is not None else 0


def compute_subtree_max_size(va):
    return max(va.va_end - va.va_start, get_subtree_max_size(va.rb_left), get_subtree_max_size(va.rb_right))


class Callbacks:
    def propagate(self, node, stop):
        while node is not stop:
            value = compute_subtree_max_size(node)
            if node.subtree_max_size == value:
                break
            node.subtree_max_size = value
            node = node.rb_parent

    def copy(self, old, new):
        new.subtree_max_size = old.subtree_max_size

    def rotate(self, old, new):
        new.subtree_max_size = old.subtree_max_size
        old.subtree_max_size = compute_subtree_max_size(old)


CB = Callbacks()


def augment_tree_propagate_from(va):
    CB.propagate(va, None)


def is_within_this_va(va, size, align, vstart):
    start = va.va_start if va.va_start > vstart else vstart
    nva = (start + align - 1) & (ULONG_MAX ^ (align - 1))
    if nva + size > ULONG_MAX or nva < vstart:
        return False
    return nva + size <= va.va_end


class PlainSpace:
    def __init__(self) -> None:
        self.root = RBRoot()
        self.head = Area()
        self.busy: dict[int, Area] = {}
        self.link_va(Area(1, ULONG_MAX), None, False)

    def find_va_links(self, va):
        node, parent, is_left = self.root.rb_node, None, False
        while node is not None:
            parent = node
            if va.va_start < node.va_end and va.va_end <= node.va_start:
                node, is_left = node.rb_left, True
            elif va.va_end > node.va_start and va.va_start >= node.va_end:
                node, is_left = node.rb_right, False
            else:
                raise AssertionError("overlap")
        return parent, is_left

    def link_va(self, va, parent, is_left):
        after = self.head if parent is None else (parent.prev if is_left else parent)
        rb_link_node(va, parent, is_left, self.root)
        va.subtree_max_size = 0
        augment_tree_propagate_from(va)
        rb_insert_augmented(va, self.root, CB)
        nxt = after.next
        va.prev, va.next, after.next, nxt.prev = after, nxt, va, va

    def unlink_va(self, va):
        rb_erase_augmented(va, self.root, CB)
        va.prev.next, va.next.prev = va.next, va.prev

    def find_vmap_lowest_match(self, size, align, vstart):
        length = size + align - 1
        node = self.root.rb_node
        while node is not None:
            if get_subtree_max_size(node.rb_left) >= length and vstart < node.va_start:
                node = node.rb_left
                continue
            if is_within_this_va(node, size, align, vstart):
                return node
            if get_subtree_max_size(node.rb_right) >= length:
                node = node.rb_right
                continue
            while (node := node.rb_parent) is not None:
                if is_within_this_va(node, size, align, vstart):
                    return node
                if get_subtree_max_size(node.rb_right) >= length and vstart <= node.va_start:
                    node = node.rb_right
                    break
        return None

    def alloc_area(self, size, align, vstart, vend):
        va = self.find_vmap_lowest_match(size, align, vstart)
        if va is None:
            return -2
        start = va.va_start if va.va_start > vstart else vstart
        nva = (start + align - 1) & (ULONG_MAX ^ (align - 1))
        if nva + size > vend:
            return -34
        if nva == va.va_start and nva + size == va.va_end:
            self.unlink_va(va)
        elif nva == va.va_start:
            va.va_start += size
            augment_tree_propagate_from(va)
        elif nva + size == va.va_end:
            va.va_end = nva
            augment_tree_propagate_from(va)
        else:
            lva = Area(va.va_start, nva)
            va.va_start = nva + size
            augment_tree_propagate_from(va)
            parent, is_left = self.find_va_links(lva)
            self.link_va(lva, parent, is_left)
        area = Area(nva, nva + size)
        self.busy[nva] = area
        return area

    def free(self, addr):
        va = self.busy.pop(addr)
        parent, is_left = self.find_va_links(va)
        nxt = parent.next if not is_left else parent
        merged = False
        if nxt is not self.head and nxt.va_start == va.va_end:
            nxt.va_start = va.va_start
            augment_tree_propagate_from(nxt)
            va, merged = nxt, True
        prv = nxt.prev
        if prv is not self.head and prv.va_end == va.va_start:
            prv.va_end = va.va_end
            augment_tree_propagate_from(prv)
            if merged:
                self.unlink_va(va)
            return
        if not merged:
            self.link_va(va, parent, is_left)
