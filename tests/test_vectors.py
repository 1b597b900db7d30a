"""The allocator core reproduces the kernel's own outputs on every vector file."""

from __future__ import annotations

import json

import pytest

from sim.app.replay import read_trace, replay
from tests.conftest import vector_files, vectors_dir

FILES = vector_files()


@pytest.mark.skipif(not FILES, reason=f"no vector files in {vectors_dir()} (set VMSIM_VECTORS_DIR to run them)")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_vector_file_replays_with_zero_mismatches(path):
    header, ops = read_trace(path)
    report, lines = replay(header, ops, check=True)
    for _ in lines:
        pass
    assert report.compared == len(ops) > 0
    assert report.mismatches == 0, report.first_mismatch


@pytest.mark.skipif(not FILES, reason=f"no vector files in {vectors_dir()}")
def test_vectors_cover_both_search_modes():
    modes = {json.loads(p.read_text().split("\n", 1)[0]).get("search") for p in FILES}
    assert modes == {"v5.3", "v5.18"}


@pytest.mark.skipif(not FILES, reason=f"no vector files in {vectors_dir()}")
def test_wrong_search_mode_is_detected_as_mismatch():
    """The check is not vacuous: a v5.3 file with 1 < align <= 4096 differs under v5.18."""
    path = next((p for p in FILES if p.name == "b_tv2_v53.jsonl"), None)
    if path is None:
        pytest.skip("b_tv2_v53.jsonl not present")
    header, ops = read_trace(path)
    report, lines = replay(header, ops, search="v5.18", check=True)
    for _ in lines:
        pass
    assert report.mismatches > 0
