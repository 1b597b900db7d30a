"""Shared fixtures: where the kernel's expected-output vectors live."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: Any) -> None:
    """Counter names are checked as they are recorded (sim/record/counters.py), here and in
    worker processes."""
    from sim.record.metrics import check_names

    check_names()


def vectors_dir() -> Path:
    """``$VMSIM_VECTORS_DIR`` if set, else ``../shared/vectors`` beside the checkout."""
    env = os.environ.get("VMSIM_VECTORS_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "vectors"


def make_machine(strategy: str | None = None, seed: int = 1, **config: Any) -> Any:
    """A Machine with MachineConfig's defaults except ``config``, seeded with ``seed`` (the one
    helper the kernel tests share; each test states what it changes)."""
    from sim.kernel.machine import Machine, MachineConfig

    return Machine(MachineConfig(strategy=strategy, **config), np.random.SeedSequence(seed))


def vector_files() -> list[Path]:
    folder = vectors_dir()
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


@pytest.fixture
def space_factory():
    """Build a fresh allocator core with a counting provider."""
    from sim.kernel.mm.vmalloc.space import CountingProvider, VmapSpace

    def make(search: str = "v5.3") -> VmapSpace:
        return VmapSpace(CountingProvider(), search)

    return make


def vmsim(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the ``vmsim`` entry point in-process: (exit status, stdout, stderr)."""
    from sim.cli import main

    monkeypatch.setattr(sys, "argv", ["vmsim", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err
