/* vmsim harness shim (own code). */
#ifndef VMSIM_SHIM_EXPORT_H
#define VMSIM_SHIM_EXPORT_H
#define EXPORT_SYMBOL(sym)
#define EXPORT_SYMBOL_GPL(sym)
#endif
