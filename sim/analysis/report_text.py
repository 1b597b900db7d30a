"""The parts of report.md that are told rather than tabulated.

``traced_failure_story`` tells one split failure from the events of its run,
step by step with simulated timestamps: every number in it is read from the
events table.  ``ASSUMPTIONS`` is the fixed list of modelling choices and
limits, which are not findings.
"""

from __future__ import annotations

import pandas as pd

ASSUMPTIONS = [
    "- The allocator core is Linux v5.3's (mm/vmalloc.c after 68ad4a330433) and reproduces the kernel's "
    "own outputs on the expected-output vectors: addresses and fit types are geometry, never drawn.",
    "- The page allocator, reclaim, OOM killer and slab caches follow v5.2/5.3 (mm/page_alloc.c, mm/vmscan.c, "
    "mm/oom_kill.c, mm/slab.c, mm/slub.c; docs/validation.md sets them beside a real kernel); direct "
    "reclaim latency, reclaim rates and OOM kill latency are distributions estimated from published "
    "measurements, not measured on the reader's machine.",
    "- Watermark boosts start where the kernel starts them (a fallback steal below pageblock order, "
    "with the free lists kept by migratetype at pageblock grain), and kswapd's boosted passes scan as "
    "the kernel's do (size >> priority), but boosts stay raised far longer than the kernel's: in about "
    "80% of the samples under the 2019 workload, and 68% in the model of the 5.2 guest against 8.5% in "
    "the real one (docs/validation.md). The boost-bound sweep runs the same condition with boosting off "
    "(watermark_boost_factor 0); the kernel's rate should lie between its two rows.",
    "- Zone sizes come from a model of a QEMU/KVM x86_64 guest whose boot-time reservations are "
    "interpolated between estimated anchors (managed_pages_model in sim/kernel/mm/zones.py); a real "
    "guest's /proc/zoneinfo can replace them (`vmsim machine --zoneinfo`, docs/validation.md). Kernel "
    "memory outside the modelled pools is fixed at boot.",
    "- Workloads are abstractions: stress-ng's fork storm takes each fork's task_struct from its "
    "high-order slab cache before the stack, then its other slab objects, pgd (order 1 with PTI) and page "
    "tables in copy_process order, each step's pages at once (estimated totals), and frees the task_struct "
    "an RCU grace period after the reap; the other tenants have fixed sizes, or shares of RAM in "
    "fork-ram. Worker counts for the 2019 "
    "reproductions were not published and are calibrated.",
    "- CPUs are modelled with explicit preemption points; kswapd is a process whose CPU share is "
    "computed, not a scheduled task. Interrupt context and NUMA are not modelled (one node).",
    "- Rates are per simulated vmalloc call over short simulated runs; rare events have wide "
    "intervals, reported as such.",
]


def _chain(event: pd.Series) -> str:
    steps = [s.strip() for s in str(event.get("chain", "")).split("<-") if s.strip()]
    return " → ".join(reversed(steps)) if steps else "alloc_vmap_area"


def _first_of(events: pd.DataFrame, kind: str) -> pd.Series | None:
    """The first event of ``kind`` in ``events`` (in their order), or None."""
    found = events[events["kind"] == kind]
    return None if found.empty else found.iloc[0]


def traced_failure_story(events: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """One split GFP_NOWAIT failure from the run that had the most, told from its events."""
    if events.empty or "kind" not in events:
        return ["No split failure was recorded in these runs."]
    fails = events[events["kind"] == "split_nowait_failure"]
    if fails.empty:
        return ["No split failure was recorded in these runs."]
    busiest = fails["run_id"].value_counts().sort_index().sort_values(ascending=False, kind="stable").index[0]
    mine = events[events["run_id"] == busiest].sort_values("time", kind="stable")
    first = mine[mine["kind"] == "split_nowait_failure"].iloc[0]
    t0, pid = float(first["time"]), first.get("pid")
    row = runs[runs["run_id"] == busiest].iloc[0]
    lines = [
        f"From run `{busiest}` ({int(row['split_nowait_failures'])} split failures in "
        f"{int(row['vmalloc_calls'])} vmalloc calls over {float(row['sim_seconds']):g} simulated seconds):",
        "",
        f"1. t = {t0:.6f} s, CPU {int(first['cpu'])}: task `{first['task']}` is in "
        f"{_chain(first)}, reserving kernel virtual address space for a thread stack.",
        "2. The lowest free block that fits starts 4 KiB past a 16 KiB boundary, so the 20 KiB stack lands "
        "strictly inside it (NE_FIT) and the block must be split into two: one more `struct vmap_area`.",
        "3. Under `vmap_area_lock` (a spinlock, so it may not sleep) that object is asked of the vmap_area "
        f"slab cache with {first['gfp']}; the cache has no free object left and asks the page allocator.",
        f"4. The page allocator finds DMA32 with {int(first['DMA32_free'])} free pages against a min "
        f"watermark of {int(first['DMA32_min'])} plus a boost of {int(first['DMA32_boost'])}, and DMA "
        f"with {int(first['DMA_free'])} against {int(first['DMA_min'])} plus a boost of "
        f"{int(first['DMA_boost'])} plus the lowmem_reserve it keeps from DMA32-class requests: "
        "GFP_NOWAIT may not reclaim, so the request fails.",
    ]
    after = mine[(mine["time"] >= t0) & (mine.get("pid") == pid)] if "pid" in mine else mine[mine["time"] >= t0]
    # the steps after the four above, each told only if its event happened
    later: list[str] = []
    w = _first_of(mine[mine["time"] == t0], "warn_alloc")
    if w is not None:
        later.append(f'The kernel prints "{w["message"]}, mode:{w["mode"]}({w["gfp"]})" (warn_alloc).')
    p = _first_of(after, "vmap_overflow_purge")
    if p is not None:
        later.append(
            "alloc_vmap_area's overflow path unlocks and purges the lazily freed areas: "
            f"{int(p['purged'])} areas merged back, {float(p['seconds']) * 1e6:.0f} µs, ending at "
            f"t = {float(p['time']):.6f} s; merging frees vmap_area objects back into the cache."
        )
    r = _first_of(after, "vmap_retry")
    if r is not None:
        outcome = "succeeds: the fork gets its stack" if bool(r["ok"]) else "fails again"
        later.append(f"The retry at t = {float(r['time']):.6f} s {outcome}.")
    e = _first_of(after, "vmap_ebusy")
    if e is not None:
        later.append(
            f"At t = {float(e['time']):.6f} s alloc_vmap_area gives up with -EBUSY "
            '("vmap allocation ... failed: use vmalloc=<size> to increase size") and fork returns -ENOMEM.'
        )
    lines += [f"{n}. {text}" for n, text in enumerate(later, start=5)]
    lines += [
        "",
        f"In this run {int(row['overflow_retry_successes'])} of {int(row['overflow_purges'])} overflow "
        f"purges led to a successful retry, and {int(row['fork_enomem'])} forks failed with ENOMEM.",
    ]
    return lines
