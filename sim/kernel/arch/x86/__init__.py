"""arch/x86: module_alloc and the module window of x86_64."""
