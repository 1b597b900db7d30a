"""``vmsim peer``: a scenario on a real Linux kernel in QEMU, or the 2019 kernel built from source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sim.schema.errors import InputError

ACCELS = ("auto", "kvm", "tcg")


def build(source: Path | None, out: Path | None, log: Callable[[str], None]) -> Path:
    """Build the v5.2 kernel from the source tree ``source`` (sim.peer.kbuild.build_kernel); its bzImage."""
    from sim.peer.kbuild import build_kernel

    if source is None:
        raise InputError("build-kernel", None, "expected the kernel source folder: vmsim peer build-kernel SRC_DIR")
    return build_kernel(source, out, log=log)


def run(
    scenario: Path,
    sets: list[str],
    kernel: Path | None,
    modules: Path | None,
    accel: str,
    out: Path | None,
    replications: int,
    log: Callable[[str], None],
) -> Path:
    """Boot the guest ``replications`` times on ``scenario`` (sim.peer.session.run_peer); the results folder."""
    from sim.peer.session import run_peer

    if accel not in ACCELS:
        raise InputError("--accel", None, f"expected {', '.join(ACCELS[:-1])} or {ACCELS[-1]}, got {accel!r}")
    return run_peer(scenario, sets, kernel, modules, accel, out, replications, log=log)
