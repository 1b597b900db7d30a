"""lib/test_vmalloc.c (v5.3): the vmalloc stress module, case by case.

Loading the module starts one kthread ``vmalloc_test/<cpu>`` per online CPU,
pinned to it (only CPU 0 with ``single_cpu_test``).  Each shuffles the case
order (unless ``sequential_test_order``), and runs every case enabled in
``run_test_mask`` ``test_repeat_count`` times; a case "fails" at the first
allocation that returns NULL.  The cases, with their sizes before the guard
page (the ``*_test`` functions of lib/test_vmalloc.c, v5.3):

====  ==============================  ===============================================
mask  case                            what it allocates
====  ==============================  ===============================================
1     fix_size_alloc_test             vmalloc(3 pages), vfree, in a loop
2     full_fit_alloc_test             ``junk`` pairs of 1-page areas, every second one
                                      freed, then vmalloc(1 page)/vfree in a loop
4     long_busy_list_alloc_test       15000 1-page areas kept, then 100 + 1 pages
8     random_size_alloc_test          vmalloc(1..100 pages)
16    fix_align_alloc_test            5 pages at THREAD_ALIGN << 1 (32 KiB)
32    random_size_align_alloc_test    1..10 pages at 2^0..2^22, from one random word
64    align_shift_alloc_test          1 page at 2^0..2^63: meant to fail
128   pcpu_alloc_test                 35000 percpu allocations, then all freed
====  ==============================  ===============================================

Counters, under ``tv.<case>.`` (see :mod:`sim.workloads.tally`): ``calls``,
``fit_*``, ``failures`` and their causes for the vmallocs of the case's loop
(``pcpu_alloc_test``: its chunks' areas), ``passed`` and ``failed`` per repeat
as the module's summary prints them, and the simulated seconds per case in
``metrics.seconds["tv.<case>"]``.  The allocations that prepare a loop (the
pointer arrays, the junk pairs, the busy list) count under
``tv.<case>.setup.``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Literal, get_args

import numpy as np
from pydantic import Field, model_validator

from sim.kernel.mm.gfp import GFP_KERNEL, Gfp
from sim.kernel.mm.vmalloc.alloc import fls
from sim.kernel.mm.vmalloc.space import PAGE_SIZE, VMALLOC_END, VMALLOC_START
from sim.kernel.mm.vmalloc.vm_struct import VmStruct
from sim.schema.limits import MAX_TASKS
from sim.schema.units import Duration
from sim.workloads.base import WorkloadSpec
from sim.workloads.fork_storm import THREAD_ALIGN
from sim.workloads.percpu import PercpuLayout, TalliedPercpuAllocator
from sim.workloads.tally import VmapTally

CaseName = Literal[
    "fix_size_alloc_test",
    "full_fit_alloc_test",
    "long_busy_list_alloc_test",
    "random_size_alloc_test",
    "fix_align_alloc_test",
    "random_size_align_alloc_test",
    "align_shift_alloc_test",
    "pcpu_alloc_test",
]
CASES: tuple[str, ...] = get_args(CaseName)  # in run_test_mask bit order
GFP_ZEROED = GFP_KERNEL | Gfp.ZERO  # GFP_KERNEL | __GFP_ZERO of the __vmalloc_node_range cases
POINTER = 8  # sizeof(void *) on x86_64
INT_MAX = (1 << 31) - 1
BITS_PER_LONG = 64


class VmallocTestSpec(WorkloadSpec):
    """The module parameters of lib/test_vmalloc.c v5.3, with its defaults.

    ``cases`` names the cases to run ("all", the default, is run_test_mask =
    INT_MAX); ``run_test_mask`` may be given instead.  The last fields scale
    constants of the source down for short runs; their defaults are the
    source's.
    """

    kind: Literal["test_vmalloc"] = "test_vmalloc"
    cases: list[CaseName] | Literal["all"] = "all"
    run_test_mask: int | None = Field(None, ge=0, description="bit i enables case i (module parameter)")
    test_loop_count: int = Field(1_000_000, ge=1, description="iterations inside each case (module default)")
    test_repeat_count: int = Field(1, ge=1, description="repeats of each case (module default)")
    sequential_test_order: bool = Field(False, description="do not shuffle the case order (module default)")
    single_cpu_test: bool = Field(False, description="one kthread on the first online CPU (module default)")
    # later kernels' nr_threads, and Rezki's "20 unbind threads" of the v5.5 preload measurement
    nr_threads: int = Field(
        0, ge=0, le=MAX_TASKS, description="0: one pinned kthread per CPU (v5.3); N: N unbound kthreads"
    )
    long_busy_list_length: int = Field(15000, ge=1, description="areas kept by long_busy_list_alloc_test (source)")
    # None: fls(num_online_cpus()) * (32 MiB / PAGE_SIZE), as the source computes it
    full_fit_junk_length: int | None = Field(None, ge=1, description="pairs of full_fit_alloc_test")
    pcpu_alloc_count: int = Field(35000, ge=1, description="allocations of pcpu_alloc_test (source)")
    # estimate: the loop's own work besides the vmalloc path (a store, a counter, a branch)
    iteration_cpu: Duration = Field(0.2e-6, description="CPU time of one loop iteration outside vmalloc")
    percpu: PercpuLayout = Field(default_factory=PercpuLayout)

    @model_validator(mode="after")
    def _one_selection(self) -> VmallocTestSpec:
        if self.run_test_mask is not None and self.cases != "all":
            raise ValueError("give either cases or run_test_mask, not both")
        return self

    def enabled(self) -> list[bool]:
        """Which cases run, by index (``run_test_mask`` semantics)."""
        if self.run_test_mask is not None:
            return [bool(self.run_test_mask >> i & 1) for i in range(len(CASES))]
        if self.cases == "all":
            return [bool(INT_MAX >> i & 1) for i in range(len(CASES))]
        return [name in self.cases for name in CASES]


def shuffle_array(order: list[int], rng: np.random.Generator) -> None:
    """The module's own shuffle (``shuffle_array``, v5.3): for i from n-1 down
    to 1 swap with j = rnd % i, so an element never stays where it is."""
    for i in range(len(order) - 1, 0, -1):
        j = int(rng.integers(0, 1 << 32)) % i
        order[i], order[j] = order[j], order[i]


class VmallocTest:
    """The running test_vmalloc module (counters under ``tv.`` or the spec's name)."""

    def __init__(self, spec: VmallocTestSpec) -> None:
        self.spec = spec
        self.prefix = spec.name or "tv"

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        self.vm = machine.vmalloc
        self.tally = VmapTally(machine)
        self.pcpu = TalliedPercpuAllocator(machine, self.spec.percpu, f"{self.prefix}.pcpu_alloc_test")
        ncpus = machine.sched.ncpus
        if self.spec.nr_threads:
            cpus = [i % ncpus for i in range(self.spec.nr_threads)]
        else:
            cpus = [0] if self.spec.single_cpu_test else list(range(ncpus))
        machine.env.process(self._do_concurrent_test(cpus, rng.spawn(len(cpus))))

    def _do_concurrent_test(self, cpus: list[int], rngs: list[np.random.Generator]) -> Generator[Any, Any, None]:
        """``do_concurrent_test``: one pinned kthread per CPU of the test mask
        (v5.3), or ``nr_threads`` unbound ones (later kernels)."""
        if self.spec.start:
            yield self.m.env.timeout(self.spec.start)
        pinned = not self.spec.nr_threads
        for i, (cpu, rng) in enumerate(zip(cpus, rngs)):
            self.m.spawn(
                f"vmalloc_test/{i}", lambda t, r=rng: self._test_func(t, r), cpu=cpu, pinned=pinned, kthread=True
            )

    def _test_func(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, None]:
        """``test_func`` (v5.3): the enabled cases in (shuffled) order, each repeated."""
        spec, metrics, env = self.spec, self.m.metrics, self.m.env
        cases: list[Callable[[Any, np.random.Generator], Generator[Any, Any, bool]]] = [
            self.fix_size_alloc_test,
            self.full_fit_alloc_test,
            self.long_busy_list_alloc_test,
            self.random_size_alloc_test,
            self.fix_align_alloc_test,
            self.random_size_align_alloc_test,
            self.align_shift_alloc_test,
            self.pcpu_alloc_test,
        ]
        order = list(range(len(CASES)))
        if not spec.sequential_test_order:
            shuffle_array(order, rng)
        enabled = spec.enabled()
        for index in order:
            if not enabled[index]:
                continue
            name = f"{self.prefix}.{CASES[index]}"
            began = env.now
            for _ in range(spec.test_repeat_count):
                ok = yield from cases[index](task, rng)
                metrics.add(name + (".passed" if ok else ".failed"))
            metrics.add_time(name, env.now - began)

    # -- the calls every case makes ------------------------------------------

    def _vmalloc(
        self, task: Any, case: str, size: int, align: int = 1, gfp: int = GFP_KERNEL
    ) -> Generator[Any, Any, VmStruct | None]:
        """``vmalloc(size)`` (align 1) or ``__vmalloc_node_range(size, align,
        VMALLOC_START, VMALLOC_END, gfp)``, counted under the case (``case`` may
        end in ``.setup`` for the allocations that prepare a measured loop)."""
        label = f"{self.prefix}.{case}"
        before = self.tally.begin()
        area = yield from self.vm.vmalloc_node_range(
            task, size, align, VMALLOC_START, VMALLOC_END, gfp, caller=case, pool="slab_unreclaimable"
        )
        if area is None:
            self.tally.failure(label, before)
        else:
            self.tally.success(label, before, area.va)
        return area

    def _vfree(self, task: Any, area: VmStruct | None) -> Generator[Any, Any, None]:
        """``vfree``; NULL is a no-op."""
        if area is not None:
            yield from self.vm.vfree(task, area)

    def _iteration(self, task: Any) -> Generator[Any, Any, None]:
        yield from self.m.sched.run(task, self.spec.iteration_cpu)

    # -- the cases ---------------------------------------------------------------

    def fix_size_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``fix_size_alloc_test``: vmalloc(3 pages) and vfree, test_loop_count times."""
        for _ in range(self.spec.test_loop_count):
            p = yield from self._vmalloc(task, "fix_size_alloc_test", 3 * PAGE_SIZE)
            if p is None:
                return False
            yield from self._iteration(task)
            yield from self._vfree(task, p)
        return True

    def full_fit_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``full_fit_alloc_test``: pairs of 1-page areas, the second of each freed
        (2-page holes with the guard page), then 1-page vmallocs that fit the
        holes exactly once a purge has merged them."""
        case, setup = "full_fit_alloc_test", "full_fit_alloc_test.setup"
        junk = self.spec.full_fit_junk_length or fls(self.m.sched.ncpus) * (32 * 1024 * 1024 // PAGE_SIZE)
        ptr = yield from self._vmalloc(task, setup, POINTER * junk)
        if ptr is None:
            return False
        junk_ptr = yield from self._vmalloc(task, setup, POINTER * junk)
        if junk_ptr is None:
            yield from self._vfree(task, ptr)
            return False
        kept, holes = [], []
        for _ in range(junk):
            kept.append((yield from self._vmalloc(task, setup, PAGE_SIZE)))
            holes.append((yield from self._vmalloc(task, setup, PAGE_SIZE)))
        for area in holes:
            yield from self._vfree(task, area)
        ok = True
        for _ in range(self.spec.test_loop_count):
            tmp = yield from self._vmalloc(task, case, PAGE_SIZE)
            if tmp is None:
                ok = False
                break
            yield from self._iteration(task)
            yield from self._vfree(task, tmp)
        for area in kept:
            yield from self._vfree(task, area)
        yield from self._vfree(task, ptr)
        yield from self._vfree(task, junk_ptr)
        return ok

    def long_busy_list_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``long_busy_list_alloc_test``: 15000 1-page areas kept busy, then
        100-page and 1-page vmallocs in a loop."""
        case, setup = "long_busy_list_alloc_test", "long_busy_list_alloc_test.setup"
        length = self.spec.long_busy_list_length
        ptr = yield from self._vmalloc(task, setup, POINTER * length)
        if ptr is None:
            return False
        busy = []
        for _ in range(length):
            busy.append((yield from self._vmalloc(task, setup, PAGE_SIZE)))
        ok = True
        for _ in range(self.spec.test_loop_count):
            p1 = yield from self._vmalloc(task, case, 100 * PAGE_SIZE)
            if p1 is None:
                ok = False
                break
            p2 = yield from self._vmalloc(task, case, PAGE_SIZE)
            if p2 is None:
                yield from self._vfree(task, p1)
                ok = False
                break
            yield from self._iteration(task)
            yield from self._vfree(task, p1)
            yield from self._vfree(task, p2)
        for area in busy:
            yield from self._vfree(task, area)
        yield from self._vfree(task, ptr)
        return ok

    def random_size_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``random_size_alloc_test``: vmalloc(n pages), n uniform in 1..100."""
        for _ in range(self.spec.test_loop_count):
            n = int(rng.integers(0, 1 << 32)) % 100 + 1
            p = yield from self._vmalloc(task, "random_size_alloc_test", n * PAGE_SIZE)
            if p is None:
                return False
            yield from self._iteration(task)
            yield from self._vfree(task, p)
        return True

    def fix_align_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``fix_align_alloc_test``: 5 pages at THREAD_ALIGN << 1 (32 KiB on x86_64)."""
        for _ in range(self.spec.test_loop_count):
            p = yield from self._vmalloc(task, "fix_align_alloc_test", 5 * PAGE_SIZE, THREAD_ALIGN << 1, GFP_ZEROED)
            if p is None:
                return False
            yield from self._iteration(task)
            yield from self._vfree(task, p)
        return True

    def random_size_align_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``random_size_align_alloc_test``: one random word gives both the
        alignment 2^(rnd % 23) and the size (rnd % 10 + 1) pages."""
        for _ in range(self.spec.test_loop_count):
            rnd = int(rng.integers(0, 1 << 64, dtype=np.uint64))
            align, size = 1 << (rnd % 23), (rnd % 10 + 1) * PAGE_SIZE
            p = yield from self._vmalloc(task, "random_size_align_alloc_test", size, align, GFP_ZEROED)
            if p is None:
                return False
            yield from self._iteration(task)
            yield from self._vfree(task, p)
        return True

    def align_shift_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``align_shift_alloc_test``: 1 page at alignments 2^0..2^63; "supposed
        to fail" once the aligned start leaves the vmalloc window."""
        for i in range(BITS_PER_LONG):
            p = yield from self._vmalloc(task, "align_shift_alloc_test", PAGE_SIZE, 1 << i, GFP_ZEROED)
            if p is None:
                return False
            yield from self._vfree(task, p)
        return True

    def pcpu_alloc_test(self, task: Any, rng: np.random.Generator) -> Generator[Any, Any, bool]:
        """``pcpu_alloc_test``: 35000 ``__alloc_percpu`` of 1..1024 bytes at
        alignments 2..2048 (cycling), then all freed; only the chunks they need
        reach the vmap allocator."""
        count = self.spec.pcpu_alloc_count
        pcpu = yield from self._vmalloc(task, "pcpu_alloc_test.setup", POINTER * count)
        if pcpu is None:
            return False
        ok = True
        held = []
        for i in range(count):
            r = int(rng.integers(0, 1 << 32))
            rng.integers(0, 1 << 32)  # the source draws a second word and does not use it
            chunk = yield from self.pcpu.pcpu_alloc(task, r % (PAGE_SIZE // 4) + 1, 1 << (i % 11 + 1))
            if chunk is None:
                ok = False
            else:
                held.append(chunk)
            yield from self._iteration(task)
        for chunk in held:
            self.pcpu.free_percpu(task, chunk)
        yield from self._vfree(task, pcpu)
        return ok
