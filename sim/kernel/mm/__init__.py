"""mm/: the page allocator, zones and watermarks, reclaim (vmscan), the OOM killer, page
pools, slab caches and vmalloc."""
