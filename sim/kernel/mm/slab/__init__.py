"""mm/slab_common.c, mm/slub.c and mm/slab.c: slab caches behind one object-provider interface."""
