"""Every column of the result tables has one declared type, whatever the chunking or executor."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.record.columns import EVENTS, arrow_table, declared_type
from sim.sweep.store import StatusLine, SweepStore

ROOT = Path(__file__).resolve().parents[1]

# one event of each shape the model records: fields present on some kinds only
SHAPES = {
    "vmap_retry": lambda i: {"task": f"t{i}", "pid": i, "cpu": i % 4, "ok": i % 3 == 0},
    "vmap_overflow_purge": lambda i: {"task": f"t{i}", "pid": i, "cpu": 0, "purged": i, "seconds": i * 1e-6},
    "oom_kill": lambda i: {"victim": f"v{i}", "anon": i, "trigger": None, "order": 0, "free": 100 + i},
    "warn_alloc": lambda i: {"message": "failure", "gfp": "GFP_NOWAIT", "task": None, "DMA32_free": i},
    "split_nowait_failure": lambda i: {"fit": "NE", "chain": "a <- b", "retry": 0, "free": i},
}

runs_of_events = st.lists(
    st.lists(st.sampled_from(sorted(SHAPES)), max_size=4),  # the events of each run, by kind
    min_size=1,
    max_size=8,
)


def _events(kinds_per_run: list[list[str]]) -> dict[str, list[dict]]:
    events = {}
    for n, kinds in enumerate(kinds_per_run):
        run_id = f"r{n:03d}"
        events[run_id] = [
            {"run_id": run_id, "kind": kind, "time": float(i), **SHAPES[kind](10 * n + i)}
            for i, kind in enumerate(kinds)
        ]
    return events


def _merged(folder: Path, events: dict[str, list[dict]], cuts: list[int]) -> Path:
    """Write the runs' events as parts cut at ``cuts`` (runs in order), merge them, return events.parquet."""
    store = SweepStore(folder)
    ids = sorted(events)
    latest = {}
    bounds = [0, *sorted(set(cuts)), len(ids)]
    for n, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = f"p{n:03d}"
        rows = [e for rid in ids[lo:hi] for e in events[rid]]
        store.write_part(part, "runs", [{"run_id": rid, "status": "ok", "error": ""} for rid in ids[lo:hi]], [])
        store.write_part(part, "events", rows, ["run_id", "kind", "time"])
        latest.update({rid: StatusLine(rid, "ok", part) for rid in ids[lo:hi]})
    store.merge(latest)
    return folder / "events.parquet"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=runs_of_events, cuts=st.lists(st.integers(0, 8), max_size=4))
def test_merged_events_have_one_schema_however_the_runs_were_chunked(tmp_path_factory, kinds, cuts):
    events = _events(kinds)
    folder = tmp_path_factory.mktemp("sweep")
    whole = _merged(folder / "whole", events, [])
    chunked = _merged(folder / "chunked", events, [c for c in cuts if 0 < c < len(events)])
    assert pq.read_schema(whole).equals(pq.read_schema(chunked))
    a, b = pd.read_parquet(whole), pd.read_parquet(chunked)
    pd.testing.assert_frame_equal(a, b)
    for name, kind in EVENTS.items():  # every declared column present has its declared type
        if name in pq.read_schema(whole).names:
            assert pq.read_schema(whole).field(name).type == kind, name
    if "ok" in a:
        expected = sum(e.get("ok") is True for rows in events.values() for e in rows)
        assert (a["ok"] == True).sum() == expected  # noqa: E712 (the comparison users write)


def test_ok_is_stored_as_bool_with_nulls_not_as_text():
    table = arrow_table("events", [{"kind": "vmap_retry", "ok": True}, {"kind": "oom_kill", "order": 0}])
    assert table.schema.field("ok").type == pa.bool_()
    assert table.column("ok").to_pylist() == [True, None]
    assert table.schema.field("order").type == pa.int64()


def test_an_undeclared_column_takes_its_values_type_and_an_all_null_one_is_null():
    table = arrow_table("events", [{"kind": "x", "guest_field": 3, "empty": None}, {"kind": "y", "guest_field": 2.5}])
    assert table.schema.field("guest_field").type == pa.float64()
    assert table.schema.field("empty").type == pa.null()


def _recorded_fields() -> set[str]:
    """Keyword names of every ``metrics.event(kind, time, ...)`` call in the model, and the keys of
    the dict that vmalloc's failure events are built from."""
    names: set[str] = set()
    for path in (ROOT / "sim").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("event", "_record_failure") and len(node.args) >= 2:
                    names |= {kw.arg for kw in node.keywords if kw.arg}
            if isinstance(node, ast.FunctionDef) and node.name == "_record_failure":
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Dict):
                        names |= {k.value for k in sub.keys if isinstance(k, ast.Constant)}
    return names


def test_every_field_the_model_records_in_an_event_has_a_declared_type():
    fields = _recorded_fields()
    assert {"ok", "purged", "victim", "chain"} <= fields
    assert sorted(f for f in fields if declared_type("events", f) is None) == []
