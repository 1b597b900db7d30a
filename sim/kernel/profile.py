"""Kernel profiles: the rules that changed between the kernels vmsim models.

A scenario names a profile ("5.2", "5.3", "5.5", "5.18", "6.1", "6.3", "6.8", "6.9");
each component reads the switches it needs from it instead of hard-coding a
version.  Sources: mm/vmalloc.c, mm/page_alloc.c, mm/vmscan.c and mm/slub.c of
5.2/5.3, and for each later change the upstream commit in the field comment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class KernelProfile:
    """Version-dependent behaviour, with the 5.2 values as the baseline."""

    name: str
    # vmap allocator core
    search: str = "v5.3"  # "v5.18": 9333fe98d0a6 (adjust_search_size) + 9f531973dff3 (vstart step)
    split_strategy: str = "nowait"  # default NE_FIT split-object strategy of this kernel
    vmap_area_size: int = 88  # struct vmap_area: 88 B to 5.3, 64 B 5.4-6.2 (688fcbfc06e4), 72 B from 6.3
    vmap_area_objs_per_slab: int = 46  # SLUB order-0 slab: 46 / 64 / 56
    free_vmap_area_lock: bool = False  # e36176be1c39 (5.5): free tree under its own lock
    # 6.9, "mm: vmalloc: Mitigate a vmap lock contention": vmap nodes (per-node busy and lazy
    # trees and locks, per-node pools of purged areas by size, the pools' decay, the purge
    # queued to drain_vmap_work): sim/kernel/mm/vmalloc/nodes.py and node_purge.py
    vmap_nodes: bool = False
    # page allocator (mm/page_alloc.c, include/linux/gfp.h)
    gfp_atomic_bit: bool = True  # __GFP_ATOMIC exists (gone in 6.3, 2973d8229b78)
    alloc_non_block: bool = False  # 6.3: ALLOC_NON_BLOCK / ALLOC_MIN_RESERVE flag mapping (ab3508854353)
    atomic_ignores_boost: bool = False  # 5.9: f80b08fc4453, high-priority order-0 requests ignore the boost
    nowait_implies_nowarn: bool = False  # ~6.8: GFP_NOWAIT includes __GFP_NOWARN (16f5dfbc851b)
    reclaim_throttle: bool = False  # 5.16: reclaim_throttle() replaces congestion_wait() (8cd7c588decf)
    pcp_high_reclaim_limit: bool = False  # 5.14 (c49c2c47dab6): pcp high cut to 4 x batch while kswapd reclaims
    # 5.14 (b92ca18e8ca5, zone_highsize): pcp high = max(low watermark / CPUs, 4 x batch), not 6 x batch.
    # Set for 6.1 only so far; 5.18 and later have it too (kept off there until their results are re-run).
    pcp_high_from_low: bool = False
    # 5.18 (e540bf3162e8): a thread stack that finds this CPU's cache full waits an RCU
    # grace period and tries the cache again on the callback's CPU before vfree.
    # Set for 6.1 only so far, like pcp_high_from_low.
    stack_free_rcu: bool = False
    # slab
    slab_allocators: tuple[str, ...] = ("SLUB", "SLAB")  # SLAB removed in 6.8


PROFILES: dict[str, KernelProfile] = {}


def _register(profile: KernelProfile) -> KernelProfile:
    PROFILES[profile.name] = profile
    return profile


_v52 = _register(KernelProfile("5.2"))
_v53 = _register(replace(_v52, name="5.3", split_strategy="preload"))
_v55 = _register(
    replace(
        _v53,
        name="5.5",
        split_strategy="preload-gfp",
        vmap_area_size=64,
        vmap_area_objs_per_slab=64,
        free_vmap_area_lock=True,
    )
)
_v518 = _register(
    replace(
        _v55,
        name="5.18",
        search="v5.18",
        atomic_ignores_boost=True,
        reclaim_throttle=True,
        pcp_high_reclaim_limit=True,
    )
)
# Debian 12's 6.1 stable kernel (6.1.0-57-amd64 is 6.1.192), the kernel `vmsim peer` boots by default:
# 5.18's rules plus zone_highsize, and the 6.3 ALLOC_NON_BLOCK/ALLOC_MIN_RESERVE rework that 6.1.y
# backported while keeping __GFP_ATOMIC (stable 6.1.119 and 6.1.158 have it; 6.1.55 does not).
# Not modelled: the asynchronous lazy purge (690467c81b1a, 5.18), SLUB's per-CPU partial slab count
# (b47291ef02b0, 5.16), ALLOC_NOFRAGMENT, the tiny-zone guard of boost_watermark, and the one-time WARN
# on a failed split (1b23ff80b399, 6.0).
_v61 = _register(replace(_v518, name="6.1", alloc_non_block=True, pcp_high_from_low=True, stack_free_rcu=True))
_v63 = _register(
    replace(
        _v518,
        name="6.3",
        vmap_area_size=72,
        vmap_area_objs_per_slab=56,
        gfp_atomic_bit=False,
        alloc_non_block=True,
    )
)
_v68 = _register(replace(_v63, name="6.8", nowait_implies_nowarn=True, slab_allocators=("SLUB",)))
_v69 = _register(replace(_v68, name="6.9", vmap_nodes=True))

DEFAULT_PROFILE = "5.2"


def get_profile(name: str) -> KernelProfile:
    """The profile called ``name``; ``KeyError`` lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown kernel profile {name!r}; known: {', '.join(PROFILES)}") from None
