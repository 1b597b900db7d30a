"""The answer section: the few sentences that open report.md and make report.txt.

Morton asked which workload suffers, when and how.  :func:`headline_facts`
gathers from a suite's tables the figures a reply needs (the conditions with
split GFP_NOWAIT failures, the worst one's set-up and rate, where free memory
stood at the failures, what the user saw, what the preload changed), and
:func:`headline_sentences` words them.  Every number and every qualitative word
("resolve", "none observed") is decided from the facts, so a changed table
changes the text; nothing here is a frozen sentence.  ``report.txt`` is the same
sentences wrapped at 72 columns, with the ranking of the suffering conditions,
ready to paste into a reply on a mailing list.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sim.analysis.agreement import RealRate
from sim.analysis.data import usable_runs
from sim.analysis.sensitivity import Sureness

HOUR = 3600.0
WRAP = 72
NAMED = 3  # suffering conditions named in the sentences; the rest are counted
FACTOR_WORDS = {"ram": "of RAM", "workers": "fork workers", "cpus": "CPUs"}  # a bisected factor in a sentence


@dataclass(frozen=True)
class Condition:
    """One grid point's nowait and preload figures (a row of the ranking table)."""

    label: str
    failures: float  # split GFP_NOWAIT failures without the preload, pooled over replications
    calls: float  # vmalloc calls without the preload
    rate: float  # per 10^6 calls, with its Wilson 95% interval
    lo: float
    hi: float
    preload_failures: float | None = None  # None: no preload run at this point
    preload_rate: float | None = None
    preload_lo: float | None = None
    preload_hi: float | None = None
    setup: dict[str, str] = field(default_factory=dict)  # cpus, ram, swap, preemption, workers

    @property
    def resolved(self) -> bool:
        """Whether the runs separate nowait from preload here: the intervals are disjoint."""
        return self.preload_hi is not None and self.preload_hi < self.lo


@dataclass(frozen=True)
class UserView:
    """What the suffering conditions' nowait runs showed a user, summed over their runs."""

    sim_seconds: float
    warn_alloc: int  # page-allocation-failure reports printed (warn_alloc events)
    overflow_purges: int  # failed searches that purged the lazy areas and retried
    retry_successes: int
    fork_enomem: int
    forks: int
    oom_kills: int
    runs: int


@dataclass(frozen=True)
class ZoneAtFailures:
    """DMA32 at each split failure: free pages minus the boosted min."""

    failures: int
    median_margin: float
    at_or_below: int  # failures with free at or below the boosted min
    boosted: int  # failures while the zone's watermarks were boosted
    min_margin: float
    max_margin: float


@dataclass(frozen=True)
class Onset:
    """A bisected boundary: along ``factor``, at ``where`` (the other factors), failures at
    ``failing`` and none observed at ``clean``; ``falling``: failures below (RAM), else above."""

    factor: str
    where: str
    failing: str
    clean: str
    falling: bool


@dataclass(frozen=True)
class HeadlineFacts:
    """Everything the sentences say, computed from the tables."""

    conditions: int
    runs: int
    suffering: list[Condition]  # ranked, worst first
    clean: list[str]  # labels of the conditions with none observed
    clean_hi: float  # the largest Wilson upper bound among them (per 10^6)
    user: UserView | None
    zone: ZoneAtFailures | None
    real: RealRate | None = None  # the same question asked of a real kernel (docs/validation.md)
    onsets: tuple[Onset, ...] = ()  # where failures begin, bisected
    sure: Sureness | None = None  # how the answer moves with the model's estimates


def _setup(scenario: dict[str, Any], part: pd.DataFrame, factors: list[str]) -> dict[str, str]:
    """The machine and fork-storm set-up of one grid point: its sweep's scenario with the
    point's factor values applied."""
    machine = dict(scenario.get("machine") or {})
    workloads = [dict(w) for w in scenario.get("workloads") or []]
    first = part.iloc[0]
    for col in factors:
        if col not in part:
            continue
        keys = col.split(".")
        if keys[0] == "machine" and len(keys) == 2:
            machine[keys[1]] = first[col]
        elif keys[0] == "workloads" and len(keys) == 3 and keys[1].isdigit() and int(keys[1]) < len(workloads):
            workloads[int(keys[1])][keys[2]] = first[col]
    out: dict[str, str] = {}
    for key in ("cpus", "ram", "swap", "preemption"):
        if machine.get(key) is not None:
            value = str(machine[key])
            out[key] = "off" if value.lower() in ("false", "off", "none") and key == "swap" else value
    storms = [w for w in workloads if w.get("kind") == "fork_storm"]
    if storms and storms[0].get("workers") is not None:
        out["workers"] = str(storms[0]["workers"])
    return out


def headline_facts(
    suite: Any,
    table: pd.DataFrame,
    baseline: str = "nowait",
    preload: str = "preload",
    real: RealRate | None = None,
    onsets: list[Onset] | tuple[Onset, ...] = (),
    sure: Sureness | None = None,
) -> HeadlineFacts:
    """The facts of the headline from a suite (:class:`sim.analysis.report.Suite`) and its
    ranking table (:func:`sim.analysis.report.suffer_table`)."""
    runs = usable_runs(suite.runs)
    suffering: list[Condition] = []
    clean: list[str] = []
    clean_hi = 0.0
    for _, row in table.iterrows():
        k = row.get(f"{baseline}.failures")
        if k is None or (isinstance(k, float) and math.isnan(k)):
            continue
        if k <= 0:
            clean.append(str(row["condition"]))
            clean_hi = max(clean_hi, float(row[f"{baseline}.hi"]))
            continue
        sweep, point = row["sweep"], row["point"]
        part = runs[(runs["sweep"] == sweep) & (runs["point"] == point)]
        scenario = getattr(suite, "scenarios", {}).get(sweep, {})
        has_preload = f"{preload}.failures" in row and not pd.isna(row.get(f"{preload}.failures"))
        suffering.append(
            Condition(
                label=str(row["condition"]), failures=float(k), calls=float(row[f"{baseline}.calls"]),
                rate=float(row[f"{baseline}.rate"]), lo=float(row[f"{baseline}.lo"]),
                hi=float(row[f"{baseline}.hi"]),
                preload_failures=float(row[f"{preload}.failures"]) if has_preload else None,
                preload_rate=float(row[f"{preload}.rate"]) if has_preload else None,
                preload_lo=float(row[f"{preload}.lo"]) if has_preload else None,
                preload_hi=float(row[f"{preload}.hi"]) if has_preload else None,
                setup=_setup(scenario, part, suite.factors.get(sweep, [])) if not part.empty else {},
            )
        )  # fmt: skip
    suffering.sort(key=lambda c: (-c.rate, c.label))
    return HeadlineFacts(
        conditions=len(suffering) + len(clean),
        runs=len(runs),
        suffering=suffering,
        clean=clean,
        clean_hi=clean_hi,
        user=_user_view(suite, table, baseline) if suffering else None,
        zone=zone_at_failures(suite.events),
        real=real,
        onsets=tuple(onsets),
        sure=sure,
    )


def _user_view(suite: Any, table: pd.DataFrame, baseline: str) -> UserView:
    """Sum over the nowait runs of the conditions with failures."""
    runs = usable_runs(suite.runs)
    hit = table[table[f"{baseline}.failures"] > 0][["sweep", "point"]]
    mine = runs.merge(hit, on=["sweep", "point"])
    mine = mine[mine["strategy"] == baseline]
    ev = suite.events
    warn = 0
    if not ev.empty and "kind" in ev:
        warn = int(((ev["kind"] == "warn_alloc") & ev["run_id"].isin(set(mine["run_id"]))).sum())
    total = lambda col: int(mine[col].sum()) if col in mine else 0  # noqa: E731
    return UserView(
        sim_seconds=float(mine["sim_seconds"].sum()) if "sim_seconds" in mine else 0.0,
        warn_alloc=warn,
        overflow_purges=total("overflow_purges"),
        retry_successes=total("overflow_retry_successes"),
        fork_enomem=total("fork_enomem"),
        forks=total("forks"),
        oom_kills=total("oom_kills"),
        runs=len(mine),
    )


def zone_at_failures(events: pd.DataFrame) -> ZoneAtFailures | None:
    """DMA32 at the recorded split failures (``split_nowait_failure`` events), or None
    without any (or without the zone's columns)."""
    if events.empty or "kind" not in events:
        return None
    ev = events[events["kind"] == "split_nowait_failure"]
    if ev.empty or "DMA32_free" not in ev:
        return None
    margin = ev["DMA32_free"] - (ev["DMA32_min"] + ev["DMA32_boost"])
    return ZoneAtFailures(len(ev), float(margin.median()), int((margin <= 0).sum()), int((ev["DMA32_boost"] > 0).sum()),
                          float(margin.min()), float(margin.max()))  # fmt: skip


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _describe(setup: dict[str, str]) -> str:
    parts = []
    if "cpus" in setup:
        parts.append(f"{setup['cpus']} CPUs")
    if "ram" in setup:
        parts.append(f"{setup['ram']} of RAM")
    if "swap" in setup:
        parts.append("no swap" if setup["swap"] == "off" else f"swap at {setup['swap']}")
    if "workers" in setup:
        parts.append(f"{setup['workers']} fork workers")
    if "preemption" in setup:
        parts.append(f"preemption {setup['preemption']}")
    return ", ".join(parts)


def _share(k: int, n: int) -> str:
    return f"{k} of {n}"


def headline_sentences(facts: HeadlineFacts) -> list[str]:
    """The paragraphs of "The answer" (plain sentences; kernel symbols in backticks)."""
    if facts.conditions == 0:
        return ["No condition has runs without the preload, so these runs cannot say who suffers."]
    if not facts.suffering:
        return [
            f"In none of the {facts.conditions} simulated conditions ({facts.runs} runs) did the NE_FIT "
            "split's GFP_NOWAIT allocation of its `vmap_area` fail without the preload: at these run "
            f"lengths a failure rate above {_rate(facts.clean_hi)} per 10^6 vmalloc calls is excluded "
            "(the largest Wilson 95% upper bound), a lower one is not."
        ]
    top = facts.suffering[0]
    n = len(facts.suffering)
    worst = (
        f"Without the preload (v5.2: the split's `vmap_area` taken with GFP_NOWAIT under "
        f"`vmap_area_lock`), the split failed in {_share(n, facts.conditions)} simulated conditions. "
        f"The worst is {top.label} ({_describe(top.setup)}): {_rate(top.rate)} failures per 10^6 vmalloc "
        f"calls, 95% interval [{_rate(top.lo)}, {_rate(top.hi)}] ({top.failures:.0f} in {top.calls:,.0f} calls)."
    )
    if n > 1:
        others = facts.suffering[1:NAMED]
        worst += " Next: " + "; ".join(f"{c.label}, {_rate(c.rate)} [{_rate(c.lo)}, {_rate(c.hi)}]" for c in others)
        worst += f", and {n - NAMED} more." if n > NAMED else "."
    paragraphs = [worst]
    when = []
    if facts.zone is not None:
        z = facts.zone
        side = "below" if z.median_margin < 0 else "above"
        when.append(
            f"At the {z.failures} failures the model traced, DMA32's free pages stood a median "
            f"{abs(z.median_margin):.0f} pages {side} the zone's boosted min watermark, "
            f"{_share(z.at_or_below, z.failures)} at or below it and {_share(z.boosted, z.failures)} while "
            "the watermarks were boosted"
            + (
                ": the failures come when the zone sits at its watermark, which GFP_NOWAIT may not "
                "reclaim to restore nor dip below."
                if 2 * z.at_or_below > z.failures
                else "."
            )
        )
    if facts.onsets:
        when.append(
            "Bisection puts the onset "
            + "; ".join(
                f"{'below' if o.falling else 'above'} {o.clean} {FACTOR_WORDS.get(o.factor, o.factor)} "
                f"({'at ' + o.where + ': ' if o.where else ''}failures at {o.failing}, none observed at {o.clean})"
                for o in facts.onsets
            )
            + "."
        )
    if facts.clean:
        when.append(
            f"None was observed in the other {len(facts.clean)} conditions (in every one a rate above "
            f"{_rate(facts.clean_hi)} per 10^6 is excluded at 95%), for instance {'; '.join(facts.clean[:NAMED])}."
        )
    if when:
        paragraphs.append(" ".join(when))
    if facts.user is not None:
        u = facts.user
        hours = u.sim_seconds / HOUR
        per_hour = f" ({u.warn_alloc / hours:,.0f} per hour of simulated uptime)" if hours > 0 else ""
        retries = (
            f"{u.retry_successes} of the {u.overflow_purges} purge-and-retry rounds that followed "
            "a failed search found space"
            if u.overflow_purges
            else "no failed search led to a purge and retry"
        )
        enomem = (
            f"fork returned ENOMEM {u.fork_enomem} times in {u.forks:,} forks"
            if u.fork_enomem
            else f"no fork returned ENOMEM in {u.forks:,} forks"
        )
        paragraphs.append(
            f"What a user sees, over the {u.runs} runs without the preload in these conditions "
            f"({u.sim_seconds:,.0f} simulated seconds): {u.warn_alloc} page allocation failure reports "
            f"(`warn_alloc`) in the kernel log{per_hour}; {retries}; {enomem}; "
            + (
                f"and {u.oom_kills:,} OOM kills ({u.oom_kills / u.runs:,.0f} a run): the pressure that "
                "starves GFP_NOWAIT is the pressure that drives the OOM killer."
                if u.oom_kills
                else "and no OOM kill."
            )
        )
    with_preload = [c for c in facts.suffering if c.preload_failures is not None]
    if with_preload:
        failed = sum(c.preload_failures or 0.0 for c in with_preload)
        resolved = sum(c.resolved for c in with_preload)
        top_hi = with_preload[0].preload_hi or 0.0
        seen = (
            "no split failure"
            if failed == 0
            else f"{failed:.0f} split failures (where the preload missed and fell back to GFP_NOWAIT)"
        )
        paragraphs.append(
            "With the preload (v5.3: one object per CPU taken with GFP_KERNEL before the lock), "
            + (
                f"the same {n} conditions had {seen}"
                if len(with_preload) == n
                else f"the {len(with_preload)} of these conditions that also ran with it had {seen}"
            )
            + f"; in the worst of them the rate is at most "
            f"{_rate(top_hi)} per 10^6 at 95%. The runs resolve the difference (disjoint intervals) in "
            f"{_share(resolved, len(with_preload))} conditions"
            + ("; in the others they are too few to tell the two apart." if resolved < len(with_preload) else ".")
        )
    if facts.sure is not None:
        su = facts.sure
        total = su.holds + su.changes + su.not_resolved
        moved = " and ".join(f"{rate} at {value}" for value, rate in su.rates)
        paragraphs.append(
            f"How sure: with each of the model's estimates set to a low and a high plausible value (the fork "
            f"storm without the preload at {', '.join(su.conditions)}), {su.name} (`{su.key}`) moves the rate "
            f"at {su.condition} most: {moved} per 10^6 vmalloc calls. The ranking of these conditions holds "
            f"under {su.holds} of {total} variations, is reversed under "
            f"{su.changes}" + (f", and the runs cannot tell under {su.not_resolved}." if su.not_resolved else ".")
        )
    if facts.real is not None:
        rr = facts.real
        paragraphs.append(
            f"On a real kernel: {rr.what}, {rr.boots} boots under QEMU, failed the split at {_rate(rr.real[0])} "
            f"per 10^6 vmalloc calls [{_rate(rr.real[1])}, {_rate(rr.real[2])}]; the model, on the same workload, "
            f"at {_rate(rr.model[0])} [{_rate(rr.model[1])}, {_rate(rr.model[2])}]"
            + (
                " (the intervals overlap)."
                if rr.model[1] <= rr.real[2] and rr.real[1] <= rr.model[2]
                else f": {_fold(rr.model[0], rr.real[0])} apart, " + _quote_as(rr.model[0], rr.real[0])
            )
        )
    return paragraphs


def _quote_as(a: float, b: float) -> str:
    """What the gap between the model's rate and the kernel's allows a reader to quote."""
    if a > 0 and b > 0 and max(a, b) / min(a, b) < 10:
        return "within an order of magnitude: quote the model's rates as orders of magnitude, not as figures."
    return (
        "more than an order of magnitude: quote the model's comparisons (which condition, which strategy), "
        "not its rates."
    )


def _fold(a: float, b: float) -> str:
    """How many times apart two rates are, as "7x" (or "no common scale" with a zero)."""
    if a <= 0 or b <= 0:
        return "on no common scale"
    return f"{max(a, b) / min(a, b):.0f}x"


def headline_markdown(facts: HeadlineFacts) -> list[str]:
    """report.md's "The answer" section, as lines."""
    out = ["## The answer", ""]
    for paragraph in headline_sentences(facts):
        out += [paragraph, ""]
    return out


def report_text(facts: HeadlineFacts, title: str) -> str:
    """report.txt: the answer in plain text wrapped at 72 columns, then the suffering
    conditions ranked, ready to paste into a reply."""
    wrap = textwrap.TextWrapper(width=WRAP, break_long_words=False, break_on_hyphens=False)
    out = wrap.wrap(title) + [""]
    for paragraph in headline_sentences(facts):
        out += wrap.wrap(paragraph.replace("`", "")) + [""]
    if facts.suffering:
        out += ["Split GFP_NOWAIT failures per 10^6 vmalloc calls (95% interval):", ""]
        for c in facts.suffering:
            line = f"    no preload {_rate(c.rate)} [{_rate(c.lo)}, {_rate(c.hi)}]"
            if c.preload_rate is not None:
                line += (
                    f";  preload {_rate(c.preload_rate)} [{_rate(c.preload_lo or 0.0)}, {_rate(c.preload_hi or 0.0)}]"
                )
            out += wrap.wrap(f"  {c.label}") + [line]
        out.append("")
    out += wrap.wrap("Computed by vmsim from the runs in this folder; report.md has every table behind these figures.")
    return "\n".join(out) + "\n"
