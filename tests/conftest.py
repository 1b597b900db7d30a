"""Shared fixtures: where the kernel's expected-output vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def vectors_dir() -> Path:
    """``$VMSIM_VECTORS_DIR`` if set, else ``../shared/vectors`` beside the checkout."""
    env = os.environ.get("VMSIM_VECTORS_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "vectors"


def vector_files() -> list[Path]:
    folder = vectors_dir()
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


@pytest.fixture
def space_factory():
    """Build a fresh allocator core with a counting provider."""
    from sim.kernel.vmap import CountingProvider, VmapSpace

    def make(search: str = "v5.3") -> VmapSpace:
        return VmapSpace(CountingProvider(), search)

    return make
