"""Key paths through the scenario schema: ``--set`` overrides and readable validation errors.

Both walk the pydantic model types along a key path such as
``workloads.0.workers`` (keys and list indices): an override must name a key
that the schema has, and an error for an unknown key should list the keys that
the schema allows there.  A workload's model is chosen by the ``kind`` of that
item in the data, as the discriminated union does.  :func:`describe_error`
turns one pydantic error into (key path, one-line message) in the words of
the scenario file: allowed values for a Literal, the closest keys for a
misspelled one, the known kinds for an unknown workload.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel

from sim.config.yamlpos import Loc, parse_value
from sim.workloads.registry import WORKLOADS

PARAM_SECTIONS = ("memory", "sched", "vmalloc")
# keys that exist in a kernel dataclass but are set elsewhere in a scenario
MOVED_KEYS = {("machine", "memory", "swap_bw_pages_s"): "machine.swap (e.g. swap: 80MiB/s)"}
# what the values of a Literal field are called, by the field's key
VALUE_NOUNS = {
    "kernel": "kernel profile",
    "strategies": "strategy",
    "preemption": "preemption model",
    "slab": "slab allocator",
    "thp": "THP setting",
}


class PathError(ValueError):
    """A key path that the schema does not have."""


def dotted(loc: Loc) -> str:
    """``('workloads', 0, 'workers')`` -> ``workloads.0.workers`` (the ``--set`` spelling)."""
    return ".".join(str(part) for part in loc) or "(top level)"


def _unwrap(tp: Any, data: Any) -> Any:
    """``tp`` without Annotated/Optional; a discriminated union resolved by ``data['kind']``
    (None if the kind is unknown, so that validation reports it)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
            if all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
                kind = data.get("kind") if isinstance(data, dict) else None
                matches = [a for a in args if "kind" in a.model_fields and a.model_fields["kind"].default == kind]
                return matches[0] if matches else None
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _step(tp: Any, data: Any, part: str | int, prefix: Loc) -> tuple[Any, Any]:
    """(type, data) one key or index below (``tp``, ``data``); PathError if the schema has no such key."""
    tp = _unwrap(tp, data)
    if tp is None:
        return None, None
    if _is_model(tp):
        fields = tp.model_fields
        if not isinstance(part, str) or part not in fields:
            kind = fields["kind"].default if "kind" in fields else None
            raise PathError(unknown_key_message((*prefix, part), list(fields), kind))
        return fields[part].annotation, data.get(part) if isinstance(data, dict) else None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple):
        if not isinstance(part, int):
            raise PathError(f"{dotted(prefix)} is a list; expected an item index, got {part!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if part >= len(args):
                raise PathError(f"{dotted(prefix)} has {len(args)} items; no index {part}")
            elem = args[part]
        else:
            elem = args[0] if args else Any
        child = data[part] if isinstance(data, list) and part < len(data) else None
        return elem, child
    raise PathError(f"{dotted(prefix)} is a single value; it has no key {part!r}")


def model_at(root: type[BaseModel], loc: Loc, data: Any) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` in ``data`` (None if not a model)."""
    tp: Any = root
    for i, part in enumerate(loc):
        try:
            tp, data = _step(tp, data, part, loc[:i])
        except PathError:
            return None
    tp = _unwrap(tp, data)
    return tp if _is_model(tp) else None


def unknown_key_message(loc: Loc, allowed: list[str], kind: str | None = None) -> str:
    """The message for an unknown last key of ``loc``: the closest allowed keys, then all of them."""
    key = str(loc[-1])
    moved = MOVED_KEYS.get(tuple(loc))
    if moved:
        return f"unknown key {key!r}: set it with {moved}"
    close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    where = f" in {dotted(loc[:-1])}" if len(loc) > 1 else ""
    if kind:
        where += f" (kind {kind})"
    return f"unknown key {key!r}{where}{hint}; allowed: {', '.join(allowed)}"


def parse_override(text: str) -> tuple[Loc, Any]:
    """``a.b.0.c=VALUE`` -> (('a', 'b', 0, 'c'), VALUE parsed as YAML); ValueError if malformed."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError("expected KEY.PATH=VALUE, e.g. machine.cpus=8 or workloads.0.workers=32")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ValueError(f"empty key in {key!r}")
    loc = tuple(int(p) if p.isdigit() else p for p in parts)
    return loc, parse_value(value.strip(), loc)


def apply_override(root: type[BaseModel], data: dict[str, Any], loc: Loc, value: Any) -> None:
    """Set ``data`` at ``loc`` to ``value`` after checking that the schema has ``loc``.

    Missing mappings on the way are created; a list index must exist.  Raises
    PathError (a ValueError) naming the first part of ``loc`` that is wrong."""
    tp: Any = root
    node: Any = data
    for i, part in enumerate(loc):
        tp, _ = _step(tp, node, part, loc[:i])
        last = i == len(loc) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                count = len(node) if isinstance(node, list) else 0
                raise PathError(f"{dotted(loc[:i])} has {count} item(s) in the file; no index {part}")
            if last:
                node[part] = value
            node = node[part]
        else:
            if last:
                node[part] = value
            elif not isinstance(node.get(part), dict | list):
                node[part] = {} if isinstance(loc[i + 1], str) else []
            node = node[part]


def show_value(value: Any) -> str:
    """A YAML value as a message shows it."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def clean_loc(loc: Loc, data: Any) -> Loc:
    """``loc`` without the tag that pydantic inserts after a discriminated list item."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if i and isinstance(loc[i - 1], int) and isinstance(node, dict) and node.get("kind") == part:
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "tuple": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
}


def explained_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``errors`` without a "required key missing" that a misspelled key beside it explains
    (``duraton:`` given, ``duration`` missing): the unknown key's message names both."""
    extra = [e["loc"] for e in errors if e["type"] == "extra_forbidden" and e["loc"]]

    def misspelled(error: dict[str, Any]) -> bool:
        loc = error["loc"]
        if error["type"] != "missing" or not loc or not isinstance(loc[-1], str):
            return False
        near = [str(e[-1]) for e in extra if tuple(e[:-1]) == tuple(loc[:-1])]
        return bool(difflib.get_close_matches(loc[-1], near, n=1, cutoff=0.6))

    kept = [e for e in errors if not misspelled(e)]
    return kept or errors


def describe_error(error: dict[str, Any], data: Any, root: type[BaseModel]) -> tuple[Loc, str]:
    """(key path, message) for one entry of ``ValidationError.errors()``."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "scenario":  # cross-field checks carry their own location (or one below the model's)
        own = tuple(ctx["loc"])
        return (clean_loc(error["loc"], data) + own if ctx.get("relative") else own), ctx["message"]
    loc = clean_loc(error["loc"], data)
    if kind == "extra_forbidden":
        model = model_at(root, loc[:-1], data)
        kind = model.model_fields["kind"].default if model and "kind" in model.model_fields else None
        return loc, unknown_key_message(loc, list(model.model_fields) if model else [], kind)
    if kind == "literal_error":
        allowed = re.findall(r"'((?:[^'\\]|\\.)*)'", ctx.get("expected", ""))
        key = next((p for p in reversed(loc) if isinstance(p, str)), "")
        close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        noun = VALUE_NOUNS.get(key, "value")
        return loc, f"unknown {noun} {show_value(value)}{hint}; expected one of: {', '.join(allowed)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        known = re.findall(r"'([^']*)'", ctx.get("expected_tags", "")) or list(WORKLOADS)
        if kind == "union_tag_not_found":
            return loc, f"a workload needs a 'kind'; known kinds: {', '.join(known)}"
        tag = str(ctx.get("tag", value))
        close = difflib.get_close_matches(tag, known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (*loc, "kind"), f"unknown workload kind {tag!r}{hint}; known kinds: {', '.join(known)}"
    if kind == "missing":
        if loc and isinstance(loc[-1], int):
            return loc[:-1], f"too few items: item {loc[-1]} is missing"
        return loc, "required key missing"
    if kind == "too_short":
        return loc, f"needs at least {ctx.get('min_length', 1)} item(s)"
    if kind in ("value_error", "assertion_error"):
        return loc, re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
    base = (
        "int" if kind == "int_from_float" else kind.rsplit("_", 1)[0] if kind.endswith(("_type", "_parsing")) else None
    )
    if base in _TYPE_WORDS:
        message = f"expected {_TYPE_WORDS[base]}, got {show_value(value)}"
        if len(loc) > 2 and loc[:1] == ("machine",) and loc[1] in PARAM_SECTIONS and isinstance(value, str):
            message += " (this field takes a plain number, without a unit)"
        return loc, message
    message = re.sub(r"^Input should", "should", error["msg"])
    if not isinstance(value, dict | list):
        message += f", got {show_value(value)}"
    return loc, message
