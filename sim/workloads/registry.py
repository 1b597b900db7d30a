"""Every workload kind a scenario can name: its spec model and its implementation.

``scenario.py`` builds the discriminated union of workload specs from this
table; ``engine.py`` builds a running workload from a spec with :func:`build`.
"""

from __future__ import annotations

from typing import Any

from sim.workloads.base import WorkloadSpec
from sim.workloads.fork_storm import ForkStorm, ForkStormSpec
from sim.workloads.pressure import (
    AnonHog,
    AnonHogSpec,
    PageCacheReader,
    PageCacheReaderSpec,
    Shmem,
    ShmemSpec,
)

WORKLOADS: dict[str, tuple[type[WorkloadSpec], type]] = {
    "fork_storm": (ForkStormSpec, ForkStorm),
    "anon_hog": (AnonHogSpec, AnonHog),
    "shmem": (ShmemSpec, Shmem),
    "page_cache_reader": (PageCacheReaderSpec, PageCacheReader),
}


def build(spec: WorkloadSpec) -> Any:
    """The running workload for ``spec``."""
    return WORKLOADS[spec.kind][1](spec)
