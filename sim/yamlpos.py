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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sim.errors import InputError

# Key paths whose plain (unquoted) scalar is kept as written: version-like names.
RAW_TEXT_PATHS: frozenset[tuple[str, ...]] = frozenset({("kernel",)})
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})

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
        text = path.read_text(encoding="utf-8")
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
    """Compose, check for duplicate keys, then construct; syntax errors name their line."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlDoc(None, None)
        _check_duplicate_keys(root, (), source)
        data = loader.construct_document(root)
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
        loader.dispose()
    for path in raw_paths:
        data = _keep_raw_text(data, root, path)
    return YamlDoc(data, root)


def parse_value(text: str, path: Loc = ()) -> Any:
    """A ``--set`` value: a YAML scalar or flow collection ("32", "10ms", "[a, b]", "{x: 1}").

    Raises ValueError with the YAML problem if it does not parse."""
    try:
        doc = parse_yaml(text, "--set", frozenset({()}) if path in RAW_TEXT_PATHS else frozenset())
    except InputError as err:
        raise ValueError(f"cannot read the value {text!r} as YAML ({err.message})") from None
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
