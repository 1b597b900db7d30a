"""Writing results: every file lands atomically (temp file, fsync, rename).

Never imports SimPy; the kernel model does no I/O of its own.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from sim.record.runs import RUN_ROW

# runs.parquet columns, in order (record/runs.py); swept or overridden parameters follow
RUN_COLUMNS = tuple(column.name for column in RUN_ROW)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without
    an error the file is synced, made world-readable and renamed over ``path``,
    so a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` (newline-terminated) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, obj: Any) -> None:
    """Pretty JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_table(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    """A Parquet table from row dicts (``columns`` first, in order), written atomically."""
    frame = pd.DataFrame.from_records(rows)
    if columns is not None:
        extra = [c for c in frame.columns if c not in columns]
        frame = frame.reindex(columns=[*columns, *extra])
    for col in frame.columns:  # mixed object columns would not round-trip
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return frame


def write_records(path: Path, table: str, rows: list[dict[str, Any]], first: Iterable[str] = ()) -> None:
    """A Parquet table of kind ``table`` (runs, events, timeseries, counters) from row dicts,
    every column with its declared type (:mod:`sim.record.columns`), written atomically."""
    import pyarrow.parquet as pq

    from sim.record.columns import arrow_table

    with atomic_path(path) as tmp:
        pq.write_table(arrow_table(table, rows, first), tmp)


def git_commit(repo: Path | None = None) -> str | None:
    """The commit of the checkout the code runs from, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=repo or Path(__file__).parent, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_run_folder(
    out: Path,
    manifest: dict[str, Any],
    rows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    run_columns: list[str],
    counters: list[dict[str, Any]] | None = None,
) -> None:
    """manifest.json, runs.parquet, events.parquet, timeseries.parquet and
    counters.parquet (every counter of every run, tidy: run_id, name, value) in ``out``,
    each column with its declared type."""
    out = Path(out)
    write_records(out / "runs.parquet", "runs", rows, run_columns)
    write_records(out / "events.parquet", "events", events, ["run_id", "kind", "time"])
    write_records(out / "timeseries.parquet", "timeseries", samples, ["run_id", "time"])
    write_records(out / "counters.parquet", "counters", counters or [], ["run_id", "name", "value"])
    write_json(out / "manifest.json", manifest)


def counter_rows(run_id: str, counters: dict[str, float]) -> list[dict[str, Any]]:
    """A run's counters as tidy rows for counters.parquet."""
    return [{"run_id": run_id, "name": name, "value": float(value)} for name, value in sorted(counters.items())]


def build_manifest(
    scenario_dict: dict[str, Any],
    scenario_hash: str,
    root_seed: int,
    rows: list[dict[str, Any]],
    argv: list[str],
    seeds: dict[str, Any],
    version: str,
    plugins: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a reader needs to trust and repeat the results: code version and
    commit, the command, the plug-ins loaded (files with their SHA-256, entry
    points), the resolved scenario and its hash, the seeds, and the status of
    every run."""
    return {
        "vmsim_version": version,
        "git_commit": git_commit(),
        "argv": argv,
        "plugins": plugins or {"files": [], "entry_points": []},
        "scenario": scenario_dict,
        "scenario_hash": scenario_hash,
        "root_seed": root_seed,
        "seeds": seeds,
        "runs": {row["run_id"]: {"status": row["status"], "error": row["error"]} for row in rows},
    }


def run_id_of(scenario_name: str, strategy: str, point: int, replication: int) -> str:
    """The id of a run, its key in every table: ``SCENARIO/pPPPP/STRATEGY/rRRR``."""
    return f"{scenario_name}/p{point:04d}/{strategy}/r{replication:03d}"
