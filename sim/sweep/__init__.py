"""Running a sweep: the runner (chunks of runs, the status log, resume, the merge), the
executors (serial, process pool, Dask) and the store of part files."""
