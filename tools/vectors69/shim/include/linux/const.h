/* vmsim harness shim (own code). */
#ifndef VMSIM_SHIM_CONST_H
#define VMSIM_SHIM_CONST_H
#endif
