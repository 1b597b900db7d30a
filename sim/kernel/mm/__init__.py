"""mm/: the page allocator, zones and watermarks, reclaim (vmscan), the OOM killer, page
pools, slab caches, vmalloc and percpu chunks; internal.py is what page_alloc hands its
helpers (mm/internal.h)."""
