/* vmsim harness shim (own code). */
#ifndef VMSIM_SHIM_STDDEF_H
#define VMSIM_SHIM_STDDEF_H
#include <stddef.h>
#include <stdbool.h>
#endif
