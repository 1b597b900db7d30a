"""One declared Arrow type per column of the result tables, whatever the chunking or executor.

A run's events are dicts whose keys depend on their kind (``ok`` only on a
``vmap_retry``, ``order`` only on a ``warn_alloc``), so a table built by
letting pandas guess the types from the rows at hand gave a column whose type
depended on which runs shared a chunk: ``ok`` came out as the text 'True' or
'nan'.  Here every column has its type declared by name (zone and pool levels
by their suffix or pool name), nullable where a kind does not carry it, and
:func:`arrow_table` builds a table with exactly those types.  A column that
nothing declares (a peer's own fields, a sweep's factor columns) gets the type
of its values: bool, int64, float64 (ints and floats together) or else text.

Columns come in a canonical order: the table's leading columns, then the
declared ones in declaration order, then the others by name.  Never imports
SimPy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from sim.record.events import FIELDS as EVENT_FIELDS
from sim.record.events import POOLS, ZONE_SUFFIXES
from sim.record.runs import RUN_ROW

TEXT, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()

_POOLS, _ZONE_SUFFIXES = POOLS, ZONE_SUFFIXES
_ARROW = {str: TEXT, int: INT, float: FLOAT, bool: BOOL}

# the run columns (record/runs.py): ids, times and status, then the counts
_COUNT = {"counters", "derived"}
RUNS: dict[str, pa.DataType] = {
    "run_id": TEXT, "point": INT,
    **{c.name: _ARROW[c.type] for c in RUN_ROW if not (c.source in _COUNT and c.type is int)},
    **{c.name: _ARROW[c.type] for c in RUN_ROW if c.source in _COUNT and c.type is int},
}  # fmt: skip

# the event fields and their types come from the event declarations (record/events.py)
EVENTS: dict[str, pa.DataType] = {
    "run_id": TEXT, "kind": TEXT, "time": FLOAT, **{name: _ARROW[kind] for name, kind in EVENT_FIELDS.items()},
}  # fmt: skip

TIMESERIES: dict[str, pa.DataType] = {
    "run_id": TEXT, "time": FLOAT, "free": INT, "free_pcp": INT, "kswapd_failures": INT,
    "vmap_lazy_pages": INT, "vmap_area_objects": INT, "kswapd_awake": INT, "kswapd_reclaimed": INT,
}  # fmt: skip
TIMESERIES.update(dict.fromkeys(_POOLS, INT))

COUNTERS: dict[str, pa.DataType] = {"run_id": TEXT, "name": TEXT, "value": FLOAT}

TABLES: dict[str, dict[str, pa.DataType]] = {
    "runs": RUNS,
    "events": EVENTS,
    "timeseries": TIMESERIES,
    "counters": COUNTERS,
}


def declared_type(table: str, name: str) -> pa.DataType | None:
    """The declared type of column ``name`` of ``table`` (zone levels by suffix), or None."""
    declared = TABLES[table].get(name)
    if declared is None and table in ("events", "timeseries") and name.endswith(_ZONE_SUFFIXES):
        return INT
    return declared


def value_type(values: Iterable[Any]) -> pa.DataType:
    """The type of an undeclared column from its values (None ignored): bool, int64, float64
    (ints and floats), else text; a column of nothing but None is of the null type, which a
    merge with other parts ignores."""
    kinds = {type(v) for v in values if v is not None and not (isinstance(v, float) and v != v)}
    if not kinds:
        return pa.null()
    if kinds == {bool}:
        return BOOL
    if bool in kinds:
        return TEXT
    if all(issubclass(k, int) for k in kinds):
        return INT
    if all(issubclass(k, int | float) for k in kinds):
        return FLOAT
    return TEXT


def column_order(table: str, names: Iterable[str], first: Iterable[str] = ()) -> list[str]:
    """``names`` in canonical order: ``first`` (those present), declared, then the rest by name."""
    names = set(names)
    lead = [n for n in dict.fromkeys(first) if n in names]
    rank = {n: i for i, n in enumerate(TABLES[table])}
    rest = sorted(names - set(lead), key=lambda n: (n not in rank, rank.get(n, 0), n))
    return lead + rest


def _cell(value: Any, kind: pa.DataType) -> Any:
    """``value`` as a Python value of ``kind``; None and NaN (outside float columns) are null."""
    if value is None or pa.types.is_null(kind):
        return None
    if isinstance(value, float) and value != value:
        return value if kind == FLOAT else None
    if kind == TEXT:
        return value if isinstance(value, str) else str(value)
    if kind == BOOL:
        return bool(value)
    if kind == INT:
        return int(value)
    if kind == FLOAT:
        return float(value)
    return value


def arrow_table(
    table: str, rows: list[Mapping[str, Any]], first: Iterable[str] = (), types: Mapping[str, pa.DataType] = ()
) -> pa.Table:
    """``rows`` as an Arrow table of kind ``table`` (runs, events, timeseries, counters):
    every key of any row is a column (``first`` ones always, even without rows), with its
    declared type, else the one in ``types``, else :func:`value_type` of its values."""
    first = list(first)
    names: dict[str, None] = dict.fromkeys(first)
    for row in rows:
        names.update(dict.fromkeys(row))
    types = dict(types)
    fields, arrays = [], []
    for name in column_order(table, names, first):
        values = [row.get(name) for row in rows]
        kind = declared_type(table, name) or types.get(name) or value_type(values)
        fields.append(pa.field(name, kind))
        arrays.append(pa.array([_cell(v, kind) for v in values], type=kind))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
