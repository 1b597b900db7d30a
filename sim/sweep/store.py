"""A sweep's results folder: part files, the append-only status log, and the merge.

Layout of ``DIR``::

    parts/<chunk>.{runs,events,timeseries}.parquet   written by the workers, atomically
    status.jsonl       one line per finished run: run_id, status, part (and error, retry)
    runs.parquet  events.parquet  timeseries.parquet  merged, sorted by run_id
    manifest.json

A part file is complete before the parent appends the status lines that name
it, so after a crash (even SIGKILL) every status line points at a whole part.
A torn last line does not parse and is ignored; the next session starts its
lines on a fresh line.  The latest line of a run wins, and a line with
``retry: true`` (a chunk whose worker crashed) does not count as finished.

The merge never loads the whole sweep: each chunk's runs are a contiguous
range of run ids, so parts are written one after another in run-id order into
one ParquetWriter per table (parts whose ranges overlap, which only a
hand-edited folder would give, are merged together and sorted).  Parts are
written with the declared column types of :mod:`sim.record.columns`, so the merged
schema does not depend on how runs were chunked.  Never imports SimPy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sim.record.columns import column_order
from sim.record.results import atomic_path, write_records

TABLES = ("runs", "events", "timeseries", "counters")

# the columns of a merged table that no part has rows for
_EMPTY = {
    "runs": ("status", "error"),
    "events": ("kind", "time"),
    "timeseries": ("time",),
    "counters": ("name", "value"),
}


@dataclass(frozen=True)
class StatusLine:
    """One line of the status log."""

    run_id: str
    status: str
    part: str | None
    error: str = ""
    retry: bool = False
    wall_seconds: float | None = None

    def to_json(self) -> str:
        record: dict[str, Any] = {"run_id": self.run_id, "status": self.status, "part": self.part}
        if self.error:
            record["error"] = self.error
        if self.retry:
            record["retry"] = True
        if self.wall_seconds is not None:
            record["wall_seconds"] = round(self.wall_seconds, 6)
        return json.dumps(record, separators=(",", ":"))


class SweepStore:
    """The files of one sweep's results folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.parts = self.root / "parts"
        self.status_path = self.root / "status.jsonl"
        self.manifest_path = self.root / "manifest.json"

    def part_path(self, part: str, table: str) -> Path:
        """``parts/<part>.<table>.parquet``."""
        return self.parts / f"{part}.{table}.parquet"

    def has_results(self) -> bool:
        """Whether a sweep has already written here (a status line or a manifest)."""
        has_status = self.status_path.exists() and self.status_path.stat().st_size > 0
        return has_status or self.manifest_path.exists()

    def read_status(self) -> dict[str, StatusLine]:
        """The latest status line of each run; lines that do not parse (a torn write) are skipped."""
        latest: dict[str, StatusLine] = {}
        if not self.status_path.exists():
            return latest
        with self.status_path.open(encoding="utf-8", errors="replace") as fh:
            for text in fh:
                try:
                    record = json.loads(text)
                    line = StatusLine(
                        run_id=str(record["run_id"]),
                        status=str(record["status"]),
                        part=record.get("part"),
                        error=str(record.get("error", "")),
                        retry=bool(record.get("retry", False)),
                        wall_seconds=record.get("wall_seconds"),
                    )
                except (ValueError, KeyError, TypeError):
                    continue
                latest[line.run_id] = line
        return latest

    def finished(self, latest: dict[str, StatusLine]) -> set[str]:
        """Runs that need not run again: their latest line is final and its part file exists."""
        parts = {line.part for line in latest.values() if line.part}
        present = {part for part in parts if self.part_path(part, "runs").exists()}
        return {rid for rid, line in latest.items() if not line.retry and line.part in present}

    @contextmanager
    def status_log(self) -> Iterator[StatusAppender]:
        """Open the status log for appending (on a fresh line if the last one was torn)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.status_path.open("ab") as fh:
            if fh.tell() > 0:
                with self.status_path.open("rb") as check:
                    check.seek(-1, os.SEEK_END)
                    if check.read(1) != b"\n":
                        fh.write(b"\n")
            yield StatusAppender(fh)

    def write_part(self, part: str, table: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
        """One table of one chunk, atomically, with the declared column types (skipped when a
        chunk has no rows for it, except runs)."""
        if rows or table == "runs":
            write_records(self.part_path(part, table), table, rows, columns)

    def merge(self, latest: dict[str, StatusLine]) -> dict[str, int]:
        """runs/events/timeseries.parquet from the parts that the latest status lines name,
        each sorted by run_id; returns the row count of each table."""
        owner: dict[str, list[str]] = {}
        for rid, line in latest.items():
            if line.part:
                owner.setdefault(line.part, []).append(rid)
        clusters = _clusters({part: (min(rids), max(rids)) for part, rids in owner.items()})
        counts = {}
        for table in TABLES:
            files = {part: self.part_path(part, table) for part in owner}
            files = {part: path for part, path in files.items() if path.exists()}
            counts[table] = _merge_table(self.root / f"{table}.parquet", clusters, files, owner, table)
        return counts


class StatusAppender:
    """Appends status lines and syncs them to disk, one chunk at a time."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def append(self, lines: Iterable[StatusLine]) -> None:
        self._fh.write("".join(line.to_json() + "\n" for line in lines).encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())


def _clusters(ranges: dict[str, tuple[str, str]]) -> list[list[str]]:
    """Parts grouped so that groups follow one another in run-id order; parts whose run-id
    ranges overlap share a group (one part per group when chunks are contiguous)."""
    groups: list[list[str]] = []
    high = ""
    for part, (lo, hi) in sorted(ranges.items(), key=lambda item: item[1]):
        if groups and lo <= high:
            groups[-1].append(part)
            high = max(high, hi)
        else:
            groups.append([part])
            high = hi
    return groups


def _empty_schema(table: str) -> pa.Schema:
    from sim.record.columns import TABLES

    return pa.schema([pa.field(n, TABLES[table][n]) for n in ("run_id", *_EMPTY[table])])


def _target_type(types: list[pa.DataType]) -> pa.DataType:
    """One column type for the types that parts gave a column: nulls ignored, numbers widened,
    anything else mixed read as text."""
    kinds = {t for t in types if not pa.types.is_null(t)}
    if not kinds:
        return pa.null()
    if len(kinds) == 1:
        return kinds.pop()
    if all(pa.types.is_integer(t) for t in kinds):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
        return pa.float64()
    return pa.string()


def _unified_schema(table: str, paths: Iterable[Path]) -> pa.Schema:
    """The union of the parts' columns in the canonical order of :func:`sim.record.columns.column_order`
    (runs: the order of the parts, which all have every column), whatever the order of the parts."""
    seen: dict[str, list[pa.DataType]] = {}
    for path in paths:
        for fld in pq.read_schema(path):
            seen.setdefault(fld.name, []).append(fld.type)
    first = list(seen) if table == "runs" else ("run_id", *_EMPTY[table])
    names = column_order(table, seen, first)
    return pa.schema([pa.field(name, _target_type(seen[name])) for name in names])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the columns of ``schema``, in order, cast, missing ones null."""
    arrays = []
    for fld in schema:
        if fld.name in table.column_names:
            column = table.column(fld.name)
            arrays.append(column if column.type == fld.type else pc.cast(column, fld.type))
        else:
            arrays.append(pa.nulls(table.num_rows, fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _merge_table(
    target: Path, clusters: list[list[str]], files: dict[str, Path], owner: dict[str, list[str]], table: str
) -> int:
    """Write ``target`` from the part files, one cluster in memory at a time."""
    schema = _unified_schema(table, files.values()) if files else _empty_schema(table)
    rows = 0
    with _atomic_writer(target, schema) as writer:
        for cluster in clusters:
            pieces = []
            for part in cluster:
                if part not in files:
                    continue
                data = pq.read_table(files[part])
                ids = data.column("run_id")
                keep = pc.is_in(ids, value_set=pa.array(owner[part], ids.type))
                pieces.append(_conform(data.filter(keep), schema))
            if not pieces:
                continue
            merged = pa.concat_tables(pieces)
            if len(pieces) > 1:
                merged = merged.take(pc.sort_indices(merged, sort_keys=[("run_id", "ascending")]))
            if merged.num_rows:
                writer.write_table(merged)
                rows += merged.num_rows
    return rows


@contextmanager
def _atomic_writer(path: Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter on a temp file beside ``path``, renamed over it when the block ends."""
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        yield writer
