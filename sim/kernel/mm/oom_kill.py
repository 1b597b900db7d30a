"""The OOM killer of Linux 5.3 (mm/oom_kill.c) and the processes it can kill.

A :class:`MemoryOwner` (in :mod:`sim.kernel.mm.mm_types`, re-exported here) stands
for one process (an mm): the page allocator charges its anon pages, page tables and
kernel stacks to it when an allocation names it.
:class:`OomKiller` is called from the GFP_KERNEL slow path with ``oom_lock``
held (see :mod:`sim.kernel.mm.slowpath`): it picks the owner with the highest
``oom_badness``, marks its tasks (``oom_victim``, ``killed``), calls its kill
callback, and after a kill latency (exit or oom_reaper; lognormal, an estimate, not
measured, see :class:`sim.kernel.mm.zones.OomKillLatency`) gives its anon, page
tables and kernel stacks back to the free lists.
While a victim's memory is not yet freed, later invocations kill nobody and
report progress, as ``select_bad_process`` aborts on a pending victim.  An owner
whose tasks have all exited is no candidate; :class:`sim.kernel.mm.pools.MemoryPools`
frees its swap entries when its last task exits.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any, Final

import numpy as np
from mypy_extensions import mypyc_attr

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.gfp import Gfp
from sim.kernel.mm.internal import ZoneOps
from sim.kernel.mm.mm_types import OOM_SCORE_ADJ_MIN, OWNER_POOLS, MemoryOwner
from sim.kernel.mm.pools import MemoryPools
from sim.kernel.mm.vmscan import Reclaimer
from sim.kernel.mm.zones import MemoryParams
from sim.kernel.sched.cpu import Scheduler
from sim.record.metrics import Metrics

__all__ = ["OOM_SCORE_ADJ_MIN", "OWNER_POOLS", "KernelPanic", "MemoryOwner", "OomKiller"]
_FS: Final = Gfp.FS


@mypyc_attr(native_class=False)  # mypyc cannot make a native subclass of RuntimeError
class KernelPanic(RuntimeError):
    """The simulated kernel panicked ("System is deadlocked on memory")."""


class OomKiller:
    """``oom_lock`` and ``out_of_memory`` for the machine."""

    def __init__(
        self,
        env: eventloop.Environment,
        zone_ops: ZoneOps,
        pools: MemoryPools,
        reclaim: Reclaimer,
        params: MemoryParams,
        metrics: Metrics,
        rng: np.random.Generator,
        scheduler: Scheduler | None,
    ) -> None:
        self.env = env
        self.zone_ops = zone_ops
        self.pools = pools
        self.reclaim = reclaim  # its throttled tasks are released by a kill
        self.params = params
        self.metrics = metrics
        self.rng = rng  # the page allocator's stream (kill latencies)
        self.scheduler = scheduler  # None: the OOM report costs no CPU time
        self.lock_holder: Any = None  # oom_lock
        self.pending: list[MemoryOwner] = []  # killed, memory not yet freed

    def out_of_memory(self, task: Any, gfp: int, order: int) -> Generator[Any, Any, bool]:
        """``out_of_memory`` (5.3), called with oom_lock held; True means progress."""
        m = self.metrics
        m.add("oom_invoke")
        if getattr(task, "killed", False):  # task_will_free_mem: it is exiting anyway
            task.oom_victim = True
            return True
        if gfp and not gfp & _FS:
            return True
        if self.pending:
            m.add("oom_victim_pending")
            return True
        victim = self.select_bad_process()
        yield from self.dump_header(task)
        if victim is None:
            m.event("oom_panic", self.env.now, message="Out of memory and no killable processes...")
            raise KernelPanic("System is deadlocked on memory")
        self.oom_kill_process(victim, task, order)
        return True

    def select_bad_process(self) -> MemoryOwner | None:
        """``select_bad_process``: the owner with the highest badness (first on a tie)."""
        totalpages = sum(z.managed for z in self.zone_ops.zones)
        best, best_points = None, 0
        for owner in self.pools.owners:
            points = owner.badness(totalpages)
            if points is not None and points > best_points:
                best, best_points = owner, points
        return best

    def dump_header(self, task: Any) -> Generator[Any, Any, None]:
        """The OOM report printed under oom_lock (costs CPU time)."""
        seconds = self.params.oom_report_ms / 1000.0
        sched = self.scheduler
        if sched is not None and seconds > 0:
            yield from sched.run(task, seconds)

    def oom_kill_process(self, victim: MemoryOwner, task: Any, order: int) -> None:
        """``oom_kill_process``: mark and kill the victim; its memory is freed after the kill latency."""
        victim.oom_killed = True
        self.pending.append(victim)
        tasks = list(victim.tasks)
        if getattr(task, "owner", None) is victim and task not in tasks:
            tasks.append(task)
        for t in tasks:
            t.oom_victim = True
            t.killed = True
        self.metrics.add("oom_kill")
        self.metrics.event(
            "oom_kill", self.env.now, victim=victim.name, anon=victim.charged["anon"],
            pagetables=victim.charged["pagetables"], kernel_stack=victim.charged["kernel_stack"],
            trigger=getattr(task, "name", None), order=order, free=self.zone_ops.nr_free_pages(),
        )  # fmt: skip
        victim.kill()
        self.reclaim.wake_pfmemalloc_waiters()  # SIGKILL ends killable waits
        lat = self.params.oom_kill_latency
        delay = self.rng.lognormal(math.log(lat.median_ms / 1000.0), lat.sigma)
        ev = self.env.timeout(delay)
        assert ev.callbacks is not None  # a timeout just made: not processed yet
        ev.callbacks.append(lambda _ev: self.reap(victim, tasks))

    def reap(self, victim: MemoryOwner, tasks: list[Any]) -> None:
        """Exit / oom_reaper done: anon, page tables and kernel stacks go back to the free lists."""
        cpu = tasks[0].cpu if tasks else 0
        freed = 0
        for pool in OWNER_POOLS:
            n = victim.charged[pool]
            if n:
                self.zone_ops.free_pages(cpu, pool=pool, nr=n, owner=victim)
                freed += n
        self.pools.swap_used -= victim.swap  # its swap entries go too
        victim.swap = 0
        self.pools.owners.pop(victim, None)
        victim.reaped = True
        self.pending.remove(victim)
        self.metrics.add("oom_reaped_pages", freed)
        self.metrics.event("oom_reaped", self.env.now, victim=victim.name, pages=freed)
