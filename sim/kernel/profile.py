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
    # vfree gives the CPU up (cond_resched) after each page it frees (v6.1 and v6.9 have it, v5.3
    # has not; set for 6.9 only, with its new runs): a worker woken by the freeing task runs at once
    vfree_resched: bool = False
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
    # What `vmsim profiles` states: the upstream changes this profile models, and those of its
    # kernel (touching vmalloc, the page allocator, reclaim or slab as modelled) it does not.
    models: tuple[str, ...] = ()
    not_modelled: tuple[str, ...] = ()


PROFILES: dict[str, KernelProfile] = {}


def _register(profile: KernelProfile) -> KernelProfile:
    PROFILES[profile.name] = profile
    return profile


_v52 = _register(
    KernelProfile(
        "5.2",
        models=(
            "68ad4a330433 (5.2) the augmented free tree: lowest-match search, FL/LE/RE/NE fits, "
            "the NE split's object with GFP_NOWAIT under vmap_area_lock",
            "5.2 lazy free: vmap_purge_list, lazy_max_pages, try_purge from the freeing context",
        ),
        not_modelled=(
            "the lazy purge's merge order: the model merges in free order, the kernel's llist newest first",
            "KASAN shadow for vmalloc",
        ),
    )
)
_v53 = _register(
    replace(
        _v52, name="5.3", split_strategy="preload",
        models=(
            *_v52.models,
            "82dd23e84be3 (5.3) the per-CPU ne_fit preload, GFP_KERNEL, preemption off around the check",
        ),
    )
)  # fmt: skip
_v55 = _register(
    replace(
        _v53,
        name="5.5",
        split_strategy="preload-gfp",
        vmap_area_size=64,
        vmap_area_objs_per_slab=64,
        free_vmap_area_lock=True,
        models=(
            *_v53.models[:2],
            "81f1ba586e39 (5.5) the preload without preempt_disable, and 'respect passed gfp_mask' (5.5): "
            "the caller's gfp for the fill",
            "688fcbfc06e4 (5.4) 64-byte struct vmap_area",
            "dd3b8353bae7 (5.4) a freed area leaves the busy tree at once",
            "e36176be1c39 (5.5) free_vmap_area_lock apart from vmap_area_lock",
        ),
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
        models=(
            *_v55.models,
            "9333fe98d0a6 (5.18) adjust_search_size, and 9f531973dff3 (5.16) the search's vstart step",
            "f80b08fc4453 (5.9) high-priority order-0 requests ignore the watermark boost",
            "8cd7c588decf (5.16) reclaim_throttle instead of congestion_wait",
            "c49c2c47dab6 (5.14) pcp high cut while kswapd reclaims",
        ),
        not_modelled=(
            "the purge list as an address-ordered tree (5.9): the model merges in free order",
            "690467c81b1a (5.18) the lazy purge moved out of the freeing context (drain_vmap_work)",
            "b92ca18e8ca5 (5.14) pcp high from the low watermark (zone_highsize)",
            "e540bf3162e8 (5.18) thread stacks freed through RCU into the stack cache",
            "b47291ef02b0 (5.16) SLUB's per-CPU partial slab count",
            "KASAN shadow for vmalloc",
        ),
    )
)
# Debian 12's 6.1 stable kernel (6.1.0-57-amd64 is 6.1.192), the kernel `vmsim peer` boots by default:
# 5.18's rules plus zone_highsize, and the 6.3 ALLOC_NON_BLOCK/ALLOC_MIN_RESERVE rework that 6.1.y
# backported while keeping __GFP_ATOMIC (stable 6.1.119 and 6.1.158 have it; 6.1.55 does not).
# Not modelled: the asynchronous lazy purge (690467c81b1a, 5.18), SLUB's per-CPU partial slab count
# (b47291ef02b0, 5.16), ALLOC_NOFRAGMENT, the tiny-zone guard of boost_watermark, and the one-time WARN
# on a failed split (1b23ff80b399, 6.0).
_v61 = _register(
    replace(
        _v518, name="6.1", alloc_non_block=True, pcp_high_from_low=True, stack_free_rcu=True,
        models=(
            *_v518.models,
            "ab3508854353 (6.3, in 6.1.y stable) ALLOC_NON_BLOCK / ALLOC_MIN_RESERVE, __GFP_ATOMIC kept",
            "b92ca18e8ca5 (5.14) pcp high from the low watermark (zone_highsize)",
            "e540bf3162e8 (5.18) thread stacks freed through RCU into the stack cache",
        ),
        not_modelled=(
            *_v518.not_modelled[:2],
            *_v518.not_modelled[4:],
            "ALLOC_NOFRAGMENT and the tiny-zone guard of boost_watermark",
            "1b23ff80b399 (6.0) the one-time WARN on a failed split",
            "vfree's cond_resched after each page freed",
        ),
    )
)  # fmt: skip
_v63 = _register(
    replace(
        _v518,
        name="6.3",
        vmap_area_size=72,
        vmap_area_objs_per_slab=56,
        gfp_atomic_bit=False,
        alloc_non_block=True,
        models=(
            *_v518.models,
            "72-byte struct vmap_area (6.3)",
            "2973d8229b78 (6.3) __GFP_ATOMIC removed; ab3508854353 ALLOC_NON_BLOCK / ALLOC_MIN_RESERVE",
        ),
        not_modelled=(
            *_v518.not_modelled,
            "ALLOC_NOFRAGMENT and the tiny-zone guard of boost_watermark",
            "1b23ff80b399 (6.0) the one-time WARN on a failed split",
            "vfree's cond_resched after each page freed",
        ),
    )
)
_v68 = _register(
    replace(
        _v63, name="6.8", nowait_implies_nowarn=True, slab_allocators=("SLUB",),
        models=(*_v63.models, "16f5dfbc851b GFP_NOWAIT implies __GFP_NOWARN", "SLAB removed (6.8)"),
        not_modelled=(*_v63.not_modelled, "the PCP high auto-tuning series (6.7)"),
    )
)  # fmt: skip
_MODELLED_BY_69 = ("the purge list", "690467c81b1a", "e540bf3162e8", "vfree")  # in 6.8's not_modelled
# 6.9: the vmap nodes of "mm: vmalloc: Mitigate a vmap lock contention" (Uladzislau Rezki,
# v3 <20240102184633.748113-1-urezki@gmail.com>), read in the v6.9 tree; with them the
# purge queued to drain_vmap_work (690467c81b1a, 5.18, modelled here only) and the RCU-freed
# thread stacks (e540bf3162e8, 5.18; new runs, so set here).
_v69 = _register(
    replace(
        _v68, name="6.9", vmap_nodes=True, stack_free_rcu=True, vfree_resched=True,
        models=(
            *(note for note in _v68.models if not note.startswith("5.2 lazy free")),
            "vmap nodes (6.9): per-node busy and lazy trees and locks, nr_vmap_nodes = CPUs (at most 128), "
            "16-page zones; lazy areas purged per node in address order",
            "vmap nodes (6.9): per-node pools of purged areas by size (1..256 pages), tried first by "
            "whole-window requests of the CPU's node; decayed by a quarter (all when fewer than four) "
            "on each purge, wholly on an allocation's overflow purge and by the vmap-node shrinker when a "
            "reclaim pass's priority is low enough (its deferred count left out)",
            "690467c81b1a (5.18) the lazy purge queued to drain_vmap_work",
            "vfree's cond_resched after each page freed (in 6.1 and 6.9, not 5.3)",
            "e540bf3162e8 (5.18) thread stacks freed through RCU into the stack cache",
        ),
        not_modelled=(
            "vmap nodes (6.9): the purge helpers that drain nodes in parallel above 2 x lazy_max_pages",
            *(n for n in _v68.not_modelled if not n.startswith(_MODELLED_BY_69)),
        ),
    )
)  # fmt: skip

DEFAULT_PROFILE = "5.2"


def get_profile(name: str) -> KernelProfile:
    """The profile called ``name``; ``KeyError`` lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown kernel profile {name!r}; known: {', '.join(PROFILES)}") from None
