/* vmsim harness shim (own code): compiler helpers for userspace builds. */
#ifndef VMSIM_SHIM_COMPILER_H
#define VMSIM_SHIM_COMPILER_H
#undef __always_inline
#define __always_inline inline __attribute__((__always_inline__))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, val) do { *(volatile __typeof__(x) *)&(x) = (val); } while (0)
#define __read_mostly
#define __init
#define __cold
#define __must_check
#define barrier() __asm__ __volatile__("" ::: "memory")
#endif
