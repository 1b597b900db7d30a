"""Every counter a run can record, declared once: its name, unit and meaning.

``Metrics.add(name)`` and ``Metrics.add_time(name)`` stay plain dictionary
updates (they sit on the hot path); the names they may use are declared here.
A counter whose name is computed (a workload's label, a slab cache, a lock, a
call site) belongs to a :class:`CounterFamily`: a pattern such as
``slab.{cache}.{what}`` whose parts are enumerated where the code takes them
from a closed set, and free (``None``) where a scenario or a caller names them.

Two checks keep code and declarations in step: ``tests/test_records.py`` reads
every ``.add(...)``, ``.add_time(...)`` and ``.counters[...]`` in the kernel, the
workloads and the engine and fails on a name nothing declares and on a
declaration nothing uses; and :func:`sim.record.metrics.check_names` (on in the
tests) checks each name as it is recorded.  Units: ``seconds`` counters are the
ones ``add_time`` accumulates, every other unit is a count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

SECONDS = "seconds"


@dataclass(frozen=True)
class CounterDecl:
    """One counter: ``name`` as recorded, ``unit`` of one increment, what it counts."""

    name: str
    unit: str
    meaning: str


@dataclass(frozen=True)
class CounterFamily:
    """Counters with computed names: ``pattern`` with ``{part}`` fields, each part
    enumerated (a tuple of the values the code uses) or free (None: any text)."""

    pattern: str
    unit: str
    meaning: str
    parts: dict[str, tuple[str, ...] | None] = field(default_factory=dict)

    def regex(self) -> re.Pattern[str]:
        """The names of this family, as a regular expression."""
        out, pos = [], 0
        for m in re.finditer(r"\{(\w+)\}", self.pattern):
            out.append(re.escape(self.pattern[pos : m.start()]))
            values = self.parts[m.group(1)]
            out.append(".+" if values is None else "(?:" + "|".join(map(re.escape, values)) + ")")
            pos = m.end()
        out.append(re.escape(self.pattern[pos:]))
        return re.compile("".join(out))

    def examples(self) -> list[str]:
        """Every name of the family, a free part standing as ``<part>``."""
        names = [""]
        for piece in re.split(r"(\{\w+\})", self.pattern):
            m = re.fullmatch(r"\{(\w+)\}", piece)
            values = (piece,) if m is None else (self.parts[m.group(1)] or (f"<{m.group(1)}>",))
            names = [n + v for n in names for v in values]
        return names


def _counts(unit: str, table: str) -> tuple[CounterDecl, ...]:
    """Declarations from lines of ``name  meaning``."""
    rows = (line.split(None, 1) for line in table.strip().splitlines())
    return tuple(CounterDecl(name, unit, meaning.strip()) for name, meaning in rows)


COUNTERS: tuple[CounterDecl, ...] = (
    *_counts("calls", """
alloc_slowpath            __alloc_pages_slowpath entered (the fast path found no page)
alloc_fail                page allocation that failed (warn_alloc reached)
alloc_fail_nowarn         failed page allocation whose warning __GFP_NOWARN silences
warn_alloc                warn_alloc report printed (under the ratelimit)
warn_alloc_suppressed     warn_alloc report dropped by the ratelimit
warn_alloc_show_mem       warn_alloc report with its Mem-Info block (show_mem, at most once a second)
warn_alloc_show_mem_suppressed  warn_alloc report whose Mem-Info block its ratelimit dropped
nowait_page_failures      failed page allocation that could not reclaim (GFP_NOWAIT/ATOMIC)
pcp_drain                 drain_all_pages before a retry of the slow path
congestion_wait           congestion_wait sleep of a reclaimer (pre-5.16 throttling)
oom_lock_contended        __alloc_pages_may_oom found oom_lock held and backed off
allocstall                direct reclaim entered (try_to_free_pages)
direct_reclaim_stall      direct reclaim that stalled on the latency model
pgscan_direct_throttle    throttle_direct_reclaim put a reclaimer to sleep
kswapd_wake               wakeup_kswapd that woke a sleeping kswapd
kswapd_low_wmark_hit_quickly   kswapd woken again during its HZ/10 nap
kswapd_high_wmark_hit_quickly  kswapd's HZ/10 nap ended with the node unbalanced
pageoutrun                balance_pgdat run of kswapd
kswapd_failures           balance_pgdat run that reclaimed nothing
oom_invoke                out_of_memory called
oom_victim_pending        out_of_memory waited for a victim already chosen
oom_kill                  task killed by the OOM killer
vmap_alloc_calls          alloc_vmap_area call
vmap_alloc_failures       alloc_vmap_area that returned an error
pcpu_get_vm_areas_calls   pcpu_get_vm_areas call
pcpu_get_vm_areas_failures  pcpu_get_vm_areas that returned an error
fit_fl                    free block used whole (FL_FIT_TYPE)
fit_le                    free block cut at its left edge (LE_FIT_TYPE)
fit_re                    free block cut at its right edge (RE_FIT_TYPE)
fit_ne                    free block split in two (NE_FIT_TYPE, needs a vmap_area object)
split_from_preload        NE_FIT split that took the per-CPU preloaded object
split_nowait_attempts     GFP_NOWAIT vmap_area object allocation under the lock
split_nowait_failures     GFP_NOWAIT vmap_area object allocation that failed
preload_fills             preload of the per-CPU vmap_area object outside the lock
preload_fill_failures     preload that got no object
preload_misses            NE_FIT split that found no preloaded object (race, fill and pcpu NOWAIT misses)
preload_race_misses       alloc_vmap_area split that found no preloaded object though its CPU held one at the check
preload_fill_misses       alloc_vmap_area split that found no preloaded object after a check that found none
pcpu_ne_splits            NE_FIT carve of pcpu_get_vm_areas (which never preloads)
pcpu_split_nowait         NE_FIT carve of pcpu_get_vm_areas that found no preloaded object on its CPU (GFP_NOWAIT)
overflow_purges           overflow: lazy areas purged before a retry
overflow_retries          alloc_vmap_area retried after a purge
overflow_retry_successes  retry after a purge that found a block
split_retries_unlocked    NE_FIT split without an object retried at once, the lock dropped (counterfactuals)
vmap_ebusy                alloc_vmap_area that gave up with -EBUSY
vmap_warnings_printed     "vmap allocation for size ... failed" printed (ratelimited)
vmalloc_failures          __vmalloc_node_range that returned NULL
vmalloc_page_failures     __vmalloc_area_node that could not get its pages
lazy_purges               vfree that crossed lazy_max_pages and purged (6.9: drain_vmap_work's purge)
vmap_pool_hits            6.9 node_alloc: area reused from the CPU's node pool (no free-tree search, no split)
vmap_pool_misses          6.9 node_alloc: whole-window request the node pool could not serve (empty or misaligned)
vmap_pool_shrinks         6.9 vmap-node shrinker emptied every pool (a reclaim pass at low enough priority)
tlb_flushes               TLB flush of a lazy purge (flush_tlb_kernel_range)
watermark_boost           boost_watermark raised a zone's watermarks (fallback steal)
fallback_steals           __rmqueue_fallback took a block below pageblock order from another migratetype
highatomic_reserved       reserve_highatomic_pageblock added a pageblock to a zone's reserve
highatomic_unreserved     unreserve_highatomic_pageblock gave a reserved pageblock back
preemptions               running task preempted
sleep_in_atomic_bugs      "BUG: sleeping function called from invalid context"
migrations                task moved to another CPU (wakeup placement or balancing)
context_switches          CPU switched tasks
fork_attempts             fork of the fork storm started
forks                     fork that succeeded
fork_enomem               fork that failed with -ENOMEM
fork_task_struct_failures  fork whose task_struct allocation failed (dup_task_struct)
task_structs_rcu_deferred  task_struct free queued with call_rcu (delayed_put_task_struct)
fork_worker_restarts      fork storm worker started again after dying
stack_cache_hits          thread stack taken from the per-CPU cached_stacks
stack_vmallocs            thread stack allocated with __vmalloc_node_range
stacks_cached             freed thread stack kept in cached_stacks
stacks_rcu_deferred       thread stack free deferred to an RCU callback
stacks_vfreed             thread stack freed with vfree
"""),
    *_counts("pages", """
kswapd_reclaimed          page reclaimed by kswapd
direct_reclaimed          page reclaimed by direct reclaim
pswpout                   anonymous page written to swap
workingset_refault        page faulted back in after reclaim
oom_reaped_pages          page freed by the OOM reaper
"""),
    CounterDecl("purged_areas", "areas", "vmap area freed by a lazy purge"),
    CounterDecl("vmap_pool_adds", "areas", "6.9: purged area put in its node's pool instead of the free tree"),
    CounterDecl("vmap_pool_decayed", "areas", "6.9: pooled area given back to the free tree by a pool decay"),
    CounterDecl("console_bytes", "bytes", "byte printk wrote to the serial console (\\r\\n counted)"),
    *_counts(SECONDS, """
alloc_slowpath            time in __alloc_pages_slowpath
direct_reclaim            time in direct reclaim
throttle_direct_reclaim   time asleep in throttle_direct_reclaim
preload_fill              time the preload of a vmap_area object took
console                   time CPUs spent writing printk's records to the serial console
"""),
)  # fmt: skip

_LOCKS = None  # a lock's name (vmap_area_lock, vmap_purge_lock, pcpu_alloc_mutex, ...)
_WORKLOAD = None  # a workload's name (its spec's name or the kind)

FAMILIES: tuple[CounterFamily, ...] = (
    CounterFamily("alloc_fail:{site}", "calls", "page allocation failure by call site", {"site": None}),
    CounterFamily("vmap_fail_{cause}", "calls", "alloc_vmap_area overflow by cause",
                  {"cause": ("no_space", "no_split_object", "other")}),
    CounterFamily("preload_fill_latency_le_{k}", "calls", "preload that took at most 2**k microseconds",
                  {"k": tuple(str(k) for k in range(31))}),
    CounterFamily("lock_contended:{lock}", "calls", "lock acquisition that had to wait", {"lock": _LOCKS}),
    CounterFamily("lock_wait:{lock}", SECONDS, "time waiting for the lock", {"lock": _LOCKS}),
    CounterFamily("lock_hold:{lock}", SECONDS, "time the lock was held", {"lock": _LOCKS}),
    CounterFamily("console_lock_wait:{lock}", SECONDS,
                  "time tasks waited for the lock while its holder wrote to the serial console", {"lock": _LOCKS}),
    CounterFamily("slab.{cache}.{what}", "calls", "slab cache totals: objects, slabs, pages",
                  {"cache": None, "what": ("allocs", "frees", "slabs_max", "pages_alloc", "pages_free",
                                            "order_fallback")}),
    CounterFamily("slab.{cache}.{what}.{gfp}", "calls", "slab cache refills and grows by caller gfp class",
                  {"cache": None, "what": ("refill", "refill_fail", "grow"), "gfp": None}),
    CounterFamily("{label}.{what}", "calls", "a workload's vmap requests (sim/workloads/tally.py)",
                  {"label": None, "what": ("calls", "failures", "fit_fl", "fit_le", "fit_re", "fit_ne",
                                           "fit_ambiguous", "fail_no_space", "fail_no_memory",
                                           "fail_split_object")}),
    CounterFamily("{workload}.{what}", "events", "module loads: loaded, failed, unloaded",
                  {"workload": _WORKLOAD, "what": ("loads", "load_failures", "unloads")}),
    CounterFamily("{workload}.{what}", "events", "BPF programs: loaded, failed, JIT failures, freed",
                  {"workload": _WORKLOAD, "what": ("loads", "load_failures", "jit_failures", "jit_eperm", "frees")}),
    CounterFamily("{workload}.{what}", "events", "percpu chunks: created, failed, destroyed",
                  {"workload": _WORKLOAD, "what": ("chunks", "chunk_failures", "chunks_destroyed")}),
    CounterFamily("{workload}.{what}", "events", "vm_map_ram users: maps, failures, blocks",
                  {"workload": _WORKLOAD, "what": ("maps", "map_failures", "page_failures", "unmaps", "blocks",
                                                   "blocks_freed", "fragmented_purged")}),
    CounterFamily("{workload}.{what}", "events", "network receive page frags: pages, reserved, fallbacks, drops",
                  {"workload": _WORKLOAD, "what": ("frag_blocks", "frag_blocks_highatomic", "frag_fallbacks",
                                                   "frag_drops")}),
    CounterFamily("{workload}.{case}.{result}", "calls", "test_vmalloc case run that passed or failed",
                  {"workload": _WORKLOAD, "case": None, "result": ("passed", "failed")}),
    CounterFamily("{workload}.{case}", SECONDS, "time a test_vmalloc case ran", {"workload": _WORKLOAD, "case": None}),
)  # fmt: skip


@cache
def _table() -> tuple[dict[str, CounterDecl], list[tuple[re.Pattern[str], CounterFamily]]]:
    names = {}
    for decl in COUNTERS:
        key = f"{decl.name}/{decl.unit == SECONDS}"
        if key in names:
            raise ValueError(f"counter {decl.name} declared twice")
        names[key] = decl
    return names, [(family.regex(), family) for family in FAMILIES]


@cache
def declaration(name: str, seconds: bool = False) -> CounterDecl | CounterFamily | None:
    """What declares counter ``name`` (a time counter if ``seconds``), or None."""
    names, families = _table()
    decl = names.get(f"{name}/{seconds}")
    if decl is not None:
        return decl
    for regex, family in families:
        if (family.unit == SECONDS) == seconds and regex.fullmatch(name):
            return family
    return None
