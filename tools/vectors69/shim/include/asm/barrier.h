/* vmsim harness shim (own code): single-threaded barriers. */
#ifndef VMSIM_SHIM_BARRIER_H
#define VMSIM_SHIM_BARRIER_H
#include <linux/compiler.h>
#define smp_store_release(p, v) WRITE_ONCE(*(p), v)
#define smp_load_acquire(p) READ_ONCE(*(p))
#endif
