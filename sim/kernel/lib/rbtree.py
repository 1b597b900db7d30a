"""Augmented red-black tree with the shape rules of Linux ``lib/rbtree.c``.

The vmap allocator's search (``find_vmap_lowest_match``) walks the free tree and
tests every node on its path, so the block it returns depends on the tree's
*shape*, not only on the set of free blocks.  To return the kernel's addresses
we therefore reproduce the kernel's red-black algorithms step for step:

* ``rb_insert_augmented`` follows ``__rb_insert`` (v5.3): colour flips while the
  uncle is red, otherwise one or two rotations, with the augment ``rotate``
  callback after every rotation;
* ``rb_erase_augmented`` follows ``__rb_erase_augmented`` and
  ``____rb_erase_color`` (v5.3): a node with two children is replaced by its
  in-order successor, with the ``copy`` and ``propagate`` callbacks where the
  kernel calls them, then the four-case rebalancing walk.

Nodes keep an explicit parent reference and a boolean colour instead of the
kernel's packed ``__rb_parent_color`` word.  A "link" (the kernel's
``struct rb_node **``) is represented by a ``(parent, is_left)`` pair.

This module knows nothing about vmap areas; the augmented value and its
callbacks are supplied by the user (see :mod:`sim.kernel.mm.vmalloc.space`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from mypy_extensions import mypyc_attr


@mypyc_attr(allow_interpreted_subclasses=True)  # tests and the plain port subclass it
class RBNode:
    """One tree node: children, parent and colour (``struct rb_node``)."""

    __slots__ = ("rb_left", "rb_parent", "rb_red", "rb_right")

    def __init__(self) -> None:
        self.rb_left: RBNode | None = None
        self.rb_right: RBNode | None = None
        self.rb_parent: RBNode | None = None
        self.rb_red: bool = True


class RBRoot:
    """The tree root (``struct rb_root``)."""

    __slots__ = ("rb_node",)

    def __init__(self) -> None:
        self.rb_node: RBNode | None = None


class RBAugmentCallbacks(Protocol):
    """The three hooks of ``struct rb_augment_callbacks``."""

    def propagate(self, node: RBNode | None, stop: RBNode | None) -> None:
        """Recompute the augmented value from ``node`` up to, not including, ``stop``."""

    def copy(self, old: RBNode, new: RBNode) -> None:
        """``new`` takes over ``old``'s place: give it ``old``'s augmented value."""

    def rotate(self, old: RBNode, new: RBNode) -> None:
        """``new`` became the parent of ``old`` by a rotation: fix both values."""


class _NoAugment:
    """Callbacks that do nothing, for a plain (non-augmented) tree."""

    def propagate(self, node: RBNode | None, stop: RBNode | None) -> None:
        return None

    def copy(self, old: RBNode, new: RBNode) -> None:
        return None

    def rotate(self, old: RBNode, new: RBNode) -> None:
        return None


NO_AUGMENT = _NoAugment()


def rb_link_node(node: RBNode, parent: RBNode | None, is_left: bool, root: RBRoot) -> None:
    """Attach a new red leaf at a link found by a search (``rb_link_node``)."""
    node.rb_parent = parent
    node.rb_red = True
    node.rb_left = None
    node.rb_right = None
    if parent is None:
        root.rb_node = node
    elif is_left:
        parent.rb_left = node
    else:
        parent.rb_right = node


def _change_child(old: RBNode, new: RBNode | None, parent: RBNode | None, root: RBRoot) -> None:
    """Replace ``old`` by ``new`` under ``parent`` (``__rb_change_child``)."""
    if parent is None:
        root.rb_node = new
    elif parent.rb_left is old:
        parent.rb_left = new
    else:
        parent.rb_right = new


def _rotate_set_parents(old: RBNode, new: RBNode, root: RBRoot, red: bool) -> None:
    """``new`` takes ``old``'s parent and colour; ``old`` goes under ``new``
    with colour ``red`` (``__rb_rotate_set_parents``)."""
    parent = old.rb_parent
    new.rb_parent = parent
    new.rb_red = old.rb_red
    old.rb_parent = new
    old.rb_red = red
    _change_child(old, new, parent, root)


def rb_insert_augmented(node: RBNode, root: RBRoot, augment: RBAugmentCallbacks) -> None:
    """Rebalance after ``rb_link_node`` (``__rb_insert``, lib/rbtree.c v5.3).

    The caller must already have updated the augmented values on the path
    to the new node, as the kernel's rbtree_augmented.h asks.
    """
    rotate = augment.rotate
    parent = node.rb_parent
    while True:
        if parent is None:
            node.rb_red = False
            return
        if not parent.rb_red:
            return
        gparent = parent.rb_parent
        assert gparent is not None  # a red node is never the root
        uncle = gparent.rb_right
        if parent is not uncle:  # parent is gparent's left child
            if uncle is not None and uncle.rb_red:
                uncle.rb_red = False
                parent.rb_red = False
                node = gparent
                parent = node.rb_parent
                node.rb_red = True
                continue
            tmp = parent.rb_right
            if node is tmp:
                # left rotation at parent
                tmp = node.rb_left
                parent.rb_right = tmp
                node.rb_left = parent
                if tmp is not None:
                    tmp.rb_parent = parent
                    tmp.rb_red = False
                parent.rb_parent = node
                parent.rb_red = True
                rotate(parent, node)
                parent = node
                tmp = node.rb_right
            # right rotation at gparent
            gparent.rb_left = tmp
            parent.rb_right = gparent
            if tmp is not None:
                tmp.rb_parent = gparent
                tmp.rb_red = False
            _rotate_set_parents(gparent, parent, root, True)
            rotate(gparent, parent)
            return
        else:  # parent is gparent's right child
            uncle = gparent.rb_left
            if uncle is not None and uncle.rb_red:
                uncle.rb_red = False
                parent.rb_red = False
                node = gparent
                parent = node.rb_parent
                node.rb_red = True
                continue
            tmp = parent.rb_left
            if node is tmp:
                # right rotation at parent
                tmp = node.rb_right
                parent.rb_left = tmp
                node.rb_right = parent
                if tmp is not None:
                    tmp.rb_parent = parent
                    tmp.rb_red = False
                parent.rb_parent = node
                parent.rb_red = True
                rotate(parent, node)
                parent = node
                tmp = node.rb_left
            # left rotation at gparent
            gparent.rb_right = tmp
            parent.rb_left = gparent
            if tmp is not None:
                tmp.rb_parent = gparent
                tmp.rb_red = False
            _rotate_set_parents(gparent, parent, root, True)
            rotate(gparent, parent)
            return


def rb_insert_color(node: RBNode, root: RBRoot) -> None:
    """Rebalance a plain tree after ``rb_link_node`` (``rb_insert_color``)."""
    rb_insert_augmented(node, root, NO_AUGMENT)


def _erase_augmented(node: RBNode, root: RBRoot, augment: RBAugmentCallbacks) -> RBNode | None:
    """Unlink ``node``; return the node to rebalance from, if any
    (``__rb_erase_augmented``, include/linux/rbtree_augmented.h v5.3)."""
    child = node.rb_right
    tmp = node.rb_left
    if tmp is None:
        # at most one child, on the right
        parent = node.rb_parent
        _change_child(node, child, parent, root)
        if child is not None:
            child.rb_parent = parent
            child.rb_red = node.rb_red
            rebalance = None
        else:
            rebalance = None if node.rb_red else parent
        tmp = parent
    elif child is None:
        # exactly one child, on the left
        parent = node.rb_parent
        tmp.rb_parent = parent
        tmp.rb_red = node.rb_red
        _change_child(node, tmp, parent, root)
        rebalance = None
        tmp = parent
    else:
        successor = child
        tmp = child.rb_left
        if tmp is None:
            # the successor is the right child itself
            parent = successor
            child2 = successor.rb_right
            augment.copy(node, successor)
        else:
            # the successor is the leftmost node under the right child
            while True:
                parent = successor
                successor = tmp
                tmp = tmp.rb_left
                if tmp is None:
                    break
            child2 = successor.rb_right
            parent.rb_left = child2
            successor.rb_right = child
            child.rb_parent = successor
            augment.copy(node, successor)
            augment.propagate(parent, successor)
        tmp = node.rb_left
        successor.rb_left = tmp
        tmp.rb_parent = successor
        gparent = node.rb_parent
        _change_child(node, successor, gparent, root)
        successor_was_red = successor.rb_red
        successor.rb_parent = gparent
        successor.rb_red = node.rb_red
        if child2 is not None:
            child2.rb_parent = parent
            child2.rb_red = False
            rebalance = None
        else:
            rebalance = None if successor_was_red else parent
        tmp = successor
    augment.propagate(tmp, None)
    return rebalance


def _erase_color(parent: RBNode, root: RBRoot, rotate: Callable[[RBNode, RBNode], None]) -> None:
    """Restore the black height after an erase (``____rb_erase_color``, v5.3)."""
    node: RBNode | None = None
    while True:
        sibling = parent.rb_right
        if node is not sibling:  # node is parent's left child
            assert sibling is not None
            if sibling.rb_red:
                # case 1: left rotation at parent
                tmp1 = sibling.rb_left
                parent.rb_right = tmp1
                sibling.rb_left = parent
                tmp1.rb_parent = parent
                tmp1.rb_red = False
                _rotate_set_parents(parent, sibling, root, True)
                rotate(parent, sibling)  # type: ignore[arg-type]
                sibling = tmp1
            tmp1 = sibling.rb_right
            if tmp1 is None or not tmp1.rb_red:
                tmp2 = sibling.rb_left
                if tmp2 is None or not tmp2.rb_red:
                    # case 2: recolour the sibling
                    sibling.rb_red = True
                    if parent.rb_red:
                        parent.rb_red = False
                    else:
                        node = parent
                        up = node.rb_parent
                        if up is not None:
                            parent = up
                            continue
                    return
                # case 3: right rotation at sibling
                tmp1 = tmp2.rb_right
                sibling.rb_left = tmp1
                tmp2.rb_right = sibling
                parent.rb_right = tmp2
                if tmp1 is not None:
                    tmp1.rb_parent = sibling
                    tmp1.rb_red = False
                rotate(sibling, tmp2)  # type: ignore[arg-type]
                tmp1 = sibling
                sibling = tmp2
            # case 4: left rotation at parent, recolour
            tmp2 = sibling.rb_left
            parent.rb_right = tmp2
            sibling.rb_left = parent
            tmp1.rb_parent = sibling
            tmp1.rb_red = False
            if tmp2 is not None:
                tmp2.rb_parent = parent
            _rotate_set_parents(parent, sibling, root, False)  # type: ignore[arg-type]
            rotate(parent, sibling)  # type: ignore[arg-type]
            return
        else:  # node is parent's right child
            sibling = parent.rb_left
            assert sibling is not None
            if sibling.rb_red:
                # case 1: right rotation at parent
                tmp1 = sibling.rb_right
                parent.rb_left = tmp1
                sibling.rb_right = parent
                tmp1.rb_parent = parent
                tmp1.rb_red = False
                _rotate_set_parents(parent, sibling, root, True)
                rotate(parent, sibling)  # type: ignore[arg-type]
                sibling = tmp1
            tmp1 = sibling.rb_left
            if tmp1 is None or not tmp1.rb_red:
                tmp2 = sibling.rb_right
                if tmp2 is None or not tmp2.rb_red:
                    # case 2: recolour the sibling
                    sibling.rb_red = True
                    if parent.rb_red:
                        parent.rb_red = False
                    else:
                        node = parent
                        up = node.rb_parent
                        if up is not None:
                            parent = up
                            continue
                    return
                # case 3: left rotation at sibling
                tmp1 = tmp2.rb_left
                sibling.rb_right = tmp1
                tmp2.rb_left = sibling
                parent.rb_left = tmp2
                if tmp1 is not None:
                    tmp1.rb_parent = sibling
                    tmp1.rb_red = False
                rotate(sibling, tmp2)  # type: ignore[arg-type]
                tmp1 = sibling
                sibling = tmp2
            # case 4: right rotation at parent, recolour
            tmp2 = sibling.rb_right
            parent.rb_left = tmp2
            sibling.rb_right = parent
            tmp1.rb_parent = sibling
            tmp1.rb_red = False
            if tmp2 is not None:
                tmp2.rb_parent = parent
            _rotate_set_parents(parent, sibling, root, False)  # type: ignore[arg-type]
            rotate(parent, sibling)  # type: ignore[arg-type]
            return


def rb_erase_augmented(node: RBNode, root: RBRoot, augment: RBAugmentCallbacks) -> None:
    """Remove ``node`` and rebalance (``rb_erase_augmented``)."""
    rebalance = _erase_augmented(node, root, augment)
    if rebalance is not None:
        _erase_color(rebalance, root, augment.rotate)


def rb_erase(node: RBNode, root: RBRoot) -> None:
    """Remove ``node`` from a plain tree (``rb_erase``)."""
    rb_erase_augmented(node, root, NO_AUGMENT)


def rb_first(root: RBRoot) -> RBNode | None:
    """The leftmost node (``rb_first``)."""
    node = root.rb_node
    if node is None:
        return None
    while node.rb_left is not None:
        node = node.rb_left
    return node


def rb_next(node: RBNode) -> RBNode | None:
    """The in-order successor (``rb_next``)."""
    if node.rb_right is not None:
        node = node.rb_right
        while node.rb_left is not None:
            node = node.rb_left
        return node
    parent = node.rb_parent
    while parent is not None and node is parent.rb_right:
        node = parent
        parent = node.rb_parent
    return parent


def rb_prev(node: RBNode) -> RBNode | None:
    """The in-order predecessor (``rb_prev``, lib/rbtree.c v5.3): the rightmost
    node of the left subtree, else the first ancestor reached from its right
    side.  The top-down percpu search (``pcpu_get_vm_areas``) steps down the
    free blocks with it."""
    if node.rb_left is not None:
        node = node.rb_left
        while node.rb_right is not None:
            node = node.rb_right
        return node
    parent = node.rb_parent
    while parent is not None and node is parent.rb_left:
        node = parent
        parent = node.rb_parent
    return parent


def rb_iter(root: RBRoot) -> Iterator[RBNode]:
    """All nodes in order."""
    node = rb_first(root)
    while node is not None:
        yield node
        node = rb_next(node)


def rb_check(root: RBRoot) -> int:
    """Verify parent links and the red-black rules; return the black height.

    Raises ``AssertionError`` naming the first broken rule.  Iterative so that
    it works on trees of any depth.
    """
    top = root.rb_node
    if top is None:
        return 0
    if top.rb_parent is not None:
        raise AssertionError("root has a parent")
    if top.rb_red:
        raise AssertionError("root is red")
    black_height: int | None = None
    stack: list[tuple[RBNode, int]] = [(top, 0)]
    while stack:
        node, blacks = stack.pop()
        if not node.rb_red:
            blacks += 1
        for child in (node.rb_left, node.rb_right):
            if child is None:
                if black_height is None:
                    black_height = blacks
                elif black_height != blacks:
                    raise AssertionError("black heights differ")
                continue
            if child.rb_parent is not node:
                raise AssertionError("broken parent link")
            if node.rb_red and child.rb_red:
                raise AssertionError("red node with a red child")
            stack.append((child, blacks))
    assert black_height is not None
    return black_height
