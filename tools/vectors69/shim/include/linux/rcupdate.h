/* vmsim harness shim (own code): single-threaded, so RCU publication is a store. */
#ifndef VMSIM_SHIM_RCUPDATE_H
#define VMSIM_SHIM_RCUPDATE_H
#include <linux/compiler.h>
#define rcu_assign_pointer(p, v) WRITE_ONCE(p, v)
#define rcu_dereference(p) READ_ONCE(p)
#endif
