"""One simulated machine: CPUs, memory, slab caches and vmalloc, wired together.

``Machine`` is the build phase of a run: it creates the SimPy environment, the
scheduler, the zones and page allocator (with kswapd, direct reclaim and the
OOM killer), the ``vmap_area`` and kmalloc caches (``task_struct_cachep`` on
demand, see :meth:`Machine.task_struct_cachep`), and the vmalloc state with
its split-object strategy, all from a :class:`MachineConfig` and one numpy
``SeedSequence``.  Each component draws from its own child stream, so that two
machines built from the same seed with different strategies see the same
random numbers wherever their histories agree (common random numbers).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.mm.page_alloc import PageAllocator
from sim.kernel.mm.slab.caches import KmemCache, kmem_cache_create, task_struct_cache, vmap_area_cache
from sim.kernel.mm.vmalloc.alloc import Vmalloc, VmallocParams
from sim.kernel.mm.vmalloc.strategies import make_strategy
from sim.kernel.mm.zones import MemoryParams, build_zones
from sim.kernel.profile import KernelProfile, get_profile
from sim.kernel.sched.cpu import SchedParams, Scheduler, Task
from sim.record.metrics import Metrics

MiB = 1 << 20
STREAMS = ("sched", "page_alloc", "workloads")


@dataclass(frozen=True)
class MachineConfig:
    """What a scenario says about the machine (kernel defaults elsewhere)."""

    cpus: int = 4
    ram: int = 256 * MiB
    thp: bool | None = None  # None: on from 512 MiB of managed memory, as distros ship it
    kernel: str = "5.2"
    preemption: str = "none"
    slab: str = "SLUB"
    strategy: str | None = None  # None: the kernel profile's own
    memory: MemoryParams = field(default_factory=MemoryParams)
    sched: SchedParams = field(default_factory=SchedParams)
    vmalloc: VmallocParams = field(default_factory=VmallocParams)
    sample_interval: float = 0.1  # seconds between time-series samples; 0 turns sampling off


class Machine:
    """The kernel of one run and the handles workloads use."""

    def __init__(self, config: MachineConfig, seed: np.random.SeedSequence, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self.profile: KernelProfile = get_profile(config.kernel)
        children = seed.spawn(len(STREAMS))
        self.streams = dict(zip(STREAMS, children, strict=True))
        self.env = eventloop.Environment()
        self.sched = Scheduler(
            self.env,
            config.cpus,
            np.random.default_rng(self.streams["sched"]),
            config.preemption,
            config.sched,
            self.metrics,
        )
        thp = True if config.thp is None else config.thp  # hugepage_init turns it off below 512 MiB
        self.zone_table = build_zones(config.ram, config.cpus, thp, self.profile, config.memory)
        self.page_alloc = PageAllocator(
            self.env,
            self.zone_table,
            self.profile,
            config.memory,
            rng=np.random.default_rng(self.streams["page_alloc"]),
            metrics=self.metrics,
            scheduler=self.sched,
        )
        common: dict[str, Any] = {
            "allocator": config.slab,
            "ncpus": config.cpus,
            "page_alloc": self.page_alloc,
            "metrics": self.metrics,
            "scheduler": self.sched,
            "clock": lambda: self.env.now,
        }
        self.vmap_area_cache = vmap_area_cache(self.profile, **common)
        self.kmalloc = {size: kmem_cache_create(f"kmalloc-{size}", size, **common) for size in (32, 64)}
        self.caches = [self.vmap_area_cache, *self.kmalloc.values()]
        self._cache_args = common
        self._task_struct_cache: KmemCache | None = None  # made by task_struct_cachep()
        self._task_struct_size = 0
        self.module_load_offset = 0  # get_module_load_offset(): chosen once per boot by the first module user
        self.strategy_name = config.strategy or self.profile.split_strategy
        self.vmalloc = Vmalloc(
            self.sched,
            self.page_alloc,
            self.vmap_area_cache,
            self.kmalloc,
            self.profile,
            make_strategy(self.strategy_name, self.sched.ncpus),
            self.metrics,
            config.vmalloc,
            console=self.page_alloc.console,
        )
        if config.slab == "SLAB":
            for cpu in range(config.cpus):
                self.env.process(self._cache_reap(cpu))
        if config.sample_interval > 0:
            self.env.process(self._sampler(config.sample_interval))

    def workload_rng(self, index: int) -> np.random.Generator:
        """The random stream of the ``index``-th workload (the same in every strategy).

        A pure function of ``index``: child ``index`` of the workloads stream,
        built without ``SeedSequence.spawn``, whose counter would make the
        stream depend on how many streams were asked for before.
        """
        parent = self.streams["workloads"]
        child = np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, index), pool_size=parent.pool_size)
        return np.random.default_rng(child)

    def task_struct_cachep(self, size: int) -> KmemCache:
        """``task_struct_cachep`` for objects of ``size`` bytes (``arch_task_struct_size``):
        made by the first workload that forks (``fork_init`` runs at boot, before any),
        shared by every later one, which must name the same size."""
        if self._task_struct_cache is None:
            totalram = sum(zone.managed for zone in self.page_alloc.zones)
            self._task_struct_cache = task_struct_cache(size, totalram_pages=totalram, **self._cache_args)
            self._task_struct_size = size
            self.caches.append(self._task_struct_cache)
        elif size != self._task_struct_size:
            raise ValueError(f"task_struct is {self._task_struct_size} B on this machine, not {size} B")
        return self._task_struct_cache

    def spawn(self, name: str, body: Any, **kwargs: Any) -> Task:
        """Start a task (see :meth:`Scheduler.spawn`)."""
        return self.sched.spawn(name, body, **kwargs)

    def _cache_reap(self, cpu: int) -> Generator[Any, Any, None]:
        """SLAB's per-CPU ``cache_reap`` work, every 2 s (REAPTIMEOUT_AC)."""
        yield self.env.timeout(2.0 + 0.01 * cpu)
        while True:
            for cache in self.caches:
                reap = getattr(cache, "cache_reap", None)
                if reap is not None:
                    reap(cpu, self.env.now)
            yield self.env.timeout(2.0)

    def _sampler(self, interval: float) -> Generator[Any, Any, None]:
        """Time series of free pages, watermarks, boost, kswapd and lazy pages."""
        pa = self.page_alloc
        vm = self.vmalloc
        while True:
            levels = pa.failure_state()
            for z in pa.zones:  # the marks, for timelines (boost is in the state)
                levels[f"{z.name}_low"] = z.wmark[1]
                levels[f"{z.name}_high"] = z.wmark[2]
            self.metrics.sample(
                self.env.now,
                vmap_lazy_pages=vm.lazy.vmap_lazy_nr,
                vmap_area_objects=self.vmap_area_cache.objects_in_use,
                vmap_objects_held=vm.objects_held(),
                kswapd_awake=int(not pa.reclaim.kswapd_sleeping),
                kswapd_reclaimed=int(self.metrics.counters["kswapd_reclaimed"]),
                **levels,
            )
            yield self.env.timeout(interval)
