"""How the NE_FIT split's extra ``struct vmap_area`` is obtained: the strategies.

The contract and the registry are in :mod:`.base`; one module per strategy:

* ``nowait`` (:mod:`.nowait`): v5.2, GFP_NOWAIT under the lock.
* ``preload`` (:mod:`.preload`): v5.3, 82dd23e84be3: preemption off to check the
  per-CPU slot, a GFP_KERNEL fill with preemption on, cmpxchg on the CPU of the
  moment, and the lock taken before preemption is enabled again.
* ``preload-lockless`` (:mod:`.preload_lockless`): v5.5, 81f1ba586e39: the slot is
  checked with preemption on and the filled object installed once the lock is held.
* ``preload-gfp`` (:mod:`.preload_gfp`): v5.5+, "respect passed gfp_mask when do
  preloading": as ``preload-lockless`` with the caller's gfp for the fill.
* ``atomic`` (:mod:`.atomic`): a counterfactual: GFP_ATOMIC for the split.

In every preload strategy an empty slot at split time falls back to GFP_NOWAIT,
as the kernel does; such a split counts as a ``preload_miss``, and by who missed
(``Vmalloc.split_nowait``): ``preload_race_misses`` (alloc_vmap_area, its CPU held
an object at the check), ``preload_fill_misses`` (alloc_vmap_area, it held none)
or ``pcpu_split_nowait`` (a percpu carve, in every strategy).  More strategies
join the registry from a file (``--plugin FILE.py``) or the ``vmsim.strategies``
entry-point group; see :mod:`sim.engine.plugins` and examples/preload_two.py.
"""

from __future__ import annotations

from sim.kernel.mm.vmalloc.strategies.atomic import AtomicSplit
from sim.kernel.mm.vmalloc.strategies.base import (
    STRATEGIES,
    SplitHost,
    SplitStrategy,
    make_strategy,
    strategy_class,
    unknown_strategy_message,
)
from sim.kernel.mm.vmalloc.strategies.nowait import NowaitSplit
from sim.kernel.mm.vmalloc.strategies.preload import PreloadSplit
from sim.kernel.mm.vmalloc.strategies.preload_gfp import PreloadGfpSplit
from sim.kernel.mm.vmalloc.strategies.preload_lockless import PreloadLocklessSplit

__all__ = [
    "STRATEGIES",
    "AtomicSplit",
    "NowaitSplit",
    "PreloadGfpSplit",
    "PreloadLocklessSplit",
    "PreloadSplit",
    "SplitHost",
    "SplitStrategy",
    "make_strategy",
    "strategy_class",
    "unknown_strategy_message",
]
