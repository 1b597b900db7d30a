"""The buddy free lists of one zone by migratetype, at pageblock grain (mm/page_alloc.c, 5.2-5.3).

Why: the watermark boost of 5.0+ (1c30844d2dfe) is raised in ``steal_suitable_fallback``
when ``__rmqueue_fallback`` takes a free block smaller than a pageblock from another
migratetype's list.  Whether that happens depends on what each list holds, so the lists
are modelled, counted rather than page by page:

* per migratetype list (UNMOVABLE, MOVABLE, RECLAIMABLE: ``MIGRATE_PCPTYPES``) the free
  pages on it (``nr``), how many of those sit in pageblocks of each type (``comp``), and
  how many whole free pageblocks it holds (``whole``);
* pageblocks per type (``blocks``); at boot every pageblock is MOVABLE and free
  (``memmap_init_zone``);
* the allocated pages of each migratetype by the type of the pageblock they sit in
  (``held``), and the same for the pages on per-CPU lists (``pcp_comp``, summed over CPUs);
  a page freed by its user goes to the list of its pageblock's type
  (``free_unref_page_prepare``), a per-CPU page back to the list it came from
  (``free_pcppages_bulk``), so pages stolen without their pageblock go home when freed and
  the list that stole them runs dry again.

Taking pages follows ``__rmqueue``: the smallest block of the list (so pieces of split
pageblocks before whole ones), else ``__rmqueue_fallback`` in the kernel's ``fallbacks``
order: a whole free pageblock of another type is taken over (``change_pageblock_range``,
no boost), else a smaller block is stolen (boost), moving the free pages of its pageblock
if the requester may (``can_steal_fallback``: unmovable and reclaimable requests always,
movable ones for blocks of order >= pageblock_order / 2), and claiming the pageblock if
at least half of it is free or alike.  With ``ALLOC_NOFRAGMENT`` only whole pageblocks
may be taken (``min_order = pageblock_order``).

What counting cannot know, and is assumed instead:

* free pages of a list are spread evenly over the partly used pageblocks of its type, so
  the victim pageblock of a steal holds ``free / partly-used blocks`` free pages (at least
  one); the kernel takes the list's largest free block, which "roughly approximates the
  pageblock with the most free pages", so this undercounts the pages a steal moves and
  overcounts steals;
* a pageblock freed page by page does not become whole again (buddy merging can rebuild
  one only when every page of it is free, which even spread makes rare); whole pageblocks
  come from boot and from takeovers;
* which pageblock type a freed page or a per-CPU page is in is known as a share, not per
  page: frees are split over block types in proportion to where that migratetype's
  pages sit, with the rounding carried to the next free (no random draw);
* HIGHATOMIC, CMA and ISOLATE pageblocks are not modelled here: the high-atomic reserve is
  counted in :class:`sim.kernel.mm.watermarks.Zone` (:mod:`sim.kernel.mm.highatomic`); its
  free pages leave these lists (:meth:`FreeArea.take_free`) and come back when a pageblock
  is unreserved (:meth:`FreeArea.add_free`), and a reserved pageblock keeps being counted
  under its former type in ``blocks``.
"""

from __future__ import annotations

from typing import Final

from sim.kernel.mm.zones import MIGRATE_PCPTYPES, PAGEBLOCK_NR_PAGES

MIGRATE_UNMOVABLE: Final = 0
MIGRATE_MOVABLE: Final = 1
MIGRATE_RECLAIMABLE: Final = 2
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable")
# fallbacks[] of mm/page_alloc.c (5.3): the lists a request may steal from, in order
FALLBACKS = ((MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE), (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
             (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE))  # fmt: skip
PAGEBLOCK_ORDER: Final = 9
_HALF_BLOCK: Final = 1 << (PAGEBLOCK_ORDER - 1)
_STEAL_ORDER_PAGES: Final = 1 << (PAGEBLOCK_ORDER // 2)  # can_steal_fallback: order >= pageblock_order / 2

# the migratetype of each pool's allocations (gfp_migratetype: __GFP_MOVABLE, __GFP_RECLAIMABLE)
POOL_MIGRATETYPE = {
    "file_clean": MIGRATE_MOVABLE, "file_dirty": MIGRATE_MOVABLE, "file_mapped_hot": MIGRATE_MOVABLE,
    "anon": MIGRATE_MOVABLE, "shmem": MIGRATE_MOVABLE, "slab_reclaimable": MIGRATE_RECLAIMABLE,
    "kernel_stack": MIGRATE_UNMOVABLE, "pagetables": MIGRATE_UNMOVABLE, "slab_unreclaimable": MIGRATE_UNMOVABLE,
}  # fmt: skip


def _move(src: list[float], src_n: int, dst: list[float], k: int) -> None:
    """Move the block-type shares of ``k`` of the ``src_n`` pages of ``src`` into ``dst``."""
    if k >= src_n:
        for b in range(MIGRATE_PCPTYPES):
            dst[b] += src[b]
            src[b] = 0.0
        return
    f = k / src_n
    for b in range(MIGRATE_PCPTYPES):
        d = src[b] * f
        src[b] -= d
        dst[b] += d


class FreeArea:
    """``zone->free_area`` and ``pageblock_flags`` of one zone, counted (see the module doc)."""

    __slots__ = ("blocks", "comp", "held", "held_n", "nr", "pcp_comp", "pcp_n", "rest", "whole")

    def __init__(self, managed: int) -> None:
        nblocks = -(-managed // PAGEBLOCK_NR_PAGES)
        self.blocks = [0, nblocks, 0]
        self.nr = [0, managed, 0]  # free pages on each list
        self.whole = [0, managed // PAGEBLOCK_NR_PAGES, 0]  # whole free pageblocks on each list
        self.comp = [[0.0] * 3 for _ in range(3)]  # [list][block type]: free pages
        self.comp[MIGRATE_MOVABLE][MIGRATE_MOVABLE] = float(managed)
        self.held = [[0.0] * 3 for _ in range(3)]  # [migratetype][block type]: allocated pages
        self.held_n = [0, 0, 0]
        self.pcp_comp = [[0.0] * 3 for _ in range(3)]  # [pcp list][block type], all CPUs
        self.pcp_n = [0, 0, 0]
        self.rest = [[0.0] * 3 for _ in range(3)]  # [migratetype][block type]: rounding carried

    # -- taking pages ---------------------------------------------------------------------

    def rmqueue(self, mt: int, n: int, nofragment: bool, dst: list[float]) -> tuple[int, int]:
        """Take up to ``n`` pages for a ``mt`` request (``__rmqueue`` once per page, as
        ``rmqueue_bulk`` does); their block-type shares are added to ``dst``.  Returns
        (pages taken, steals of a block smaller than a pageblock: one boost each)."""
        nr, whole, comp = self.nr, self.whole, self.comp
        taken = steals = 0
        while taken < n:
            avail = nr[mt]
            if avail:
                t = min(n - taken, avail)
                self._take_list(mt, t, dst)
                taken += t
                continue
            fallback = self._whole_fallback(mt)
            if fallback >= 0:  # change_pageblock_range: the whole block changes type, no boost
                whole[fallback] -= 1
                nr[fallback] -= PAGEBLOCK_NR_PAGES
                comp[fallback][fallback] -= PAGEBLOCK_NR_PAGES
                self.blocks[fallback] -= 1
                self.blocks[mt] += 1
                whole[mt] += 1
                nr[mt] += PAGEBLOCK_NR_PAGES
                comp[mt][mt] += PAGEBLOCK_NR_PAGES
                continue
            if nofragment or not self._steal(mt):
                break
            steals += 1
        return taken, steals

    def _take_list(self, mt: int, t: int, dst: list[float]) -> None:
        """``__rmqueue_smallest``: pieces of split pageblocks first, then whole ones."""
        nr, whole, comp = self.nr, self.whole, self.comp
        src = comp[mt]
        in_whole = whole[mt] * PAGEBLOCK_NR_PAGES
        partial = nr[mt] - in_whole
        if t <= partial:  # the usual case: no whole pageblock is split
            if partial == nr[mt]:
                _move(src, partial, dst, t)
            else:
                share = [src[0], src[1], src[2]]
                share[mt] -= in_whole
                f = t / partial
                for b in range(MIGRATE_PCPTYPES):
                    d = share[b] * f
                    src[b] -= d
                    dst[b] += d
        else:
            if partial:
                share = [src[0], src[1], src[2]]
                share[mt] -= in_whole
                for b in range(MIGRATE_PCPTYPES):
                    src[b] -= share[b]
                    dst[b] += share[b]
            rest = t - partial
            whole[mt] -= -(-rest // PAGEBLOCK_NR_PAGES)  # split as many whole blocks as needed
            src[mt] -= rest
            dst[mt] += rest
        nr[mt] -= t

    def can_take(self, mt: int, n: int, nofragment: bool) -> bool:
        """Whether ``n`` pages can be had for ``mt`` without a steal below pageblock order
        (all that ALLOC_NOFRAGMENT allows); always, without it, if the zone has them."""
        if not nofragment:
            return self.free_pages() >= n
        have = self.nr[mt]
        for f in FALLBACKS[mt]:
            have += self.whole[f] * PAGEBLOCK_NR_PAGES
        return have >= n

    def _whole_fallback(self, mt: int) -> int:
        """The first fallback list with a whole free pageblock, or -1."""
        for f in FALLBACKS[mt]:
            if self.whole[f]:
                return f
        return -1

    def victim_free(self, f: int) -> int:
        """Free pages of list ``f`` in the pageblock a steal finds (even spread, >= 1)."""
        partial = self.nr[f] - self.whole[f] * PAGEBLOCK_NR_PAGES
        blocks = self.blocks[f] - self.whole[f]
        return max(1, min(partial, round(partial / blocks) if blocks > 0 else partial))

    def _steal(self, mt: int) -> bool:
        """``__rmqueue_fallback`` below pageblock order and ``steal_suitable_fallback``: move
        the victim's free pages to ``mt``'s list (claiming the pageblock if at least half of
        it is free or alike), or for a movable request that may not, one page's block."""
        nr, comp = self.nr, self.comp
        best, best_free = -1, 0
        for f in FALLBACKS[mt]:  # the largest free block: the list whose victim holds most
            if nr[f]:
                free = self.victim_free(f)
                if free > best_free:
                    best, best_free = f, free
        if best < 0:
            return False
        f, free = best, best_free
        can_steal = mt != MIGRATE_MOVABLE or free >= _STEAL_ORDER_PAGES
        if not can_steal:  # find_smallest: the smallest block, an order-0 page, moves alone
            free = 1
        src = comp[f]
        moved = [0.0, 0.0, 0.0]
        if src[f] >= free:  # the victim pageblock is of the list's own type
            src[f] -= free
            moved[f] = float(free)
        else:
            _move(src, nr[f], moved, free)
        nr[f] -= free
        nr[mt] += free
        claim = False
        if can_steal and self.blocks[f] > 0:
            per_block_movable = self.held[MIGRATE_MOVABLE][f] / self.blocks[f]
            if mt == MIGRATE_MOVABLE:
                alike = per_block_movable
            elif f == MIGRATE_MOVABLE:
                alike = PAGEBLOCK_NR_PAGES - free - per_block_movable
            else:
                alike = 0.0
            claim = free + alike >= _HALF_BLOCK
        if claim:  # set_pageblock_migratetype: the block and its allocated pages change type
            comp[mt][mt] += moved[0] + moved[1] + moved[2]
            share = 1.0 / self.blocks[f]
            for a in range(MIGRATE_PCPTYPES):
                d = self.held[a][f] * share
                self.held[a][f] -= d
                self.held[a][mt] += d
            self.blocks[f] -= 1
            self.blocks[mt] += 1
        else:
            for b in range(MIGRATE_PCPTYPES):
                comp[mt][b] += moved[b]
        return True

    # -- per-CPU lists and the pages' users ---------------------------------------------------

    def to_pcp(self, mt: int, n: int, comp: list[float]) -> None:
        """``n`` pages taken by ``rmqueue_bulk`` for list ``mt`` join the per-CPU lists."""
        pc = self.pcp_comp[mt]
        for b in range(MIGRATE_PCPTYPES):
            pc[b] += comp[b]
        self.pcp_n[mt] += n

    def pcp_to_user(self, mt: int, k: int) -> None:
        """``k`` pages of per-CPU list ``mt`` go to their user (a ``mt`` allocation)."""
        _move(self.pcp_comp[mt], self.pcp_n[mt], self.held[mt], k)
        self.pcp_n[mt] -= k
        self.held_n[mt] += k

    def to_user(self, mt: int, n: int, comp: list[float]) -> None:
        """``n`` pages straight from the buddy lists (high order, boot) go to their user."""
        h = self.held[mt]
        for b in range(MIGRATE_PCPTYPES):
            h[b] += comp[b]
        self.held_n[mt] += n

    def release(self, mt: int, k: int) -> list[int]:
        """``k`` pages of a ``mt`` user are freed: how many sit in pageblocks of each type
        (``get_pfnblock_migratetype``), in proportion to where ``mt``'s pages sit, with the
        rounding carried to the next call.  Their shares leave ``held``."""
        held, n = self.held[mt], self.held_n[mt]
        rest = self.rest[mt]
        if n <= 0:
            out = [0, 0, 0]
            out[mt] = k
            return out
        f = k / n if k < n else 1.0
        want = [held[0] * f + rest[0], held[1] * f + rest[1], held[2] * f + rest[2]]
        out = [int(w) if w > 0 else 0 for w in want]
        short = k - out[0] - out[1] - out[2]
        while short > 0:  # the largest leftovers get the remaining pages
            b = max(range(MIGRATE_PCPTYPES), key=lambda i: want[i] - out[i])
            out[b] += 1
            short -= 1
        while short < 0:
            b = min((i for i in range(MIGRATE_PCPTYPES) if out[i] > 0), key=lambda i: want[i] - out[i])
            out[b] -= 1
            short += 1
        for b in range(MIGRATE_PCPTYPES):
            rest[b] = want[b] - out[b]
            held[b] -= held[b] * f
        self.held_n[mt] = n - k if k < n else 0
        return out

    def freed_to_pcp(self, by_block: list[int]) -> None:
        """Freed pages join the per-CPU list of their pageblock's type (``free_unref_page_commit``)."""
        for b in range(MIGRATE_PCPTYPES):
            k = by_block[b]
            if k:
                self.pcp_comp[b][b] += k
                self.pcp_n[b] += k

    def pcp_to_buddy(self, mt: int, k: int) -> None:
        """``k`` pages of per-CPU list ``mt`` back to buddy list ``mt`` (``free_pcppages_bulk``)."""
        _move(self.pcp_comp[mt], self.pcp_n[mt], self.comp[mt], k)
        self.pcp_n[mt] -= k
        self.nr[mt] += k

    def freed_to_buddy(self, by_block: list[int]) -> None:
        """Freed high-order pages go straight to the list of their pageblock's type."""
        for b in range(MIGRATE_PCPTYPES):
            k = by_block[b]
            if k:
                self.comp[b][b] += k
                self.nr[b] += k

    # -- the high-atomic reserve ----------------------------------------------------------------

    def take_free(self, k: int, mt: int | None = None) -> int:
        """Up to ``k`` free pages leave the lists for the MIGRATE_HIGHATOMIC list, which the
        zone counts (``move_freepages_block`` in ``reserve_highatomic_pageblock``): list ``mt``
        first, then the others, fullest first.  Returns how many left."""
        scratch = [0.0, 0.0, 0.0]
        lists = sorted(range(MIGRATE_PCPTYPES), key=lambda m: (m != mt, -self.nr[m]))
        taken = 0
        for m in lists:
            t = min(k - taken, self.nr[m])
            if t > 0:
                self._take_list(m, t, scratch)
                taken += t
        return taken

    def add_free(self, mt: int, k: int) -> None:
        """``k`` free pages of a pageblock that becomes ``mt`` join list ``mt``
        (``unreserve_highatomic_pageblock``'s ``move_freepages_block``)."""
        self.nr[mt] += k
        self.comp[mt][mt] += k

    def free_pages(self) -> int:
        """Pages on the buddy lists."""
        return self.nr[0] + self.nr[1] + self.nr[2]
