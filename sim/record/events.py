"""Every kind of event a run can record, declared once with its fixed fields.

An event is a row of events.parquet: ``kind``, ``time`` and the fields of its
kind.  :data:`FIELDS` is the vocabulary of fields with their Python types, in
column order (``record/columns.py`` builds the events table's Arrow types from
it); :data:`KINDS` says which fields each kind carries.  A kind marked
``state`` also carries the machine state at a failure (``page_alloc.failure_state``:
free pages, per-CPU pages, kswapd failures, each zone's ``<zone>_free``,
``_min``, ``_boost`` and ``_highatomic`` (nr_reserved_highatomic), and the pool
levels), all or nothing.

``Metrics.event`` calls :func:`check_event` on every event, so a misspelled
kind or field fails in the first test that records one.  Call sites keep
keyword arguments (``metrics.event("oom_reaped", now, victim=..., pages=...)``),
checked against the declaration.  Imports nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POOLS = (
    "file_clean", "file_dirty", "file_mapped_hot", "anon", "shmem", "slab_reclaimable",
    "kernel_stack", "pagetables", "slab_unreclaimable", "swap_used",
)  # fmt: skip
ZONE_SUFFIXES = ("_free", "_min", "_low", "_high", "_boost", "_highatomic")

# every event field and its type, in the column order of events.parquet
FIELDS: dict[str, type] = {
    # who and where
    "cpu": int, "task": str, "pid": int, "gfp": str, "mode": str, "order": int, "site": str,
    "fit": str, "chain": str, "retry": int, "cause": str, "size": int, "align_shift": int,
    "stage": str, "allocated": int, "wanted": int, "message": str, "preempt_count": int,
    # vmap_retry, vmap_overflow_purge
    "ok": bool, "purged": int, "seconds": float,
    # slab_out_of_memory
    "cache": str, "allocator": str, "slabs": int, "objects": int, "objects_in_use": int,
    # oom_kill, oom_reaped
    "victim": str, "trigger": str, "pages": int,
    # the machine state at a failure (page_alloc.failure_state)
    "free": int, "free_pcp": int, "kswapd_failures": int,
    **dict.fromkeys(POOLS, int),
}  # fmt: skip
STATE = ("free", "free_pcp", "kswapd_failures", *POOLS)


@dataclass(frozen=True)
class EventKind:
    """One kind of event: its name, what it means, its fixed fields, and whether it
    carries the failure state."""

    kind: str
    meaning: str
    fields: tuple[str, ...]
    state: bool = False


_VMAP = ("cpu", "task", "pid", "gfp", "fit", "chain", "retry")  # alloc_vmap_area's _record_failure

KINDS: dict[str, EventKind] = {k.kind: k for k in (
    EventKind("warn_alloc", "page allocation failure report",
              ("message", "gfp", "mode", "order", "site", "cpu", "task"), state=True),
    EventKind("kswapd_hopeless", "kswapd gave up: MAX_RECLAIM_RETRIES runs reclaimed nothing", ("free",)),
    EventKind("split_nowait_failure", "GFP_NOWAIT vmap_area object for an NE_FIT split failed", _VMAP, state=True),
    EventKind("vmap_ebusy", "alloc_vmap_area gave up with -EBUSY",
              (*_VMAP, "cause", "size", "align_shift"), state=True),
    EventKind("vmalloc_page_failure", "__vmalloc_area_node could not get its pages",
              (*_VMAP, "stage", "allocated", "wanted"), state=True),
    EventKind("vmap_retry", "alloc_vmap_area retry after an overflow purge, and its outcome",
              ("task", "pid", "cpu", "ok")),
    EventKind("vmap_overflow_purge", "overflow purge: areas purged and the time it took",
              ("task", "pid", "cpu", "purged", "seconds")),
    EventKind("slab_out_of_memory", "slab_out_of_memory report of a cache that could not grow",
              ("cache", "allocator", "gfp", "cpu", "slabs", "objects", "objects_in_use")),
    EventKind("oom_kill", "OOM killer chose and killed a victim",
              ("victim", "anon", "pagetables", "kernel_stack", "trigger", "order", "free")),
    EventKind("oom_reaped", "OOM reaper freed a victim's memory", ("victim", "pages")),
    EventKind("oom_panic", "out_of_memory found no killable task", ("message",)),
    EventKind("bug_sleeping_in_atomic", "a task slept with preemption disabled",
              ("task", "pid", "cpu", "site", "preempt_count", "message")),
)}  # fmt: skip


def _check_declarations() -> None:
    """Every field of every kind is in FIELDS, and every field of FIELDS is used (at import)."""
    used = set(STATE)
    for k in KINDS.values():
        unknown = set(k.fields) - FIELDS.keys()
        if unknown:
            raise ValueError(f"event {k.kind}: fields {sorted(unknown)} not in FIELDS")
        used.update(k.fields)
    if FIELDS.keys() - used:
        raise ValueError(f"event fields no kind uses: {sorted(FIELDS.keys() - used)}")


_check_declarations()


def check_event(kind: str, fields: Mapping[str, Any]) -> None:
    """Raise if ``kind`` is not declared or ``fields`` are not exactly its fields (and,
    for a ``state`` kind, optionally the whole failure state)."""
    decl = KINDS.get(kind)
    if decl is None:
        raise KeyError(f"event kind {kind!r} is not declared in sim/record/events.py")
    names = set(fields)
    missing = set(decl.fields) - names
    extra = names - set(decl.fields)
    if decl.state and extra:
        zone = {n for n in extra if n.endswith(ZONE_SUFFIXES)}
        state = (extra - zone) & set(STATE)
        if state == set(STATE) or (not state and not zone):
            extra -= state | zone
    if missing or extra:
        raise KeyError(f"event {kind!r}: missing fields {sorted(missing)}, undeclared fields {sorted(extra)}")
