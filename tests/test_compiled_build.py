"""The compiled build (docs/compiled.md): never stale, all or nothing, and the same results as pure Python."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sim
from sim import EXT_SUFFIX, check_build

ROOT = Path(__file__).resolve().parents[1]


def _build_tree(tmp_path: Path, modules: dict[str, str]) -> Path:
    """A tree of sources, each with an (empty) extension beside it, and their manifest."""
    sources = {}
    for module, text in modules.items():
        source = tmp_path / (module.replace(".", "/") + ".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(text)
        source.with_name(source.stem + EXT_SUFFIX).write_bytes(b"")
        sources[module] = hashlib.sha256(text.encode()).hexdigest()
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"mypyc": "test", "sources": sources}))
    return manifest


def test_a_build_whose_sources_are_unchanged_loads_compiled(tmp_path, monkeypatch):
    monkeypatch.delenv("VMSIM_PURE", raising=False)
    manifest = _build_tree(tmp_path, {"sim.a": "x = 1\n", "sim.b.c": "y = 2\n"})
    assert check_build(manifest, tmp_path)[0] == "compiled"


def test_one_edited_source_makes_the_whole_build_load_pure(tmp_path, monkeypatch):
    monkeypatch.delenv("VMSIM_PURE", raising=False)
    manifest = _build_tree(tmp_path, {"sim.a": "x = 1\n", "sim.b.c": "y = 2\n"})
    (tmp_path / "sim/b/c.py").write_text("y = 3\n")
    mode, reason = check_build(manifest, tmp_path)
    assert mode == "pure" and "stale" in reason and "sim.b.c" in reason


def test_a_missing_extension_or_manifest_loads_pure(tmp_path, monkeypatch):
    monkeypatch.delenv("VMSIM_PURE", raising=False)
    manifest = _build_tree(tmp_path, {"sim.a": "x = 1\n"})
    (tmp_path / ("sim/a" + EXT_SUFFIX)).unlink()
    assert check_build(manifest, tmp_path) == ("pure", "compiled module sim.a missing")
    assert check_build(tmp_path / "none.json", tmp_path)[0] == "pure"


def test_vmsim_pure_forces_pure_python_even_over_a_fresh_build(tmp_path, monkeypatch):
    manifest = _build_tree(tmp_path, {"sim.a": "x = 1\n"})
    monkeypatch.setenv("VMSIM_PURE", "1")
    assert check_build(manifest, tmp_path) == ("pure", "VMSIM_PURE is set")


# scenario files and strategies run in both builds: every model path the fork storm, the
# preloads, preemption, the 1 GB machine and test_vmalloc take, shortened
REDUCED = ["rezki-2019-256mb.yaml", "rt-preload-race.yaml", "test-vmalloc.yaml", "rezki-2019-1gb.yaml"]


def _fingerprints(pure: bool, out: Path) -> dict:
    env = dict(os.environ, VMSIM_PURE="1" if pure else "0")
    only = ",".join(REDUCED)
    script = str(ROOT / "benchmarks/fingerprints.py")
    cmd = [sys.executable, script, "--duration", "0.5", "--only", only, "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


@pytest.mark.skipif(sim.BUILD_MODE != "compiled", reason="no compiled build here (make native)")
def test_compiled_and_pure_builds_record_the_same_runs(tmp_path):
    """Rows, events, samples and counters of each reduced scenario and strategy, digest for digest."""
    pure = _fingerprints(True, tmp_path / "pure.json")
    compiled = _fingerprints(False, tmp_path / "compiled.json")
    assert len(pure) >= 8
    assert compiled == pure
