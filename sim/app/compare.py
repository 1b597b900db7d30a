"""``vmsim compare``: the model's results folder beside a real kernel's (``vmsim peer``)."""

from __future__ import annotations

from pathlib import Path


def compare(model_dir: Path, peer_dir: Path, strategy: str | None, out: Path | None) -> tuple[str, Path]:
    """compare.md's text (sim.analysis.comparison.compare_folders) and where it was written
    (``out``, else PEER_DIR/compare.md), atomically."""
    from sim.analysis.comparison import compare_folders
    from sim.record.results import atomic_write_bytes

    text = compare_folders(model_dir, peer_dir, strategy)
    target = Path(out) if out is not None else Path(peer_dir) / "compare.md"
    atomic_write_bytes(target, text.encode())
    return text, target
