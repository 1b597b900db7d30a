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


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """A test that spies on a model method by replacing it on an object, or hands the model a
    stand-in of another type, cannot run on the compiled build: a compiled class's methods are
    read-only, compiled callers call them directly, and compiled code checks argument types
    (docs/compiled.md).  ``make test`` runs these under ``VMSIM_PURE=1``."""
    import sim

    if sim.BUILD_MODE != "compiled":
        return
    skip = pytest.mark.skip(reason="spies on a method of a compiled class; runs with VMSIM_PURE=1")
    for item in items:
        if "spies_on_methods" in item.keywords:
            item.add_marker(skip)


def vectors_dir() -> Path:
    """``$VMSIM_VECTORS_DIR`` if set, else ``../shared/vectors`` beside the checkout."""
    env = os.environ.get("VMSIM_VECTORS_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "vectors"


def make_machine(strategy: str | None = None, seed: int = 1, **config: Any) -> Any:
    """A Machine with MachineConfig's defaults except ``config``, seeded with ``seed`` (the one
    helper the kernel tests share; each test states what it changes)."""
    from sim.kernel.machine import Machine, MachineConfig

    return Machine(MachineConfig(strategy=strategy, **config), np.random.SeedSequence(seed))


def race_machine(strategy: str, t_check_lock: float = 1e-3) -> tuple[Any, list[int]]:
    """The v5.5 preload race on a 2-CPU machine under full preemption, run to 0.1 s: task x
    leaves CPU 0's slot full (an NE area takes the first fill, an LE area the second), then asks
    for an NE stack while a pinned task wakes on CPU 0 inside the check-to-lock window; a
    preemption there moves x to CPU 1, whose slot is empty.  (machine, CPUs x held the lock on)."""
    from sim.kernel.mm.gfp import GFP_KERNEL
    from sim.kernel.mm.vmalloc.alloc import VmallocParams
    from sim.kernel.mm.vmalloc.space import VMALLOC_END, VMALLOC_START
    from sim.kernel.sched.cpu import SchedParams

    stack = 16384
    m = make_machine(
        strategy,
        cpus=2,
        preemption="full",
        sched=SchedParams(p_migrate_on_preempt=1.0),
        vmalloc=VmallocParams(t_check_lock=t_check_lock),
    )
    vm = m.vmalloc
    c = m.metrics.counters
    lock_cpus: list[int] = []

    def sleeper(task: Any) -> Any:
        yield from m.sched.sleep(task, 0.0125, "timer")  # x's window is [12.0, 13.0] ms
        yield from m.sched.run(task, 1e-3)

    def x(task: Any) -> Any:
        for pages in (1, 2):
            area = yield from vm.vmalloc_node_range(task, pages * 4096, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
            assert area is not None
        assert (c["fit_ne"], c["fit_le"]) == (1, 1)
        yield from m.sched.run(task, 0.01)
        area = yield from vm.vmalloc_node_range(task, stack, stack, VMALLOC_START, VMALLOC_END, GFP_KERNEL)
        assert area is not None and c["fit_ne"] == 2
        lock_cpus.append(task.cpu)

    m.spawn("sleeper", sleeper, cpu=0, pinned=True)
    m.spawn("x", x, cpu=0)
    m.env.run(until=0.1)
    return m, lock_cpus


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
