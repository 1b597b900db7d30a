"""GFP flags with the bit values of Linux 5.2/5.3 (include/linux/gfp.h).

Python mangles names that start with two underscores inside class bodies, so
the single flags are members of :class:`Gfp` without the ``__GFP_`` prefix
(``Gfp.HIGH`` is ``__GFP_HIGH``); the composite masks keep their kernel names
(``GFP_KERNEL``, ``GFP_NOWAIT``, ...).  :func:`gfp_name` prints a mask the way
the kernel's ``%pGg`` does, e.g. ``GFP_NOWAIT|__GFP_COMP``.
"""

from __future__ import annotations

from enum import IntFlag


class Gfp(IntFlag):
    """Single ``__GFP_*`` bits (v5.2)."""

    DMA = 0x01
    HIGHMEM = 0x02
    DMA32 = 0x04
    MOVABLE = 0x08
    RECLAIMABLE = 0x10
    HIGH = 0x20
    IO = 0x40
    FS = 0x80
    ZERO = 0x100
    ATOMIC = 0x200
    DIRECT_RECLAIM = 0x400
    KSWAPD_RECLAIM = 0x800
    WRITE = 0x1000
    NOWARN = 0x2000
    RETRY_MAYFAIL = 0x4000
    NOFAIL = 0x8000
    NORETRY = 0x10000
    MEMALLOC = 0x20000
    COMP = 0x40000
    NOMEMALLOC = 0x80000
    HARDWALL = 0x100000
    THISNODE = 0x200000
    ACCOUNT = 0x400000


RECLAIM = Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM  # __GFP_RECLAIM
GFP_ATOMIC = Gfp.HIGH | Gfp.ATOMIC | Gfp.KSWAPD_RECLAIM
GFP_KERNEL = RECLAIM | Gfp.IO | Gfp.FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | Gfp.ACCOUNT
GFP_NOWAIT = Gfp.KSWAPD_RECLAIM
GFP_NOIO = RECLAIM
GFP_NOFS = RECLAIM | Gfp.IO
GFP_USER = RECLAIM | Gfp.IO | Gfp.FS | Gfp.HARDWALL
GFP_HIGHUSER = GFP_USER | Gfp.HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | Gfp.MOVABLE
GFP_ZONEMASK = Gfp.DMA | Gfp.HIGHMEM | Gfp.DMA32 | Gfp.MOVABLE

# mm/internal.h: the bits a sub-allocation keeps from its caller
GFP_RECLAIM_MASK = (
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
GFP_THREAD_STACK = GFP_KERNEL | Gfp.ZERO
# PGALLOC_GFP, user page tables and the pgd (arch/x86/mm/pgtable.c v5.2)
GFP_PGALLOC = GFP_KERNEL_ACCOUNT | Gfp.ZERO

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
    for flag in Gfp:
        if rest & flag:
            parts.append(f"__GFP_{flag.name}")
            rest &= ~flag
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) if parts else "0"
