/*
 * vmsim v6.9 vector harness: userspace stand-ins for the kernel symbols that the
 * extracted mm/vmalloc.c pieces use.  Own code; see tools/vectors69/README.md for
 * what each stand-in does and why.
 *
 * Single-threaded: locks are no-ops, per-CPU variables are plain variables,
 * the current CPU is the op's "cpu" field.
 */
#ifndef VMSIM_KSHIM_H
#define VMSIM_KSHIM_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <linux/types.h>
#include <linux/compiler.h>
#include <linux/list.h>
#include <linux/rbtree_augmented.h>

/* ---- x86-64, 4-level paging ---- */
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define BITS_PER_BYTE 8
#define BITS_PER_LONG 64
#define VMALLOC_START 0xffffc90000000000UL
#define VMALLOC_END 0xffffe8ffffffffffUL

#define ALIGN(x, a) (((x) + ((__typeof__(x))(a) - 1)) & ~((__typeof__(x))(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)
#define min(a, b) ({ __typeof__(a) _a = (a); __typeof__(b) _b = (b); _a < _b ? _a : _b; })
#define max(a, b) ({ __typeof__(a) _a = (a); __typeof__(b) _b = (b); _a > _b ? _a : _b; })
#define clamp(v, lo, hi) min(max(v, lo), hi)
#define clamp_t(t, v, lo, hi) clamp((t)(v), (t)(lo), (t)(hi))

/* ---- diagnostics: counted; the driver decides which are expected ---- */
void vmsim_warn(const char *file, int line, const char *what);
#define WARN(cond, ...) ({ int _c = !!(cond); if (_c) vmsim_warn(__FILE__, __LINE__, "WARN"); _c; })
#define WARN_ONCE(cond, ...) WARN(cond)
#define WARN_ON(cond) WARN(cond)
#define WARN_ON_ONCE(cond) WARN(cond)
#define pr_err(...) fprintf(stderr, __VA_ARGS__)

/* ---- locking: single-threaded ---- */
typedef struct { int unused; } spinlock_t;
#define DEFINE_SPINLOCK(x) spinlock_t x = { 0 }
#define spin_lock_init(l) ((void)(l))
#define spin_lock(l) ((void)(l))
#define spin_unlock(l) ((void)(l))
#define lockdep_assert_held(l) do { } while (0)

/* ---- per-CPU variables: plain variables; the current CPU comes from the op ---- */
extern unsigned int vmsim_cpu, vmsim_ncpus;
#define DEFINE_PER_CPU(type, name) type name
#define __this_cpu_xchg(var, v) ({ __typeof__(var) _o = (var); (var) = (v); _o; })
#define raw_smp_processor_id() (vmsim_cpu)
#define num_possible_cpus() (vmsim_ncpus)

/* ---- atomics ---- */
typedef struct { long counter; } atomic_long_t;
#define ATOMIC_LONG_INIT(i) { (i) }
#define atomic_long_read(a) ((a)->counter)
#define atomic_long_sub(i, a) ((a)->counter -= (long)(i))
#define atomic_long_add_return(i, a) ((a)->counter += (long)(i))

/* ---- cpumask: enough bits for 256 CPUs ---- */
#define VMSIM_MAX_CPUS 256
typedef struct { unsigned long bits[VMSIM_MAX_CPUS / 64]; } cpumask_t;
#define CPU_MASK_NONE ((cpumask_t){ { 0 } })
#define cpumask_set_cpu(c, m) ((m)->bits[(c) / 64] |= 1UL << ((c) % 64))
#define cpumask_test_cpu(c, m) (((m)->bits[(c) / 64] >> ((c) % 64)) & 1)
static inline unsigned int cpumask_weight(const cpumask_t *m)
{
	unsigned int w = 0;
	for (int i = 0; i < VMSIM_MAX_CPUS / 64; i++)
		w += __builtin_popcountl(m->bits[i]);
	return w;
}
static inline int vmsim_cpumask_next(int i, const cpumask_t *m)
{
	for (i++; i < VMSIM_MAX_CPUS; i++)
		if (cpumask_test_cpu(i, m))
			return i;
	return VMSIM_MAX_CPUS;
}
#define for_each_cpu(i, m) for ((i) = vmsim_cpumask_next(-1, (m)); (i) < VMSIM_MAX_CPUS; (i) = vmsim_cpumask_next((i), (m)))
extern const cpumask_t vmsim_online_mask;
#define cpu_online_mask (&vmsim_online_mask)

/* ---- workqueues: no helper ever runs (lazy_max_pages below) and no drain is ever due,
 * so none of these may be reached ---- */
struct work_struct { void (*func)(struct work_struct *); };
void vmsim_unexpected(const char *what);
#define INIT_WORK(w, f) ((w)->func = (f))
static inline bool schedule_work_on(int cpu, struct work_struct *w) { (void)cpu; (void)w; vmsim_unexpected("schedule_work_on"); return true; }
static inline bool schedule_work(struct work_struct *w) { (void)w; vmsim_unexpected("schedule_work"); return true; }
static inline bool flush_work(struct work_struct *w) { (void)w; vmsim_unexpected("flush_work"); return true; }
static struct work_struct drain_vmap_work;

/* lazy_max_pages() is huge: nr_purge_helpers is always 0 and no automatic drain is due. */
static unsigned long lazy_max_pages(void) { return ULONG_MAX; }

/* ---- objects ---- */
struct kmem_cache;
#define GFP_NOWAIT 0x1u
#define __GFP_NOWARN 0x2u
void *vmsim_split_alloc(void);   /* kmem_cache_alloc: the NE split's object (counted, can fail) */
void *vmsim_boot_alloc(void);    /* kmem_cache_zalloc: boot-time free block */
void vmsim_obj_free(void *p);    /* kmem_cache_free: counted */
#define kmem_cache_alloc(c, gfp) ((void)(c), (void)(gfp), vmsim_split_alloc())
#define kmem_cache_zalloc(c, gfp) ((void)(c), (void)(gfp), vmsim_boot_alloc())
#define kmem_cache_free(c, p) ((void)(c), vmsim_obj_free(p))
#define kmalloc_array(n, s, gfp) ((void)(gfp), calloc((n), (s)))

/* ---- boot: no early vm areas ---- */
struct vm_struct { struct vm_struct *next; void *addr; unsigned long size; };
static struct vm_struct *vmlist;

/* ---- TLB, KASAN, tracing ---- */
void vmsim_flush_tlb(unsigned long start, unsigned long end);
void vmsim_trace_purge(unsigned long start, unsigned long end, unsigned long nr);
#define flush_tlb_kernel_range(s, e) vmsim_flush_tlb((s), (e))
#define kasan_reset_tag(p) (p)
#define kasan_release_vmalloc(a, b, c, d) do { } while (0)
#define is_vmalloc_or_module_addr(p) ((void)(p), 1)
#define trace_purge_vmap_area_lazy(s, e, n) vmsim_trace_purge((s), (e), (n))
#define trace_free_vmap_area_noflush(a, b, c) do { } while (0)

#endif
