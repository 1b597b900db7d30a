"""BPF program loads: a vmalloc'd program and a JIT image in the module window (v5.3).

Every program load (seccomp filters of starting services, tracing, socket
filters) allocates, after kernel/bpf/core.c v5.3:

* the ``struct bpf_prog`` with its instructions, ``bpf_prog_alloc`` ->
  ``__vmalloc(round_up(size, PAGE_SIZE), GFP_KERNEL | __GFP_ZERO)`` in the
  ordinary vmalloc window (one page for a typical filter);
* the JIT image, ``bpf_jit_binary_alloc`` -> ``bpf_jit_alloc_exec`` ->
  ``module_alloc`` of ``round_up(proglen + header + 128, PAGE_SIZE)`` (one page
  typically), charged against ``bpf_jit_limit`` = a quarter of the module
  window; beyond it an unprivileged load gets -EPERM.

A failed JIT leaves the program on the interpreter (v5.3 default), unless
``jit_always_on`` (CONFIG_BPF_JIT_ALWAYS_ON), when the load fails.  At the end
of its life the program is freed by a work item (``bpf_prog_free_deferred``):
the image with ``module_memfree``, then the program with ``vfree``.

Counters under ``bpf.`` (or the spec's name): ``loads``, ``load_failures``,
``jit_failures``, ``jit_eperm``, ``frees``; fit types and causes of the JIT
images as ``bpf.fit_*`` / ``bpf.fail_*``, of the programs as ``bpf.prog.*``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sim.kernel.arch.x86.module import draw_module_load_offset
from sim.kernel.mm.gfp import GFP_KERNEL, Gfp
from sim.kernel.mm.vmalloc.space import MODULES_END, PAGE_SHIFT, PAGE_SIZE, VMALLOC_END, VMALLOC_START
from sim.kernel.mm.vmalloc.vm_struct import VmStruct
from sim.schema.units import Duration, Rate
from sim.workloads.base import draw_lifetime, poisson_arrivals
from sim.workloads.modules import ModuleWindowSpec, tallied_module_alloc
from sim.workloads.tally import VmapTally


class BpfJitSpec(ModuleWindowSpec):
    """BPF programs loaded at a rate and freed after a lifetime (rates: estimates)."""

    kind: Literal["bpf_jit"] = "bpf_jit"
    rate: Rate = Field(10.0, description="program loads per second (Poisson); estimate")
    lifetime: Duration = Field(5.0, description="mean program lifetime (exponential); inf: never freed")
    max_loads: int | None = Field(None, ge=1, description="stop after this many loads; None: no limit")
    prog_pages: int = Field(1, ge=1, description="bpf_prog_alloc size in pages (a small filter: 1)")
    image_pages: int = Field(1, ge=1, description="JIT image in pages (bpf_jit_binary_alloc; typical: 1)")
    privileged: bool = Field(True, description="CAP_SYS_ADMIN: not held to bpf_jit_limit")
    jit_always_on: bool = Field(False, description="CONFIG_BPF_JIT_ALWAYS_ON: a JIT failure fails the load")
    verify_cpu: Duration = Field(50e-6, description="verifier and JIT CPU time per load; estimate")


class BpfJit:
    """The running ``bpf_jit`` workload."""

    def __init__(self, spec: BpfJitSpec) -> None:
        self.spec = spec
        self.prefix = spec.name or "bpf"
        self.bpf_jit_current = 0  # pages charged (bpf_jit_current), per workload here

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        self.rng = rng
        self.offset = draw_module_load_offset(rng)
        self.tally = VmapTally(machine)
        window = MODULES_END - self.spec.modules_vaddr()
        self.bpf_jit_limit = (window >> 2) >> PAGE_SHIFT  # bpf_jit_charge_init, in pages
        spec = self.spec
        machine.env.process(poisson_arrivals(machine.env, rng, spec.start, spec.rate, spec.max_loads, self._arrive))

    def _arrive(self, n: int) -> None:
        """Arrival ``n``: a program with its life, loaded by its own task."""
        life = draw_lifetime(self.rng, self.spec.lifetime)
        self.m.spawn(f"bpf-load/{n}", lambda t, s=life: self._load(t, s))

    def _load(self, task: Any, life: float) -> Generator[Any, Any, None]:
        """``bpf_prog_load``: the program, the verifier, the JIT image."""
        m, spec, prefix = self.m, self.spec, self.prefix
        before = self.tally.begin()
        prog = yield from m.vmalloc.vmalloc_node_range(
            task, spec.prog_pages * PAGE_SIZE, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL | Gfp.ZERO,
            caller="bpf_prog_alloc", pool="slab_unreclaimable",
        )  # fmt: skip
        if prog is None:
            self.tally.failure(prefix + ".prog", before)
            m.metrics.add(prefix + ".load_failures")
            return
        self.tally.success(prefix + ".prog", before, prog.va)
        yield from m.sched.run(task, spec.verify_cpu)
        image = yield from self.bpf_jit_binary_alloc(task)
        if image is None:
            m.metrics.add(prefix + ".jit_failures")
            if spec.jit_always_on:
                yield from m.vmalloc.vfree(task, prog)
                m.metrics.add(prefix + ".load_failures")
                return
        m.metrics.add(prefix + ".loads")
        if np.isfinite(life):
            m.env.process(self._free_later(life, prog, image))

    def _free_later(self, life: float, prog: VmStruct, image: VmStruct | None) -> Generator[Any, Any, None]:
        """At the end of the program's life, its last reference schedules the free work."""
        yield self.m.env.timeout(life)
        self.m.spawn("kworker/bpf_prog_free", lambda t: self._free(t, prog, image), kthread=True)

    def bpf_jit_binary_alloc(self, task: Any) -> Generator[Any, Any, VmStruct | None]:
        """``bpf_jit_binary_alloc`` (kernel/bpf/core.c v5.3): charge the pages,
        then ``module_alloc`` them; None on -EPERM or a failed allocation."""
        pages = self.spec.image_pages
        self.bpf_jit_current += pages
        if self.bpf_jit_current > self.bpf_jit_limit and not self.spec.privileged:
            self.bpf_jit_current -= pages
            self.m.metrics.add(self.prefix + ".jit_eperm")
            return None
        size = pages * PAGE_SIZE
        image = yield from tallied_module_alloc(
            self.m, task, size, self.spec, self.offset, self.tally, self.prefix, caller="bpf_jit_alloc_exec"
        )
        if image is None:
            self.bpf_jit_current -= pages
        return image

    def _free(self, task: Any, prog: VmStruct, image: VmStruct | None) -> Generator[Any, Any, None]:
        """``bpf_prog_free_deferred``: ``bpf_jit_binary_free`` then ``vfree`` of the program."""
        vmalloc = self.m.vmalloc
        if image is not None:
            yield from vmalloc.vfree(task, image)
            self.bpf_jit_current -= self.spec.image_pages
        yield from vmalloc.vfree(task, prog)
        self.m.metrics.add(self.prefix + ".frees")
