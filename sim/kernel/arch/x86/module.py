"""``module_alloc`` on x86_64 (arch/x86/kernel/module.c, Linux 5.3).

``module_alloc`` vmallocs page-aligned (32 KiB with KASAN) in
``[MODULES_VADDR + get_module_load_offset(), MODULES_END)`` with GFP_KERNEL.  The
KASLR offset, 1..1024 pages, is drawn once and kept for the boot.  The free tree is
global, so the first allocation in the window lands inside the block that straddles
its start: an NE_FIT split; later ones take the window's frontier (LE) or a purged
hole (FL/LE) (``vmap_init_free_space`` and ``classify_va_fit_type``, mm/vmalloc.c,
v5.3).  When the window is full the request fails as "no space".

Its callers (module loading, the BPF JIT) are workloads: :mod:`sim.workloads.modules`
and :mod:`sim.workloads.bpf`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from sim.kernel.machine import Machine
from sim.kernel.mm.gfp import GFP_KERNEL
from sim.kernel.mm.vmalloc.alloc import VmStruct
from sim.kernel.mm.vmalloc.space import MODULES_END, PAGE_SIZE
from sim.kernel.sched.cpu import Task

KASAN_SHADOW_SCALE_SHIFT = 3  # MODULE_ALIGN = PAGE_SIZE << 3 with KASAN (arch/x86/include/asm/module.h)
MODULES_VADDR_NOKASLR = 0xFFFFFFFFA0000000  # __START_KERNEL_map + 512 MiB without RANDOMIZE_BASE


def module_align(kasan: bool) -> int:
    """``MODULE_ALIGN``: a page, or 32 KiB with KASAN."""
    return PAGE_SIZE << KASAN_SHADOW_SCALE_SHIFT if kasan else PAGE_SIZE


def module_fits(size: int, modules_vaddr: int) -> bool:
    """``PAGE_ALIGN(size) <= MODULES_LEN``: the test ``module_alloc`` makes first."""
    return -(-size // PAGE_SIZE) * PAGE_SIZE <= MODULES_END - modules_vaddr


def draw_module_load_offset(rng: np.random.Generator) -> int:
    """A KASLR module load offset: (get_random_int() % 1024 + 1) pages (v5.3)."""
    return (int(rng.integers(0, 1 << 32)) % 1024 + 1) * PAGE_SIZE


def get_module_load_offset(machine: Machine, candidate: int, kaslr: bool) -> int:
    """The KASLR offset of the module window (``get_module_load_offset`` v5.3), fixed
    at the first call and kept for the boot: the kernel keeps it in a static, 0
    meaning not yet drawn; here it is kept on the machine, and ``candidate`` (drawn
    by the caller's workload when it starts, so that the draw does not depend on
    timing) becomes it at the first call of any module_alloc caller."""
    if not kaslr:
        return 0
    offset = machine.module_load_offset
    if offset == 0:
        offset = machine.module_load_offset = candidate
    return offset


def module_alloc(
    machine: Machine, task: Task, size: int, *, modules_vaddr: int, align: int, kaslr: bool, offset: int,
    caller: str = "module_alloc",
) -> Generator[Any, Any, VmStruct | None]:  # fmt: skip
    """``module_alloc`` (v5.3) in the window from ``modules_vaddr`` to MODULES_END;
    ``offset`` is the caller's candidate load offset (see :func:`get_module_load_offset`).
    The pages are charged as unreclaimable kernel memory."""
    if not module_fits(size, modules_vaddr):
        return None
    vstart = modules_vaddr + get_module_load_offset(machine, offset, kaslr)
    return (
        yield from machine.vmalloc.vmalloc_node_range(
            task, size, align, vstart, MODULES_END, GFP_KERNEL, caller=caller, pool="slab_unreclaimable"
        )
    )
