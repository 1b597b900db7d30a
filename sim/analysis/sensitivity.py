"""How sure: the answer's rates under other plausible values of the model's estimates (issue 15 item 2).

The answer suite runs the sweep files in ``scenarios/answer/sensitivity/`` into
``<answer>/sensitivity/<name>/``.  ``base`` runs the fork-storm base at a few conditions
(its factors, e.g. RAM); every other file runs the same grid with one more factor: one
parameter that is estimated rather than taken from kernel code, at a low and a high
plausible value (or one value, when the base is the other end).  Its ``description``
says what the parameter is (first sentence) and why these values (the rest, with their
source; a value calibrated against a real kernel says so there).

The headline rate is the split GFP_NOWAIT failures per 10^6 vmalloc calls (Wilson 95%,
pooled over replications) at the headline condition: the base sweep's first grid point.
The base value's rate comes from the ``base`` sweep rather than from the main suite, so
that every rate compared was measured with the same duration, replications and strategy
(the main sweeps run longer, with other strategies, and --quick drops the conditions).

A ranking of the conditions is only what the intervals resolve: a pair is ordered where
the two 95% intervals are apart.  A variation *holds* the base ranking when every pair
the base runs order is ordered the same way, *changes* it when one is ordered the other
way, and is *not resolved* when a pair the base orders overlaps (or the base orders none).
Never imports SimPy.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sim.analysis.data import NOT_FACTORS, read_table, short_name, usable_runs, wilson_interval
from sim.analysis.factors import as_written, numeric_values

SENSITIVITY_DIR = "sensitivity"  # under the answer folder
BASE_SWEEP = "base"
TORNADO = Path(SENSITIVITY_DIR) / "tornado.png"
HOLDS, CHANGES, NOT_RESOLVED = "holds", "changes", "not resolved"
SIDE_COLOURS = {"low": "#4477aa", "high": "#cc6677"}
UPPER_BOUND_MARKER = {"marker": "<", "markerfacecolor": "white", "linestyle": "none", "markersize": 8}
LOG_SPAN = 30.0  # a log x axis when the drawn values span more than this factor


@dataclass(frozen=True)
class Rate:
    """Split GFP_NOWAIT failures in vmalloc calls, pooled over runs; per 10^6 with Wilson 95%."""

    failures: float
    calls: float

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95% bounds per 10^6 calls (a call retried after a purge can fail twice: k capped at n)."""
        lo, hi = wilson_interval(min(self.failures, self.calls), self.calls)
        return lo * 1e6, hi * 1e6

    @property
    def per_million(self) -> float:
        return self.failures / self.calls * 1e6 if self.calls > 0 else math.nan

    def text(self) -> str:
        """``393 [254, 607]`` or, with no failure, ``0 [0, 28]``."""
        lo, hi = self.interval
        return f"{_num(self.per_million)} [{_num(lo)}, {_num(hi)}]"


def _num(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def pooled_rate(runs: pd.DataFrame) -> Rate:
    """The usable runs' split failures over their vmalloc calls."""
    runs = usable_runs(runs)
    return Rate(float(runs["split_nowait_failures"].sum()), float(runs["vmalloc_calls"].sum()))


def pair_order(a: Rate, b: Rate) -> int:
    """+1 if ``a``'s rate is resolved above ``b``'s (a's lower bound above b's upper), -1 if
    below, 0 where the 95% intervals overlap."""
    (a_lo, a_hi), (b_lo, b_hi) = a.interval, b.interval
    return 1 if a_lo > b_hi else -1 if a_hi < b_lo else 0


def ranking_verdict(base: dict[str, Rate], varied: dict[str, Rate]) -> str:
    """Whether ``varied`` ranks the conditions as ``base`` does (see the module doc): HOLDS,
    CHANGES or NOT_RESOLVED.  Conditions missing from either are left out."""
    names = [c for c in base if c in varied]
    claims = [(a, b, pair_order(base[a], base[b])) for i, a in enumerate(names) for b in names[i + 1 :]]
    claims = [(a, b, s) for a, b, s in claims if s != 0]
    if not claims:
        return NOT_RESOLVED
    seen = [pair_order(varied[a], varied[b]) for a, b, _ in claims]
    if any(v == -s for v, (_, _, s) in zip(seen, claims, strict=True)):
        return CHANGES
    return NOT_RESOLVED if 0 in seen else HOLDS


def ranking_evidence(base: dict[str, Rate], varied: dict[str, Rate]) -> str:
    """What the verdict rests on: the reversed pairs (``384MiB > 192MiB``) where it changes, the
    pairs the base orders that now overlap (``256MiB ≈ 384MiB``) where it is not resolved, and
    the ranking itself (:func:`ranking_text`) where it holds."""
    verdict = ranking_verdict(base, varied)
    if verdict == HOLDS or not base:
        return ranking_text(varied)
    names = [c for c in base if c in varied]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if pair_order(base[a], base[b]) != 0]
    if verdict == CHANGES:
        shown = [(a, b) if pair_order(varied[a], varied[b]) > 0 else (b, a) for a, b in pairs
                 if pair_order(varied[a], varied[b]) == -pair_order(base[a], base[b])]  # fmt: skip
        return ", ".join(f"{a} > {b}" for a, b in shown)
    return ", ".join(f"{a} ≈ {b}" for a, b in pairs if pair_order(varied[a], varied[b]) == 0) or ranking_text(varied)


def ranking_text(rates: dict[str, Rate]) -> str:
    """The conditions from the highest rate down, ``>`` between neighbours whose intervals
    are apart, ``≈`` where they overlap: ``256MiB ≈ 192MiB > 384MiB``."""
    ordered = sorted(rates, key=lambda c: -rates[c].per_million)
    out = ordered[:1]
    for upper, lower in itertools.pairwise(ordered):
        out += [">" if pair_order(rates[upper], rates[lower]) > 0 else "≈", lower]
    return " ".join(out)


@dataclass(frozen=True)
class Parameter:
    """One sensitivity sweep: the parameter's key, what it is and why these values, its base
    value, and its rates by side (low, high) and condition; a side at the base has none."""

    name: str
    key: str
    label: str
    why: str
    base_value: str
    values: dict[str, str]  # side -> value as the sweep file writes it
    rates: dict[str, dict[str, Rate]]  # side -> condition -> rate


@dataclass(frozen=True)
class Sensitivity:
    """Everything the section and the chart show."""

    conditions: list[str]  # condition columns (the base sweep's factors)
    headline: str  # the base sweep's first grid point, as a condition label
    base: dict[str, Rate]  # condition -> rate at the base values
    parameters: list[Parameter]
    runs_per_value: int  # runs per value and condition (the base sweep's)
    seconds: float  # simulated seconds of each run


def _read(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A sweep folder's runs (factor columns as its file writes them) and manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    runs = read_table(folder, "runs")
    factors = [c for c in (manifest.get("sweep") or {}).get("factors", {}) if c not in NOT_FACTORS]
    return as_written(runs, manifest, factors), manifest


def _label(row: pd.Series, conditions: list[str]) -> str:
    if len(conditions) == 1:
        return str(row[conditions[0]])
    return ", ".join(f"{short_name(c)}={row[c]}" for c in conditions)


def _by_condition(runs: pd.DataFrame, conditions: list[str], order: list[str]) -> dict[str, Rate]:
    labels = runs.apply(_label, axis=1, conditions=conditions) if len(runs) else pd.Series(dtype=str)
    return {c: pooled_rate(runs[labels == c]) for c in order if (labels == c).any()}


def _scenario_value(scenario: dict[str, Any], key: str) -> str:
    """The value at dotted ``key`` of a resolved scenario (``workloads.0.workers`` -> 256)."""
    node: Any = scenario
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
        if node is None:
            return "?"
    return f"{node:g}" if isinstance(node, float) else str(node)


def _sides(values: list[str], base_value: str) -> dict[str, str]:
    """Low and high as the file lists them; a single value is the side of the base it lies on."""
    if len(values) >= 2:
        return {"low": values[0], "high": values[-1]}
    numbers = numeric_values([values[0], base_value])
    above = numbers is not None and numbers[values[0]] > numbers[base_value]
    return {"high" if above else "low": values[0]}


def load_sensitivity(out_dir: Path) -> Sensitivity | None:
    """The sensitivity sweeps under ``out_dir/sensitivity/``; None without its base sweep."""
    root = Path(out_dir) / SENSITIVITY_DIR
    if not (root / BASE_SWEEP / "runs.parquet").exists():
        return None
    base_runs, base_manifest = _read(root / BASE_SWEEP)
    sweep = base_manifest.get("sweep") or {}
    conditions = list(sweep.get("factors") or {})
    order = list(dict.fromkeys(base_runs.sort_values("point").apply(_label, axis=1, conditions=conditions)))
    base = _by_condition(base_runs, conditions, order)
    scenario = base_manifest.get("scenario") or {}
    parameters = []
    for folder in sorted(p for p in root.iterdir() if (p / "runs.parquet").exists() and p.name != BASE_SWEEP):
        runs, manifest = _read(folder)
        mine = manifest.get("sweep") or {}
        keys = [k for k in mine.get("factors") or {} if k not in conditions]
        if len(keys) != 1:
            continue  # not a one-parameter variation of the base grid
        key = keys[0]
        written = (mine.get("written") or {}).get(key) or [str(v) for v in mine["factors"][key]]
        base_value = _scenario_value(scenario, key)
        sides = _sides([str(v) for v in written], base_value)
        label, _, why = str(mine.get("description") or folder.name).partition(". ")
        rates = {side: _by_condition(runs[runs[key].astype(str) == value], conditions, order)
                 for side, value in sides.items()}  # fmt: skip
        parameters.append(Parameter(folder.name, key, label, why, base_value, sides, rates))
    usable = usable_runs(base_runs)
    per_value = int(usable.groupby("point").size().min()) if len(usable) else 0
    seconds = float(usable["sim_seconds"].median()) if len(usable) else math.nan
    return Sensitivity(conditions, order[0] if order else "", base, parameters, per_value, seconds)


def swing(parameter: Parameter, sens: Sensitivity) -> float:
    """How far the headline rate moves across the parameter's values (the base's included)."""
    rates = [sens.base[sens.headline].per_million] if sens.headline in sens.base else []
    rates += [r[sens.headline].per_million for r in parameter.rates.values() if sens.headline in r]
    rates = [r for r in rates if not math.isnan(r)]
    return max(rates) - min(rates) if rates else 0.0


def tornado_figure(sens: Sensitivity) -> Figure:
    """Per parameter (largest swing at the top), a bar from the base rate to the rate at its
    low value and one to the rate at its high value, with 95% whiskers; a value with no
    failure is an open ◁ at its 95% upper bound, not a bar to 0; the base rate's interval is
    a grey band.  Log x when the values span more than LOG_SPAN, else linear from 0."""
    params = sorted(sens.parameters, key=lambda p: -swing(p, sens))
    base = sens.base.get(sens.headline, Rate(0.0, 0.0))
    fig = Figure(figsize=(6.5, 1.6 + 0.55 * max(len(params), 1)), layout="constrained")
    ax = fig.subplots()
    b_lo, b_hi = base.interval
    centre = base.per_million if base.failures > 0 else b_hi
    ax.axvspan(b_lo, b_hi, color="0.85", zorder=0)
    ax.axvline(centre, color="0.3", lw=1, zorder=1)
    drawn = [b_hi, centre]
    for row, parameter in enumerate(params):
        y = len(params) - 1 - row
        for side, offset in (("low", 0.18), ("high", -0.18)):
            rate = parameter.rates.get(side, {}).get(sens.headline)
            if rate is None or rate.calls <= 0:
                continue
            lo, hi = rate.interval
            colour = SIDE_COLOURS[side]
            if rate.failures == 0:
                ax.plot([hi], [y + offset], color=colour, **UPPER_BOUND_MARKER)
                drawn.append(hi)
                continue
            value = rate.per_million
            ax.barh(y + offset, value - centre, left=centre, height=0.34, color=colour, zorder=2)
            ax.errorbar([value], [y + offset], xerr=[[value - lo], [hi - value]], fmt="none", ecolor="0.2",
                        elinewidth=0.8, capsize=2, zorder=3)  # fmt: skip
            drawn += [lo, hi, value]
    positive = [x for x in drawn if x > 0]
    if positive and max(positive) / min(positive) > LOG_SPAN:
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, max(drawn + [1.0]) * 1.05)
    ax.set_yticks(range(len(params)))
    ax.set_yticklabels([f"{p.name}\n{' / '.join(_side_text(p, s) for s in ('low', 'high'))}" for p in reversed(params)],
                       fontsize=9)  # fmt: skip
    ax.set_ylim(-0.6, len(params) - 0.4)
    ax.tick_params(axis="x", labelsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"split GFP_NOWAIT failures /10^6 vmalloc calls at {sens.headline}", fontsize=9)
    handles = [
        Patch(color=SIDE_COLOURS["low"], label="low value"),
        Patch(color=SIDE_COLOURS["high"], label="high value"),
        Patch(color="0.85", label=f"base {base.text()}"),
        Line2D([], [], color="0.25", label="none observed: ◁ at the 95% upper bound", **UPPER_BOUND_MARKER),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return fig


def _side_text(parameter: Parameter, side: str) -> str:
    return parameter.values.get(side) or f"{parameter.base_value} (base)"


def draw_sensitivity(out_dir: Path) -> list[Path]:
    """``sensitivity/tornado.png`` (and .svg) in the answer folder; nothing without the runs."""
    from sim.analysis.plots import save_figure

    sens = load_sensitivity(out_dir)
    if sens is None or not sens.parameters:
        return []
    return save_figure(tornado_figure(sens), Path(out_dir) / TORNADO.parent, TORNADO.stem)


def _verdict_text(parameter: Parameter, side: str, sens: Sensitivity) -> str:
    rates = parameter.rates.get(side)
    if rates is None:
        return "(base)"
    return f"{ranking_verdict(sens.base, rates)}: {ranking_evidence(sens.base, rates)}"


def sensitivity_section(out_dir: Path) -> list[str]:
    """report.md's "How sure" lines: what was varied and why, the headline rate at each value
    against the base, whether the ranking of the conditions holds, and the tornado chart."""
    sens = load_sensitivity(out_dir)
    if sens is None or not sens.parameters:
        return []
    base = sens.base.get(sens.headline, Rate(0.0, 0.0))
    out = [
        "## How sure: the answer under other values of the model's estimates",
        "",
        f"Each parameter below is estimated rather than taken from kernel code. The sensitivity runs "
        f"(`scenarios/answer/sensitivity/`) set one at a time to a low and a high plausible value and run the "
        f"fork-storm base at {', '.join(short_name(c) for c in sens.conditions)} {', '.join(sens.base)} (the "
        f"headline condition is {sens.headline}, the base scenario's own), without the preload, "
        f"{sens.runs_per_value} run{'s' if sens.runs_per_value != 1 else ''} of {sens.seconds:g} simulated seconds "
        "per value and condition. The base "
        "values run the same way (the base sweep), so every rate here is measured alike; they are shorter than "
        "the main sweeps and their rates are not the ranking table's. Rates are split GFP_NOWAIT failures per "
        "10^6 vmalloc calls at the headline condition, Wilson 95%.",
        "",
        f"At the base values the conditions rank {ranking_text(sens.base)} (`>`: the 95% intervals are apart; "
        "`≈`: they overlap, and the runs do not order them). A variation *holds* that ranking when every pair "
        "the base orders stays ordered the same way (its ranking shown), *changes* it when one is reversed with "
        "intervals apart (the reversed pairs shown), and is *not resolved* when a pair the base orders overlaps "
        "(those pairs shown).",
        "",
        "| parameter | key | base | low / high | why these values | rate at low | at base | at high "
        "| ranking at low | ranking at high |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts: dict[str, list[str]] = {HOLDS: [], CHANGES: [], NOT_RESOLVED: []}
    for parameter in sorted(sens.parameters, key=lambda p: -swing(p, sens)):
        cells = []
        for side in ("low", "high"):
            rates = parameter.rates.get(side)
            cells.append("(base)" if rates is None else rates[sens.headline].text() if sens.headline in rates else "–")
            if rates is not None:
                verdicts[ranking_verdict(sens.base, rates)].append(f"{parameter.name} {parameter.values[side]}")
        out.append(
            f"| {parameter.label} | `{parameter.key}` | {parameter.base_value} | "
            f"{_side_text(parameter, 'low')} / {_side_text(parameter, 'high')} | {parameter.why} | {cells[0]} | "
            f"{base.text()} | {cells[1]} | {_verdict_text(parameter, 'low', sens)} | "
            f"{_verdict_text(parameter, 'high', sens)} |"
        )
    total = sum(len(v) for v in verdicts.values())
    out += ["", f"The ranking holds under {len(verdicts[HOLDS])} of {total} variations"
            + "".join(f"; {word} under {len(verdicts[word])}" + (f" ({', '.join(verdicts[word])})" if verdicts[word]
                      else "") for word in (CHANGES, NOT_RESOLVED)) + "."]  # fmt: skip
    top = max(sens.parameters, key=lambda p: swing(p, sens))
    out += ["", f"The headline rate moves most with {top.name} (`{top.key}`): {swing(top, sens):.0f} per 10^6 "
            "calls between its values, the base's included."]  # fmt: skip
    out += ["", "Not varied: swap bandwidth (every condition here is without swap, as Rezki's machine was; it "
            "enters only fork-ram's swap rows), and the median of a direct reclaim that does not stall (bcc drsnoop's "
            "0.03-0.6 ms, against the stalls' 100 ms multiples varied above), to keep these runs within two "
            "minutes. Of what docs/validation.md calibrates against a real guest, the "
            "worker RSS is varied up to its calibrated 408 KiB; the zones, boot memory and `cpu_slowdown` "
            "calibrated there describe the peer's own guests, not the 2019 machine these runs model."]  # fmt: skip
    if (Path(out_dir) / TORNADO).exists():
        out += ["", f"![The headline rate at each estimate's low and high value]({TORNADO.as_posix()})"]
    return [*out, ""]


@dataclass(frozen=True)
class Sureness:
    """How sure the headline is, in a few figures for its sentence: the parameter that moves the
    headline rate most, with the rate at each of its values, and how many variations keep, reverse
    or leave unresolved the ranking of the conditions."""

    name: str
    key: str
    condition: str  # the sensitivity runs' headline condition (e.g. 256MiB)
    conditions: tuple[str, ...]  # every condition whose ranking is checked
    rates: tuple[tuple[str, str], ...]  # (value as written, rate text), low and high
    holds: int
    changes: int
    not_resolved: int


def sureness(sens: Sensitivity) -> Sureness | None:
    """The :class:`Sureness` of a loaded sensitivity part, or None without parameters."""
    if not sens.parameters:
        return None
    counts = {HOLDS: 0, CHANGES: 0, NOT_RESOLVED: 0}
    for parameter in sens.parameters:
        for rates in parameter.rates.values():
            counts[ranking_verdict(sens.base, rates)] += 1
    top = max(sens.parameters, key=lambda p: swing(p, sens))
    shown = tuple(
        (top.values[side], top.rates[side][sens.headline].text())
        for side in ("low", "high")
        if side in top.rates and sens.headline in top.rates[side]
    )
    return Sureness(top.name, top.key, sens.headline, tuple(sens.base), shown, counts[HOLDS], counts[CHANGES],
                    counts[NOT_RESOLVED])  # fmt: skip
