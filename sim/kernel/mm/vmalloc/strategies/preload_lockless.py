"""``preload-lockless``: the v5.5 preload, checked with preemption on.

Models ``alloc_vmap_area`` after "mm/vmalloc: remove preempt_disable/enable when do
preloading" (v5.5; commonly cited as 81f1ba586e39, a hash the research notes could not
confirm): the CPU's ``ne_fit_preload_node`` is checked with preemption on, the fill is a
GFP_KERNEL ``kmem_cache_alloc_node``, and the filled object is installed with
``__this_cpu_cmpxchg`` once the lock is held. A preemption or migration between the check
and the lock can leave the lock-holding CPU without an object: the split then falls back to
GFP_NOWAIT (a ``preload_miss``, and a ``preload_race_miss`` when the check had seen the slot full
and so skipped the fill).  Under preemption none or voluntary there is no preemption point
between the check and ``spin_lock`` (which disables preemption), so no race miss can happen.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sim.kernel.mm.vmalloc.strategies.base import SplitHost
from sim.kernel.mm.vmalloc.strategies.preload import PreloadSplit
from sim.kernel.sched.cpu import Task


class PreloadLocklessSplit(PreloadSplit):
    """v5.5 (81f1ba586e39): check with preemption on, install under the lock."""

    name = "preload-lockless"
    commit = "81f1ba586e39 (v5.5)"
    colour = "#009E73"
    order = 30

    def lock_for_alloc(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, None]:
        sched = vm.sched
        pva = None
        if self.ne_fit_preload_node[task.cpu] is None:
            pva = yield from self.fill(vm, task, self.fill_gfp(gfp))
        yield from sched.run(task, vm.params.t_check_lock)  # a preemption point before the lock
        yield from vm.free_lock.lock(task)
        if pva is not None:
            self.install(vm, task, pva)
