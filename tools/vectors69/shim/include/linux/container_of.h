/* vmsim harness shim (own code). */
#ifndef VMSIM_SHIM_CONTAINER_OF_H
#define VMSIM_SHIM_CONTAINER_OF_H
#include <stddef.h>
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#endif
