"""Module loading on x86_64 (v5.3): the ``module_load`` workload and the module window.

``module_alloc`` itself is in :mod:`sim.kernel.arch.x86.module`; here is
:class:`ModuleWindowSpec`, the window a scenario describes (shared by every
module_alloc caller), and :func:`tallied_module_alloc`, ``module_alloc`` with its
fit types and failures counted under the caller's label.

One load, after kernel/module.c v5.3 ``load_module``:

* the ``.ko`` image is read into a vmalloc buffer (``finit_module`` ->
  ``kernel_read_file`` -> ``vmalloc``, GFP_KERNEL), in the ordinary vmalloc
  window, its size taken as core + init (an estimate: stripped modules);
* ``move_module``: ``module_alloc`` of the core layout, then of the init
  layout (a core that cannot be followed by its init is freed again);
* relocation and the module's init run, the image is freed (``free_copy``);
* ``do_init_module`` hands the init area to ``do_free_init``, a work item that
  frees it after an RCU grace period;
* after its lifetime the module is unloaded and its core freed (``vfree``).

Counters under ``modules.`` (or the spec's name): ``loads``,
``load_failures``, ``unloads``, and the fit types and failure causes of the
module-window allocations (``modules.fit_*``, ``modules.fail_no_space``...);
the image buffer's are under ``modules.image.``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sim.kernel.arch.x86.module import (
    MODULES_VADDR_NOKASLR,
    draw_module_load_offset,
    module_align,
    module_alloc,
    module_fits,
)
from sim.kernel.mm.gfp import GFP_KERNEL
from sim.kernel.mm.vmalloc.alloc import VmStruct
from sim.kernel.mm.vmalloc.space import MODULES_END, MODULES_VADDR, PAGE_SIZE, VMALLOC_END, VMALLOC_START
from sim.schema.units import Duration, Rate, Size
from sim.workloads.base import WorkloadSpec, draw_lifetime, poisson_arrivals
from sim.workloads.tally import VmapTally


class ModuleWindowSpec(WorkloadSpec):
    """The module window, shared by every module_alloc caller."""

    kaslr: bool = Field(True, description="CONFIG_RANDOMIZE_BASE: 1 GiB image and a random load offset")
    kasan: bool = Field(False, description="CONFIG_KASAN: MODULE_ALIGN = 32 KiB")
    # None: MODULES_END - MODULES_VADDR (1008 MiB with KASLR, 1520 MiB without);
    # a smaller window stands for other architectures (arm64: 128 MiB) or short runs
    modules_len: Size | None = Field(None, description="size of the module window, ending at MODULES_END")

    def module_align(self) -> int:
        """``MODULE_ALIGN``."""
        return module_align(self.kasan)

    def modules_vaddr(self) -> int:
        """``MODULES_VADDR``, or the start of the smaller window asked for."""
        if self.modules_len is not None:
            return MODULES_END - self.modules_len
        return MODULES_VADDR if self.kaslr else MODULES_VADDR_NOKASLR


def tallied_module_alloc(
    machine: Any, task: Any, size: int, window: ModuleWindowSpec, offset: int, tally: VmapTally, label: str,
    caller: str = "module_alloc",
) -> Generator[Any, Any, VmStruct | None]:  # fmt: skip
    """``module_alloc`` in ``window``, its outcome counted under ``label`` (a request
    larger than the window is refused before it reaches vmalloc and is not counted);
    ``offset`` is the caller's candidate load offset."""
    vstart = window.modules_vaddr()
    if not module_fits(size, vstart):
        return None
    before = tally.begin()
    area = yield from module_alloc(
        machine, task, size, modules_vaddr=vstart, align=window.module_align(), kaslr=window.kaslr, offset=offset,
        caller=caller,
    )  # fmt: skip
    if area is None:
        tally.failure(label, before)
    else:
        tally.success(label, before, area.va)
    return area


class ModuleLoadSpec(ModuleWindowSpec):
    """Modules loaded at a rate and unloaded after a lifetime.

    Sizes and rates are estimates: ``lsmod`` sizes run from a page to a few
    MiB, most below 100 KiB (log-uniform core size); init sections are a few
    pages; a distribution boot loads ~100 modules, then a few an hour.
    """

    kind: Literal["module_load"] = "module_load"
    rate: Rate = Field(1.0, description="module loads per second (Poisson); estimate")
    lifetime: Duration = Field(60.0, description="mean time loaded (exponential; inf: never unloaded); estimate")
    max_loads: int | None = Field(None, ge=1, description="stop after this many loads; None: no limit")
    core_pages_min: int = Field(1, ge=1, description="smallest core layout, pages")
    core_pages_max: int = Field(512, ge=1, description="core layout size, log-uniform in [min, max] pages; estimate")
    init_pages_max: int = Field(4, ge=0, description="init layout, uniform in 0..max pages (0: none); estimate")
    copy_image: bool = Field(True, description="read the .ko into a vmalloc buffer first (kernel_read_file)")
    load_cpu: Duration = Field(1e-3, description="relocation, symbol resolution and init, CPU time; estimate")
    rcu_grace: Duration = Field(10e-3, description="synchronize_rcu before do_free_init frees the init; estimate")


class ModuleLoad:
    """The running ``module_load`` workload."""

    def __init__(self, spec: ModuleLoadSpec) -> None:
        self.spec = spec
        self.prefix = spec.name or "modules"

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        self.rng = rng
        self.offset = draw_module_load_offset(rng)
        self.tally = VmapTally(machine)
        spec = self.spec
        machine.env.process(poisson_arrivals(machine.env, rng, spec.start, spec.rate, spec.max_loads, self._arrive))

    def _arrive(self, n: int) -> None:
        """Arrival ``n`` of the Poisson loads: sizes and life drawn now, loaded
        by its own insmod task."""
        spec, rng = self.spec, self.rng
        lo, hi = np.log(spec.core_pages_min), np.log(max(spec.core_pages_max, spec.core_pages_min) + 1)
        core = min(int(np.exp(rng.uniform(lo, hi))), spec.core_pages_max)
        init = int(rng.integers(0, spec.init_pages_max + 1))
        life = draw_lifetime(rng, spec.lifetime)
        self.m.spawn(f"insmod/{n}", lambda t, c=core, i=init, s=life: self._load_module(t, c, i, s))

    def _load_module(self, task: Any, core_pages: int, init_pages: int, life: float) -> Generator[Any, Any, None]:
        """``load_module`` through ``do_init_module`` (kernel/module.c v5.3)."""
        m, spec, prefix = self.m, self.spec, self.prefix
        image = None
        if spec.copy_image:
            before = self.tally.begin()
            image = yield from m.vmalloc.vmalloc_node_range(
                task, (core_pages + init_pages) * PAGE_SIZE, 1, VMALLOC_START, VMALLOC_END,
                GFP_KERNEL, caller="kernel_read_file", pool="slab_unreclaimable",
            )  # fmt: skip
            if image is None:
                self.tally.failure(prefix + ".image", before)
                m.metrics.add(prefix + ".load_failures")
                return
            self.tally.success(prefix + ".image", before, image.va)
        core = yield from self._module_alloc(task, core_pages)
        init = None
        if core is not None and init_pages:
            init = yield from self._module_alloc(task, init_pages)
            if init is None:
                yield from m.vmalloc.vfree(task, core)
                core = None
        if image is not None:
            yield from m.vmalloc.vfree(task, image)  # free_copy
        if core is None:
            m.metrics.add(prefix + ".load_failures")
            return
        yield from m.sched.run(task, spec.load_cpu)
        m.metrics.add(prefix + ".loads")
        if init is not None:
            m.env.process(self._do_free_init(init))
        if np.isfinite(life):
            m.env.process(self._unload_later(life, core))

    def _unload_later(self, life: float, core: VmStruct) -> Generator[Any, Any, None]:
        """After the module's life an rmmod task unloads it."""
        yield self.m.env.timeout(life)
        self.m.spawn("rmmod", lambda t: self._free_module(t, core))

    def _free_module(self, task: Any, core: VmStruct) -> Generator[Any, Any, None]:
        """``delete_module`` -> ``free_module`` -> ``module_memfree`` of the core."""
        yield from self.m.vmalloc.vfree(task, core)
        self.m.metrics.add(self.prefix + ".unloads")

    def _module_alloc(self, task: Any, pages: int) -> Generator[Any, Any, VmStruct | None]:
        return (
            yield from tallied_module_alloc(
                self.m, task, pages * PAGE_SIZE, self.spec, self.offset, self.tally, self.prefix
            )
        )

    def _do_free_init(self, init: VmStruct) -> Generator[Any, Any, None]:
        """``do_free_init``: a work item frees the init area after a grace period."""
        yield self.m.env.timeout(self.spec.rcu_grace)
        self.m.spawn("kworker/do_free_init", lambda t: self.m.vmalloc.vfree(t, init), kthread=True)
