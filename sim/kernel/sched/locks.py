"""Kernel locks on top of the scheduler: ``spinlock_t`` and ``struct mutex``.

A spinlock disables preemption while held and its waiters spin on their CPUs;
under the ``rt`` preemption model it becomes a sleeping lock that keeps
preemption on and only disables migration (PREEMPT_RT's rt_mutex-based
spinlock_t).  A mutex sleeps.  Both record wait and hold times in the metrics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.sched.cpu import Scheduler, Task


class SpinLock:
    """``spinlock_t``: spinning waiters with preemption off while held.

    Under the ``rt`` model it is an rt_mutex-based sleeping lock: taking it may
    sleep (so ``might_sleep`` applies), preemption stays on, migration is off.
    Waiters get the lock in FIFO order, as with queued spinlocks.
    """

    def __init__(self, sched: Scheduler, name: str) -> None:
        self.sched = sched
        self.name = name
        self.holder: Task | None = None
        self.waiters: deque[tuple[Task, eventloop.Event, float]] = deque()  # task, its hand-over, since when
        self._since = 0.0

    def lock(self, task: Task) -> Generator[Any, Any, None]:
        """``spin_lock``."""
        sched = self.sched
        rt = sched.model == "rt"
        if rt:
            sched.might_sleep(task, f"spin_lock({self.name})")
            task.migrate_disabled += 1
        else:
            task.preempt_count += 1
        if self.holder is None:
            self.holder = task
            # env._now is SimPy's clock without the ``now`` property call (a hot path)
            self._since = sched.env._now
            return
        start = sched.env._now
        event = sched.env.event()
        self.waiters.append((task, event, start))
        if rt:
            sched._block(task)
            yield event
            yield from sched._wake(task)
        else:
            yield event  # spinning: the CPU stays busy with this task
        sched.metrics.add("lock_contended:" + self.name)
        sched.metrics.add_time("lock_wait:" + self.name, sched.env._now - start)

    def unlock(self, task: Task) -> Generator[Any, Any, None]:
        """``spin_unlock``: hand the lock to the first waiter, re-enable preemption."""
        if self.holder is not task:
            raise RuntimeError(f"{task!r} unlocks {self.name} held by {self.holder!r}")
        sched = self.sched
        sched.metrics.add_time("lock_hold:" + self.name, sched.env._now - self._since)
        if self.waiters:
            nxt, event, _ = self.waiters.popleft()
            self.holder = nxt
            self._since = sched.env._now
            event.succeed()
        else:
            self.holder = None
        if sched.model == "rt":
            task.migrate_disabled -= 1
            return
        yield from sched.preempt_enable(task)

    def waited_since(self, t0: float) -> float:
        """Seconds the tasks waiting now have waited since ``t0`` (each from ``t0`` or from
        when it began to wait, whichever is later)."""
        now = self.sched.env._now
        return sum(now - max(t0, since) for _, _, since in self.waiters)

    def is_contended(self) -> bool:
        """``spin_is_contended``: another task waits for the lock."""
        return bool(self.waiters)

    def cond_resched_lock(self, task: Task) -> Generator[Any, Any, bool]:
        """``cond_resched_lock`` (``__cond_resched_lock``, kernel/sched/core.c v5.3).

        Drop the lock and take it again, behind its waiters, when a reschedule
        is pending on this CPU or, under CONFIG_PREEMPT, when another task
        spins for it (``spin_needbreak``; 0 without CONFIG_PREEMPT, and 0 for
        PREEMPT_RT's sleeping spinlock_t, whose holder is preemptible anyway).
        With a reschedule pending the holder schedules in between.  True if
        the lock was dropped.
        """
        sched = self.sched
        cpu = sched.cpus[task.cpu]
        resched = bool(cpu.runqueue) and sched.env._now >= cpu.resched_at
        if not resched and not (sched.model == "full" and self.is_contended()):
            return False
        yield from self.unlock(task)
        if resched:
            yield from sched.cond_resched(task)  # preempt_schedule_common
        yield from self.lock(task)
        return True


class Mutex:
    """``struct mutex``: a sleeping lock; taking it may sleep."""

    def __init__(self, sched: Scheduler, name: str) -> None:
        self.sched = sched
        self.name = name
        self.holder: Task | None = None
        self.waiters: deque[tuple[Task, eventloop.Event]] = deque()

    def trylock(self, task: Task) -> bool:
        """``mutex_trylock``: take the mutex if it is free; never sleeps."""
        if self.holder is None:
            self.holder = task
            return True
        return False

    def lock(self, task: Task) -> Generator[Any, Any, None]:
        """``mutex_lock``: might_sleep, then wait for the holder to release."""
        sched = self.sched
        sched.might_sleep(task, f"mutex_lock({self.name})")
        if self.holder is None:
            self.holder = task
            return
        event = sched.env.event()
        self.waiters.append((task, event))
        start = sched.env._now
        sched._block(task)
        yield event
        yield from sched._wake(task)
        sched.metrics.add_time("lock_wait:" + self.name, sched.env._now - start)

    def unlock(self, task: Task) -> None:
        """``mutex_unlock``: pass ownership to the first waiter and wake it."""
        if self.holder is not task:
            raise RuntimeError(f"{task!r} unlocks {self.name} held by {self.holder!r}")
        if self.waiters:
            nxt, event = self.waiters.popleft()
            self.holder = nxt
            event.succeed()
        else:
            self.holder = None
