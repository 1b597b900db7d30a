"""The high-atomic reserve: pageblocks kept for high-order atomic allocations (mm/page_alloc.c, Linux 5.3).

A high-order allocation that succeeds with ALLOC_HARDER (5.3: __GFP_ATOMIC without
__GFP_NOMEMALLOC, in the slow path; 6.3: ALLOC_HIGHATOMIC, eb2e2b425c69) takes its
block from the reserve's free lists first; if it had to take it from elsewhere, the
pageblock it came from joins the reserve, one pageblock at a time up to
``managed / 100 + pageblock_nr_pages`` (the test is made before adding a block, so
the reserve can end up to a pageblock above that figure).  Requests without the
right to it see ``nr_reserved_highatomic`` subtracted from the free pages in
``__zone_watermark_ok`` and never get a page from its free lists.  A failed direct
reclaim gives one block back (a zone keeps its last one), and so does the last
retry before the OOM killer (then the last one too).

The model has no pageblocks or free lists, so the reserve is counted per zone
(:class:`sim.kernel.mm.watermarks.Zone`):

* ``highatomic``: ``nr_reserved_highatomic``, whole pageblocks in pages, exactly as
  the kernel counts it (it is what the watermark test subtracts);
* ``highatomic_free``: free pages on the MIGRATE_HIGHATOMIC lists, a part of
  ``nr_free`` that is not on the other migratetypes' lists
  (:class:`sim.kernel.mm.freelists.FreeArea`) and that only a request with the right
  may take;
* ``highatomic_held``: pages of high-order atomic blocks that sit in reserved
  pageblocks; their caller says so when it frees them (``free_pages(highatomic=)``)
  and they go back to the reserve's free lists;
* the rest of the reserved pages (``highatomic - highatomic_free - highatomic_held``)
  belong to other users.

Where the model has to choose, without fragmentation to go by:

* a newly reserved pageblock holds the free pages that the free lists' even spread
  gives a partly used pageblock of the allocation's migratetype
  (:meth:`sim.kernel.mm.freelists.FreeArea.victim_free`, at most the block less the
  allocation), and the rest belongs to other users: under pressure, when high-order
  atomic requests reach the slow path, that is a few free pages, so the reserve soon
  grows to its cap, as the kernel's does when its free blocks are scattered;
* pages of other users that reach the buddy lists (a per-CPU list spilling, a
  high-order free) land in the reserve in proportion to the share of the pages off
  the buddy lists that sit in reserved pageblocks (a fraction carried between calls,
  no random draw), taken off the unmovable list first: a high-order atomic request is
  unmovable (GFP_ATOMIC carries neither __GFP_MOVABLE nor __GFP_RECLAIMABLE), so the
  pageblocks it reserves are unmovable ones, whose pages would otherwise go back to
  that list.  The reserve fills up as the pages that were in its blocks are freed, as
  the kernel's does;
* ``unreserve_highatomic_pageblock`` takes an average block: its share of the free
  and held pages; it needs a free page in the reserve, as the kernel's search does.
  The block becomes the requester's migratetype: its free pages join that list, its
  high-order atomic blocks count as unmovable allocations in it (GFP_ATOMIC carries
  neither __GFP_MOVABLE nor __GFP_RECLAIMABLE).

:class:`sim.kernel.mm.freelists.FreeArea` stops counting a block as an allocation of its
migratetype when its pageblock joins the reserve, and keeps counting a reserved
pageblock under its former type.
"""

from __future__ import annotations

from sim.kernel.mm.freelists import MIGRATE_UNMOVABLE
from sim.kernel.mm.watermarks import Zone
from sim.kernel.mm.zones import PAGEBLOCK_NR_PAGES


def highatomic_max(zone: Zone) -> int:
    """The cap ``reserve_highatomic_pageblock`` (5.3) tests against: 1% of the zone's
    managed pages plus one pageblock."""
    return zone.managed // 100 + PAGEBLOCK_NR_PAGES


def rmqueue_highatomic(zone: Zone, order: int) -> bool:
    """``__rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)`` as ``rmqueue`` (5.3) calls it
    first for ALLOC_HARDER: take a block of ``order`` from the reserve's free pages if
    it has that many (no fragmentation: any such pages form a block)."""
    size = 1 << order
    if zone.highatomic_free < size:
        return False
    zone.highatomic_free -= size
    zone.highatomic_held += size
    return True


def reserve_highatomic_pageblock(zone: Zone, order: int, mt: int) -> bool:
    """``reserve_highatomic_pageblock`` (5.3): after a high-order ALLOC_HARDER block of
    migratetype ``mt`` came from outside the reserve (already off the lists), its
    pageblock joins the reserve unless the zone holds ``highatomic_max`` pages or more;
    True if it did.  The block's free pages are the even share of list ``mt``'s partly
    used pageblocks (see the module doc)."""
    if zone.highatomic >= highatomic_max(zone):
        return False
    size = 1 << order
    area = zone.area
    free = min(PAGEBLOCK_NR_PAGES - size, area.victim_free(mt)) if area.nr[mt] else 0
    area.release(mt, size)  # the block now sits in a MIGRATE_HIGHATOMIC pageblock
    zone.highatomic += PAGEBLOCK_NR_PAGES
    zone.highatomic_free += area.take_free(free, mt)
    zone.highatomic_held += size
    return True


def unreserve_pageblock(zone: Zone, mt: int, force: bool) -> bool:
    """One zone's part of ``unreserve_highatomic_pageblock`` (5.3): unless ``force``, a
    zone keeps its last pageblock; the search needs a free page on the reserve's lists.
    One average block becomes migratetype ``mt`` (the requester's): its free pages join
    list ``mt``; True if one did."""
    if not force and zone.highatomic <= PAGEBLOCK_NR_PAGES:
        return False
    if zone.highatomic_free <= 0:
        return False
    blocks = -(-zone.highatomic // PAGEBLOCK_NR_PAGES)
    zone.highatomic -= min(PAGEBLOCK_NR_PAGES, zone.highatomic)
    if zone.highatomic:
        free = -(-zone.highatomic_free // blocks)
        held = zone.highatomic_held // blocks
        over = zone.highatomic_free - free + zone.highatomic_held - held - zone.highatomic
        if over > 0:  # an odd initial reserve: keep the parts within the blocks left
            held += min(over, zone.highatomic_held - held)
    else:
        free, held = zone.highatomic_free, zone.highatomic_held
        zone.highatomic_carry = 0.0
    zone.highatomic_free -= free
    zone.highatomic_held -= held
    zone.area.add_free(mt, free)
    if held:
        comp = [0.0, 0.0, 0.0]
        comp[mt] = float(held)
        zone.area.to_user(MIGRATE_UNMOVABLE, held, comp)
    return True


def free_held_blocks(zone: Zone, pages: int) -> int:
    """High-order atomic blocks freed by a caller that got them from reserved pageblocks
    (``__free_one_page`` onto the MIGRATE_HIGHATOMIC list): back on the reserve's free
    pages while the zone still holds such blocks (a block unreserved since goes to
    general use); returns the pages that went to the reserve."""
    k = min(pages, zone.highatomic_held)
    zone.highatomic_held -= k
    zone.highatomic_free += k
    return k


def free_others_to_buddy(zone: Zone, nr: int) -> None:
    """``nr`` pages of other users reached the buddy lists (``nr_free`` and the lists already
    count them): the share that sits in reserved pageblocks moves to the reserve's list."""
    others = zone.highatomic - zone.highatomic_free - zone.highatomic_held
    if others <= 0 or nr <= 0:
        return
    off_buddy = zone.managed - zone.nr_free + nr - zone.highatomic_held
    if off_buddy <= 0:
        return
    x = nr * min(others / off_buddy, 1.0) + zone.highatomic_carry
    k = int(x)
    zone.highatomic_carry = x - k
    if k:
        zone.highatomic_free += zone.area.take_free(min(k, others), MIGRATE_UNMOVABLE)
