"""Where allocated memory sits, by kind: the pools reclaim works on (Linux 5.3 LRUs, abstracted).

Every allocated page is charged to one pool: clean, dirty and hot mapped file
pages, anon, shmem, reclaimable slab (reclaimable), and kernel stacks, page
tables and unreclaimable slab (not).  The page allocator charges and uncharges
it on each alloc and free (``pool=``); reclaim isolates pages from it, cheapest
first; anon pages, page tables and kernel stacks are also charged to the
:class:`sim.kernel.mm.mm_types.MemoryOwner` named by the allocation.

Pages are counted per zone, per pool and per owner, so that a free returns pages to
the zones they were taken from (the kernel frees a page to ``page_zone(page)``) and
``zone_reclaimable_pages`` can be answered per zone.  Pages are counted, not named:
a free of ``n`` pages of an owner takes them from that owner's zones, and a free of
pages no owner holds (reclaimed file pages, slab pages) from the pool's unowned pages,
in both cases in proportion to how many sit in each zone (largest remainder, no
random draw): the expected zones of ``n`` pages drawn from the pool.  Which zone an
LRU page is reclaimed from depends in the kernel on its age, not modelled here.
Split off vmscan.py, which re-exports :class:`MemoryPools`.
"""

from __future__ import annotations

from sim.kernel.mm.mm_types import OWNER_POOLS, MemoryOwner

POOLS = (
    "file_clean", "file_dirty", "file_mapped_hot", "anon", "shmem", "slab_reclaimable",
    "kernel_stack", "pagetables", "slab_unreclaimable",
)  # fmt: skip
UNMOVABLE_POOLS = frozenset({"kernel_stack", "pagetables", "slab_unreclaimable", "slab_reclaimable"})
FILE_POOLS = ("file_clean", "file_dirty", "file_mapped_hot")
ANON_POOLS = ("anon", "shmem")
# what each reclaimer may take, cheapest first (anon/shmem only with swap)
KSWAPD_ORDER = ("file_clean", "slab_reclaimable", "file_mapped_hot", "file_dirty", "anon", "shmem")
BOOST_ORDER = ("file_clean", "file_mapped_hot")  # may_swap = may_writepage = 0
DIRECT_ORDER = ("file_clean", "slab_reclaimable", "file_mapped_hot", "anon", "shmem")  # no writeback
# the kernel's reclaim list of each reclaimable pool (5.3): page cache on the file LRU, anon and
# shmem (swap-backed) on the anon LRU, reclaimable slab behind shrink_slab, not on an LRU
POOL_LIST = {
    "file_clean": "file", "file_dirty": "file", "file_mapped_hot": "file",
    "anon": "anon", "shmem": "anon", "slab_reclaimable": "slab",
}  # fmt: skip


class Pool:
    """Pages charged to one kind of memory, per zone type, and how many reclaim holds."""

    __slots__ = ("by_zone", "isolated", "name", "owned_by_zone", "pages", "unmovable")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pages = 0
        self.isolated = 0
        self.by_zone = [0, 0, 0]
        self.owned_by_zone = [0, 0, 0]  # the part of by_zone charged to MemoryOwners
        self.unmovable = name in UNMOVABLE_POOLS


class MemoryPools:
    """All allocated memory by kind, and the MemoryOwners charged for anon/page tables/stacks."""

    def __init__(self) -> None:
        self.pool = {name: Pool(name) for name in POOLS}
        self.owners: dict[MemoryOwner, None] = {}  # insertion-ordered set
        self.swap_enabled = False
        self.swap_used = 0

    def charge(self, pool: str, zone_idx: int, n: int, owner: MemoryOwner | None) -> None:
        p = self.pool[pool]
        p.pages += n
        p.by_zone[zone_idx] += n
        if owner is not None and pool in OWNER_POOLS:
            owner.charged[pool] += n
            owner.zones[pool][zone_idx] += n
            p.owned_by_zone[zone_idx] += n
            if owner not in self.owners:
                self.owners[owner] = None
            if owner.watched < len(owner.tasks):
                self._watch(owner)

    def _watch(self, owner: MemoryOwner) -> None:
        """Call :meth:`exit_mm` when the owner's tasks exit (``Task.on_exit``)."""
        for task in owner.tasks[owner.watched :]:
            hooks = getattr(task, "on_exit", None)
            if hooks is not None:
                hooks.append(lambda _task, o=owner: self.exit_mm(o))
        owner.watched = len(owner.tasks)

    def exit_mm(self, owner: MemoryOwner) -> None:
        """The last task of ``owner`` exited (``exit_mmap``, 5.3): its swap entries are
        freed, and without charged pages it leaves the OOM candidates.  The
        workload frees its resident pages itself."""
        if not owner.exited:
            return
        self.swap_used -= owner.swap
        owner.swap = 0
        if not any(owner.charged.values()):
            self.owners.pop(owner, None)

    def uncharge(self, pool: str, n: int, owner: MemoryOwner | None) -> list[tuple[int, int]]:
        """Remove ``n`` pages; returns (zone type, pages) of the zones they sat in, highest
        first: the owner's zones for an owner's pages, else the pool's unowned pages' (see
        the module doc).  Pages of an owner the OOM reaper has freed are not freed again."""
        p = self.pool[pool]
        owned = owner is not None and pool in OWNER_POOLS
        if owned and owner.charged[pool] < n:
            if not owner.reaped:
                raise ValueError(f"freeing {n} {pool} pages of {owner.name}, charged {owner.charged[pool]}")
            n = owner.charged[pool]
        if n > p.pages:
            raise ValueError(f"freeing {n} pages of {pool}, which holds {p.pages}")
        by_zone, owned_by_zone = p.by_zone, p.owned_by_zone
        if owned:
            held = owner.zones[pool]
            out = take_in_proportion(held, n)
            for idx, k in out:
                held[idx] -= k
                owned_by_zone[idx] -= k
            owner.charged[pool] -= n
            if not owner.swap and not any(owner.charged.values()):
                self.owners.pop(owner, None)  # type: ignore[arg-type]  # owned: not None  # an exited process leaves the OOM candidates
        else:
            unowned = [by_zone[0] - owned_by_zone[0], by_zone[1] - owned_by_zone[1], by_zone[2] - owned_by_zone[2]]
            if n > unowned[0] + unowned[1] + unowned[2]:
                raise ValueError(f"freeing {n} unowned pages of {pool}, which holds {sum(unowned)} unowned")
            out = take_in_proportion(unowned, n)
        for idx, k in out:
            by_zone[idx] -= k
        p.pages -= n
        if p.isolated > p.pages:  # freed by their user while reclaim held them
            p.isolated = p.pages
        return out

    def isolate(self, n: int, order: tuple[str, ...], budget: dict[str, int] | None = None) -> list[tuple[str, int]]:
        """Take up to ``n`` reclaimable pages off the LRUs, cheapest pools first; with a
        ``budget`` (pages per reclaim list, :data:`POOL_LIST`) at most that many from each
        list, and the budget is spent in place."""
        taken = []
        for name in order:
            if name in ANON_POOLS and not self.swap_enabled:
                continue
            p = self.pool[name]
            k = min(n, p.pages - p.isolated)
            if budget is not None:
                lst = POOL_LIST[name]
                k = min(k, budget[lst])
                if k > 0:
                    budget[lst] -= k
            if k > 0:
                p.isolated += k
                taken.append((name, k))
                n -= k
                if not n:
                    break
        return taken

    def reclaimable(self, order: tuple[str, ...]) -> int:
        """Pages a reclaimer taking ``order`` could still isolate."""
        swap = self.swap_enabled
        pools = self.pool
        total = 0
        for n in order:  # a loop, not sum() over a generator: called per reclaim
            if swap or n not in ANON_POOLS:
                p = pools[n]
                total += p.pages - p.isolated
        return total

    def list_size(self, lst: str, max_zone: int) -> int:
        """Pages on reclaim list ``lst`` (:data:`POOL_LIST`) in zones up to ``max_zone`` and
        not isolated (``lruvec_lru_size`` with a reclaim_idx; isolated pages are not
        counted by zone, so all of them are taken off)."""
        total = 0
        for name, on in POOL_LIST.items():
            if on == lst:
                p = self.pool[name]
                total += max(sum(p.by_zone[: max_zone + 1]) - p.isolated, 0)
        return total

    def zone_reclaimable_pages(self, zone_idx: int) -> int:
        """``zone_reclaimable_pages``: file LRU pages, plus anon when swap is available."""
        pools = self.pool
        total = 0
        for n in FILE_POOLS + ANON_POOLS if self.swap_enabled else FILE_POOLS:
            total += pools[n].by_zone[zone_idx]
        return total

    def write_pending(self, zone_idx: int) -> int:
        return self.pool["file_dirty"].by_zone[zone_idx]

    def levels(self) -> dict[str, int]:
        out = {name: p.pages for name, p in self.pool.items()}
        out["swap_used"] = self.swap_used
        return out


def take_in_proportion(held: list[int], n: int) -> list[tuple[int, int]]:
    """Split ``n`` (at most ``sum(held)``) over the zones in proportion to ``held``, by largest
    remainder (ties to the higher zone); (zone type, pages) with pages > 0, highest zone first."""
    total = held[0] + held[1] + held[2]
    if n == total:
        return [(idx, held[idx]) for idx in (2, 1, 0) if held[idx]]
    nonzero = [idx for idx in (2, 1, 0) if held[idx]]
    if len(nonzero) == 1:
        return [(nonzero[0], n)]
    shares = {idx: n * held[idx] // total for idx in nonzero}
    left = n - sum(shares.values())
    if left:
        by_remainder = sorted(nonzero, key=lambda idx: -((n * held[idx]) % total))  # stable: higher zone first
        for idx in by_remainder[:left]:
            shares[idx] += 1
    return [(idx, shares[idx]) for idx in nonzero if shares[idx]]
