"""The red-black tree takes the shapes lib/rbtree.c gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.kernel.lib.rbtree import RBNode, RBRoot, rb_check, rb_erase, rb_insert_color, rb_iter, rb_link_node


class Key(RBNode):
    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        super().__init__()
        self.key = key


def insert(root: RBRoot, key: int) -> Key:
    node = root.rb_node
    parent, is_left = None, False
    while node is not None:
        parent = node
        is_left = key < node.key
        node = node.rb_left if is_left else node.rb_right
    new = Key(key)
    rb_link_node(new, parent, is_left, root)
    rb_insert_color(new, root)
    return new


def shape(node) -> object:
    """Nested (key, colour, left, right) tuples; colour 'R' or 'B'."""
    if node is None:
        return None
    return (node.key, "R" if node.rb_red else "B", shape(node.rb_left), shape(node.rb_right))


def test_ascending_inserts_give_the_kernel_shape():
    root = RBRoot()
    for k in range(1, 8):
        insert(root, k)
    assert shape(root.rb_node) == (
        2,
        "B",
        (1, "B", None, None),
        (4, "R", (3, "B", None, None), (6, "B", (5, "R", None, None), (7, "R", None, None))),
    )


def test_erase_of_a_node_with_two_children_puts_its_successor_in_place():
    root = RBRoot()
    nodes = {k: insert(root, k) for k in range(1, 8)}
    rb_erase(nodes[4], root)
    # 4's in-order successor 5 takes 4's place and colour; 6 keeps 7 as its right child
    assert shape(root.rb_node) == (
        2,
        "B",
        (1, "B", None, None),
        (5, "R", (3, "B", None, None), (6, "B", None, (7, "R", None, None))),
    )


def test_erase_rebalances_after_removing_a_black_leaf():
    root = RBRoot()
    nodes = {k: insert(root, k) for k in range(1, 8)}
    rb_erase(nodes[1], root)
    # 1 was a black leaf: the walk rotates left at 2 around the red sibling 4
    assert [n.key for n in rb_iter(root)] == [2, 3, 4, 5, 6, 7]
    rb_check(root)
    assert root.rb_node.key == 4


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=120))
def test_random_inserts_and_erases_keep_red_black_rules(ops):
    root = RBRoot()
    present: dict[int, Key] = {}
    for is_insert, key in ops:
        if is_insert and key not in present:
            present[key] = insert(root, key)
        elif not is_insert and key in present:
            rb_erase(present.pop(key), root)
        rb_check(root)
        assert [n.key for n in rb_iter(root)] == sorted(present)
