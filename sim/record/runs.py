"""The columns of runs.parquet, declared once, in order (issue 4).

Each :class:`RunColumn` says where its value comes from: the run itself
(``run``: ids, seed, status, set by the engine), a sum of declared counters
(``counters``) or time counters (``seconds``), or a level the engine derives
from the samples (``derived``).  ``RUN_COLUMNS`` (``record/results.py``), the
Arrow types of the runs table (``record/columns.py``) and the engine's headline
numbers (``engine/run.py``) are all built from :data:`RUN_ROW`; swept or
overridden parameters follow these columns.  Imports nothing outside record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sim.record.counters import declaration


@dataclass(frozen=True)
class RunColumn:
    """One runs.parquet column: its name, Python type and source (``run``, ``counters``,
    ``seconds``, ``derived``); ``sum`` names the counters it adds up, and ``prefixes`` adds
    every other counter whose name starts with one of them (computed names, such as the
    locks of the per-node vmap pools that a later kernel model names ``vmap_node...``)."""

    name: str
    type: type
    source: str
    sum: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def total(self, counters: Mapping[str, float]) -> float:
        """The column's value from a run's ``counters`` (or time counters): the named ones,
        then the others that a prefix covers."""
        named = sum(counters.get(name, 0) for name in self.sum)
        if not self.prefixes:
            return named
        return named + sum(v for k, v in counters.items() if k.startswith(self.prefixes) and k not in self.sum)


def _run(name: str, kind: type = str) -> RunColumn:
    return RunColumn(name, kind, "run")


def _count(name: str, *counters: str) -> RunColumn:
    """A column that is the sum of ``counters`` (by default the counter of the same name)."""
    return RunColumn(name, int, "counters", counters or (name,))


RUN_ROW: tuple[RunColumn, ...] = (
    _run("run_id"), _run("scenario"), _run("strategy"), _run("kernel"), _run("seed", int),
    _run("replication", int), _run("sim_seconds", float), _run("wall_seconds", float),
    # KVA reservations: alloc_vmap_area and pcpu_get_vm_areas
    _count("vmalloc_calls", "vmap_alloc_calls", "pcpu_get_vm_areas_calls"),
    _count("vmalloc_failures", "vmap_alloc_failures", "pcpu_get_vm_areas_failures"),
    _count("fit_fl"), _count("fit_le"), _count("fit_re"), _count("fit_ne"), _count("split_from_preload"),
    _count("split_nowait_attempts"), _count("split_nowait_failures"), _count("preload_fills"),
    _count("preload_misses"),
    # who missed: alloc_vmap_area's own preload (a race, a failed fill), or a percpu carve; and the calls
    _count("preload_race_misses"), _count("preload_fill_misses"), _count("vmap_alloc_calls"),
    _count("pcpu_ne_splits"), _count("pcpu_split_nowait"),
    _count("overflow_purges"), _count("overflow_retry_successes"),
    _count("vmap_ebusy"), _count("forks"), _count("fork_enomem"), _count("nowait_page_failures"),
    _count("direct_reclaims", "allocstall"),
    RunColumn("direct_reclaim_seconds", float, "seconds", ("direct_reclaim",)),
    # printk on the serial console (0 at the default loglevel=3), and how long other tasks
    # waited for the vmap free-tree lock while its holder printed a failed split's report
    RunColumn("console_seconds", float, "seconds", ("console",)),
    RunColumn("console_lock_wait_seconds", float, "seconds",
              ("console_lock_wait:vmap_area_lock", "console_lock_wait:free_vmap_area_lock")),
    # how long tasks spun (spinlock_t) or slept (PREEMPT_RT) waiting for the vmap area locks
    RunColumn("vmap_lock_wait_seconds", float, "seconds",
              ("lock_wait:vmap_area_lock", "lock_wait:free_vmap_area_lock"), ("lock_wait:vmap_node",)),
    # how long the vmap area locks were held (all CPUs): what the spinning above waits behind, and
    # what a design that moves work under the lock (or out of it) changes; 6.9's per-node locks included
    RunColumn("vmap_lock_hold_seconds", float, "seconds",
              ("lock_hold:vmap_area_lock", "lock_hold:free_vmap_area_lock"), ("lock_hold:vmap_node",)),
    _count("oom_kills", "oom_kill"),
    RunColumn("min_free_pages", int, "derived"),  # lowest free pages seen
    RunColumn("seconds_below_min", float, "derived"),  # time a GFP_NOWAIT request would fail
    _count("sleep_in_atomic_bugs"),
    # 6.9 vmap nodes: allocations served from a node pool (no free-tree search, no split),
    # and the most vmap_area objects held aside at a sample: preloads, reserves, node pools
    _count("vmap_pool_hits"),
    RunColumn("vmap_objects_held_max", int, "derived"),
    _run("status"), _run("error"),
)  # fmt: skip


def _check() -> None:
    """Every counter a column sums is declared (at import)."""
    for col in RUN_ROW:
        for name in (*col.sum, *(prefix + "x" for prefix in col.prefixes)):
            if declaration(name, seconds=col.source == "seconds") is None:
                raise ValueError(f"run column {col.name}: counter {name!r} is not declared")


_check()
