"""The vocabulary of input schemas, shared by config and the workloads' spec models: units,
the InputModel base, the bounds on inputs and InputError.  A leaf: imports nothing else of sim."""
