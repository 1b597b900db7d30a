"""The ``filter:`` of a sweep file: a tiny, safe expression language over factor values.

A sweep's full grid may hold combinations that make no sense (a tiny machine
with a huge fork storm); the filter keeps the points for which it is true, as
desmod's ``config_filter`` does, but without ``eval``: the text is parsed
here into a small tree and nothing else can run.  The language:

    expr  := or
    or    := and ("or" and)*
    and   := not ("and" not)*
    not   := "not" not | cmp
    cmp   := atom [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") atom]
    atom  := FACTOR | 'text' | "text" | NUMBER-OR-WORD | true | false | null
           | "[" [atom ("," atom)*] "]" | "(" expr ")"

A FACTOR is a swept dotted key (``machine.ram``, ``workloads.0.workers``); a
bare word that starts with a digit is read as YAML reads it (``64`` is a
number, ``256MiB`` and ``20s`` are text).  ``==`` compares values as the sweep
file writes them; ``<``, ``<=``, ``>``, ``>=`` compare numbers, or sizes
("256MiB") or durations ("20s") by their value.

A chain of ``and`` or ``or`` is one node with a list of operands (evaluated in
a loop), and nesting is bounded by :data:`MAX_NESTING`, so that no filter,
however long, can exhaust the stack of the recursive parser or evaluator.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from sim.schema.units import parse_duration, parse_size

Node = tuple[Any, ...]  # ("factor", key) | ("lit", value) | ("list", [nodes]) | ("not", n)
# | ("and"|"or", [nodes]) | (op, a, b)
MAX_NESTING = 50  # parentheses, brackets and "not"s inside one another

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^']*'|\"[^\"]*\")|(?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)"
    r"|(?P<word>-?\d[\w.]*(?:/s)?|[A-Za-z_]\w*(?:\.\w+)*))"
)
_KEYWORDS = {"true": True, "false": False, "null": None}
_COMPARE = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")


class FilterError(ValueError):
    """A filter that does not parse, names an unknown factor, or compares what cannot be compared."""


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, column) tokens; kind is str, op, word or end."""
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise FilterError(f"unexpected {text[col - 1]!r} at column {col}")
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group(kind), match.start(kind) + 1))
        pos = match.end()
    tokens.append(("end", "", len(text) + 1))
    return tokens


class _Parser:
    """Recursive descent over the tokens of one filter; factor names are checked as they are read."""

    def __init__(self, text: str, factors: Sequence[str]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.factors = list(factors)
        self.depth = 0

    def nest(self) -> None:
        """One level deeper (a parenthesis, a bracket or a ``not``); FilterError past MAX_NESTING."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            col = self.peek(-1)[2]
            raise FilterError(f"nested more than {MAX_NESTING} levels deep at column {col}")

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self, *texts: str) -> bool:
        kind, text, _ = self.peek()
        if kind in ("op", "word") and text in texts:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.take(text):
            kind, got, col = self.peek()
            if kind == "end":
                raise FilterError(f"missing {text!r} at the end")
            raise FilterError(f"expected {text!r} at column {col}, got {got!r}")

    def parse(self) -> Node:
        node = self.or_()
        kind, text, col = self.peek()
        if kind != "end":
            raise FilterError(f"unexpected {text!r} at column {col}")
        return node

    def or_(self) -> Node:
        nodes = [self.and_()]
        while self.take("or"):
            nodes.append(self.and_())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def and_(self) -> Node:
        nodes = [self.not_()]
        while self.take("and"):
            nodes.append(self.not_())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def not_(self) -> Node:
        nots = 0
        while self.take("not"):
            nots += 1
            self.nest()
        node = self.cmp()
        self.depth -= nots
        for _ in range(nots):
            node = ("not", node)
        return node

    def cmp(self) -> Node:
        left = self.atom()
        if self.peek()[1] == "not" and self.peek(1)[1] == "in":
            self.pos += 2
            return ("not in", left, self.atom())
        for op in _COMPARE[:-1]:
            if self.take(op):
                return (op, left, self.atom())
        return left

    def atom(self) -> Node:
        kind, text, col = self.peek()
        if kind == "end":
            raise FilterError("unexpected end of the filter")
        self.pos += 1
        if kind == "str":
            return ("lit", text[1:-1])
        if text == "(":
            self.nest()
            node = self.or_()
            self.expect(")")
            self.depth -= 1
            return node
        if text == "[":
            self.nest()
            items: list[Node] = []
            while not self.take("]"):
                if items:
                    self.expect(",")
                items.append(self.atom())
            self.depth -= 1
            return ("list", items)
        if kind == "word" and text in _KEYWORDS:
            return ("lit", _KEYWORDS[text])
        if kind == "word" and (text[0].isdigit() or text[0] == "-"):
            return ("lit", yaml.safe_load(text))
        if kind == "word" and text not in ("and", "or", "not", "in"):
            if text not in self.factors:
                close = difflib.get_close_matches(text, self.factors, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise FilterError(f"unknown factor {text!r}{hint}; factors: {', '.join(self.factors)}")
            return ("factor", text)
        raise FilterError(f"unexpected {text!r} at column {col}")


def parse_filter(text: str, factors: Sequence[str]) -> Node:
    """The tree of filter ``text``; a FilterError if it does not parse or names an unknown factor."""
    if not text.strip():
        raise FilterError("empty filter")
    return _Parser(text, factors).parse()


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, bool) else str(value).lower()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _order_keys(a: Any, b: Any) -> tuple[Any, Any]:
    """Two values that ``<`` can compare: numbers as they are, sizes in bytes, durations in seconds."""
    if _is_number(a) and _is_number(b):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        for parse in (parse_size, parse_duration):
            try:
                return parse(a), parse(b)
            except ValueError:
                continue
    raise FilterError(f"cannot order {_show(a)} and {_show(b)}: <, <=, >, >= compare numbers, sizes or durations")


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _value(node: Node, values: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "factor":
        return values[node[1]]
    if kind == "lit":
        return node[1]
    if kind == "list":
        return [_value(item, values) for item in node[1]]
    return _truth(node, values)


def _truth(node: Node, values: Mapping[str, Any]) -> bool:
    """Whether ``node`` holds for one grid point's factor ``values``."""
    kind = node[0]
    if kind == "and":
        return all(_truth(item, values) for item in node[1])
    if kind == "or":
        return any(_truth(item, values) for item in node[1])
    if kind == "not":
        return not _truth(node[1], values)
    if kind in ("==", "!=", "in", "not in") or kind in _ORDER:
        a, b = _value(node[1], values), _value(node[2], values)
        if kind in ("==", "!="):
            return (a == b) == (kind == "==")
        if kind in ("in", "not in"):
            if not isinstance(b, list):
                raise FilterError(f"'{kind}' needs a list on its right, such as [64, 128], got {_show(b)}")
            return (a in b) == (kind == "in")
        return _ORDER[kind](*_order_keys(a, b))
    value = _value(node, values)
    if isinstance(value, bool):
        return value
    raise FilterError(f"expected a condition (==, !=, <, <=, >, >=, in), got the value {_show(value)}")


def keeps(node: Node, values: Mapping[str, Any]) -> bool:
    """Whether the filter tree ``node`` keeps the grid point with factor ``values``."""
    return _truth(node, values)
