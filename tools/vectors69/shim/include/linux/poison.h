/* vmsim harness shim (own code): poison values for deleted list entries. */
#ifndef VMSIM_SHIM_POISON_H
#define VMSIM_SHIM_POISON_H
#define LIST_POISON1 ((void *)0x100)
#define LIST_POISON2 ((void *)0x122)
#endif
