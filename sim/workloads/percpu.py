"""Percpu chunks as the workloads see them (the allocator is :mod:`sim.kernel.mm.percpu`).

Two things drive chunks here:

* :class:`TalliedPercpuAllocator`, the kernel's
  :class:`sim.kernel.mm.percpu.PercpuAllocator` with its chunk creations counted
  under a label, used by ``pcpu_alloc_test`` of the test_vmalloc module;
* :class:`PercpuChunks`, the ``percpu_chunks`` workload: chunks created at a
  rate (percpu allocations filling chunks) and destroyed after a lifetime.

:class:`PercpuLayout` is the scenario's description of the first chunk's geometry.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sim.kernel.mm.percpu import PercpuAllocator, PercpuChunk, pcpu_group_size
from sim.kernel.mm.vmalloc.percpu_vm import PMD_SIZE
from sim.schema.units import Duration, Rate, Size
from sim.workloads.base import WorkloadSpec, draw_lifetime, poisson_arrivals
from sim.workloads.tally import VmapTally


class PercpuLayout(BaseModel):
    """The geometry of the first chunk, which every later chunk copies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # "pcpu-alloc: s188416 r8192 d28672 u262144 alloc=1*2097152" on x86_64
    # distribution kernels: pcpu_build_alloc_info picks the largest unit that
    # divides the 2 MiB atom into whole pages and holds static+reserved+dynamic
    unit_size: Size = Field(256 << 10, description="pcpu_unit_size")
    atom_size: Size = Field(PMD_SIZE, description="pcpu_atom_size: PMD_SIZE on x86_64 (setup_per_cpu_areas)")
    # None: the possible CPUs rounded up to whole atoms (pcpu_build_alloc_info)
    nr_units: int | None = Field(None, ge=1, description="units of the one group")

    def group_size(self, ncpus: int) -> int:
        """Bytes of the one area each chunk needs (``pcpu_group_sizes[0]``)."""
        return pcpu_group_size(self.unit_size, self.atom_size, self.nr_units, ncpus)


class TalliedPercpuAllocator(PercpuAllocator):
    """The kernel's percpu allocator laid out as ``layout`` on ``machine``, with its
    chunks counted under ``label``: ``<label>.chunks``, ``.chunk_failures``,
    ``.chunks_destroyed`` and the fit types of their areas (:class:`VmapTally`)."""

    def __init__(self, machine: Any, layout: PercpuLayout, label: str) -> None:
        sched = machine.sched
        super().__init__(sched, machine.vmalloc, layout.unit_size, layout.atom_size, layout.group_size(sched.ncpus))
        self.metrics = machine.metrics
        self.layout = layout
        self.label = label
        self.tally = VmapTally(machine)

    def pcpu_create_chunk(self, task: Any) -> Generator[Any, Any, PercpuChunk | None]:
        label = self.label
        before = self.tally.begin()
        chunk = yield from super().pcpu_create_chunk(task)
        if chunk is None:
            self.tally.failure(label, before)
            self.metrics.add(label + ".chunk_failures")
            return None
        for fit in chunk.fits:
            self.tally.record_fit(label, fit)
        self.metrics.add(label + ".chunks")
        return chunk

    def pcpu_destroy_chunk(self, task: Any, chunk: PercpuChunk) -> Generator[Any, Any, None]:
        self.metrics.add(self.label + ".chunks_destroyed")
        yield from super().pcpu_destroy_chunk(task, chunk)


class PercpuChunksSpec(WorkloadSpec):
    """Percpu chunks created at a rate and destroyed after a lifetime.

    Rates are estimates: a chunk holds ``unit_size`` bytes per CPU, so a busy
    system (cgroups, BPF maps, network devices) adds one every few seconds to
    minutes, and destroys it when its allocations are gone.
    """

    kind: Literal["percpu_chunks"] = "percpu_chunks"
    rate: Rate = Field(0.1, description="chunks created per second (Poisson); estimate")
    lifetime: Duration = Field(30.0, description="mean life of a chunk (exponential); estimate")
    max_chunks: int | None = Field(None, ge=1, description="stop creating after this many; None: no limit")
    layout: PercpuLayout = Field(default_factory=PercpuLayout)


class PercpuChunks:
    """The running ``percpu_chunks`` workload (counters under ``percpu.``)."""

    def __init__(self, spec: PercpuChunksSpec) -> None:
        self.spec = spec
        self.prefix = spec.name or "percpu"

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        self.rng = rng
        self.pcpu = TalliedPercpuAllocator(machine, self.spec.layout, self.prefix)
        spec = self.spec
        machine.env.process(
            poisson_arrivals(machine.env, self.rng, spec.start, spec.rate, spec.max_chunks, self._arrive)
        )

    def _arrive(self, n: int) -> None:
        """Arrival ``n``: a task that needs a chunk (``pcpu_alloc`` finding no
        room); the balance work destroys the chunk after its life."""
        life = draw_lifetime(self.rng, self.spec.lifetime)
        self.m.spawn(f"{self.prefix}-alloc/{n}", lambda t, life=life: self._chunk(t, life))

    def _chunk(self, task: Any, life: float) -> Generator[Any, Any, None]:
        """Create one chunk; after ``life`` let a kworker destroy it."""
        pcpu = self.pcpu
        yield from pcpu.mutex.lock(task)
        chunk = yield from pcpu.pcpu_create_chunk(task)
        if chunk is not None:
            pcpu.empty.remove(chunk)  # it is in use from now on
        pcpu.mutex.unlock(task)
        if chunk is None or not np.isfinite(life):
            return
        self.m.env.process(self._destroy_later(chunk, life))

    def _destroy_later(self, chunk: PercpuChunk, life: float) -> Generator[Any, Any, None]:
        yield self.m.env.timeout(life)
        self.m.spawn("kworker/pcpu_balance", lambda t: self._destroy(t, chunk), kthread=True)

    def _destroy(self, task: Any, chunk: PercpuChunk) -> Generator[Any, Any, None]:
        pcpu = self.pcpu
        yield from pcpu.mutex.lock(task)
        yield from pcpu.pcpu_destroy_chunk(task, chunk)
        pcpu.mutex.unlock(task)
