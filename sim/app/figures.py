"""``vmsim plot``: the figures a results folder supports, drawn off screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw_figures(folder: Path, run_id: str | None = None, x: str | None = None) -> Any:
    """sim.analysis.plots.plot_folder with matplotlib's file-only backend (no display needed);
    its report (files written, figures skipped and why)."""
    import matplotlib

    matplotlib.use("Agg")
    from sim.analysis.plots import plot_folder

    return plot_folder(folder, run_id=run_id, x=x)
