/*
 * vmsim v6.9 vector harness driver (own code).
 *
 * Runs the Linux v6.9 vmap-node layer (the pieces that tools/vectors69/extract.py
 * cuts out of mm/vmalloc.c at build time) in userspace, one op per stdin line:
 *
 *   A size align vstart vend cpu fail_split   -> alloc (alloc_vmap_area's kernel order)
 *   F addr                                    -> vfree-like lazy free
 *   P full(0|1)                               -> __purge_vmap_area_lazy(ULONG_MAX, 0, full)
 *   C                                         -> state dump
 *   N / S                                     -> nr_vmap_nodes / harness statistics (not ops)
 *
 * and prints one JSON result per op (line-buffered).  Numbers are decimal.
 * After every op the whole state is checked (see verify()); any violation, or any
 * kernel WARN other than the one a fail_split NE failure causes, aborts with exit 2.
 *
 * Usage: driver NCPUS   (nr_vmap_nodes = clamp(NCPUS, 1, 128), as vmap_init_nodes does)
 */
#include "kshim.h"

#include <string.h>

unsigned int vmsim_cpu, vmsim_ncpus;
const cpumask_t vmsim_online_mask = { { ~0UL, ~0UL, ~0UL, ~0UL } };

#include "vmalloc_pieces.c"

/* ---------------------------------------------------------------- shim state */
static int op_fail_split;          /* the current op carries fail_split */
static unsigned long cnt_alloc, cnt_free;  /* counted object allocations / frees in this op */
static long live_objs;             /* every vmap_area object currently allocated */
static int warns, expect_warn;
static unsigned long trace_nr;
static int flushed;
static unsigned long pooled_at_flush;
static unsigned long lineno;
static unsigned long rotations;    /* statistics only: pool misses that rotated a pool list */
static unsigned long refused_splits; /* statistics only: NE splits refused by fail_split */

static void die(const char *fmt, const char *what)
{
	fprintf(stderr, "driver: line %lu: ", lineno);
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	exit(2);
}

void vmsim_warn(const char *file, int line, const char *what)
{
	warns++;
	if (!expect_warn) {
		fprintf(stderr, "%s:%d: ", file, line);
		die("unexpected %s", what);
	}
}

void vmsim_unexpected(const char *what) { die("unexpected call: %s", what); }

void *vmsim_split_alloc(void)
{
	void *p;

	if (op_fail_split) {
		refused_splits++;
		return NULL;
	}
	p = calloc(1, sizeof(struct vmap_area));
	cnt_alloc++;
	live_objs++;
	return p;
}

void *vmsim_boot_alloc(void)
{
	live_objs++;
	return calloc(1, sizeof(struct vmap_area));
}

void vmsim_obj_free(void *p)
{
	cnt_free++;
	live_objs--;
	memset(p, 0x6b, sizeof(struct vmap_area));
	free(p);
}

static unsigned long pooled_total(void);

void vmsim_flush_tlb(unsigned long start, unsigned long end)
{
	(void)start; (void)end;
	flushed = 1;
	/* all nodes have decayed and none has been purged yet */
	pooled_at_flush = pooled_total();
}

void vmsim_trace_purge(unsigned long start, unsigned long end, unsigned long nr)
{
	(void)start; (void)end;
	trace_nr = nr;
}

/* ---------------------------------------------------------------- state walks */
static unsigned long list_len(struct list_head *h)
{
	unsigned long n = 0;
	struct list_head *p;

	list_for_each(p, h)
		n++;
	return n;
}

static unsigned long pooled_total(void)
{
	unsigned long n = 0;

	for (unsigned int i = 0; i < nr_vmap_nodes; i++)
		for (int j = 0; j < MAX_VA_SIZE_PAGES; j++)
			n += list_len(&vmap_nodes[i].pool[j].head);
	return n;
}

static unsigned long lazy_total(void)
{
	unsigned long n = 0;

	for (unsigned int i = 0; i < nr_vmap_nodes; i++)
		n += list_len(&vmap_nodes[i].lazy.head);
	return n;
}

/* ---------------------------------------------------------------- verification */
struct range { unsigned long s, e; };
static struct range *ranges;
static size_t nranges, cap_ranges;

static void add_range(unsigned long s, unsigned long e)
{
	if (nranges == cap_ranges) {
		cap_ranges = cap_ranges ? 2 * cap_ranges : 4096;
		ranges = realloc(ranges, cap_ranges * sizeof(*ranges));
	}
	ranges[nranges].s = s;
	ranges[nranges].e = e;
	nranges++;
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->s < y->s ? -1 : x->s > y->s;
}

/* red-black and (optionally) augment invariants; returns the black height */
static int check_rb(struct rb_node *n, struct rb_node *parent, int augment)
{
	int lh, rh;
	struct vmap_area *va;

	if (!n)
		return 1;
	if (rb_parent(n) != parent)
		die("%s: bad parent pointer", "rbtree");
	if (rb_is_red(n) && ((n->rb_left && rb_is_red(n->rb_left)) ||
			     (n->rb_right && rb_is_red(n->rb_right))))
		die("%s: red node with red child", "rbtree");
	lh = check_rb(n->rb_left, n, augment);
	rh = check_rb(n->rb_right, n, augment);
	if (lh != rh)
		die("%s: black heights differ", "rbtree");
	if (augment) {
		unsigned long m;

		va = rb_entry(n, struct vmap_area, rb_node);
		m = va_size(va);
		m = max(m, get_subtree_max_size(n->rb_left));
		m = max(m, get_subtree_max_size(n->rb_right));
		if (m != va->subtree_max_size)
			die("%s: subtree_max_size is stale", "free tree");
	}
	return lh + rb_is_black(n);
}

/* tree in-order equals the list, the list ascends, and (if strict) entries do not touch */
static unsigned long check_tree_list(struct rb_root *root, struct list_head *head,
				     int augment, int no_touch, const char *name)
{
	struct rb_node *n = rb_first(root);
	struct vmap_area *va, *prev = NULL;
	unsigned long cnt = 0;

	if (root->rb_node && rb_is_red(root->rb_node))
		die("%s: red root", name);
	check_rb(root->rb_node, NULL, augment);
	list_for_each_entry(va, head, list) {
		if (n != &va->rb_node)
			die("%s: tree and list disagree", name);
		if (va->va_start >= va->va_end)
			die("%s: empty area", name);
		if (prev && (no_touch ? prev->va_end >= va->va_start : prev->va_end > va->va_start))
			die("%s: list not ascending / touching", name);
		prev = va;
		n = rb_next(n);
		cnt++;
	}
	if (n)
		die("%s: tree has more nodes than the list", name);
	return cnt;
}

static void verify(void)
{
	unsigned long objs, cnt;
	struct vmap_area *va;

	nranges = 0;
	objs = check_tree_list(&free_vmap_area_root, &free_vmap_area_list, 1, 1, "free");
	list_for_each_entry(va, &free_vmap_area_list, list)
		add_range(va->va_start, va->va_end);

	for (unsigned int i = 0; i < nr_vmap_nodes; i++) {
		struct vmap_node *vn = &vmap_nodes[i];

		objs += check_tree_list(&vn->busy.root, &vn->busy.head, 0, 0, "busy");
		list_for_each_entry(va, &vn->busy.head, list) {
			if (addr_to_node_id(va->va_start) != i)
				die("%s: area in the wrong node", "busy");
			add_range(va->va_start, va->va_end);
		}
		objs += check_tree_list(&vn->lazy.root, &vn->lazy.head, 0, 0, "lazy");
		list_for_each_entry(va, &vn->lazy.head, list)
			add_range(va->va_start, va->va_end);
		for (int j = 0; j < MAX_VA_SIZE_PAGES; j++) {
			cnt = 0;
			list_for_each_entry(va, &vn->pool[j].head, list) {
				if (size_to_va_pool(vn, va_size(va)) != &vn->pool[j])
					die("%s: area in the wrong size class", "pool");
				add_range(va->va_start, va->va_end);
				cnt++;
			}
			if (cnt != vn->pool[j].len)
				die("%s: len differs from the list", "pool");
			objs += cnt;
		}
	}
	if ((long)objs != live_objs)
		die("%s: object count differs from the structures", "objects");

	qsort(ranges, nranges, sizeof(*ranges), cmp_range);
	{
		unsigned long at = 1;

		for (size_t k = 0; k < nranges; k++) {
			if (ranges[k].s != at)
				die("%s: gap or overlap", "tiling");
			at = ranges[k].e;
		}
		if (at != ULONG_MAX)
			die("%s: does not reach 2^64-1", "tiling");
	}
}

/* ---------------------------------------------------------------- ops */
static void op_alloc(unsigned long size, unsigned long align, unsigned long vstart,
		     unsigned long vend, unsigned int cpu, int fail)
{
	struct vmap_node *vn;
	struct vmap_area *va;
	unsigned long addr;
	unsigned int vn_id;
	struct vmap_area *lo, *hi;
	struct vmap_pool *pool = NULL;
	struct list_head *head_before;
	const char *fit;

	if (!size || (size & (PAGE_SIZE - 1)) || !align || (align & (align - 1)))
		die("%s: bad alloc request", "input");

	vmsim_cpu = cpu;
	op_fail_split = fail;
	expect_warn = fail;   /* va_alloc warns when the NE split's object is missing */

	/* statistics only: the head of the pool node_alloc() will look at */
	head_before = NULL;
	if (vstart == VMALLOC_START && vend == VMALLOC_END && nr_vmap_nodes > 1) {
		pool = size_to_va_pool(id_to_node(cpu % nr_vmap_nodes), size);
		if (pool && !list_empty(&pool->head))
			head_before = pool->head.next;
	}

	/* alloc_vmap_area(), v6.9 order, without preload and without the overflow path */
	va = node_alloc(size, align, vstart, vend, &addr, &vn_id);
	if (va) {
		fit = "POOL";
	} else {
		if (head_before && pool->head.next != head_before)
			rotations++;
		va = calloc(1, sizeof(*va));   /* the busy descriptor: never fails, not counted */
		live_objs++;
		fit = NULL;
	}

	if (addr == vend)
		addr = __alloc_vmap_area(&free_vmap_area_root, &free_vmap_area_list,
					 size, align, vstart, vend);

	if (addr == vend) {
		free(va);                       /* not counted */
		live_objs--;
		printf("{\"addr\":null,\"fit\":null,\"objs_alloc\":0,\"objs_free\":0}\n");
		if (cnt_alloc || cnt_free)
			die("%s: a failed alloc moved objects", "alloc");
		return;
	}

	va->va_start = addr;
	va->va_end = addr + size;
	va->vm = NULL;
	va->flags = vn_id;

	vn = addr_to_node(va->va_start);
	insert_vmap_area(va, &vn->busy.root, &vn->busy.head);

	if (!IS_ALIGNED(va->va_start, align) || va->va_start < vstart || va->va_end > vend)
		die("%s: result outside the request", "alloc");

	if (!fit) {
		/* the fit type from the free blocks around the new area afterwards */
		lo = addr > 1 ? __find_vmap_area(addr - 1, &free_vmap_area_root) : NULL;
		hi = __find_vmap_area(addr + size, &free_vmap_area_root);
		if (lo && hi)
			fit = "NE";
		else if (lo)
			fit = "RE";
		else if (hi)
			fit = "LE";
		else
			fit = "FL";
		if ((cnt_alloc != (fit[0] == 'N')) || (cnt_free != (fit[0] == 'F')))
			die("%s: object counts do not match the fit", "alloc");
	} else if (cnt_alloc || cnt_free) {
		die("%s: a pool hit moved objects", "alloc");
	}
	printf("{\"addr\":%lu,\"fit\":\"%s\",\"objs_alloc\":%lu,\"objs_free\":%lu}\n",
	       addr, fit, cnt_alloc, cnt_free);
}

static void op_free(unsigned long addr)
{
	struct vmap_area *va;
	unsigned int i;

	/* vfree() passes an area's start; anything else is answered "not found" here */
	va = find_vmap_area(addr);
	if (!va || va->va_start != addr) {
		printf("{\"ok\":false}\n");
		return;
	}
	if (find_unlink_vmap_area(addr) != va)
		die("%s: find_unlink_vmap_area disagrees with find_vmap_area", "free");
	free_vmap_area_noflush(va);

	for (i = 0; i < nr_vmap_nodes; i++)
		if (__find_vmap_area(addr, &vmap_nodes[i].lazy.root) == va)
			break;
	if (i == nr_vmap_nodes)
		die("%s: the area is in no lazy tree", "free");
	printf("{\"ok\":true,\"node\":%u}\n", i);
}

static void op_purge(int full)
{
	unsigned long before = pooled_total(), lazy = lazy_total(), after, decayed, pooled;

	flushed = 0;
	trace_nr = ~0UL;
	__purge_vmap_area_lazy(ULONG_MAX, 0, full);
	after = pooled_total();
	if (flushed) {
		decayed = before - pooled_at_flush;
		pooled = after - pooled_at_flush;
	} else {
		decayed = before - after;
		pooled = 0;
	}
	if (trace_nr != lazy || lazy_total() != 0 || pooled > lazy)
		die("%s: purge counts inconsistent", "purge");
	if (atomic_long_read(&vmap_lazy_nr) != 0)
		die("%s: vmap_lazy_nr not back to 0", "purge");
	printf("{\"purged\":%lu,\"pooled\":%lu,\"decayed\":%lu,\"objs_free\":%lu}\n",
	       trace_nr, pooled, decayed, cnt_free);
}

static void print_starts(struct list_head *h, int *first)
{
	struct vmap_area *va;

	(void)first;
	putchar('[');
	list_for_each_entry(va, h, list)
		printf("%s%lu", &va->list == h->next ? "" : ",", va->va_start);
	putchar(']');
}

static void op_check(void)
{
	struct vmap_area *va;
	unsigned long busy = 0;
	int first = 1;

	printf("{\"free\":[");
	list_for_each_entry(va, &free_vmap_area_list, list)
		printf("%s[%lu,%lu]", &va->list == free_vmap_area_list.next ? "" : ",",
		       va->va_start, va->va_end);
	for (unsigned int i = 0; i < nr_vmap_nodes; i++)
		busy += list_len(&vmap_nodes[i].busy.head);
	printf("],\"busy\":%lu,\"lazy\":[", busy);
	for (unsigned int i = 0; i < nr_vmap_nodes; i++) {
		if (list_empty(&vmap_nodes[i].lazy.head))
			continue;
		printf("%s[%u,", first ? "" : ",", i);
		print_starts(&vmap_nodes[i].lazy.head, &first);
		putchar(']');
		first = 0;
	}
	printf("],\"pools\":[");
	first = 1;
	for (unsigned int i = 0; i < nr_vmap_nodes; i++)
		for (int j = 0; j < MAX_VA_SIZE_PAGES; j++) {
			if (list_empty(&vmap_nodes[i].pool[j].head))
				continue;
			printf("%s[%u,%d,", first ? "" : ",", i, j + 1);
			print_starts(&vmap_nodes[i].pool[j].head, &first);
			putchar(']');
			first = 0;
		}
	printf("]}\n");
}

int main(int argc, char **argv)
{
	char line[512];

	if (argc != 2)
		die("%s", "usage: driver NCPUS");
	vmsim_ncpus = (unsigned int)strtoul(argv[1], NULL, 10);
	if (vmsim_ncpus < 1 || vmsim_ncpus > VMSIM_MAX_CPUS)
		die("%s: NCPUS out of range", "usage");
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* vmalloc_init(): nodes first, then the free space, then "initialized" */
	vmap_init_nodes();
	vmap_init_free_space();
	vmap_initialized = true;
	verify();

	while (fgets(line, sizeof(line), stdin)) {
		unsigned long a[6];
		int n;

		lineno++;
		cnt_alloc = cnt_free = 0;
		op_fail_split = 0;
		expect_warn = 0;
		switch (line[0]) {
		case 'A':
			n = sscanf(line + 1, "%lu %lu %lu %lu %lu %lu", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5]);
			if (n != 6)
				die("%s: bad A line", "input");
			op_alloc(a[0], a[1], a[2], a[3], (unsigned int)a[4], (int)a[5]);
			break;
		case 'F':
			if (sscanf(line + 1, "%lu", &a[0]) != 1)
				die("%s: bad F line", "input");
			op_free(a[0]);
			break;
		case 'P':
			if (sscanf(line + 1, "%lu", &a[0]) != 1)
				die("%s: bad P line", "input");
			op_purge(a[0] != 0);
			break;
		case 'C':
			op_check();
			break;
		case 'N':    /* nodes: print nr_vmap_nodes (for the header) */
			printf("{\"nodes\":%u}\n", nr_vmap_nodes);
			break;
		case 'S':    /* statistics that the vector format does not carry */
			printf("{\"rotations\":%lu,\"refused_splits\":%lu}\n", rotations, refused_splits);
			break;
		default:
			die("%s: unknown op", "input");
		}
		verify();
	}
	return 0;
}
