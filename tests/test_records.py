"""Counters and events are declared once (sim/record/counters.py, events.py); the code uses
only declared names, and every declaration is used."""

from __future__ import annotations

import ast
import re
from itertools import product
from pathlib import Path

import pytest

from sim.record.counters import COUNTERS, FAMILIES, SECONDS, CounterFamily, declaration
from sim.record.events import check_event
from sim.record.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("sim/kernel", "sim/workloads", "sim/engine")  # the code that writes a run's Metrics


def _templates(node: ast.AST, assigned: dict[str, list[ast.AST]], depth: int = 0) -> list[str]:
    """The names ``node`` can evaluate to, ``*`` standing for a part the scan cannot know."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = [_templates(v, assigned, depth) if isinstance(v, ast.Constant) else ["*"] for v in node.values]
        return ["".join(p) for p in product(*parts)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in _templates(node.left, assigned, depth) for b in _templates(node.right, assigned, depth)]
    if isinstance(node, ast.IfExp):
        return _templates(node.body, assigned, depth) + _templates(node.orelse, assigned, depth)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Tuple):
        return [t for elt in node.value.elts for t in _templates(elt, assigned, depth)]
    if isinstance(node, ast.Name) and node.id in assigned and depth < 3:
        return [t for value in assigned[node.id] for t in _templates(value, assigned, depth + 1)]
    return ["*"]


def _receiver(node: ast.AST) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def counter_uses() -> list[tuple[str, bool, str]]:
    """(name template, is a time counter, where) of every counter the scanned code names."""
    uses = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for func in ast.walk(tree):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                    continue
                assigned: dict[str, list[ast.AST]] = {}
                for node in ast.walk(func):
                    if isinstance(node, ast.Assign):
                        for target in node.targets:
                            if isinstance(target, ast.Name):
                                assigned.setdefault(target.id, []).append(node.value)
                for node in ast.walk(func):
                    where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                            and node.func.attr in ("add", "add_time")
                            and _receiver(node.func.value) in ("metrics", "m")):  # fmt: skip
                        for t in _templates(node.args[0], assigned):
                            uses.append((t, node.func.attr == "add_time", where))
                    elif isinstance(node, ast.Subscript) and _receiver(node.value) in ("counters", "seconds"):
                        for t in _templates(node.slice, assigned):
                            uses.append((t, _receiver(node.value) == "seconds", where))
    return sorted(set(uses))


def _matches(template: str, examples: list[str]) -> bool:
    regex = re.compile(".+".join(map(re.escape, template.split("*"))))
    return any(regex.fullmatch(e) for e in examples)


def _examples(decl) -> list[str]:
    return decl.examples() if isinstance(decl, CounterFamily) else [decl.name]


DECLARED = [*COUNTERS, *FAMILIES]
USES = counter_uses()


def test_the_scan_finds_the_counter_call_sites():
    assert len(USES) > 100
    assert ("allocstall", False, "sim/kernel/mm/vmscan.py:390") in USES or any(u[0] == "allocstall" for u in USES)


@pytest.mark.parametrize("use", [u for u in USES if u[0] != "*"], ids=lambda u: f"{u[2]}:{u[0]}")
def test_every_counter_the_code_names_is_declared(use):
    template, seconds, where = use
    wanted = [d for d in DECLARED if (d.unit == SECONDS) == seconds]
    assert any(_matches(template, _examples(d)) for d in wanted), f"{where}: counter {template!r} is not declared"


def test_every_declared_counter_is_used():
    """Every counter, and every enumerated name of a family, is named by some call site."""
    unused = [
        name for d in DECLARED for name in _examples(d)
        if not any(t != "*" and s == (d.unit == SECONDS) and _matches(t, [name]) for t, s, _ in USES)
    ]  # fmt: skip
    assert not unused, f"declared but never recorded: {unused}"


def test_computed_names_resolve_against_their_family():
    assert isinstance(declaration("slab.vmap_area.refill_fail.GFP_NOWAIT"), CounterFamily)
    assert declaration("vmap_fail_no_split_object").pattern == "vmap_fail_{cause}"
    assert declaration("preload_fill_latency_le_31") is None
    assert declaration("lock_wait:vmap_area_lock", seconds=True) is not None
    assert declaration("lock_wait:vmap_area_lock") is None


def test_a_misspelled_counter_fails_when_names_are_checked():
    m = Metrics()
    m.add("allocstall")
    with pytest.raises(KeyError, match="allocstal"):
        m.add("allocstal")
    with pytest.raises(KeyError):
        m.add_time("direct_reclam", 1.0)


def test_an_undeclared_event_kind_or_field_fails():
    m = Metrics()
    m.event("oom_reaped", 1.0, victim="hog", pages=3)
    with pytest.raises(KeyError, match="oom_reap"):
        m.event("oom_reap", 1.0, victim="hog", pages=3)
    with pytest.raises(KeyError, match="page"):
        m.event("oom_reaped", 1.0, victim="hog", page=3)
    with pytest.raises(KeyError):
        check_event("kswapd_hopeless", {})  # a fixed field missing


def test_the_run_columns_keep_their_names_and_order():
    from sim.record.results import RUN_COLUMNS

    assert RUN_COLUMNS == (
        "run_id", "scenario", "strategy", "kernel", "seed", "replication", "sim_seconds", "wall_seconds",
        "vmalloc_calls", "vmalloc_failures", "fit_fl", "fit_le", "fit_re", "fit_ne", "split_from_preload",
        "split_nowait_attempts", "split_nowait_failures", "preload_fills", "preload_misses", "preload_race_misses",
        "preload_fill_misses", "vmap_alloc_calls", "pcpu_ne_splits", "pcpu_split_nowait", "overflow_purges",
        "overflow_retry_successes", "vmap_ebusy", "forks", "fork_enomem", "nowait_page_failures", "direct_reclaims",
        "direct_reclaim_seconds", "console_seconds", "console_lock_wait_seconds", "vmap_lock_wait_seconds",
        "vmap_lock_hold_seconds", "oom_kills",
        "min_free_pages",
        "seconds_below_min", "sleep_in_atomic_bugs", "vmap_pool_hits", "vmap_objects_held_max", "status", "error",
    )  # fmt: skip


def test_the_headline_row_sums_the_declared_counters():
    from sim.engine.run import _headline

    m = Metrics()
    m.add("vmap_alloc_calls", 3)
    m.add("pcpu_get_vm_areas_calls", 2)
    m.add("allocstall")
    m.add_time("direct_reclaim", 0.5)
    row = _headline(m, None)
    assert (row["vmalloc_calls"], row["direct_reclaims"], row["direct_reclaim_seconds"]) == (5, 1, 0.5)
    assert row["fit_ne"] == 0 and row["min_free_pages"] == 0


def test_the_lock_hold_column_sums_the_vmap_locks_and_any_per_node_lock():
    from sim.engine.run import _headline

    m = Metrics()
    m.add_time("lock_hold:vmap_area_lock", 0.5)
    m.add_time("lock_hold:free_vmap_area_lock", 0.25)
    m.add_time("lock_hold:vmap_node_3", 0.125)  # a computed name, as per-node pools would give
    m.add_time("lock_hold:pcpu_alloc_mutex", 8.0)  # not a vmap area lock
    assert _headline(m, None)["vmap_lock_hold_seconds"] == 0.875
