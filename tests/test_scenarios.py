"""The shipped scenarios show what issue 4 asks of them (reduced here; full under -m long)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.config.scenario import load_scenario
from sim.engine.run import run_once

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def run(name: str, strategy: str, *overrides: str, replication: int = 0):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml", list(overrides))
    result = run_once(scenario, strategy, replication, scenario.seed)
    assert result.row["status"] == "ok", result.row["error"]
    return result


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_validates_and_says_what_it_models(path):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert path.read_text().startswith("#"), "each scenario opens with a comment on what it models"


@pytest.fixture(scope="module")
def rezki_256mb():
    return {s: run("rezki-2019-256mb", s, "duration=10s") for s in ("nowait", "preload")}


def test_rezki_256mb_nowait_splits_fail_and_each_failure_is_at_or_below_min(rezki_256mb):
    nowait = rezki_256mb["nowait"]
    assert nowait.row["split_nowait_failures"] > 0
    fails = [e for e in nowait.events if e["kind"] == "split_nowait_failure"]
    assert len(fails) == nowait.row["split_nowait_failures"]
    for e in fails:
        assert e["DMA32_free"] <= e["DMA32_min"] + e["DMA32_boost"]
        assert e["fit"] == "NE" and e["gfp"].startswith("GFP_NOWAIT")
        assert "alloc_vmap_area" in e["chain"] and "copy_process" in e["chain"]


def test_rezki_256mb_preload_takes_no_nowait_split_and_fails_no_more_forks(rezki_256mb):
    nowait, preload = rezki_256mb["nowait"], rezki_256mb["preload"]
    assert preload.row["split_nowait_attempts"] == preload.counters["preload_fill_failures"]
    assert preload.row["split_from_preload"] == preload.row["fit_ne"]
    assert preload.row["fork_enomem"] <= nowait.row["fork_enomem"]


def test_rezki_256mb_oom_kills_happen_under_both_strategies(rezki_256mb):
    for result in rezki_256mb.values():
        assert result.row["oom_kills"] > 0
        assert result.row["sleep_in_atomic_bugs"] == 0


@pytest.mark.parametrize("strategy", ["nowait", "preload", "preload-lockless"])
def test_big_server_invents_no_nowait_failure(strategy):
    result = run("big-server", strategy, "duration=0.3s", "workloads.0.workers=16")
    assert result.row["split_nowait_failures"] == 0
    assert result.row["nowait_page_failures"] == 0
    assert result.row["vmalloc_failures"] == 0
    assert result.row["fit_ne"] > 0
    assert result.row["sleep_in_atomic_bugs"] == 0


def test_test_vmalloc_fit_mix_per_case():
    result = run("test-vmalloc", "preload", "workloads.0.test_loop_count=300", "workloads.0.long_busy_list_length=300")
    c = result.counters
    fix_size = c["tv.fix_size_alloc_test.calls"]
    assert fix_size >= 300 and c["tv.fix_size_alloc_test.fit_ne"] / fix_size < 0.02
    fix_align = c["tv.fix_align_alloc_test.calls"]
    assert fix_align >= 300 and c["tv.fix_align_alloc_test.fit_ne"] / fix_align > 0.98
    assert c["tv.align_shift_alloc_test.fail_no_space"] > 0
    assert c["tv.align_shift_alloc_test.fail_no_memory"] == 0
    assert result.row["sleep_in_atomic_bugs"] == 0


@pytest.fixture(scope="module")
def race():
    return {("full", s): run("rt-preload-race", s, "duration=0.5s") for s in ("preload", "preload-lockless")} | {
        ("none", "preload-lockless"): run(
            "rt-preload-race", "preload-lockless", "duration=0.5s", "machine.preemption=none"
        )
    }


def test_rt_preload_race_lockless_misses_are_reported_per_call(race):
    row = race[("full", "preload-lockless")].row
    assert row["vmalloc_calls"] > 100_000
    assert 0 < row["preload_misses"] / row["vmalloc_calls"] < 1e-3
    assert row["split_nowait_attempts"] == row["preload_misses"]


def test_rt_preload_race_has_no_misses_under_v53_preload_or_without_preemption(race):
    assert race[("full", "preload")].row["preload_misses"] == 0
    assert race[("none", "preload-lockless")].row["preload_misses"] == 0
    for result in race.values():
        assert result.row["sleep_in_atomic_bugs"] == 0


@pytest.mark.long
@pytest.mark.parametrize("name", ["rezki-2019-256mb", "rezki-2019-1gb", "modules-bpf", "big-server", "rt-preload-race"])
def test_full_scenario_runs_clean(name):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    for strategy in scenario.strategies:
        result = run_once(scenario, strategy, 0, scenario.seed)
        assert result.row["status"] == "ok", result.row["error"]
        assert result.row["sleep_in_atomic_bugs"] == 0
