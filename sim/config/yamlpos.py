"""YAML with line numbers: the data of a scenario file and the line where each key sits.

``yaml.safe_load`` forgets where a value came from, so a validation error could
only name its key path.  Here the file is composed into a node tree first (each
node keeps its start mark), the data are constructed from that tree, and
:func:`line_of` walks the tree along a key path (keys and list indices, as in a
pydantic error location) to the deepest node that exists.  Two things plain
``safe_load`` gets wrong for scenarios are fixed on the way: a key given twice
is an error instead of a silent "last one wins", and the values at
:data:`RAW_TEXT_PATHS` keep their source text (``kernel: 5.20`` stays "5.20"
instead of becoming the float 5.2 and passing as profile "5.2").

A scenario is a few KiB of a few hundred values, so reading is bounded, each
bound a one-line error at the line where it is crossed: the file's size
(:data:`MAX_BYTES`, checked before parsing, so ``/dev/zero`` is refused at
once), nesting depth (:data:`MAX_DEPTH`, checked while composing, before
PyYAML's recursive composer could overflow the stack), the number of aliases
(:data:`MAX_ALIASES`) and the number of values after alias expansion
(:data:`MAX_VALUES`; a "billion laughs" document expands to 10^9), and an
alias that refers to its own node.  Control characters, which YAML forbids,
name their line instead of raising PyYAML's reader error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sim.schema.errors import InputError

# Key paths whose plain (unquoted) scalar is kept as written: version-like names.
RAW_TEXT_PATHS: frozenset[tuple[str, ...]] = frozenset({("kernel",)})
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
MAX_BYTES = 1 << 20  # a scenario or sweep file is a few KiB
MAX_DEPTH = 64  # a scenario nests 5 levels deep
MAX_ALIASES = 1_000
MAX_VALUES = 100_000  # nodes after alias expansion

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML document: its data and the node tree they came from (None if empty)."""

    data: Any
    root: Node | None


def read_yaml(path: Path) -> YamlDoc:
    """The YAML document in ``path``; a missing, unreadable or malformed file is an InputError."""
    source = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise InputError(source, None, f"larger than {MAX_BYTES >> 20} MiB; a scenario or sweep file is a few KiB")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InputError(source, None, "no such file") from None
    except IsADirectoryError:
        raise InputError(source, None, "is a directory, not a scenario file") from None
    except UnicodeDecodeError as err:
        raise InputError(source, None, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise InputError(source, None, f"cannot read: {err.strerror}") from None
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str, raw_paths: frozenset[Loc] = RAW_TEXT_PATHS) -> YamlDoc:
    """Compose (bounded), check for duplicate keys, then construct; syntax errors name their line."""
    loader = None
    try:
        loader = _BoundedLoader(text)
        root = loader.get_single_node()
        if root is None:
            return YamlDoc(None, None)
        _check_expansion(root, source)
        _check_duplicate_keys(root, (), source)
        data = loader.construct_document(root)
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise InputError(source, line, f"YAML syntax: control character {err.character:#04x} "
                         "(YAML text allows tab, line feed and carriage return only)") from None  # fmt: skip
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        context = err.context or ""
        if err.context and err.context_mark and err.context_mark.line != getattr(mark, "line", None):
            context += f" (from line {err.context_mark.line + 1})"
        problem = ": ".join(p for p in (context, err.problem) if p)
        raise InputError(source, mark.line + 1 if mark else None, f"YAML syntax: {problem}") from None
    except yaml.YAMLError as err:
        raise InputError(source, None, f"YAML syntax: {err}") from None
    finally:
        if loader is not None:
            loader.dispose()
    for path in raw_paths:
        data = _keep_raw_text(data, root, path)
    return YamlDoc(data, root)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the composer bounded in depth and in aliases."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expansion(root: Node, source: str) -> None:
    """Refuse a node that contains itself (``&a [*a]``) or a document whose aliases expand
    to more than MAX_VALUES values; iterative, as the node graph may be deep or cyclic."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            if size[key] > MAX_VALUES:
                raise InputError(source, node.start_mark.line + 1, f"YAML aliases expand to more than "
                                 f"{MAX_VALUES:,} values (an alias bomb?)")  # fmt: skip
            continue
        if key in size:
            continue
        if key in on_path:
            raise InputError(source, node.start_mark.line + 1, "YAML alias refers to a node that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def parse_value(text: str, path: Loc = ()) -> Any:
    """A ``--set`` value: a YAML scalar or flow collection ("32", "10ms", "[a, b]", "{x: 1}").

    Raises ValueError with the YAML problem if it does not parse."""
    try:
        doc = parse_yaml(text, "--set", frozenset({()}) if path in RAW_TEXT_PATHS else frozenset())
    except InputError as err:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(f"cannot read the value {shown!r} as YAML ({err.message})") from None
    return doc.data


def line_of(root: Node | None, loc: Loc) -> int | None:
    """1-based line of the deepest node along ``loc`` (a key's own line for mapping entries)."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        key, node = child
        line = (key or node).start_mark.line + 1
    if isinstance(node, ScalarNode) and node is not root:
        line = node.start_mark.line + 1
    return line


def _child(node: Node, part: str | int) -> tuple[Node | None, Node] | None:
    """(key node, value node) of ``part`` in a mapping, (None, item) in a sequence, else None."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _check_duplicate_keys(node: Node, loc: Loc, source: str) -> None:
    """Reject a mapping that gives the same key twice (PyYAML keeps the last silently)."""
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                if key.value in seen:
                    where = ".".join(str(p) for p in (*loc, key.value))
                    raise InputError(source, line, f"{where}: duplicate key (first given at line {seen[key.value]})")
                seen[key.value] = line
            _check_duplicate_keys(value, (*loc, key.value if isinstance(key, ScalarNode) else "?"), source)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(item, (*loc, index), source)


def _keep_raw_text(data: Any, root: Node, path: Loc) -> Any:
    """``data`` with the source text of a plain number at ``path`` put back (the root if ``()``)."""
    node: Node | None = root
    for part in path:
        child = _child(node, part) if node is not None else None
        node = child[1] if child else None
    if not (isinstance(node, ScalarNode) and node.style is None and node.tag in _NUMBER_TAGS):
        return data
    if not path:
        return node.value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if isinstance(parent, dict) and path[-1] in parent:
        parent[path[-1]] = node.value
    return data
