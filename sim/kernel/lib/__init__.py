"""lib/: data structures the kernel model uses (the red-black tree of lib/rbtree.c)."""
