"""GFP flags with the bit values of Linux 5.2/5.3 (include/linux/gfp.h).

Python mangles names that start with two underscores inside class bodies, so
the single flags are members of :class:`Gfp` without the ``__GFP_`` prefix
(``Gfp.HIGH`` is ``__GFP_HIGH``); the composite masks keep their kernel names
(``GFP_KERNEL``, ``GFP_NOWAIT``, ...).  :func:`gfp_name` prints a mask the way
the kernel's ``%pGg`` does, e.g. ``GFP_NOWAIT|__GFP_COMP``.

Every flag and mask is a plain ``int``, as in C: the model tests and combines them
on its hottest paths, and an ``IntFlag`` made each ``&`` and ``|`` a Python-level
call (about 2% of a run, and a call the compiled build cannot remove).
"""

from __future__ import annotations

from typing import Final


class Gfp:
    """Single ``__GFP_*`` bits (v5.2), as plain ints."""

    DMA: Final = 0x01
    HIGHMEM: Final = 0x02
    DMA32: Final = 0x04
    MOVABLE: Final = 0x08
    RECLAIMABLE: Final = 0x10
    HIGH: Final = 0x20
    IO: Final = 0x40
    FS: Final = 0x80
    ZERO: Final = 0x100
    ATOMIC: Final = 0x200
    DIRECT_RECLAIM: Final = 0x400
    KSWAPD_RECLAIM: Final = 0x800
    WRITE: Final = 0x1000
    NOWARN: Final = 0x2000
    RETRY_MAYFAIL: Final = 0x4000
    NOFAIL: Final = 0x8000
    NORETRY: Final = 0x10000
    MEMALLOC: Final = 0x20000
    COMP: Final = 0x40000
    NOMEMALLOC: Final = 0x80000
    HARDWALL: Final = 0x100000
    THISNODE: Final = 0x200000
    ACCOUNT: Final = 0x400000


# (name, bit) of every single flag, lowest bit first: the order %pGg prints them in
_BITS: tuple[tuple[str, int], ...] = (
    ("DMA", Gfp.DMA),
    ("HIGHMEM", Gfp.HIGHMEM),
    ("DMA32", Gfp.DMA32),
    ("MOVABLE", Gfp.MOVABLE),
    ("RECLAIMABLE", Gfp.RECLAIMABLE),
    ("HIGH", Gfp.HIGH),
    ("IO", Gfp.IO),
    ("FS", Gfp.FS),
    ("ZERO", Gfp.ZERO),
    ("ATOMIC", Gfp.ATOMIC),
    ("DIRECT_RECLAIM", Gfp.DIRECT_RECLAIM),
    ("KSWAPD_RECLAIM", Gfp.KSWAPD_RECLAIM),
    ("WRITE", Gfp.WRITE),
    ("NOWARN", Gfp.NOWARN),
    ("RETRY_MAYFAIL", Gfp.RETRY_MAYFAIL),
    ("NOFAIL", Gfp.NOFAIL),
    ("NORETRY", Gfp.NORETRY),
    ("MEMALLOC", Gfp.MEMALLOC),
    ("COMP", Gfp.COMP),
    ("NOMEMALLOC", Gfp.NOMEMALLOC),
    ("HARDWALL", Gfp.HARDWALL),
    ("THISNODE", Gfp.THISNODE),
    ("ACCOUNT", Gfp.ACCOUNT),
)


RECLAIM: Final = Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM  # __GFP_RECLAIM
GFP_ATOMIC: Final = Gfp.HIGH | Gfp.ATOMIC | Gfp.KSWAPD_RECLAIM
GFP_KERNEL: Final = RECLAIM | Gfp.IO | Gfp.FS
GFP_KERNEL_ACCOUNT: Final = GFP_KERNEL | Gfp.ACCOUNT
GFP_NOWAIT: Final = Gfp.KSWAPD_RECLAIM
GFP_NOIO: Final = RECLAIM
GFP_NOFS: Final = RECLAIM | Gfp.IO
GFP_USER: Final = RECLAIM | Gfp.IO | Gfp.FS | Gfp.HARDWALL
GFP_HIGHUSER: Final = GFP_USER | Gfp.HIGHMEM
GFP_HIGHUSER_MOVABLE: Final = GFP_HIGHUSER | Gfp.MOVABLE
GFP_ZONEMASK: Final = Gfp.DMA | Gfp.HIGHMEM | Gfp.DMA32 | Gfp.MOVABLE

# mm/internal.h: the bits a sub-allocation keeps from its caller
GFP_RECLAIM_MASK: Final = (
    RECLAIM
    | Gfp.HIGH
    | Gfp.IO
    | Gfp.FS
    | Gfp.NOWARN
    | Gfp.RETRY_MAYFAIL
    | Gfp.NOFAIL
    | Gfp.NORETRY
    | Gfp.MEMALLOC
    | Gfp.NOMEMALLOC
    | Gfp.ATOMIC
)

# THREADINFO_GFP & ~__GFP_ACCOUNT, the kernel stack's vmalloc mask (kernel/fork.c v5.3)
GFP_THREAD_STACK: Final = GFP_KERNEL | Gfp.ZERO
# PGALLOC_GFP, user page tables and the pgd (arch/x86/mm/pgtable.c v5.2)
GFP_PGALLOC: Final = GFP_KERNEL_ACCOUNT | Gfp.ZERO

# Composite names first, in the order the kernel's flag printer tries them.
_COMPOSITES: tuple[tuple[str, int], ...] = (
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER),
    ("GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT),
    ("GFP_KERNEL", GFP_KERNEL),
    ("GFP_NOFS", GFP_NOFS),
    ("GFP_ATOMIC", GFP_ATOMIC),
    ("GFP_NOIO", GFP_NOIO),
    ("GFP_NOWAIT", GFP_NOWAIT),
)


def gfpflags_allow_blocking(gfp: int) -> bool:
    """True when the caller may sleep (``__GFP_DIRECT_RECLAIM``)."""
    return bool(gfp & Gfp.DIRECT_RECLAIM)


def gfp_name(gfp: int) -> str:
    """``GFP_NOWAIT|__GFP_COMP``-style name of a mask (as ``%pGg`` prints it)."""
    rest = int(gfp)
    parts = []
    for name, mask in _COMPOSITES:
        if rest & mask == mask:
            parts.append(name)
            rest &= ~mask
    for name, flag in _BITS:
        if rest & flag:
            parts.append(f"__GFP_{name}")
            rest &= ~flag
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) if parts else "0"
