"""Agreement with a real kernel: the report's short section on docs/validation.md (issue 15 item 6).

The validation page puts the model beside real kernels booted under QEMU; its results
are committed as pairs of folders (``results/peer-model/X`` beside ``results/peer/X``).
:func:`agreement_section` recomputes the measures that matter to the answer for the
pair that ran the 2019 workload on the 2019 kernel, with :mod:`sim.analysis.comparison`
(the same code as ``vmsim compare``), says in one computed sentence whether the
split-failure rates agree, and links the page.  Nothing when the page or the folders
are absent (an installed copy without the repository's results).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.analysis.comparison import _cell, _fmt, comparison_rows, load_side

REPO = Path(__file__).resolve().parents[2]
FAILURES = "NOWAIT split failures per 10^6 vmalloc calls"
MEASURES = (
    "forks per second",
    "vmalloc calls per fork (stack cache misses)",
    "NOWAIT split attempts per 1000 forks",
    FAILURES,
    "direct reclaims per 1000 forks",
    "OOM kills per 1000 forks",
    "fork ENOMEM per 1000 forks",
)


@dataclass(frozen=True)
class PeerPair:
    """A model folder and the guest folder it is compared with, and what they ran."""

    what: str
    model: Path
    real: Path


PAIRS = (
    PeerPair(
        "Rezki's 2019 workload (stress-ng --fork 64 beside a 185 MiB hog, 256 MiB, 4 vCPUs, no swap) "
        "on v5.2.1, the kernel without the preload",
        Path("results/peer-model/rezki-2019-v52"),
        Path("results/peer/rezki-2019-v52"),
    ),
)


@dataclass(frozen=True)
class Comparison:
    """One committed pair set side by side: its runs' sizes and ``vmsim compare``'s rows,
    measure -> (model, real, model interval, real interval)."""

    pair: PeerPair
    boots: int
    seconds: float  # measured on the guest
    model_runs: int
    rows: dict[str, tuple[float | None, float | None, tuple[float, float] | None, tuple[float, float] | None]]


def comparisons(repo: Path = REPO, pairs: tuple[PeerPair, ...] = PAIRS) -> list[Comparison]:
    """Every pair whose two folders are committed, loaded once (the model side: ``nowait``)."""
    found = []
    for pair in pairs:
        if not all((repo / f / "runs.parquet").exists() for f in (pair.model, pair.real)):
            continue
        model, real = load_side(repo / pair.model, "nowait", real=False), load_side(repo / pair.real, None, real=True)
        rows = {label: (m, r, mb, rb) for label, m, r, mb, rb in comparison_rows(model, real)}
        found.append(Comparison(pair, len(real.runs), float(real.runs["sim_seconds"].sum()), len(model.runs), rows))
    return found


def agreement_section(
    report_dir: Path, repo: Path = REPO, pairs: tuple[PeerPair, ...] = PAIRS, found: list[Comparison] | None = None
) -> list[str]:
    """The lines of "Agreement with a real kernel", or none when there is nothing to show.
    ``found``: the pairs already loaded (:func:`comparisons`), else loaded here."""
    page = repo / "docs" / "validation.md"
    found = comparisons(repo, pairs) if found is None else found
    if not page.exists() or not found:
        return []
    link = Path(os.path.relpath(page, Path(report_dir).resolve())).as_posix()
    out = ["## Agreement with a real kernel", ""]
    for c in found:
        out += [
            f"{c.pair.what}: {c.boots} guest boots ({c.seconds:,.0f} s measured) "
            f"against {c.model_runs} model runs (`{c.pair.real.as_posix()}`, `{c.pair.model.as_posix()}`).",
            "",
            "| measure | model | real kernel | model/real |",
            "|---|---:|---:|---:|",
        ]
        for label in MEASURES:
            if label not in c.rows:
                continue
            m, r, mb, rb = c.rows[label]
            ratio = m / r if m is not None and r not in (None, 0) else None
            out.append(f"| {label} | {_cell(m, mb)} | {_cell(r, rb)} | {_fmt(ratio)} |")
        out += ["", _failure_verdict(*c.rows.get(FAILURES, (None, None, None, None))), ""]
    out += [
        "Every measure of the comparison, with its interval, is in `agreement.csv` here; the whole comparison, "
        f"what was calibrated and from which measurement: [docs/validation.md]({link}).",
        "",
    ]
    return out


def agreement_table(found: list[Comparison] | None = None) -> pd.DataFrame:
    """agreement.csv: every measure of ``vmsim compare`` for each committed pair, model and real
    with their 95% intervals where a measure is a proportion, so that the section's and the
    headline's figures are in a table of the answer folder."""
    rows = []
    for c in comparisons() if found is None else found:
        for label, (m, r, mb, rb) in c.rows.items():
            rows.append({
                "model_folder": c.pair.model.as_posix(), "real_folder": c.pair.real.as_posix(), "measure": label,
                "model": m, "model_lo": mb[0] if mb else None, "model_hi": mb[1] if mb else None,
                "real": r, "real_lo": rb[0] if rb else None, "real_hi": rb[1] if rb else None,
            })  # fmt: skip
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RealRate:
    """A split-failure rate measured on a real kernel, beside the model's on the same workload."""

    what: str
    boots: int
    real: tuple[float, float, float]  # rate per 10^6 vmalloc calls, Wilson 95% low and high
    model: tuple[float, float, float]


def real_kernel_rate(found: list[Comparison] | None = None) -> RealRate | None:
    """The first committed pair's split-failure rates, real and model, or None without one."""
    for c in comparisons() if found is None else found:
        m, r, mb, rb = c.rows.get(FAILURES, (None, None, None, None))
        if m is None or r is None or mb is None or rb is None:
            continue
        return RealRate(c.pair.what, c.boots, (r, *rb), (m, *mb))
    return None


def _failure_verdict(
    m: float | None, r: float | None, mb: tuple[float, float] | None, rb: tuple[float, float] | None
) -> str:
    """One sentence on the split-failure rates: do the intervals overlap, and by what factor
    do the rates differ."""
    if m is None or r is None or mb is None or rb is None:
        return "The split-failure rate was not measured on both sides."
    if r == 0 and m == 0:
        return "Neither the model nor the kernel had a split failure."
    if mb[0] <= rb[1] and rb[0] <= mb[1]:
        return f"The split-failure rates agree within their 95% intervals (model {_fmt(m)}, kernel {_fmt(r)} per 10^6)."
    factor = m / r if r else float("inf")
    side = "above" if m > r else "below"
    return (
        f"The split-failure rates do not agree: the model's is {_fmt(factor if factor >= 1 else 1 / factor)} times "
        f"{side} the kernel's and the 95% intervals are disjoint; the validation page says why, and how the "
        "model's rate depends on memory at boot."
    )
