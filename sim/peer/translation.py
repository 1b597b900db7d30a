"""A scenario as a real guest runs it: QEMU's machine, the kernel command line,
sysctls, and each workload as the program that does the same thing.

A workload kind with no faithful counterpart is refused with a one-line reason
(an :class:`~sim.schema.errors.InputError` naming the workload's key), never run as
something else.  Where the two sides cannot mean exactly the same thing (the
guest kernel's own slab allocator, stress-ng's restart rules, the guest's own
boot memory), the translation says so in ``notes``, which the results'
manifest keeps.

stress-ng semantics (0.15.06, the Debian 12 package; stress-fork.c, stress-vm.c,
core-out-of-memory.c): a ``--fork`` instance forks ``--fork-max`` children,
reaps them and repeats; it sets oom_score_adj to +1000 and is *not* restarted
when the OOM killer takes it.  A ``--vm`` instance runs its memory in a child
that it re-forks at once, without limit, after an OOM kill (``--oomable`` turns
that off); stress-ng's main and instance processes are -1000 as root.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sim.config.params import to_dataclass
from sim.kernel.mm.zones import MemoryParams
from sim.peer.agent import GuestCommand, GuestPlan
from sim.schema.errors import InputError

MIB = 1 << 20
MIN_SAMPLE_INTERVAL_S = 1.0  # a shell-builtin sampler reads ~300 lines of /proc per sample; TCG is slow
STRESS_NG = "/usr/bin/stress-ng"
# model-only kinds and why no guest program stands for them
NO_COUNTERPART = {
    "module_load": "module loads need a module to load; the guest has no test module that maps like module_alloc",
    "bpf_jit": "BPF JIT loads need a BPF loader (bpftool) that the guest image does not carry",
    "percpu_chunks": "percpu chunk creation cannot be driven from user space at a set rate",
    "vmap_blocks": "vm_map_ram users are drivers; no user-space program drives them",
    "page_cache_reader": "streaming a file at a set rate needs a rate-limited reader the guest image does not carry",
    "net_rx": "receive traffic at a set rate needs a sender on the host side of a virtio-net device the guest lacks",
}
# MemoryParams fields that are kernel tunables with a sysctl
SYSCTLS = {
    "min_free_kbytes": "vm.min_free_kbytes",
    "watermark_scale_factor": "vm.watermark_scale_factor",
    "watermark_boost_factor": "vm.watermark_boost_factor",
    "lowmem_reserve_ratio": "vm.lowmem_reserve_ratio",
}


@dataclass(frozen=True)
class GuestMachine:
    """QEMU's side: CPUs, RAM in MiB, the kernel command line."""

    cpus: int
    ram_mib: int
    cmdline: tuple[str, ...]


@dataclass(frozen=True)
class Translation:
    """A scenario made runnable on a real guest, with what differs written down."""

    machine: GuestMachine
    plan: GuestPlan
    notes: tuple[str, ...]


def translate(scenario: Any, source: str, guest_modules: Path | None = None) -> Translation:
    """The guest for ``scenario`` (a validated :class:`~sim.config.scenario.Scenario`);
    ``source`` names its file in errors; ``guest_modules`` is the guest kernel's
    modules folder (to find test_vmalloc)."""
    m = scenario.machine
    notes: list[str] = [f"model profile {scenario.kernel}: the guest runs its own kernel (see manifest kernel)"]
    cmdline = ["console=ttyS0", "edd=off", "panic=-1", "loglevel=3"]  # no log_buf_len: it costs RAM; kmsg is streamed
    if m.thp != "auto":
        cmdline.append(f"transparent_hugepage={'always' if m.thp == 'on' else 'never'}")
    if m.preemption == "rt":
        raise InputError(source, "machine.preemption", "rt needs a PREEMPT_RT kernel; pass one with --kernel")
    cmdline.append(f"preempt={m.preemption}")
    if m.slab != "SLUB":
        notes.append(f"slab: the guest kernel's own allocator (the scenario says {m.slab}; Debian's 6.1 has SLUB only)")
    sysctls = _sysctls(m.memory, notes)
    zram = 0
    if m.swap is not None:
        zram = m.ram
        notes.append(f"swap: zram of {m.ram >> 20} MiB; its speed is the guest CPU's, not {m.swap / MIB:.0f} MiB/s")
    boot = m.boot_memory
    cache_mib = int(boot.file_clean) >> 20
    others = [pool for pool, size in boot.items() if size and pool != "file_clean"]
    if others:
        notes.append(f"boot_memory {', '.join(others)}: the guest has its own (not recreated)")
    setup: list[GuestCommand] = []
    measured: list[GuestCommand] = []
    shmem_mib = 0
    for i, spec in enumerate(scenario.workloads):
        where = f"workloads.{i}"
        if spec.start:
            notes.append(f"{where}: starts with the others (start {spec.start} s is not applied)")
        if spec.kind == "fork_storm":
            measured.append(_fork_storm(spec, i, scenario.duration, notes))
        elif spec.kind == "anon_hog":
            setup.append(_anon_hog(spec, i, source, notes))
        elif spec.kind == "shmem":
            shmem_mib += int(spec.size) >> 20
        elif spec.kind == "test_vmalloc":
            measured.append(_test_vmalloc(spec, i, source, guest_modules, notes))
        else:
            reason = NO_COUNTERPART.get(spec.kind, "no real counterpart")
            raise InputError(source, f"{where}.kind", f"{spec.kind} has no counterpart in a real guest: {reason}")
    if not measured:
        notes.append("no measured workload: the run records the idle machine for its duration")
    interval = max(float(scenario.sample_interval), MIN_SAMPLE_INTERVAL_S)
    if interval != scenario.sample_interval:
        notes.append(f"sample_interval: {interval:g} s in the guest (scenario: {scenario.sample_interval:g} s)")
    plan = GuestPlan(
        scenario=scenario.name,
        duration_s=max(1, math.ceil(scenario.duration)),
        sample_interval_s=interval,
        sysctls=tuple(sysctls),
        zram_bytes=zram,
        page_cache_mib=cache_mib,
        shmem_mib=shmem_mib,
        setup=tuple(setup),
        measured=tuple(measured),
    )
    machine = GuestMachine(cpus=m.cpus, ram_mib=int(m.ram) >> 20, cmdline=tuple(cmdline))
    return Translation(machine, plan, tuple(notes))


def _sysctls(memory: Any, notes: list[str]) -> list[tuple[str, str]]:
    """Tunables the scenario changed from the kernel's defaults, as sysctls; the
    model's own estimates (no sysctl) are listed in a note."""
    defaults = MemoryParams()
    given = to_dataclass(MemoryParams, memory)
    out: list[tuple[str, str]] = []
    model_only: list[str] = []
    for f in fields(MemoryParams):
        value = getattr(given, f.name)
        if value == getattr(defaults, f.name):
            continue
        if f.name in SYSCTLS:
            text = " ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
            out.append((SYSCTLS[f.name], text))
        elif f.name not in ("zones", "freed_after_boot", "freed_zone"):
            model_only.append(f.name)
    if model_only:
        notes.append(f"memory {', '.join(model_only)}: model parameters with no kernel tunable (not applied)")
    return out


def _fork_storm(spec: Any, i: int, duration: float, notes: list[str]) -> GuestCommand:
    """``stress-ng --fork`` for a fork_storm spec, measured for the scenario's duration."""
    timeout = max(1, math.ceil(duration))
    args = f"--fork {spec.workers} --fork-max {spec.fork_max} --timeout {timeout}s --metrics-brief"
    adj = None
    if spec.oom_score_adj != 1000:
        args += " --no-oom-adjust"
        adj = spec.oom_score_adj
    if spec.restart:
        notes.append(
            f"workloads.{i} fork_storm: stress-ng does not restart a fork instance the OOM killer took "
            f"(the model restarts it after {spec.restart_delay:g} s; restart: false matches)"
        )
    return GuestCommand(f"w{i}-fork", f"{STRESS_NG} {args}", adj)


def _anon_hog(spec: Any, i: int, source: str, notes: list[str]) -> GuestCommand:
    """``stress-ng --vm --vm-keep`` for an anon_hog spec, at the spec's oom_score_adj."""
    if math.isfinite(spec.hold):
        raise InputError(
            source, f"workloads.{i}.hold", "a hog that exits after a hold time has no stress-ng counterpart"
        )
    size = max(int(spec.size) >> 20, 1)
    args = f"--vm 1 --vm-bytes {size}m --vm-keep --vm-method write64 --vm-madvise normal --timeout 0"
    if not spec.restart:
        args += " --oomable"
    elif spec.restart_delay:
        notes.append(
            f"workloads.{i} anon_hog: stress-ng restarts a killed hog at once (model: {spec.restart_delay:g} s)"
        )
    args += " --no-oom-adjust"
    return GuestCommand(f"w{i}-vm", f"{STRESS_NG} {args}", spec.oom_score_adj)


def find_test_vmalloc(modules: Path | None) -> Path | None:
    """The guest kernel's test_vmalloc module, if it ships one."""
    if modules is None:
        return None
    return next(iter(sorted(modules.rglob("test_vmalloc.ko*"))), None)


def _test_vmalloc(spec: Any, i: int, source: str, modules: Path | None, notes: list[str]) -> GuestCommand:
    """``insmod test_vmalloc.ko`` with the spec's module parameters (the module runs
    its cases in kthreads at load time and fails the load on purpose when done)."""
    if find_test_vmalloc(modules) is None:
        raise InputError(
            source,
            f"workloads.{i}.kind",
            "test_vmalloc needs the guest kernel's test_vmalloc module "
            "(CONFIG_TEST_VMALLOC=m; Debian's kernel has none)",
        )
    mask = sum(1 << k for k, on in enumerate(spec.enabled()) if on)
    params = (
        f"run_test_mask={mask} test_loop_count={spec.test_loop_count} test_repeat_count={spec.test_repeat_count} "
        f"sequential_test_order={int(spec.sequential_test_order)} single_cpu_test={int(spec.single_cpu_test)}"
    )
    if spec.nr_threads:
        params += f" nr_threads={spec.nr_threads}"
    notes.append(f"workloads.{i} test_vmalloc: the module's own constants (busy list, junk lengths) are the guest's")
    return GuestCommand(f"w{i}-test-vmalloc", f"insmod /run/test_vmalloc.ko {params}")
