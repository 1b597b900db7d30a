"""``stress-ng --fork N``: N workers, each forking a child and waiting for it.

This is the workload of both 2019 reproductions and of Samsung's 2023 report:
every fork that finds no cached stack vmallocs a thread stack, 16 KiB plus a
guard page at THREAD_ALIGN = 16 KiB, which is an NE_FIT split: a stack ends 4 KiB
past a 16 KiB boundary, so the next one starts inside the free block after it
(``classify_va_fit_type``, mm/vmalloc.c v5.3).

One fork, after kernel/fork.c v5.3:

* ``copy_process`` -> ``dup_task_struct`` -> ``alloc_thread_stack_node``:
  first this CPU's cache of ``NR_CACHED_STACKS`` stacks (``this_cpu_xchg``),
  else ``__vmalloc_node_range(THREAD_SIZE, THREAD_ALIGN, VMALLOC_START,
  VMALLOC_END, THREADINFO_GFP & ~__GFP_ACCOUNT)``; a failure is -ENOMEM;
* the rest of the per-fork bill (task_struct and other slab, mm and VMAs,
  page tables; estimated sizes) as GFP_KERNEL pages in one step, each
  page passing the watermark test it would pass alone;
* ``wake_up_new_task``: the child starts on the least loaded CPU (the
  parent's on a tie), runs briefly and exits; its page tables go at exit, and
  its stack, at the final switch on the CPU where it died, into that CPU's
  stack cache if a slot is free, else to ``vfree_atomic``;
* the parent waits for its children (``wait4``; woken by the child's
  ``exit_notify``, see ``Scheduler.exit_event`` and ``sched.wake_affine``),
  reaps them (task_struct and slab pages), and forks again.  A failed fork is counted and the worker backs off briefly,
  as stress-ng treats ENOMEM as benign.  Workers are OOM-killable
  (oom_score_adj 1000).  By default a killed worker starts again after
  ``restart_delay``; stress-ng 0.15 (stress-fork.c) does not restart a fork
  instance, which ``restart: false`` models.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sim.kernel.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_THREAD_STACK
from sim.kernel.mm.oom_kill import MemoryOwner
from sim.kernel.mm.vmalloc.space import PAGE_SIZE, VMALLOC_END, VMALLOC_START
from sim.schema.limits import MAX_TASKS
from sim.schema.units import Duration, Size
from sim.workloads.base import WorkloadSpec

THREAD_SIZE = 16 * 1024
THREAD_ALIGN = THREAD_SIZE
STACK_CACHE = "cached_stacks"


class ForkStormSpec(WorkloadSpec):
    """Parameters of ``stress-ng --fork N``.  Defaults: ``fork_max``, ``oom_score_adj`` and
    ``stack_cache`` as stress-ng and kernel/fork.c set them; the CPU times and page counts are
    estimates for an x86_64 fork with PTI, not measured."""

    kind: Literal["fork_storm"] = "fork_storm"
    workers: int = Field(16, ge=1, le=MAX_TASKS, description="stress-ng --fork N (at most PID_MAX_LIMIT)")
    fork_max: int = Field(1, ge=1, le=MAX_TASKS, description="children forked per iteration (--fork-max)")
    fork_cpu: Duration = Field(100e-6, description="parent CPU time in fork() besides the stack")
    child_cpu: Duration = Field(50e-6, description="the child's CPU time until it has exited")
    pagetable_pages: int = Field(14, ge=0, description="page tables of a child, PTI pgd included")
    slab_pages: int = Field(6, ge=0, description="task_struct, mm, VMAs, signal and files, in pages")
    worker_rss: Size = Field(1 << 20, description="anon memory of each worker process")
    stack_cache: int = Field(2, ge=0, description="NR_CACHED_STACKS per CPU")
    oom_score_adj: int = Field(1000, ge=-1000, le=1000)
    restart: bool = Field(True, description="start a killed worker again (stress-ng 0.15 does not: false)")
    restart_delay: Duration = Field(0.01, description="a killed worker starts again after this")
    enomem_backoff: Duration = Field(1e-3, description="pause after a failed fork")
    rcu_grace: Duration = Field(8e-3, description="RCU grace period before a stack's 2nd try at the cache; estimate")


class ForkStorm:
    """The running fork storm."""

    def __init__(self, spec: ForkStormSpec) -> None:
        self.spec = spec
        self.m: Any = None

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        for cpu in machine.sched.cpus:
            cpu.percpu.setdefault(STACK_CACHE, [None] * self.spec.stack_cache)
        for i in range(self.spec.workers):
            machine.env.process(self._supervise(i))

    # -- stress-ng's process tree -----------------------------------------------

    def _supervise(self, index: int) -> Generator[Any, Any, None]:
        """stress-ng's parent: start worker ``index`` and, if ``restart``, start it again when killed."""
        env = self.m.env
        if self.spec.start:
            yield env.timeout(self.spec.start)
        while True:
            owner = MemoryOwner(f"stress-ng-fork/{index}", oom_score_adj=self.spec.oom_score_adj)
            task = self.m.spawn(f"stress-ng-fork/{index}", lambda t, o=owner: self._worker(t, o))
            owner.tasks.append(task)
            task.owner = owner
            yield task.process
            if not self.spec.restart:
                return
            self.m.metrics.add("fork_worker_restarts")
            yield env.timeout(self.spec.restart_delay)

    def _worker(self, task: Any, owner: MemoryOwner) -> Generator[Any, Any, None]:
        m, spec = self.m, self.spec
        pa, sched = m.page_alloc, m.sched
        rss = spec.worker_rss // PAGE_SIZE
        got = yield from pa.alloc_pages_bulk(
            task, GFP_HIGHUSER_MOVABLE, rss, pool="anon", owner=owner, site="page_fault"
        )
        while not task.killed:
            children = []
            for _ in range(spec.fork_max):
                child = yield from self._fork(task, owner)
                if child is None:
                    m.metrics.add("fork_enomem")
                    yield from sched.sleep(task, spec.enomem_backoff, "stress-ng backoff")
                    break
                children.append(child)
            for child, slab_pages in children:
                exited = sched.exit_event(child)
                if not exited.triggered:
                    yield from sched.wait_event(task, exited, "wait4", waker=child)
                _release(pa, task.cpu, "slab_unreclaimable", slab_pages, None)  # release_task
            if task.killed:
                break
        _release(pa, task.cpu, "anon", got, owner)

    # -- one fork ---------------------------------------------------------------

    def _fork(self, task: Any, owner: MemoryOwner) -> Generator[Any, Any, tuple[Any, int] | None]:
        """``_do_fork`` up to ``wake_up_new_task``; None is -ENOMEM.

        The order follows ``copy_process``: ``dup_task_struct`` takes the
        task_struct from its slab cache (usually without a page) and then the
        stack; the slab objects of the files, signal, mm and VMAs and the page
        tables of ``copy_mm`` come after the stack.  Charging those pages before
        the stack would make every stack vmalloc follow a GFP_KERNEL allocation
        that had just restored free memory above min, hiding the very failures
        this workload exists to show.
        """
        m, spec = self.m, self.spec
        pa, sched, metrics = m.page_alloc, m.sched, m.metrics
        metrics.add("fork_attempts")
        stack = yield from self._alloc_thread_stack(task)
        if stack is None:
            return None
        slab = yield from pa.alloc_pages_bulk(
            task, GFP_KERNEL, spec.slab_pages, pool="slab_unreclaimable", site="copy_process"
        )
        tables = 0
        if slab == spec.slab_pages:  # GFP_KERNEL falls short only for an OOM victim
            tables = yield from pa.alloc_pages_bulk(
                task, GFP_KERNEL, spec.pagetable_pages, pool="pagetables", owner=owner, site="copy_mm"
            )
        if slab < spec.slab_pages or tables < spec.pagetable_pages:
            _release(pa, task.cpu, "pagetables", tables, owner)
            _release(pa, task.cpu, "slab_unreclaimable", slab, None)
            self._free_thread_stack(task.cpu, stack)
            return None
        yield from sched.run(task, spec.fork_cpu)
        metrics.add("forks")
        child = sched.spawn(f"{task.name}-child", lambda t: self._child(t, stack, tables, owner), near=task.cpu)
        return child, slab

    def _alloc_thread_stack(self, task: Any) -> Generator[Any, Any, Any]:
        """``alloc_thread_stack_node`` (v5.3): a cached stack of this CPU, else vmalloc."""
        cache = self.m.sched.cpus[task.cpu].percpu[STACK_CACHE]
        for i, vm in enumerate(cache):
            if vm is not None:
                cache[i] = None
                self.m.metrics.add("stack_cache_hits")
                return vm
        self.m.metrics.add("stack_vmallocs")
        return (
            yield from self.m.vmalloc.vmalloc_node_range(
                task,
                THREAD_SIZE,
                THREAD_ALIGN,
                VMALLOC_START,
                VMALLOC_END,
                GFP_THREAD_STACK,
                caller="copy_process",
                pool="kernel_stack",
            )
        )

    def _child(self, task: Any, stack: Any, tables: int, owner: MemoryOwner) -> Generator[Any, Any, None]:
        """The child: runs, exits (``exit_mm``), and at its final switch on this
        CPU releases its stack (``free_thread_stack``, v5.3)."""
        m = self.m
        yield from m.sched.run(task, self.spec.child_cpu)
        _release(m.page_alloc, task.cpu, "pagetables", tables, owner)
        self._free_thread_stack(task.cpu, stack)

    def _free_thread_stack(self, cpu: int, stack: Any) -> None:
        """``free_thread_stack``: park the stack in a free slot of ``cpu``'s cache
        (``this_cpu_cmpxchg``), else ``vfree_atomic`` it (v5.3).  From 5.18
        (``profile.stack_free_rcu``, e540bf3162e8) a stack that finds the cache
        full is handed to ``call_rcu`` instead: after a grace period
        ``thread_stack_free_rcu`` tries the same CPU's cache again, then frees it."""
        if self._try_cache(cpu, stack):
            return
        if self.m.profile.stack_free_rcu:
            self.m.metrics.add("stacks_rcu_deferred")
            ev = self.m.env.timeout(self.spec.rcu_grace)
            ev.callbacks.append(lambda _ev: self._thread_stack_free_rcu(cpu, stack))
            return
        self.m.metrics.add("stacks_vfreed")
        self.m.vmalloc.vfree_atomic(cpu, stack)

    def _thread_stack_free_rcu(self, cpu: int, stack: Any) -> None:
        """The RCU callback (softirq on the CPU that queued it): the cache once more, else vfree."""
        if not self._try_cache(cpu, stack):
            self.m.metrics.add("stacks_vfreed")
            self.m.vmalloc.vfree_atomic(cpu, stack)

    def _try_cache(self, cpu: int, stack: Any) -> bool:
        """``try_release_thread_stack_to_cache``: a free slot of ``cpu``'s cache takes the stack."""
        cache = self.m.sched.cpus[cpu].percpu[STACK_CACHE]
        for i, vm in enumerate(cache):
            if vm is None:
                cache[i] = stack
                self.m.metrics.add("stacks_cached")
                return True
        return False


def _release(pa: Any, cpu: int, pool: str, n: int, owner: MemoryOwner | None) -> None:
    """Free ``n`` pages of ``pool``; pages of an owner the OOM reaper has already
    freed are not freed twice."""
    if owner is not None:
        n = min(n, owner.charged[pool])
    if n > 0:
        pa.free_pages(cpu, pool=pool, nr=n, owner=owner)
