"""``preload-gfp``: the v5.5 lockless preload with the caller's gfp for the fill.

Models ``alloc_vmap_area`` after "mm/vmalloc: respect passed gfp_mask when do preloading"
(Uladzislau Rezki, 2019-10-16, patch 2/3 of the series merged for v5.5): as
``preload-lockless``, but the fill uses ``gfp_mask & GFP_RECLAIM_MASK`` instead of
GFP_KERNEL, so a caller that may not sleep does not sleep in the preload either.
"""

from __future__ import annotations

from sim.kernel.mm.gfp import GFP_RECLAIM_MASK
from sim.kernel.mm.vmalloc.strategies.preload_lockless import PreloadLocklessSplit


class PreloadGfpSplit(PreloadLocklessSplit):
    """v5.5+ ("respect passed gfp_mask when do preloading"): the caller's gfp."""

    name = "preload-gfp"
    commit = "v5.5, Rezki 2019-10-16 2/3"
    colour = "#CC79A7"
    order = 40

    def fill_gfp(self, gfp: int) -> int:
        return gfp & GFP_RECLAIM_MASK
