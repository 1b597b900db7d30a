"""The answer section at the top of report.md and report.txt: every claim follows from the tables."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from sim.analysis.data import wilson_interval
from sim.analysis.headline import WRAP, headline_facts, headline_sentences, report_text
from sim.analysis.report import Suite, render, suffer_table

SCENARIO = {
    "machine": {"cpus": 4, "ram": "256MiB", "swap": "off", "preemption": "none"},
    "workloads": [{"kind": "fork_storm", "workers": 256}, {"kind": "anon_hog", "size": "92MiB"}],
}


def _run(point: int, ram: str, strategy: str, failures: int, calls: int, rep: int = 0, **extra) -> dict:
    row = {"run_id": f"fork-ram:p{point}/{strategy}/r{rep}", "sweep": "fork-ram", "point": point,
           "machine.ram": ram, "strategy": strategy, "status": "ok", "replication": rep,
           "split_nowait_failures": failures, "vmalloc_calls": calls, "forks": 10_000, "fork_enomem": 0,
           "oom_kills": 50, "sim_seconds": 6.0, "overflow_purges": failures, "overflow_retry_successes": failures,
           "preload_fills": 0, "preload_misses": 0, "split_nowait_attempts": failures}  # fmt: skip
    row.update(extra)
    return row


def _suite(runs: list[dict], events: list[dict] | None = None) -> Suite:
    ev = pd.DataFrame(events) if events else pd.DataFrame(columns=["run_id", "kind", "time"])
    counters = pd.DataFrame(columns=["run_id", "name", "value"])
    return Suite(pd.DataFrame(runs), ev, counters, {"fork-ram": ["machine.ram"]}, {}, {}, {"fork-ram": SCENARIO})


def _failure(run_id: str, free: int, boost: int) -> dict:
    return {"run_id": run_id, "kind": "split_nowait_failure", "time": 1.0, "DMA32_free": free, "DMA32_min": 100,
            "DMA32_boost": boost}  # fmt: skip


@pytest.fixture
def suite() -> Suite:
    """192 MiB fails often, 256 MiB rarely, 1 GiB never; the preload never fails."""
    runs = []
    for point, ram, k in ((0, "192MiB", 12), (1, "256MiB", 3), (2, "1GiB", 0)):
        runs += [_run(point, ram, "nowait", k, 20_000), _run(point, ram, "preload", 0, 20_000)]
    events = [_failure("fork-ram:p0/nowait/r0", 60, 40)] * 12 + [_failure("fork-ram:p1/nowait/r0", 150, 0)] * 3
    events += [{"run_id": "fork-ram:p0/nowait/r0", "kind": "warn_alloc", "time": 1.0}] * 12
    return _suite(runs, events)


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d[\d,.]*", text)


def test_the_headline_names_the_worst_condition_with_its_rate_and_interval(suite):
    first = headline_sentences(headline_facts(suite, suffer_table(suite)))[0]
    lo, hi = wilson_interval(12, 20_000)
    assert "the split failed in 2 of 3 simulated conditions" in first
    assert "fork-ram: ram=192MiB" in first and "(4 CPUs, 192MiB of RAM, no swap, 256 fork workers" in first
    assert f"600 failures per 10^6 vmalloc calls, 95% interval [{lo * 1e6:.0f}, {hi * 1e6:.0f}]" in first
    assert "(12 in 20,000 calls)" in first
    assert "Next: fork-ram: ram=256MiB, 150 [" in first


def test_the_headline_says_where_free_memory_stood_and_what_the_user_saw(suite):
    text = " ".join(headline_sentences(headline_facts(suite, suffer_table(suite))))
    # margins: 12 failures at 60 - (100 + 40) = -80, 3 at 150 - 100 = +50: median -80, 12 at or below
    assert "a median 80 pages below the zone's boosted min watermark, 12 of 15 at or below it" in text
    assert "12 of 15 while the watermarks were boosted: the failures come when the zone sits" in text
    # the user's view sums the nowait runs of the two suffering conditions: 12 s, 12 reports
    assert "over the 2 runs without the preload in these conditions (12 simulated seconds)" in text
    assert "12 page allocation failure reports (`warn_alloc`) in the kernel log (3,600 per hour" in text
    assert "15 of the 15 purge-and-retry rounds" in text and "no fork returned ENOMEM in 20,000 forks" in text
    assert "100 OOM kills (50 a run)" in text
    assert "None was observed in the other 1 conditions" in text and "fork-ram: ram=1GiB" in text


def test_the_preload_claim_follows_from_the_intervals(suite):
    last = headline_sentences(headline_facts(suite, suffer_table(suite)))[-1]
    # 12 in 20,000 against 0 in 20,000: disjoint; 3 in 20,000 against 0: the intervals overlap
    assert "had no split failure" in last
    assert "resolve the difference (disjoint intervals) in 1 of 2 conditions" in last
    assert "too few to tell the two apart" in last


def test_a_changed_table_changes_the_headline(suite):
    before = headline_sentences(headline_facts(suite, suffer_table(suite)))
    runs = suite.runs.copy()
    runs.loc[(runs["point"] == 1) & (runs["strategy"] == "nowait"), "split_nowait_failures"] = 40
    changed = Suite(runs, suite.events, suite.counters, suite.factors, {}, {}, suite.scenarios)
    after = headline_sentences(headline_facts(changed, suffer_table(changed)))
    assert after != before
    assert "The worst is fork-ram: ram=256MiB" in after[0] and "2000 failures per 10^6" in after[0]
    assert "in 2 of 2 conditions." in after[-1]  # now both differences are resolved


def test_no_failure_anywhere_is_said_with_what_the_runs_exclude():
    runs = [_run(0, "1GiB", "nowait", 0, 20_000), _run(0, "1GiB", "preload", 0, 20_000)]
    suite = _suite(runs)
    (only,) = headline_sentences(headline_facts(suite, suffer_table(suite)))
    hi = wilson_interval(0, 20_000)[1] * 1e6
    assert "In none of the 1 simulated conditions" in only
    assert f"a failure rate above {hi:.0f} per 10^6 vmalloc calls is excluded" in only


def test_report_md_opens_with_the_answer(suite):
    text = render(_suite(suite.runs.to_dict("records")))  # no events: no traced story to tell
    assert text.splitlines()[2] == "## The answer"
    assert text.index("## The answer") < text.index("## Which workloads suffer")


def test_report_txt_is_plain_text_within_72_columns_with_the_same_numbers(suite):
    facts = headline_facts(suite, suffer_table(suite))
    text = report_text(facts, "Title")
    assert all(len(line) <= WRAP for line in text.splitlines())
    assert "`" not in text
    flat = " ".join(text.split())
    for paragraph in headline_sentences(facts):
        assert " ".join(paragraph.replace("`", "").split()) in flat
    assert "no preload 600 [" in text and "preload 0.0 [0.0, " in text


def test_the_real_kernel_sentence_follows_from_both_intervals(suite):
    from sim.analysis.agreement import RealRate

    apart = RealRate("the 2019 workload on v5.2.1", 8, (95.4, 51.8, 176.0), (676.0, 566.0, 806.0))
    last = headline_sentences(headline_facts(suite, suffer_table(suite), real=apart))[-1]
    assert last.startswith("On a real kernel: the 2019 workload on v5.2.1, 8 boots under QEMU, failed the split at")
    assert "95.4 per 10^6 vmalloc calls [51.8, 176]" in last and "at 676 [566, 806]: 7x apart, within an order" in last
    far = RealRate("w", 2, (10.0, 5.0, 20.0), (676.0, 566.0, 806.0))
    assert "68x apart, more than an order of magnitude" in headline_sentences(
        headline_facts(suite, suffer_table(suite), real=far))[-1]  # fmt: skip
    close = RealRate("w", 2, (600.0, 500.0, 700.0), (676.0, 566.0, 806.0))
    assert headline_sentences(headline_facts(suite, suffer_table(suite), real=close))[-1].endswith(
        "(the intervals overlap).")  # fmt: skip


def test_the_how_sure_sentence_names_the_estimate_that_moves_the_rate_most_and_the_verdict_counts(suite):
    from sim.analysis.sensitivity import Sureness

    sure = Sureness("shmem-tenant", "workloads.2.size", "256MiB", ("256MiB", "384MiB"),
                    (("18%", "0.0 [0.0, 42]"), ("25%", "546 [319, 934]")), 6, 0, 7)  # fmt: skip
    text = " ".join(headline_sentences(headline_facts(suite, suffer_table(suite), sure=sure)))
    assert "(the fork storm without the preload at 256MiB, 384MiB), shmem-tenant (`workloads.2.size`)" in text
    assert "moves the rate at 256MiB most: 0.0 [0.0, 42] at 18% and 546 [319, 934] at 25% per 10^6" in text
    assert "holds under 6 of 13 variations, is reversed under 0, and the runs cannot tell under 7." in text
    settled = Sureness("w", "k", "c", ("c",), (("1", "1 [0, 2]"),), 3, 1, 0)
    assert "holds under 3 of 4 variations, is reversed under 1." in " ".join(
        headline_sentences(headline_facts(suite, suffer_table(suite), sure=settled)))  # fmt: skip
