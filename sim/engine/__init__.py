"""One run: seeds, build the machine, run it, collect its row, events and samples; and a
probe of what a run will cost.  Imports the kernel, the workloads and record, nothing above."""
