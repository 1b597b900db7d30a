"""mm/vmalloc.c: the pure allocator core (space, area), alloc_vmap_area and vmalloc,
lazy freeing and purges, the per-CPU areas, and the split-object strategies."""
