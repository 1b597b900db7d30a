"""The OOM killer of Linux 5.3 (mm/oom_kill.c) and the processes it can kill.

A :class:`MemoryOwner` stands for one process (an mm): the page allocator charges
its anon pages, page tables and kernel stacks to it when an allocation names it.
:class:`OomKiller` is called from the GFP_KERNEL slow path with ``oom_lock``
held (see :mod:`sim.kernel.mm.slowpath`): it picks the owner with the highest
``oom_badness``, marks its tasks (``oom_victim``, ``killed``), calls its kill
callback, and after a kill latency (exit or oom_reaper; lognormal, pressure.md
8.1 item 8) gives its anon, page tables and kernel stacks back to the free lists.
While a victim's memory is not yet freed, later invocations kill nobody and
report progress, as ``select_bad_process`` aborts on a pending victim.  An owner
whose tasks have all exited is no candidate; :class:`sim.kernel.mm.pools.MemoryPools`
frees its swap entries when its last task exits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from sim.kernel.mm.gfp import Gfp

if TYPE_CHECKING:
    from sim.kernel.mm.page_alloc import PageAllocator

OWNER_POOLS = ("anon", "pagetables", "kernel_stack")
OOM_SCORE_ADJ_MIN = -1000
_FS = int(Gfp.FS)


class KernelPanic(RuntimeError):
    """The simulated kernel panicked ("System is deadlocked on memory")."""


class MemoryOwner:
    """A process whose memory the OOM killer ranks and frees (``struct mm_struct``)."""

    __slots__ = ("charged", "name", "on_kill", "oom_killed", "oom_score_adj", "reaped", "swap", "tasks", "watched")

    def __init__(
        self, name: str, *, oom_score_adj: int = 0, on_kill: Callable[[MemoryOwner], None] | None = None
    ) -> None:
        self.name = name
        self.charged = dict.fromkeys(OWNER_POOLS, 0)
        self.swap = 0  # anon pages swapped out (MM_SWAPENTS)
        self.oom_score_adj = oom_score_adj
        self.on_kill = on_kill
        self.tasks: list[Any] = []  # the scheduler tasks that use this mm
        self.oom_killed = False
        self.reaped = False  # MMF_OOM_SKIP: its memory is gone
        self.watched = 0  # how many of ``tasks`` MemoryPools watches for their exit

    @property
    def exited(self) -> bool:
        """All its tasks have exited (no task holds the mm: ``find_lock_task_mm`` fails)."""
        return bool(self.tasks) and all(getattr(t, "state", None) == "dead" for t in self.tasks)

    @property
    def pages(self) -> int:
        """Pages charged to this process now."""
        return sum(self.charged.values())

    def badness(self, totalpages: int) -> int | None:
        """``oom_badness`` (5.3): rss + swap entries + page tables, plus oom_score_adj
        times (totalpages / 1000) in integer arithmetic; None if it may not be chosen
        (OOM_SCORE_ADJ_MIN, already killed, or no live task holds the mm)."""
        if self.oom_score_adj == OOM_SCORE_ADJ_MIN or self.oom_killed or self.exited:
            return None
        points = self.charged["anon"] + self.swap + self.charged["pagetables"]
        points += self.oom_score_adj * (totalpages // 1000)
        return max(points, 1)

    def kill(self) -> None:
        """Deliver SIGKILL: the workload's callback decides what its tasks do next."""
        if self.on_kill is not None:
            self.on_kill(self)

    def __repr__(self) -> str:
        return f"MemoryOwner({self.name}, {self.charged}, killed={self.oom_killed})"


class OomKiller:
    """``oom_lock`` and ``out_of_memory`` for the machine."""

    def __init__(self, pa: PageAllocator) -> None:
        self.pa = pa
        self.env = pa.env
        self.metrics = pa.metrics
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
        pa = self.pa
        totalpages = sum(z.managed for z in pa.zones)
        best, best_points = None, 0
        for owner in pa.pools.owners:
            points = owner.badness(totalpages)
            if points is not None and points > best_points:
                best, best_points = owner, points
        return best

    def dump_header(self, task: Any) -> Generator[Any, Any, None]:
        """The OOM report printed under oom_lock (costs CPU time)."""
        seconds = self.pa.params.oom_report_ms / 1000.0
        sched = self.pa.scheduler
        if sched is not None and seconds > 0:
            yield from sched.run(task, seconds)

    def oom_kill_process(self, victim: MemoryOwner, task: Any, order: int) -> None:
        """``oom_kill_process``: mark and kill the victim; its memory is freed after the kill latency."""
        pa = self.pa
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
            trigger=getattr(task, "name", None), order=order, free=pa.nr_free_pages(),
        )  # fmt: skip
        victim.kill()
        pa.reclaim.wake_pfmemalloc_waiters()  # SIGKILL ends killable waits
        lat = pa.params.oom_kill_latency
        delay = pa.rng.lognormal(math.log(lat.median_ms / 1000.0), lat.sigma)
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _ev: self.reap(victim, tasks))

    def reap(self, victim: MemoryOwner, tasks: list[Any]) -> None:
        """Exit / oom_reaper done: anon, page tables and kernel stacks go back to the free lists."""
        cpu = tasks[0].cpu if tasks else 0
        freed = 0
        for pool in OWNER_POOLS:
            n = victim.charged[pool]
            if n:
                self.pa.free_pages(cpu, pool=pool, nr=n, owner=victim)
                freed += n
        self.pa.pools.swap_used -= victim.swap  # its swap entries go too
        victim.swap = 0
        self.pa.pools.owners.pop(victim, None)
        victim.reaped = True
        self.pending.remove(victim)
        self.metrics.add("oom_reaped_pages", freed)
        self.metrics.event("oom_reaped", self.env.now, victim=victim.name, pages=freed)
