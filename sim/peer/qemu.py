"""Booting the guest: QEMU's command line, the accelerator probe, the run.

The guest's console (ttyS0) and the agent's three ports (ttyS1 to ttyS3) go to four
files; the host reads them after the guest powers off.  KVM is used when a
probe boot with ``-enable-kvm`` reaches the agent within a short timeout (it
does not on machines whose CPU lacks virtualisation, or where KVM guests hang
at boot); otherwise TCG, QEMU's emulator, which is correct but slow (here a 6.1
guest forks 71x, a 5.2 guest 58x slower than the model's CPU costs assume).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sim.peer.agent import PORT_FILES
from sim.peer.image import GuestKernel, cache_dir, initramfs
from sim.peer.translation import GuestMachine
from sim.record.results import atomic_write_bytes, write_json
from sim.schema.errors import InputError

QEMU = "qemu-system-x86_64"
PROBE_TIMEOUT_S = 40.0
PROBE_INIT = "#!/bin/busybox sh\necho '@@vmsim probe ok' > /dev/ttyS1\n/bin/busybox poweroff -f\n"


@dataclass(frozen=True)
class GuestRun:
    """What one boot produced."""

    accel: str
    returncode: int | None  # None: killed at the timeout
    wall_seconds: float
    console: str
    data: str
    command: list[str]


def qemu_binary() -> str:
    """The QEMU binary, or a one-line InputError saying which package to install."""
    path = shutil.which(QEMU)
    if path is None:
        raise InputError("peer", None, f"{QEMU} not found: install qemu-system-x86 (apt-get install qemu-system-x86)")
    return path


def qemu_command(
    kernel: GuestKernel, initrd: Path, disk: Path | None, machine: GuestMachine, accel: str, console: Path, data: Path
) -> list[str]:
    """The QEMU command line: ``-cpu max`` under TCG (``host`` under KVM), the
    machine's CPUs and RAM, the root disk read-only (``snapshot=on``), no display,
    no network, both serial ports to files, no reboot on panic."""
    cmd = [qemu_binary()]
    if accel == "kvm":
        cmd += ["-enable-kvm", "-cpu", "host,-arch-capabilities"]
    else:
        cmd += ["-accel", "tcg,thread=multi", "-cpu", "max"]
    cmd += ["-smp", str(machine.cpus), "-m", f"{machine.ram_mib}M"]
    cmd += ["-kernel", str(kernel.vmlinuz), "-initrd", str(initrd), "-append", " ".join(machine.cmdline)]
    if disk is not None:
        cmd += ["-drive", f"file={disk},format=raw,if=virtio,snapshot=on"]
    cmd += ["-display", "none", "-monitor", "none", "-nic", "none", "-no-reboot"]
    cmd += ["-serial", f"file:{console}"]
    for name in PORT_FILES:
        cmd += ["-serial", f"file:{data.parent / name}"]
    return cmd


def boot(
    kernel: GuestKernel,
    initrd: Path,
    disk: Path | None,
    machine: GuestMachine,
    accel: str,
    timeout_s: float,
    workdir: Path,
) -> GuestRun:
    """Boot once and wait for the guest to power off (or kill it at ``timeout_s``)."""
    console, data = workdir / "console.log", workdir / "data.log"
    for name in ("console.log", *PORT_FILES):  # a re-run into the same folder starts clean
        (workdir / f"{name}.gz").unlink(missing_ok=True)
    cmd = qemu_command(kernel, initrd, disk, machine, accel, console, data)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=timeout_s)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        code = None
    wall = time.monotonic() - start
    text = console.read_text(errors="replace") if console.exists() else ""
    if err:
        text += "\n@@qemu-stderr\n" + err.decode(errors="replace")
    return GuestRun(accel, code, wall, text, read_ports(workdir), cmd)


def read_ports(workdir: Path) -> str:
    """The agent's three data ports, one after the other (every line says what it is);
    each file plain or gzip'd (``vmsim peer`` keeps them compressed)."""
    parts = []
    for name in PORT_FILES:
        plain, packed = workdir / name, workdir / f"{name}.gz"
        if plain.exists():
            parts.append(plain.read_text(errors="replace"))
        elif packed.exists():
            parts.append(gzip.decompress(packed.read_bytes()).decode(errors="replace"))
    return "\n".join(parts)


def compress_logs(workdir: Path) -> None:
    """gzip the console and port files of a finished boot (kmsg of an OOM storm is large)."""
    for name in ("console.log", *PORT_FILES):
        plain = workdir / name
        if plain.exists():
            atomic_write_bytes(workdir / f"{name}.gz", gzip.compress(plain.read_bytes(), mtime=0))
            plain.unlink()


def choose_accel(kernel: GuestKernel, machine: GuestMachine, want: str) -> tuple[str, str]:
    """The accelerator and why: ``kvm`` or ``tcg`` as asked, or for ``auto`` KVM
    when /dev/kvm exists and a probe boot reaches the agent in PROBE_TIMEOUT_S."""
    if want in ("kvm", "tcg"):
        return want, "asked for"
    if not os.path.exists("/dev/kvm"):
        return "tcg", "no /dev/kvm"
    stat = kernel.vmlinuz.stat()
    key = hashlib.sha256(f"{kernel.vmlinuz}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    memo = cache_dir() / f"kvm-probe-{key}.json"  # the probe costs up to PROBE_TIMEOUT_S; its answer is kept
    if memo.exists():
        known = json.loads(memo.read_text())
        return known["accel"], known["reason"] + " (cached)"
    accel, reason = _probe_kvm(kernel, machine)
    write_json(memo, {"accel": accel, "reason": reason})
    return accel, reason


def _probe_kvm(kernel: GuestKernel, machine: GuestMachine) -> tuple[str, str]:
    """Boot a one-line agent under KVM and see whether it reports back in time."""
    with tempfile.TemporaryDirectory(prefix="vmsim-probe-") as tmp:
        work = Path(tmp)
        initrd = work / "probe.cpio.gz"
        initrd.write_bytes(initramfs(kernel, PROBE_INIT))
        probe = GuestMachine(cpus=1, ram_mib=max(256, machine.ram_mib // 4), cmdline=("console=ttyS0", "edd=off"))
        try:
            run = boot(kernel, initrd, None, probe, "kvm", PROBE_TIMEOUT_S, work)
        except OSError as err:
            return "tcg", f"KVM probe could not start: {err}"
    if "@@vmsim probe ok" in run.data:
        return "kvm", f"KVM probe booted in {run.wall_seconds:.1f} s"
    why = "timed out" if run.returncode is None else f"exited with {run.returncode}"
    return "tcg", f"KVM probe {why} after {run.wall_seconds:.1f} s"
