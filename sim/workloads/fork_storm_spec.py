"""The spec of the fork storm (``stress-ng --fork N``): its parameters, as read from a scenario.

A module of its own so that the running workload (:mod:`sim.workloads.fork_storm`) can be
compiled (mypyc) while this pydantic model stays a Python class.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sim.schema.limits import MAX_TASKS
from sim.schema.units import Duration, Size
from sim.workloads.base import WorkloadSpec

# arch_task_struct_size of the v5.2.1 guest (`vmsim peer build-kernel`, shared/research/real-kernel/v52.config):
# sizeof(struct task_struct) 6272 B less the 4096 B union fpregs_state placeholder, plus the 2696 B XSAVE
# context its dmesg reports ("context size is 2696 bytes, using 'standard' format")
TASK_STRUCT_SIZE = 6272 - 4096 + 2696


class ForkStormSpec(WorkloadSpec):
    """Parameters of ``stress-ng --fork N``.  Defaults: ``fork_max``, ``oom_score_adj`` and
    ``stack_cache`` as stress-ng and kernel/fork.c set them; ``task_struct_size`` measured
    for the 5.2 guest; ``pti`` as distribution kernels build it; ``rcu_grace`` from
    published measurements; the CPU times and page counts are estimates for an x86_64
    fork with PTI, not measured (docs/validation.md has what the guests show)."""

    kind: Literal["fork_storm"] = "fork_storm"
    workers: int = Field(16, ge=1, le=MAX_TASKS, description="stress-ng --fork N (at most PID_MAX_LIMIT)")
    fork_max: int = Field(1, ge=1, le=MAX_TASKS, description="children forked per iteration (--fork-max)")
    fork_cpu: Duration = Field(100e-6, description="parent CPU time in fork() besides the stack")
    child_cpu: Duration = Field(50e-6, description="the child's CPU time until it has exited")
    task_struct_size: Size = Field(
        TASK_STRUCT_SIZE,
        description="arch_task_struct_size: sizeof(struct task_struct) - 4 KiB + the CPU's XSAVE context "
        "(4872 B: the 5.2 guest; distribution configs 6-9 KiB)",
    )
    pti: bool = Field(
        True, description="CONFIG_PAGE_TABLE_ISOLATION: an order-1 pgd (whether PTI is on at run time or not)"
    )
    pagetable_pages: int = Field(14, ge=0, description="page tables of a child, the pgd (2 pages with pti) included")
    slab_pages: int = Field(6, ge=0, description="task_struct, mm, VMAs, signal and files, in pages")
    mm_slab_pages: int = Field(
        1, ge=0, description="of slab_pages: cred, files, fs, sighand, signal and mm_struct (before the pgd)"
    )
    worker_rss: Size = Field(1 << 20, description="anon memory of each worker process")
    stack_cache: int = Field(2, ge=0, description="NR_CACHED_STACKS per CPU")
    oom_score_adj: int = Field(1000, ge=-1000, le=1000)
    restart: bool = Field(True, description="start a killed worker again (stress-ng 0.15 does not: false)")
    restart_delay: Duration = Field(0.01, description="a killed worker starts again after this")
    enomem_backoff: Duration = Field(1e-3, description="pause after a failed fork")
    rcu_grace: Duration = Field(
        8e-3,
        description="call_rcu to callback (two FQS rounds at HZ=250): a stack's 2nd try at the cache (5.18+), "
        "the task_struct's free",
    )

    @field_validator("task_struct_size")
    @classmethod
    def _task_struct_fits(cls, value: int) -> int:
        if not 1024 <= value <= 64 * 1024:
            raise ValueError(f"expected a task_struct of 1KiB to 64KiB, got {value} B")
        return value
