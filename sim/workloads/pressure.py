"""Memory-pressure generators: anonymous hogs, shmem, and page-cache readers.

They stand for the other tenants of a small machine (the load of stress-ng's
memory stressors, numactl's memhog or mmtests' usemem): a
``stress-ng --vm``/memhog-like process faulting in anonymous memory, tmpfs
pages that only swap can reclaim, and a reader streaming a file through the
page cache (clean file pages that kswapd reclaims fast).  Each faults pages in
chunks with the user-page gfp, taking CPU time at its fault rate; each page of
a chunk passes the watermark test it would pass alone.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sim.kernel.mm.gfp import GFP_HIGHUSER_MOVABLE
from sim.kernel.mm.oom_kill import MemoryOwner
from sim.kernel.mm.vmalloc.space import PAGE_SIZE
from sim.schema.units import Duration, Rate, ShareSize
from sim.workloads.base import WorkloadSpec

CHUNK = 64  # pages faulted per step


class AnonHogSpec(WorkloadSpec):
    """An anonymous-memory consumer (memhog, stress-ng --vm)."""

    kind: Literal["anon_hog"] = "anon_hog"
    size: ShareSize = Field(64 << 20, description="anon memory the process faults in (or a share of RAM, '36%')")
    fault_rate: Rate = Field(3e5, description="pages faulted per second while growing")
    hold: Duration = Field(float("inf"), description="how long it keeps the memory once grown; then it exits")
    oom_score_adj: int = Field(0, ge=-1000, le=1000)
    restart: bool = Field(True, description="start again after an OOM kill or exit")
    restart_delay: Duration = 0.5


class ShmemSpec(WorkloadSpec):
    """tmpfs/shmem pages: reclaimable only with swap, never freed by an OOM kill."""

    kind: Literal["shmem"] = "shmem"
    size: ShareSize = Field(32 << 20, description="shmem pages faulted in (or a share of RAM, '22%')")
    fault_rate: Rate = Field(3e5)


class PageCacheReaderSpec(WorkloadSpec):
    """A reader streaming a file through the page cache (clean file pages)."""

    kind: Literal["page_cache_reader"] = "page_cache_reader"
    rate: Rate = Field(25 << 20, description="bytes read per second")
    mapped: bool = Field(False, description="pages are mapped (hot mapped file, refaulting)")


class AnonHog:
    def __init__(self, spec: AnonHogSpec) -> None:
        self.spec = spec

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        machine.env.process(self._supervise())

    def _supervise(self) -> Generator[Any, Any, None]:
        env, spec = self.m.env, self.spec
        if spec.start:
            yield env.timeout(spec.start)
        generation = 0
        while True:
            sigkill = env.event()  # SIGKILL ends the pause() of a grown hog
            owner = MemoryOwner(
                f"{spec.label}/{generation}",
                oom_score_adj=spec.oom_score_adj,
                on_kill=lambda _o, ev=sigkill: None if ev.triggered else ev.succeed(),
            )
            task = self.m.spawn(owner.name, lambda t, o=owner, ev=sigkill: self._run(t, o, ev))
            owner.tasks.append(task)
            task.owner = owner
            yield task.process
            if not spec.restart:
                return
            generation += 1
            yield env.timeout(spec.restart_delay)

    def _run(self, task: Any, owner: MemoryOwner, sigkill: Any) -> Generator[Any, Any, None]:
        """Fault the memory in, hold it (an interruptible pause that an OOM
        kill ends), free what the OOM reaper has not freed, and exit."""
        pa, sched, spec = self.m.page_alloc, self.m.sched, self.spec
        want = spec.size // PAGE_SIZE
        have = 0
        while have < want and not task.killed:
            n = min(CHUNK, want - have)
            have += yield from pa.alloc_pages_bulk(
                task, GFP_HIGHUSER_MOVABLE, n, pool="anon", owner=owner, site="do_anonymous_page"
            )
            yield from sched.run(task, n / spec.fault_rate)
        if not task.killed and spec.hold > 0:
            yield from sched.wait_event(task, sigkill, "pause", timeout=spec.hold if spec.hold < 1e18 else None)
        left = min(have, owner.charged["anon"])
        if left:
            pa.free_pages(task.cpu, pool="anon", nr=left, owner=owner)


class _OneTask:
    """A pressure generator that is a single task running ``_run`` from ``spec.start``."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        machine.spawn(self.spec.label, self._task)

    def _task(self, task: Any) -> Generator[Any, Any, None]:
        if self.spec.start:
            yield from self.m.sched.sleep(task, self.spec.start, "start")
        yield from self._run(task)

    def _run(self, task: Any) -> Generator[Any, Any, None]:
        raise NotImplementedError


class Shmem(_OneTask):
    spec: ShmemSpec

    def _run(self, task: Any) -> Generator[Any, Any, None]:
        pa, sched, spec = self.m.page_alloc, self.m.sched, self.spec
        want, have = spec.size // PAGE_SIZE, 0
        while have < want:
            n = min(CHUNK, want - have)
            have += yield from pa.alloc_pages_bulk(task, GFP_HIGHUSER_MOVABLE, n, pool="shmem", site="shmem_fault")
            yield from sched.run(task, n / spec.fault_rate)


class PageCacheReader(_OneTask):
    spec: PageCacheReaderSpec

    def _run(self, task: Any) -> Generator[Any, Any, None]:
        pa, sched, spec = self.m.page_alloc, self.m.sched, self.spec
        pool = "file_mapped_hot" if spec.mapped else "file_clean"
        pages_per_s = spec.rate / PAGE_SIZE
        while True:
            yield from pa.alloc_pages_bulk(task, GFP_HIGHUSER_MOVABLE, CHUNK, pool=pool, site="page_cache_alloc")
            yield from sched.sleep(task, CHUNK / pages_per_s, "io")
