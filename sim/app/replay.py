"""Replay a JSONL vmap trace through the allocator core.

The format is JSON Lines, one object per line; numbers are exact integers
from 0 to 2^64-1 (sizes and alignments in bytes).  An optional first line is
the header ``{"vectors":1,"search":S,...}``: format version 1, and ``search``
``"v5.3"`` (mm/vmalloc.c v5.3) or ``"v5.18"`` (the search length of
9333fe98d0a6 and the vstart step of 9f531973dff3); a ``search`` argument
overrides it, and v5.3 is the default.  Other header fields (``workload``,
``seed``, ``note``) are copied, not read.  Every other line is
``{"in": OP, "out": RESULT}`` (``out`` optional), where OP is one of

* ``{"op":"alloc","size":S,"align":A,"vstart":V0,"vend":V1}``, optional
  ``"fail_split":true`` (the one object an NE split needs is not given).
  S is a positive multiple of 4096 including any guard page, A a power of
  two, and addr + S <= V1; result
  ``{"addr","fit","objs_alloc","objs_free"}`` with ``fit`` one of FL, LE,
  RE, NE (or ``addr`` and ``fit`` null on failure) and the counts of
  ``vmap_area`` objects the op took from and gave back to the cache;
* ``{"op":"free","addr":X}``: result ``{"ok":true,"objs_free":M}``, or
  ``{"ok":false}`` if no busy area starts at X;
* ``{"op":"check"}``: result ``{"free":[[start,end],...],"busy":N}``, the
  free blocks in address order with exclusive ends and the busy count.

A header with ``"kernel":"v6.9"`` and ``"nodes":N`` replays through the vmap-node layer of
Linux 6.9 (:mod:`sim.kernel.mm.vmalloc.nodes`, N nodes; the v5.18 search): ``alloc`` takes
a ``"cpu"`` (whose node's pool it tries first; ``fit`` is ``"POOL"`` for a pool hit),
``free`` is the lazy free (result ``{"ok":true,"node":K}``, the node whose lazy list took
it; ``{"ok":false}`` when no busy area starts at the address),
``{"op":"purge","full":B}`` is ``__purge_vmap_area_lazy`` (result
``{"purged","pooled","decayed","objs_free"}``), and ``check`` also lists the lazy lists and
the pools (``"lazy":[[node,[start,...]],...]``, ``"pools":[[node,pages,[start,...]],...]``).

All ops of a file run in order on one fresh :class:`VmapSpace` (one free
block ``[1, 2^64-1)``); the result is written in the same format, and with
``check`` compared with the expected ``out``.  A vmalloc trace taken on a real
machine can be converted to ``alloc``/``free`` ops and replayed to see its
fit-type mix.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.kernel.mm.vmalloc.nodes import MAX_VMAP_NODES, VmapNodes
from sim.kernel.mm.vmalloc.space import FIT_NAMES, SEARCH_MODES, ULONG_MAX, CountingProvider, VmapSpace
from sim.schema.errors import InputError

OP_FIELDS = {
    "alloc": ({"size", "align", "vstart", "vend"}, {"fail_split"}),
    "free": ({"addr"}, set()),
    "check": (set(), set()),
}
# the ops of a v6.9 vmap-node file (header "kernel": "v6.9")
NODE_OP_FIELDS = {
    "alloc": ({"size", "align", "vstart", "vend", "cpu"}, {"fail_split"}),
    "free": ({"addr"}, set()),
    "purge": ({"full"}, set()),
    "check": (set(), set()),
}
NODE_KERNELS = ("v6.9",)
CONTEXT_OPS = 3


@dataclass
class Op:
    """One parsed input line."""

    lineno: int
    op: dict[str, Any]
    expected: dict[str, Any] | None


@dataclass
class ReplayReport:
    """What a replay saw: counts, fit-type mix, and the mismatches found."""

    search: str
    ops: int = 0
    allocs: int = 0
    failed_allocs: int = 0
    frees: int = 0
    failed_frees: int = 0
    checks: int = 0
    fits: Counter = field(default_factory=Counter)
    compared: int = 0
    mismatches: int = 0
    first_mismatch: dict[str, Any] | None = None

    def fit_mix(self) -> dict[str, float]:
        """Share of each fit type among successful allocations."""
        done = sum(self.fits.values())
        names = ("FL", "LE", "RE", "NE") + (("POOL",) if self.fits["POOL"] else ())
        return {name: (self.fits[name] / done if done else 0.0) for name in names}

    def tally(self, kind: str, result: dict[str, Any]) -> None:
        """Count one op of ``kind`` and its result object (an alloc's fit, a free's ``ok``)."""
        self.ops += 1
        if kind == "alloc":
            self.allocs += 1
            if result["fit"] is None:
                self.failed_allocs += 1
            else:
                self.fits[result["fit"]] += 1
        elif kind == "free":
            self.frees += 1
            self.failed_frees += not result["ok"]
        elif kind == "check":
            self.checks += 1


def _u64(value: Any, source: str, lineno: int, name: str, *, positive: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ULONG_MAX:
        raise InputError(source, lineno, f"{name}: expected an integer from 0 to 2^64-1, got {value!r}")
    if positive and value == 0:
        raise InputError(source, lineno, f"{name}: expected a positive integer, got 0")
    return value


def validate_op(op: Any, source: str, lineno: int, nodes: bool = False) -> dict[str, Any]:
    """Check one op object against the format (``nodes``: a v6.9 vmap-node file's);
    raise :class:`InputError` if it is wrong."""
    if not isinstance(op, dict):
        raise InputError(source, lineno, f"in: expected an object, got {type(op).__name__}")
    fields = NODE_OP_FIELDS if nodes else OP_FIELDS
    kind = op.get("op")
    if kind not in fields:
        raise InputError(source, lineno, f"in.op: expected one of {', '.join(fields)}, got {kind!r}")
    required, optional = fields[kind]
    for name in sorted(required - op.keys()):
        raise InputError(source, lineno, f"in.{name}: missing (required by op {kind!r})")
    for name in sorted(op.keys() - required - optional - {"op"}):
        raise InputError(source, lineno, f"in.{name}: unknown field for op {kind!r}")
    if kind == "alloc":
        size = _u64(op["size"], source, lineno, "in.size", positive=True)
        if size % 4096:
            raise InputError(source, lineno, f"in.size: expected a multiple of 4096, got {size}")
        align = _u64(op["align"], source, lineno, "in.align", positive=True)
        if align & (align - 1):
            raise InputError(source, lineno, f"in.align: expected a power of two from 1 to 2^63, got {align}")
        _u64(op["vstart"], source, lineno, "in.vstart")
        _u64(op["vend"], source, lineno, "in.vend")
        if "fail_split" in op and not isinstance(op["fail_split"], bool):
            raise InputError(source, lineno, f"in.fail_split: expected true or false, got {op['fail_split']!r}")
        if nodes:
            _u64(op["cpu"], source, lineno, "in.cpu")
    elif kind == "purge":
        if not isinstance(op["full"], bool):
            raise InputError(source, lineno, f"in.full: expected true or false, got {op['full']!r}")
    elif kind == "free":
        _u64(op["addr"], source, lineno, "in.addr")
    return op


def read_trace(path: Path) -> tuple[dict[str, Any] | None, list[Op]]:
    """Parse and validate a whole trace file: ``(header or None, ops)``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(source, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(source, None, f"cannot read: {err}") from None
    return parse_trace(text.splitlines(), source)


def parse_trace(lines: Iterable[str], source: str = "<trace>") -> tuple[dict[str, Any] | None, list[Op]]:
    """Parse trace lines (see :func:`read_trace`)."""
    header = None
    ops: list[Op] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(source, lineno, f"not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(source, lineno, "expected a JSON object per line")
        if lineno == 1 and "vectors" in obj:
            if obj.get("vectors") != 1:
                raise InputError(source, lineno, f"vectors: expected format version 1, got {obj.get('vectors')!r}")
            if "search" in obj and obj["search"] not in SEARCH_MODES:
                allowed = ", ".join(SEARCH_MODES)
                raise InputError(source, lineno, f"search: expected one of {allowed}, got {obj['search']!r}")
            if "kernel" in obj:
                if obj["kernel"] not in NODE_KERNELS:
                    known = ", ".join(NODE_KERNELS)
                    raise InputError(source, lineno, f"kernel: expected one of {known}, got {obj['kernel']!r}")
                n = obj.get("nodes")
                if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_VMAP_NODES:
                    expected = f"an integer from 1 to {MAX_VMAP_NODES}"
                    raise InputError(source, lineno, f"nodes: expected {expected}, got {n!r}")
            header = obj
            continue
        if "in" not in obj:
            raise InputError(source, lineno, "in: missing (each line after the header needs an 'in' op)")
        extra = sorted(obj.keys() - {"in", "out"})
        if extra:
            raise InputError(source, lineno, f"{extra[0]}: unknown field (a line holds 'in' and optionally 'out')")
        expected = obj.get("out")
        if expected is not None and not isinstance(expected, dict):
            raise InputError(source, lineno, f"out: expected an object, got {type(expected).__name__}")
        nodes = header is not None and "kernel" in header
        ops.append(Op(lineno, validate_op(obj["in"], source, lineno, nodes), expected))
    return header, ops


def run_ops(ops: Iterable[Op], search: str, report: ReplayReport) -> Iterator[tuple[Op, dict[str, Any]]]:
    """Run ops on a fresh allocator; yield each op with its result object."""
    provider = CountingProvider()
    space = VmapSpace(provider, search)
    for item in ops:
        op = item.op
        kind = op["op"]
        if kind == "alloc":
            _, result = _tree_alloc(space, provider, op)
        elif kind == "free":
            freed = space.free(op["addr"])
            result = {"ok": False} if freed < 0 else {"ok": True, "objs_free": freed}
        else:
            result = {"free": [list(b) for b in space.free_blocks()], "busy": len(space.busy)}
        report.tally(kind, result)
        yield item, result


def run_node_ops(ops: Iterable[Op], nr_nodes: int, report: ReplayReport) -> Iterator[tuple[Op, dict[str, Any]]]:
    """Run the ops of a v6.9 vmap-node file on a fresh allocator with ``nr_nodes`` nodes
    (the v5.18 search; see the module doc); yield each op with its result object."""
    provider = CountingProvider()
    space = VmapSpace(provider, "v5.18")
    nodes = VmapNodes(space, nr_nodes)
    for item in ops:
        op = item.op
        kind = op["op"]
        if kind == "alloc":
            result = _node_alloc(space, nodes, provider, op)
        elif kind == "free":
            va = _find_unlink(space, op["addr"])
            result = {"ok": False} if va is None else {"ok": True, "node": nodes.free_vmap_area_noflush(va)}
        elif kind == "purge":
            counts = nodes.purge(op["full"])
            result = {"purged": counts.purged, "pooled": counts.pooled, "decayed": counts.decayed,
                      "objs_free": counts.objs_free}  # fmt: skip
        else:
            result = {
                "free": [list(b) for b in space.free_blocks()],
                "busy": len(space.busy),
                "lazy": nodes.lazy_listing(),
                "pools": nodes.pool_listing(),
            }
        report.tally(kind, result)
        yield item, result


def _node_alloc(space: VmapSpace, nodes: VmapNodes, provider: CountingProvider, op: dict[str, Any]) -> dict[str, Any]:
    """``alloc_vmap_area`` of v6.9 without its purge and retry: a node's pool, then the tree."""
    size, align, vstart, vend = op["size"], op["align"], op["vstart"], op["vend"]
    va, node = nodes.node_alloc(size, align, vstart, vend, op["cpu"])
    if va is not None:
        space.busy[va.va_start] = va
        nodes.take_busy(va, node)
        return {"addr": va.va_start, "fit": "POOL", "objs_alloc": 0, "objs_free": 0}
    busy, result = _tree_alloc(space, provider, op)
    if busy is not None:
        nodes.take_busy(busy, node)
    return result


def _tree_alloc(space: VmapSpace, provider: CountingProvider, op: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``alloc`` on the free tree (``fail_split`` refusing the NE split's object): the busy area
    or None, and the op's result object with the objects taken and given back."""
    allocated, freed = provider.allocated, provider.freed
    provider.fail_next_split = bool(op.get("fail_split", False))
    busy = space.alloc_area(op["size"], op["align"], op["vstart"], op["vend"])
    provider.fail_next_split = False
    if isinstance(busy, int):
        return None, {"addr": None, "fit": None, "objs_alloc": 0, "objs_free": 0}
    return busy, {"addr": busy.va_start, "fit": FIT_NAMES[space.last_fit],
                  "objs_alloc": provider.allocated - allocated, "objs_free": provider.freed - freed}  # fmt: skip


def _find_unlink(space: VmapSpace, addr: int) -> Any:
    """``find_unlink_vmap_area`` as the vectors use it: the busy area starting at ``addr``,
    taken out of the busy areas (an address inside an area is refused: ``vfree`` of such an
    address finds no ``vm`` in the kernel, see tests/data/vectors69/README.md)."""
    return space.busy.pop(addr, None)


def replay(
    header: dict[str, Any] | None,
    ops: list[Op],
    search: str | None = None,
    check: bool = False,
) -> tuple[ReplayReport, Iterator[str]]:
    """Replay ``ops``; return the report (filled as lines are consumed) and the
    output lines (header first, then one ``{"in","out"}`` line per op)."""
    mode = search or (header or {}).get("search") or "v5.3"
    report = ReplayReport(search=mode)

    def lines() -> Iterator[str]:
        out_header = dict(header) if header else {"vectors": 1, "workload": "replay"}
        out_header["search"] = mode
        yield json.dumps(out_header, separators=(",", ":"))
        recent: deque[tuple[Op, dict[str, Any]]] = deque(maxlen=CONTEXT_OPS)
        nodes = (header or {}).get("nodes") if (header or {}).get("kernel") else None
        results = run_ops(ops, mode, report) if nodes is None else run_node_ops(ops, nodes, report)
        for item, result in results:
            if check and item.expected is not None:
                report.compared += 1
                if result != item.expected:
                    report.mismatches += 1
                    if report.first_mismatch is None:
                        report.first_mismatch = {
                            "line": item.lineno,
                            "in": item.op,
                            "expected": item.expected,
                            "got": result,
                            "context": [{"line": o.lineno, "in": o.op, "out": r} for o, r in recent],
                        }
            recent.append((item, result))
            yield json.dumps({"in": item.op, "out": result}, separators=(",", ":"))

    return report, lines()


def replay_file(
    trace: Path, search: str | None = None, check: bool = False, out: Path | None = None
) -> tuple[ReplayReport, Iterator[str]]:
    """Read and replay ``trace``.  With ``out``, the result lines are written there (atomically)
    and the iterator comes back empty; else the caller consumes the lines (the report fills as
    they go)."""
    from sim.record.results import atomic_write_lines

    header, ops = read_trace(trace)
    report, lines = replay(header, ops, search=search, check=check)
    if out is not None:
        atomic_write_lines(out, lines)
        return report, iter(())
    return report, lines


__all__ = ["SEARCH_MODES", "ReplayReport", "read_trace", "replay", "replay_file"]
