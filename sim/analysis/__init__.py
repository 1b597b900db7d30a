"""Tables to figures and reports: never SimPy, never the kernel model.  Failure curves,
timelines, the answer report, and the model-against-kernel comparison."""
