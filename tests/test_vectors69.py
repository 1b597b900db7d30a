"""The v6.9 vmap-node layer reproduces the kernel's own outputs on its vectors.

tests/data/vectors69/ holds op sequences run through mm/vmalloc.c of v6.9 in userspace
(tools/vectors69/, README there and beside the files): node pools, lazy lists, partial and
full purges on 1, 4, 8 and 128 nodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.app.replay import read_trace, replay
from sim.kernel.mm.vmalloc import nodes as nodes_module

DIR = Path(__file__).parent / "data" / "vectors69"
FILES = sorted(DIR.glob("*.jsonl"))


def _replay(path: Path, **header_changes):
    header, ops = read_trace(path)
    report, lines = replay({**header, **header_changes}, ops, check=True)
    for _ in lines:
        pass
    return report


def test_the_69_vectors_are_there():
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_69_vector_file_replays_with_zero_mismatches(path):
    report = _replay(path)
    assert report.compared == report.ops > 0
    assert report.mismatches == 0, report.first_mismatch


def test_the_node_count_matters_to_the_69_vectors():
    """Not vacuous: the 4-node fork file read as one node (no pools) disagrees."""
    report = _replay(DIR / "a_fork_n4.jsonl", nodes=1)
    assert report.fits["POOL"] == 0 and report.mismatches > 0


@pytest.mark.spies_on_methods
def test_the_purge_merge_order_matters_to_the_69_vectors(monkeypatch):
    """Not vacuous: merging a node's lazy areas lowest first, not highest first, disagrees."""
    original = nodes_module.VmapNodes.purge_vmap_node

    def ascending(self, node, batch, skip_populate):
        counts, back = original(self, node, batch, skip_populate)
        return counts, sorted(back, key=lambda va: va.va_start)

    monkeypatch.setattr(nodes_module.VmapNodes, "purge_vmap_node", ascending)
    assert _replay(DIR / "c_mixed_n1.jsonl").mismatches > 0
