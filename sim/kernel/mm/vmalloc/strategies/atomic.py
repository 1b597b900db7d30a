"""``atomic``: a counterfactual; the split allocates with GFP_ATOMIC under the lock.

No kernel did this: it is ``nowait`` (v5.2's ``adjust_va_to_fit_type``) with GFP_ATOMIC
(ALLOC_HIGH | ALLOC_HARDER) instead of GFP_NOWAIT, so the split may dip below the zone's min
the way atomic allocations do, to ask what the reserves alone would have bought.
"""

from __future__ import annotations

from sim.kernel.mm.gfp import GFP_ATOMIC
from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.mm.vmalloc.strategies.base import SplitHost
from sim.kernel.mm.vmalloc.strategies.nowait import NowaitSplit
from sim.kernel.sched.cpu import Task


class AtomicSplit(NowaitSplit):
    """Counterfactual: GFP_ATOMIC for the split (ALLOC_HIGH | ALLOC_HARDER)."""

    name = "atomic"
    commit = "counterfactual"
    colour = "#E69F00"
    order = 50

    def split_object(self, vm: SplitHost, task: Task) -> VmapArea | None:
        return vm.split_nowait(task, GFP_ATOMIC)
