"""Where failures begin, in the report: the bisected brackets of an answer folder."""

from __future__ import annotations

import json

import pandas as pd

from sim.analysis.headline import headline_facts, headline_sentences
from sim.analysis.report import Suite, bisection_section, onsets, suffer_table


def _probe(value: int, text: str, failures: int, calls: int, lo: float, hi: float) -> dict:
    return {"value": value, "text": text, "runs": 2, "failures": failures, "vmalloc_calls": calls,
            "rate_per_million": failures / calls * 1e6, "lo": lo, "hi": hi}  # fmt: skip


def _answer(tmp_path) -> Suite:
    ram = {
        "sweep": {"file": "fork-ram.yaml", "name": "fork-ram", "cli_set": []},
        "factor": {"key": "machine.ram"}, "replications": 2,
        "combinations": [
            {"values": {"machine.swap": False}, "outcome": "bracket", "direction": "falling", "clean": 2, "failing": 1,
             "probes": [_probe(1, "268MiB", 15, 112_852, 80.6, 219.3), _probe(2, "322MiB", 0, 138_050, 0.0, 27.8)]},
            {"values": {"machine.swap": "200MiB/s"}, "outcome": "no failure at either end", "direction": None,
             "clean": None, "failing": None, "probes": [_probe(1, "160MiB", 0, 9000, 0.0, 400.0)]},
        ],
    }  # fmt: skip
    workers = {
        "sweep": {"file": "fork-workers.yaml", "name": "fork-workers", "cli_set": ["machine.swap=200MiB/s"]},
        "factor": {"key": "workloads.0.workers"}, "replications": 2,
        "combinations": [{"values": {}, "outcome": "bracket", "direction": "rising", "clean": 212, "failing": 272,
                          "probes": [_probe(212, "212", 0, 90_000, 0.0, 41.8),
                                     _probe(272, "272", 20, 59_000, 172.0, 668.0)]}],
    }  # fmt: skip
    for name, data in (("ram", ram), ("workers-swap", workers)):
        (tmp_path / "boundary" / name).mkdir(parents=True)
        (tmp_path / "boundary" / name / "boundary.json").write_text(json.dumps(data))
    runs = pd.DataFrame([{"run_id": "s:a", "sweep": "s", "point": 0, "strategy": "nowait", "status": "ok",
                          "split_nowait_failures": 3, "vmalloc_calls": 1000, "forks": 1, "fork_enomem": 0,
                          "oom_kills": 0, "sim_seconds": 1.0}])  # fmt: skip
    empty = pd.DataFrame(columns=["run_id", "kind", "time"])
    return Suite(runs, empty, pd.DataFrame(columns=["run_id", "name", "value"]), {"s": []}, {}, {}, {}, tmp_path)


def test_each_bracket_is_a_row_with_the_rate_at_its_failing_end_and_the_bound_at_its_clean_end(tmp_path):
    text = "\n".join(bisection_section(_answer(tmp_path)))
    assert "| ram | swap=off | ≤ 268MiB | 132.9 [80.6, 219.3] | 322MiB | < 27.8 | 2 x 2 |" in text
    assert "| ram | swap=200MiB/s | no failure at either end | – | – | – | 1 x 2 |" in text
    assert "| workers (machine.swap=200MiB/s) | – | ≥ 272 | 339.0 [172.0, 668.0] | 212 | < 41.8 | 2 x 2 |" in text


def test_the_headline_names_each_bisected_onset_and_skips_searches_without_one(tmp_path):
    suite = _answer(tmp_path)
    found = onsets(suite)
    assert [(o.factor, o.where, o.failing, o.clean, o.falling) for o in found] == [
        ("ram", "swap=off", "268MiB", "322MiB", True),
        ("workers", "swap=200MiB/s", "272", "212", False),
    ]
    text = " ".join(headline_sentences(headline_facts(suite, suffer_table(suite), onsets=found)))
    assert "the onset below 322MiB of RAM (at swap=off: failures at 268MiB, none observed at 322MiB)" in text
    assert "above 212 fork workers (at swap=200MiB/s: failures at 272, none observed at 212)." in text


def test_no_boundary_folder_no_bisection_lines(tmp_path):
    suite = _answer(tmp_path)
    assert bisection_section(Suite(suite.runs, suite.events, suite.counters, {}, {}, {}, {}, tmp_path / "none")) == []
