"""``vmsim peer build-kernel SRC``: a small x86_64 kernel that ``vmsim peer`` can boot.

Made for the 2019 kernel (v5.2, the one without the preload), from any tree
the user has (vmsim never downloads or ships kernel source): ``tinyconfig``,
then the options below, ``olddefconfig``, ``bzImage``, built out of tree
(``O=``) so the source stays as it was.  About 5-20 minutes on two cores with
Debian's gcc 12.

The options are what the comparison needs and nothing else: SMP and NUMA as a
guest has them, SLAB (the 2019 report's trace shows cache_grow_begin <-
fallback_alloc), VMAP_STACK (fork stacks from vmalloc), no swap, PREEMPT_NONE
and HZ=250 like the scenario, virtio block and ext2 built in (the root disk;
no modules), and kprobe events with hist triggers (the agent's counters).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from sim.peer.image import cache_dir
from sim.schema.errors import InputError

ENABLE = (
    "KERNEL_GZIP", "CC_OPTIMIZE_FOR_PERFORMANCE", "SLAB", "SMP", "NUMA", "X86_64_ACPI_NUMA",
    "PRINTK", "BUG", "EARLY_PRINTK", "KALLSYMS", "MAGIC_SYSRQ", "TTY", "SERIAL_8250", "SERIAL_8250_CONSOLE",
    "VT", "VT_CONSOLE", "BLK_DEV_INITRD", "RD_GZIP", "BLOCK", "PROC_FS", "PROC_SYSCTL", "SYSFS", "DEVTMPFS",
    "DEVTMPFS_MOUNT", "TMPFS", "SHMEM", "BINFMT_ELF", "BINFMT_SCRIPT", "FUTEX", "EPOLL", "SIGNALFD", "TIMERFD",
    "EVENTFD", "MULTIUSER", "POSIX_TIMERS", "SYSVIPC", "AIO", "ADVISE_SYSCALLS", "FHANDLE", "MEMBARRIER",
    "VMAP_STACK", "TRANSPARENT_HUGEPAGE", "TRANSPARENT_HUGEPAGE_ALWAYS", "COMPACTION", "MIGRATION",
    "ACPI", "PCI", "PCI_MSI", "UNWINDER_FRAME_POINTER", "FRAME_POINTER", "PREEMPT_NONE", "HZ_250",
    "FTRACE", "TRACING", "EVENT_TRACING", "HIST_TRIGGERS", "KPROBES", "KPROBE_EVENTS", "DEBUG_FS",
    "CPUSETS", "CGROUPS", "UNIX", "NET", "X86_MPPARSE", "HYPERVISOR_GUEST", "PARAVIRT", "KVM_GUEST",
    "RTC_CLASS", "RTC_DRV_CMOS", "DEBUG_KERNEL", "MODULES", "ZONE_DMA", "VM_EVENT_COUNTERS", "BASE_FULL",
    "HIGH_RES_TIMERS", "VIRTIO_MENU", "VIRTIO", "VIRTIO_PCI", "VIRTIO_PCI_LEGACY", "BLK_DEV", "VIRTIO_BLK",
    "EXT2_FS",
)  # fmt: skip
DISABLE = ("KERNEL_XZ", "CC_OPTIMIZE_FOR_SIZE", "SLOB", "SLUB", "SWAP", "UNWINDER_ORC", "UNWINDER_GUESS",
           "STACK_VALIDATION")  # fmt: skip
SET_VAL = (("NR_CPUS", "8"),)
# what the comparison cannot do without: checked in the final .config
REQUIRED = ("SLAB", "VMAP_STACK", "VIRTIO_BLK", "EXT2_FS", "KPROBE_EVENTS", "HIST_TRIGGERS", "BLK_DEV_INITRD",
            "SERIAL_8250_CONSOLE", "DEVTMPFS", "TMPFS", "KALLSYMS")  # fmt: skip
TOOLS = ("make", "gcc", "flex", "bison", "bc")


def _run(cmd: list[str], log: Callable[[str], None], logfile: Path) -> None:
    """Run one build step, its output appended to ``logfile``; a failure is an InputError."""
    log("$ " + " ".join(cmd))
    with open(logfile, "a") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise InputError("build-kernel", None, f"{cmd[-1]} failed (exit {done.returncode}); see {logfile}")


def config_edits() -> list[str]:
    """The arguments of ``scripts/config`` that turn tinyconfig into vmsim's guest."""
    args: list[str] = []
    for name in DISABLE:
        args += ["--disable", name]
    for name in ENABLE:
        args += ["--enable", name]
    for name, value in SET_VAL:
        args += ["--set-val", name, value]
    return args


def missing_options(config_text: str) -> list[str]:
    """REQUIRED options that a .config does not set to y."""
    have = {line.split("=", 1)[0].removeprefix("CONFIG_") for line in config_text.splitlines() if line.endswith("=y")}
    return [name for name in REQUIRED if name not in have]


def build_kernel(source: Path, out: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Configure and build ``source`` out of tree; the bzImage's path."""
    source = Path(source)
    if not (source / "Makefile").is_file() or not (source / "mm" / "vmalloc.c").is_file():
        raise InputError(str(source), None, "expected a Linux source tree (Makefile and mm/vmalloc.c)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise InputError("build-kernel", None, f"missing {', '.join(missing)}: apt-get install build-essential "
                         "bc flex bison libelf-dev libssl-dev")  # fmt: skip
    version = _version(source)
    build = Path(out) if out is not None else cache_dir() / "kernels" / f"linux-{version}"
    build.mkdir(parents=True, exist_ok=True)
    logfile = build / "build.log"
    logfile.write_text("")
    make = ["make", "-C", str(source.resolve()), f"O={build.resolve()}", "ARCH=x86_64"]
    _run([*make, "tinyconfig"], log, logfile)
    _run([str(source / "scripts" / "config"), "--file", str(build / ".config"), *config_edits()], log, logfile)
    _run([*make, "olddefconfig"], log, logfile)
    lacking = missing_options((build / ".config").read_text())
    if lacking:
        raise InputError("build-kernel", None, f"this tree's Kconfig cannot set {', '.join(lacking)}")
    _run([*make, f"-j{os.cpu_count() or 2}", "bzImage"], log, logfile)
    image = build / "arch" / "x86" / "boot" / "bzImage"
    if not image.is_file():
        raise InputError("build-kernel", None, f"no bzImage after the build; see {logfile}")
    return image


def _version(source: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from the tree's Makefile."""
    values = {}
    for line in (source / "Makefile").read_text().splitlines()[:8]:
        if "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return ".".join(values.get(k, "0") for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
