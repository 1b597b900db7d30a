"""Every workload kind a scenario can name: its spec model and its implementation.

``config/scenario.py`` builds the discriminated union of workload specs from this
table; ``engine/run.py`` builds a running workload from a spec with :func:`build`.
"""

from __future__ import annotations

from typing import Any

from sim.workloads.base import WorkloadSpec
from sim.workloads.bpf import BpfJit, BpfJitSpec
from sim.workloads.fork_storm import ForkStorm, ForkStormSpec
from sim.workloads.modules import ModuleLoad, ModuleLoadSpec
from sim.workloads.net_rx import NetRx, NetRxSpec
from sim.workloads.percpu import PercpuChunks, PercpuChunksSpec
from sim.workloads.pressure import (
    AnonHog,
    AnonHogSpec,
    PageCacheReader,
    PageCacheReaderSpec,
    Shmem,
    ShmemSpec,
)
from sim.workloads.vmalloc_stress import VmallocTest, VmallocTestSpec
from sim.workloads.vmap_blocks import VmapBlocks, VmapBlocksSpec

WORKLOADS: dict[str, tuple[type[WorkloadSpec], type]] = {
    "fork_storm": (ForkStormSpec, ForkStorm),
    "anon_hog": (AnonHogSpec, AnonHog),
    "shmem": (ShmemSpec, Shmem),
    "page_cache_reader": (PageCacheReaderSpec, PageCacheReader),
    "test_vmalloc": (VmallocTestSpec, VmallocTest),
    "module_load": (ModuleLoadSpec, ModuleLoad),
    "bpf_jit": (BpfJitSpec, BpfJit),
    "percpu_chunks": (PercpuChunksSpec, PercpuChunks),
    "vmap_blocks": (VmapBlocksSpec, VmapBlocks),
    "net_rx": (NetRxSpec, NetRx),
}


def build(spec: WorkloadSpec) -> Any:
    """The running workload for ``spec``."""
    return WORKLOADS[spec.kind][1](spec)
