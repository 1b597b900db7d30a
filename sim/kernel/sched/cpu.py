"""CPUs, tasks and preemption: where kernel code paths run and when they move.

Each task is a SimPy process whose body is a generator of kernel code paths.
A task holds one CPU while it runs; others wait in that CPU's runqueue.
Code uses CPU time with ``yield from sched.run(task, seconds)`` and blocks with
``sleep``/``wait_event``.  Preemption is explicit, as in the kernel:

* ``none``: a task leaves its CPU only when it sleeps or calls ``cond_resched``
  with a reschedule pending (PREEMPT_NONE);
* ``voluntary``: also at ``might_resched`` points, the kernel's
  ``might_sleep()`` under PREEMPT_VOLUNTARY;
* ``full``: at every preemption point where the preempt count is zero (the end
  of a ``run`` segment stands for the interrupt return, plus
  ``preempt_enable``) (CONFIG_PREEMPT);
* ``rt``: as ``full``, and ``spinlock_t`` becomes a sleeping lock that keeps
  preemption enabled and only disables migration (PREEMPT_RT).

A CPU runs its waiting tasks in arrival order, or with ``pick="vruntime"`` in
CFS's virtual-runtime order (see :class:`SchedParams`).

A reschedule is pending on a CPU when another task waits there and either the
running task's CFS slice has ended at a scheduler tick, or a task woke up there
after the running one had run for the wake-up granularity (``check_preempt_wakeup``).
Ticks are evaluated lazily: no event is scheduled per tick.

Migration happens where the kernel allows it: on wake-up (``select_task_rq``:
an idle CPU if the previous one is busy, or another CPU with probability
``p_migrate_on_wake``; with ``wake_affine`` a parent woken by its exiting child
goes to the child's CPU), on preemption (``p_migrate_on_preempt``, standing for
load balancing of a preempted task), and when a CPU goes idle and pulls a
waiting task (``newidle_balance``).  Pinned tasks never move.  Per-CPU data is
read through ``task.cpu`` at the instant of the read.

A sleep of any kind while the preempt count is above zero is recorded as a BUG
event ("sleeping function called from invalid context"), as ``might_sleep``
reports it, with the task, CPU and call site.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.mm_types import MemoryOwner
from sim.record.metrics import Metrics

PREEMPT_MODELS = ("none", "voluntary", "full", "rt")
FORK_BALANCE = ("least_loaded", "idle_or_local")  # SchedParams.fork_balance
PICK = ("fifo", "vruntime")  # SchedParams.pick


@dataclass(frozen=True)
class SchedParams:
    """Scheduler parameters, kernel defaults (kernel/sched/fair.c v5.3, HZ=250).

    The CFS periods are scaled by 1 + ilog2(min(ncpus, 8)) as with the default
    SCHED_TUNABLESCALING_LOG.
    """

    hz: int = 250
    sched_latency: float = 6e-3
    min_granularity: float = 0.75e-3
    wakeup_granularity: float = 1e-3
    p_migrate_on_wake: float = 0.3
    p_migrate_on_preempt: float = 0.25
    # Every CPU cost (``run``, kswapd's reclaim work, the pace of refaults) is multiplied
    # by this: a guest under QEMU's TCG runs 58-71x slower than the hardware the costs
    # were estimated on.  Calibrated per machine from the guest's unpressured fork rate
    # (docs/validation.md).
    cpu_slowdown: float = 1.0
    # Where a forked child starts.  "least_loaded": the CPU with the fewest tasks (the
    # parent's on a tie).  "idle_or_local": an idle CPU if there is one, else the
    # parent's, which is what find_idlest_group's load comparison (PELT averages and
    # imbalance_pct 117, kernel/sched/fair.c 5.3 to 6.1) gives when every CPU is busy
    # with similar load; measured against a 6.1 guest's stack cache hit rate
    # (docs/validation.md).
    fork_balance: str = "least_loaded"
    # Which waiting task a CPU runs next.  "fifo": the one that has waited longest.
    # "vruntime": CFS's leftmost (least virtual runtime, nice 0), with the placement of
    # kernel/sched/fair.c 5.3 to 6.1: a forked child starts one slice behind the
    # queue (task_fork_fair, place_entity with START_DEBIT), a woken task at most half a
    # latency ahead of it (GENTLE_FAIR_SLEEPERS), and a woken task asks for the CPU
    # when it is a wake-up granularity of vruntime behind the running one
    # (check_preempt_wakeup).  Measured against a 6.1 guest's kernel stacks in use
    # (docs/validation.md).
    pick: str = "fifo"
    # A task woken by another's exit (a parent in wait4: do_notify_parent wakes it with
    # WF_SYNC) goes to the waker's CPU when no CPU is idle, as select_task_rq_fair's
    # wake_affine gives with similar loads (kernel/sched/fair.c 5.3 to 6.1), unless the
    # random move that stands for load balancing (p_migrate_on_wake) took it first;
    # without it such a task stays on its own CPU unless that one is busy and another idle.
    wake_affine: bool = False


class Task:
    """A schedulable entity (``struct task_struct``, the fields the model needs)."""

    __slots__ = (
        "_dispatch",
        "cpu",
        "exit_notify",
        "killed",
        "kthread",
        "migrate_disabled",
        "name",
        "on_exit",
        "oom_victim",
        "owner",
        "pf_memalloc",
        "pid",
        "pinned",
        "preempt_count",
        "process",
        "rt",
        "state",
        "vruntime",
    )

    def __init__(self, pid: int, name: str, cpu: int, pinned: bool, kthread: bool, rt: bool) -> None:
        self.pid = pid
        self.name = name
        self.cpu = cpu
        self.pinned = pinned
        self.kthread = kthread
        self.rt = rt
        self.preempt_count = 0
        self.migrate_disabled = 0
        self.oom_victim = False
        self.pf_memalloc = False
        self.killed = False
        self.owner: MemoryOwner | None = None  # the process charged for its memory (mm_struct)
        self.state = "new"
        self.process: eventloop.Process | None = None
        self.on_exit: list[Callable[[Task], None]] = []
        self._dispatch: eventloop.Event | None = None
        self.vruntime = 0.0  # pick="vruntime": se.vruntime, absolute on the task's CPU
        self.exit_notify: eventloop.Event | None = None  # pick="vruntime": see Scheduler.exit_event

    def __repr__(self) -> str:
        return f"Task({self.pid}:{self.name} on cpu{self.cpu})"


class CPU:
    """One CPU: the running task, its runqueue, and its per-CPU variables."""

    __slots__ = ("curr", "id", "min_vruntime", "percpu", "resched_at", "runqueue", "slice_start")

    def __init__(self, cpu_id: int) -> None:
        self.id = cpu_id
        self.curr: Task | None = None
        self.runqueue: deque[Task] = deque()
        self.percpu: dict[str, Any] = {}
        self.slice_start = 0.0
        self.resched_at = math.inf
        self.min_vruntime = 0.0  # pick="vruntime": cfs_rq->min_vruntime

    def __repr__(self) -> str:
        return f"CPU({self.id}, curr={self.curr}, waiting={len(self.runqueue)})"


class Scheduler:
    """N CPUs with runqueues and a preemption model (kernel/sched/core.c, fair.c).

    The hottest paths read the clock as ``env._now``: SimPy's ``now`` is a
    property over that attribute, and its call alone was 4% of a run.
    """

    def __init__(
        self,
        env: eventloop.Environment,
        ncpus: int,
        rng: np.random.Generator,
        model: str = "none",
        params: SchedParams | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if ncpus < 1:
            raise ValueError("ncpus must be at least 1")
        if model not in PREEMPT_MODELS:
            raise ValueError(f"preemption model must be one of {PREEMPT_MODELS}, not {model!r}")
        self.env = env
        self.ncpus = ncpus
        self.rng = rng
        self.model = model
        self.preemptible = model in ("full", "rt")
        self.params = params or SchedParams()
        self.metrics = metrics if metrics is not None else Metrics()
        self.cpus = [CPU(i) for i in range(ncpus)]
        factor = 1 + int(math.log2(min(ncpus, 8)))
        self.latency = self.params.sched_latency * factor
        self.min_gran = self.params.min_granularity * factor
        self.wakeup_gran = self.params.wakeup_granularity * factor
        self.tick = 1.0 / self.params.hz
        if not self.params.cpu_slowdown > 0:
            raise ValueError("cpu_slowdown must be positive")
        self.slowdown = self.params.cpu_slowdown
        if self.params.fork_balance not in FORK_BALANCE:
            raise ValueError(f"fork_balance must be one of {FORK_BALANCE}, not {self.params.fork_balance!r}")
        self.fork_local = self.params.fork_balance == "idle_or_local"
        if self.params.pick not in PICK:
            raise ValueError(f"pick must be one of {PICK}, not {self.params.pick!r}")
        self.by_vruntime = self.params.pick == "vruntime"
        self._next_pid = 1

    # -- tasks ---------------------------------------------------------------

    def spawn(
        self,
        name: str,
        body: Callable[[Task], Generator[Any, Any, Any]],
        *,
        cpu: int | None = None,
        pinned: bool = False,
        kthread: bool = False,
        rt: bool = False,
        near: int | None = None,
    ) -> Task:
        """Create a task running ``body(task)``; it starts on ``cpu`` (default: the
        least loaded CPU, the first from ``near``, the forking parent's CPU, on a
        tie, as ``find_idlest_group`` keeps a new task local unless another group
        is less loaded, v5.3) and stays there if ``pinned``."""
        if cpu is None:  # the least loaded CPU, the first from origin on a tie
            n, origin = self.ncpus, near or 0
            cpus = self.cpus
            best_load = sys.maxsize  # above any load
            for k in range(n):
                c = (origin + k) % n
                load = len(cpus[c].runqueue) + (cpus[c].curr is not None)
                if load < best_load:
                    cpu, best_load = c, load
            if best_load and near is not None and self.fork_local:
                cpu = near  # no idle CPU: the child stays with its parent
        assert cpu is not None  # the loop above ran at least once (ncpus >= 1)
        if not 0 <= cpu < self.ncpus:
            raise ValueError(f"cpu {cpu} out of range")
        task = Task(self._next_pid, name, cpu, pinned, kthread, rt)
        self._next_pid += 1
        if self.by_vruntime:
            task.vruntime = self._fork_vruntime(near)
            task.exit_notify = self.env.event()
        task.process = self.env.process(self._task_main(task, body))
        return task

    def _fork_vruntime(self, near: int | None) -> float:
        """``task_fork_fair`` (kernel/sched/fair.c 5.3 to 6.1) on the forking CPU:
        the parent's vruntime (the task running on ``near``), but no less than
        ``min_vruntime`` plus the slice the child would get there (``place_entity``
        with START_DEBIT), as an offset from ``min_vruntime``: the enqueue adds the
        ``min_vruntime`` of the CPU the child starts on."""
        src = self.cpus[near or 0]
        parent = src.curr if near is not None else None
        vruntime = src.min_vruntime + self._slice(len(src.runqueue) + (src.curr is not None) + 1)
        if parent is not None:
            vruntime = max(vruntime, parent.vruntime + self.env._now - src.slice_start)
        return vruntime - src.min_vruntime

    def _task_main(self, task: Task, body: Callable[[Task], Generator[Any, Any, Any]]) -> Generator[Any, Any, Any]:
        task.state = "runnable"
        yield from self._enqueue(task, task.cpu, fork=True)
        result = yield from body(task)
        task.state = "dead"
        if task.exit_notify is not None:
            task.exit_notify.succeed()
            yield self.env.timeout(0)  # the woken waiters queue before this CPU's next pick
        self._switch_out(self.cpus[task.cpu])
        for callback in task.on_exit:
            callback(task)
        return result

    def exit_event(self, task: Task) -> eventloop.Event:
        """What a waiter for ``task``'s exit (``wait4``) waits on.  With
        ``pick="vruntime"`` it fires as ``do_exit`` calls ``exit_notify``, before the
        task's final switch (``do_task_dead``), so that the woken parent is on the
        runqueue when the dying task's CPU picks what runs next (kernel/exit.c 5.3 to
        6.1); otherwise it is the task's end, after that switch."""
        event = task.process if task.exit_notify is None else task.exit_notify
        assert event is not None  # spawn sets the process
        return event

    def nr_running(self, cpu: int) -> int:
        """Tasks running or waiting on ``cpu``."""
        c = self.cpus[cpu]
        return len(c.runqueue) + (c.curr is not None)

    def this_cpu(self, task: Task) -> CPU:
        """The CPU the task is on now (``this_cpu_ptr``)."""
        return self.cpus[task.cpu]

    # -- running and preemption ---------------------------------------------

    def run(self, task: Task, seconds: float) -> Iterable[Any]:
        """Use ``seconds`` of CPU time, then pass a preemption point
        (an interrupt return under the preemptible models); use with ``yield from``.

        Without preemption nothing follows the CPU time, so the timeout is
        returned in a tuple instead of a generator: the scheduler's most
        frequent call then creates no generator and adds no frame to the chain
        that every resumption of the task passes through."""
        if not self.preemptible:
            return (self.env.timeout(seconds * self.slowdown),)
        return self._run_preemptible(task, seconds * self.slowdown)

    def _run_preemptible(self, task: Task, seconds: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(seconds)
        if task.preempt_count == 0:
            cpu = self.cpus[task.cpu]
            if cpu.runqueue and self.env._now >= cpu.resched_at:
                yield from self._preempt(task, cpu)

    def cond_resched(self, task: Task) -> Iterable[Any]:
        """Give up the CPU if a reschedule is pending (``cond_resched``); use
        with ``yield from``.

        A plain function, not a generator: almost every call finds nothing to
        do and returns an empty tuple, which costs far less than creating and
        running a generator (this is one of the hottest calls of a run)."""
        if task.preempt_count == 0:
            cpu = self.cpus[task.cpu]
            if cpu.runqueue and self.env._now >= cpu.resched_at:
                return self._preempt(task, cpu)
        return ()

    def might_resched(self, task: Task, site: str) -> Iterable[Any]:
        """``might_sleep()``: the atomic-context check, and under PREEMPT_VOLUNTARY
        (and the preemptible models) a voluntary preemption point (``yield from``)."""
        self.might_sleep(task, site)
        if self.model != "none":
            return self.cond_resched(task)
        return ()

    def preempt_disable(self, task: Task) -> None:
        task.preempt_count += 1

    def preempt_enable(self, task: Task) -> Iterable[Any]:
        """Drop the preempt count; at zero a pending reschedule preempts now
        (``yield from``; a plain function like :meth:`cond_resched`)."""
        if task.preempt_count <= 0:
            raise RuntimeError(f"preempt_enable underflow in {task!r}")
        task.preempt_count -= 1
        if task.preempt_count == 0 and self.preemptible:
            cpu = self.cpus[task.cpu]
            if cpu.runqueue and self.env._now >= cpu.resched_at:
                return self._preempt(task, cpu)
        return ()

    def _preempt(self, task: Task, cpu: CPU) -> Iterable[Any]:
        """Put the running task back on a runqueue and run the next one (``yield from``)."""
        self.metrics.add("preemptions")
        target = cpu.id
        if not task.pinned and not task.migrate_disabled and self.ncpus > 1:
            if self.rng.random() < self.params.p_migrate_on_preempt:
                target = self._other_cpu(cpu.id)
        self._switch_out(cpu)
        return self._enqueue(task, target)

    # -- sleeping ------------------------------------------------------------

    def might_sleep(self, task: Task, site: str) -> bool:
        """Record a BUG event if ``task`` may not sleep here (``might_sleep``).

        Returns True when the context is valid.
        """
        if task.preempt_count > 0:
            self.metrics.add("sleep_in_atomic_bugs")
            self.metrics.event(
                "bug_sleeping_in_atomic",
                self.env.now,
                task=task.name,
                pid=task.pid,
                cpu=task.cpu,
                site=site,
                preempt_count=task.preempt_count,
                message="BUG: sleeping function called from invalid context",
            )
            return False
        return True

    def sleep(self, task: Task, seconds: float, site: str) -> Generator[Any, Any, None]:
        """Block for ``seconds`` (a timed sleep); the task may wake on another CPU."""
        self.might_sleep(task, site)
        self._block(task)
        yield self.env.timeout(seconds)
        yield from self._wake(task)

    def wait_event(
        self,
        task: Task,
        event: eventloop.Event,
        site: str,
        timeout: float | None = None,
        waker: Task | None = None,
    ) -> Generator[Any, Any, bool]:
        """Block until ``event`` fires or ``timeout`` passes; True if it fired.
        ``waker``: the task whose exit fires ``event`` (``wake_affine``)."""
        self.might_sleep(task, site)
        if event.triggered:
            return True
        self._block(task)
        if timeout is None:
            yield event
            fired = True
        else:
            yield event | self.env.timeout(timeout)
            fired = event.triggered
        yield from self._wake(task, waker if fired else None)
        return fired

    def _block(self, task: Task) -> None:
        task.state = "sleeping"
        self._switch_out(self.cpus[task.cpu])

    def _wake(self, task: Task, waker: Task | None = None) -> Iterable[Any]:
        """Choose the CPU a woken task runs on (``select_task_rq_fair``) and queue it
        (``yield from``).  With ``wake_affine``, a task woken by ``waker``'s exit
        goes to the waker's CPU (``wake_affine``), or, if that one is busy, to its
        own if idle, else to an idle CPU if any (``select_idle_sibling``)."""
        prev = task.cpu
        target = prev
        if not task.pinned and not task.migrate_disabled and self.ncpus > 1:
            if self.rng.random() < self.params.p_migrate_on_wake:
                target = self._other_cpu(prev)
            elif waker is not None and self.params.wake_affine:
                target = waker.cpu
                if not self._is_idle(target) and not self._is_idle(prev):
                    idle = [c.id for c in self.cpus if c.curr is None and not c.runqueue]
                    if idle:
                        target = idle[int(self.rng.integers(len(idle)))]
                elif not self._is_idle(target):
                    target = prev
            elif self.cpus[prev].curr is not None:
                idle = [c.id for c in self.cpus if c.curr is None and not c.runqueue]
                if idle:
                    target = idle[int(self.rng.integers(len(idle)))]
        task.state = "runnable"
        return self._enqueue(task, target, wakeup=True)

    def _is_idle(self, cpu_id: int) -> bool:
        c = self.cpus[cpu_id]
        return c.curr is None and not c.runqueue

    def _other_cpu(self, cpu_id: int) -> int:
        """A random CPU other than ``cpu_id``, preferring idle ones."""
        idle = [c.id for c in self.cpus if c.id != cpu_id and c.curr is None and not c.runqueue]
        choices = idle or [i for i in range(self.ncpus) if i != cpu_id]
        return choices[int(self.rng.integers(len(choices)))]

    # -- dispatch ------------------------------------------------------------

    def _enqueue(self, task: Task, cpu_id: int, wakeup: bool = False, fork: bool = False) -> Iterable[Any]:
        """Make ``task`` run on ``cpu_id``: at once if the CPU is free, else
        after waiting in its runqueue (from where another CPU may pull it).
        A woken task asks for the CPU at once if the running task has had its
        wake-up granularity (``check_preempt_wakeup``).  Use with ``yield
        from``: the result is empty, or the dispatch event to wait for (a
        plain function, as nothing follows the wait).

        With ``pick="vruntime"`` the runqueue is kept in vruntime order (ties
        in arrival order), ``fork`` places a new task (``task_fork_fair``) and
        ``wakeup`` a woken one (``place_entity``), and the wake-up preemption
        test compares vruntimes."""
        cpu = self.cpus[cpu_id]
        if (cpu.curr is not None or cpu.runqueue) and not task.pinned and not task.migrate_disabled:
            idle = self._idle_cpu_after(cpu_id)  # an idle CPU balances it over within a tick
            if idle is not None:
                cpu = idle
                cpu_id = idle.id
        if self.by_vruntime:
            self._place(task, cpu, wakeup, fork)
        if cpu_id != task.cpu:
            self.metrics.add("migrations")
            task.cpu = cpu_id
        if cpu.curr is None and not cpu.runqueue:
            self._set_curr(cpu, task)
            return ()
        task._dispatch = dispatch = self.env.event()
        if self.by_vruntime:
            self._insert_by_vruntime(cpu, task)
        else:
            cpu.runqueue.append(task)
        if cpu.curr is not None:
            self._arm_slice(cpu)
            if self.by_vruntime:
                if wakeup or fork:  # check_preempt_wakeup (WF_FORK included)
                    curr_vruntime = cpu.curr.vruntime + self.env._now - cpu.slice_start
                    if curr_vruntime - task.vruntime > self.wakeup_gran:
                        cpu.resched_at = self.env._now
            elif wakeup and self.env._now - cpu.slice_start >= self.wakeup_gran:
                cpu.resched_at = self.env._now
        return (dispatch,)

    # -- CFS order (pick="vruntime") ------------------------------------------

    def _slice(self, nr_running: int) -> float:
        """``sched_slice`` of one of ``nr_running`` nice-0 tasks (``__sched_period``,
        BASE_SLICE), which is also its ``sched_vslice``."""
        nr_latency = self.latency / self.min_gran
        period = nr_running * self.min_gran if nr_running > nr_latency else self.latency
        return max(period / nr_running, self.min_gran)

    def _place(self, task: Task, cpu: CPU, wakeup: bool, fork: bool) -> None:
        """Set the vruntime of a task joining ``cpu``'s runqueue (kernel/sched/fair.c
        5.3 to 6.1): a new task's offset (:meth:`_fork_vruntime`) from this
        ``min_vruntime``; a task from another CPU keeps its lead or lag over
        ``min_vruntime`` (``migrate_task_rq_fair``); a woken task is then moved up to
        no more than half a latency before ``min_vruntime`` (``place_entity``,
        GENTLE_FAIR_SLEEPERS: a sleeper's credit)."""
        self._update_min_vruntime(cpu)
        if fork:
            task.vruntime += cpu.min_vruntime
            return
        if cpu.id != task.cpu:
            task.vruntime += cpu.min_vruntime - self.cpus[task.cpu].min_vruntime
        if wakeup:
            task.vruntime = max(task.vruntime, cpu.min_vruntime - self.latency / 2)

    def _insert_by_vruntime(self, cpu: CPU, task: Task) -> None:
        """Put ``task`` in ``cpu``'s runqueue after every task with a vruntime not above its own."""
        queue = cpu.runqueue
        key = task.vruntime
        for i in range(len(queue) - 1, -1, -1):
            if queue[i].vruntime <= key:
                queue.insert(i + 1, task)
                return
        queue.appendleft(task)

    def _update_min_vruntime(self, cpu: CPU) -> None:
        """``update_min_vruntime``: the least vruntime of the running and the waiting
        tasks, never moving back."""
        candidates = []
        if cpu.curr is not None:
            candidates.append(cpu.curr.vruntime + self.env._now - cpu.slice_start)
        if cpu.runqueue:
            candidates.append(cpu.runqueue[0].vruntime)
        if candidates:
            cpu.min_vruntime = max(cpu.min_vruntime, min(candidates))

    def _idle_cpu_after(self, cpu_id: int) -> CPU | None:
        """The first idle CPU after ``cpu_id`` in circular order, if any."""
        n = self.ncpus
        for k in range(1, n):
            c = self.cpus[(cpu_id + k) % n]
            if c.curr is None and not c.runqueue:
                return c
        return None

    def _set_curr(self, cpu: CPU, task: Task) -> None:
        cpu.curr = task
        task.state = "running"
        task.cpu = cpu.id
        cpu.slice_start = self.env._now
        cpu.resched_at = math.inf
        if cpu.runqueue:
            self._arm_slice(cpu)

    def _arm_slice(self, cpu: CPU) -> None:
        """Set the tick at which the running task's slice ends (``sched_slice``
        checked by ``check_preempt_tick``), given the tasks now on the CPU; a
        reschedule already due stays due."""
        now = self.env._now
        if cpu.resched_at <= now:  # already due: no later tick can move it earlier
            return
        slice_len = self.latency / (len(cpu.runqueue) + 1)
        if slice_len < self.min_gran:
            slice_len = self.min_gran
        end = cpu.slice_start + slice_len
        if end < now:  # ticks already past saw nobody waiting
            end = now
        at = math.ceil(end / self.tick - 1e-9) * self.tick
        if at < cpu.resched_at:
            cpu.resched_at = at

    def _switch_out(self, cpu: CPU) -> None:
        """The running task leaves ``cpu``; the next waiting task gets it, or
        an idle CPU pulls a waiting task from the busiest runqueue."""
        if self.by_vruntime and cpu.curr is not None:
            self._update_min_vruntime(cpu)  # update_curr, with the leaving task still on the CPU
            cpu.curr.vruntime += self.env._now - cpu.slice_start
        cpu.curr = None
        self.metrics.add("context_switches")
        nxt: Task | None
        if cpu.runqueue:
            nxt = cpu.runqueue.popleft()
        else:
            nxt = self._pull_task(cpu)
            if nxt is None:
                cpu.resched_at = math.inf
                return
        self._set_curr(cpu, nxt)
        event = nxt._dispatch
        nxt._dispatch = None
        assert event is not None
        event.succeed()

    def _pull_task(self, cpu: CPU) -> Task | None:
        """``newidle_balance``: take a movable waiting task from the busiest CPU
        that has one (a runqueue of pinned tasks only is passed over).

        CPUs are tried longest runqueue first, ties by CPU id.  The usual case
        (nothing waiting anywhere, or a movable task on the busiest CPU) is
        settled in one pass over the CPUs; only a busiest runqueue of pinned
        tasks needs the full order (a sort on every idle switch was about 5%
        of a lightly loaded fork storm's profile)."""
        busiest = None
        longest = 0
        for c in self.cpus:
            if len(c.runqueue) > longest:
                busiest, longest = c, len(c.runqueue)
        if busiest is None:
            return None
        task = self._take_movable(busiest, cpu)
        if task is not None:
            return task
        # the rest longest first (stable sort: ties by CPU id); the first is the busiest just tried
        for other in sorted(self.cpus, key=lambda c: -len(c.runqueue))[1:]:
            if not other.runqueue:
                return None
            task = self._take_movable(other, cpu)
            if task is not None:
                return task
        return None

    def _take_movable(self, busiest: CPU, cpu: CPU) -> Task | None:
        """Move the first task of ``busiest``'s runqueue that may migrate to ``cpu``."""
        for task in busiest.runqueue:
            if not task.pinned and not task.migrate_disabled:
                busiest.runqueue.remove(task)
                if not busiest.runqueue:
                    busiest.resched_at = math.inf  # alone again: no tick will ask it to yield
                self.metrics.add("migrations")
                if self.by_vruntime:  # its lead or lag over min_vruntime goes with it
                    task.vruntime += cpu.min_vruntime - busiest.min_vruntime
                task.cpu = cpu.id
                return task
        return None
