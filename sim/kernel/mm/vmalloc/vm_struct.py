"""``struct vm_struct`` (include/linux/vmalloc.h, v5.3): one mapped area and what it holds.

A leaf of the vmalloc package: the allocation path (:mod:`sim.kernel.mm.vmalloc.alloc`)
makes these, the lazy-free path (:mod:`sim.kernel.mm.vmalloc.purge`) takes them back, and the
kernel users (fork stacks, modules, BPF, vmap blocks, percpu chunks) hold them in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sim.kernel.mm.vmalloc.area import VmapArea

VM_IOREMAP: Final = 0x1
VM_ALLOC: Final = 0x2
VM_NO_GUARD: Final = 0x40


@dataclass
class VmStruct:
    """``struct vm_struct``: the area, its size with the guard page, the pages it maps (counted,
    with the pool they were charged to), and the slab objects of the struct and its page array."""

    va: VmapArea
    size: int  # with the guard page
    flags: int
    caller: str
    pool: str
    owner: Any = None
    nr_pages: int = 0
    vm_slab: Any = None
    pages_slab: Any = None

    @property
    def addr(self) -> int:
        return self.va.va_start
