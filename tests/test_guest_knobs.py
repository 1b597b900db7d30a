"""The model's knobs that make it the same machine as a guest: CPU slowdown, where a
forked child starts, 5.18's RCU second chance for thread stacks, fork workers that
stress-ng does not restart."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config.scenario import load_scenario
from sim.engine.run import run_once
from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.sched.cpu import SchedParams, Scheduler
from tests.conftest import ROOT

PEER = ROOT / "scenarios" / "peer" / "fork-storm-256mb.yaml"


def _run(*sets: str) -> dict:
    scenario = load_scenario(PEER, ["duration=0.4s", "replications=1", "machine.sched.cpu_slowdown=1", *sets])
    return run_once(scenario, "preload-gfp", 0, 61)


def test_cpu_slowdown_stretches_cpu_time():
    env = eventloop.Environment()
    sched = Scheduler(env, 1, np.random.default_rng(0), params=SchedParams(cpu_slowdown=3.0))
    task = sched.spawn("t", lambda t: (yield from sched.run(t, 0.5)))
    env.run()
    assert env.now == pytest.approx(1.5) and task.state == "dead"


def test_a_slower_machine_forks_in_proportion_less():
    fast = _run("machine.sched.cpu_slowdown=1").row["forks"]
    slow = _run("machine.sched.cpu_slowdown=10").row["forks"]
    assert 6 < fast / slow < 14


def test_children_stay_with_their_parent_unless_a_cpu_is_idle():
    # in first-come order with random wake-up moves, where placement was found to matter
    fifo = ("machine.sched.pick=fifo", "machine.sched.wake_affine=false")
    spread = _run("machine.sched.fork_balance=least_loaded", *fifo).counters
    local = _run("machine.sched.fork_balance=idle_or_local", *fifo).counters
    miss = lambda c: c["stack_vmallocs"] / (c["stack_vmallocs"] + c["stack_cache_hits"])  # noqa: E731
    assert miss(local) < 0.8 * miss(spread)


def test_fork_workers_miss_the_stack_cache_less_when_woken_parents_run_first_on_their_childs_cpu():
    still = "machine.sched.p_migrate_on_wake=0"
    fifo = _run("machine.sched.pick=fifo", "machine.sched.wake_affine=false", still).counters
    cfs = _run(still).counters
    assert cfs["stack_vmallocs"] < 0.5 * fifo["stack_vmallocs"]


def test_61_stacks_take_a_second_chance_at_the_cache_after_rcu():
    c = _run().counters
    assert c["stacks_rcu_deferred"] > 0 and c["stacks_vfreed"] < c["stacks_rcu_deferred"]
    sets = ["duration=0.4s", "kernel=5.18", "machine.sched.cpu_slowdown=1"]
    old = run_once(load_scenario(PEER, sets), "preload-gfp", 0, 61).counters
    assert old["stacks_rcu_deferred"] == 0 and old["stacks_vfreed"] > 0


def test_fork_workers_killed_by_the_oom_killer_stay_dead_without_restart():
    # no page cache: nothing for reclaim to refault, so the hog drives the machine into OOM kills
    sets = ["workloads.1.size=180MiB", "duration=1s", "machine.boot_memory.file_mapped_hot=0",
            "machine.boot_memory.file_clean=0"]  # fmt: skip
    with_restart = _run(*sets, "workloads.0.restart=true")
    without = _run(*sets)
    assert with_restart.row["oom_kills"] > 0 and with_restart.counters["fork_worker_restarts"] > 0
    assert without.counters["fork_worker_restarts"] == 0


@pytest.mark.parametrize(("key", "value"), [("cpu_slowdown", "0"), ("fork_balance", "nearest")])
def test_bad_guest_knobs_are_refused_when_the_scenario_loads(key, value):
    from sim.schema.errors import InputError

    with pytest.raises(InputError, match=f"machine.sched.{key}"):
        load_scenario(PEER, [f"machine.sched.{key}={value}"])


def test_keys_added_for_the_guest_leave_an_older_scenarios_hash_as_it_was():
    """A sweep started before these keys existed still resumes: at their defaults they are
    not part of the hash (the value is the hash of rezki-2019-256mb before them, and after
    issue 13 removed memory.p_steal: the random boost trigger became the kernel's fallback
    steal, so a sweep begun with it must not resume into the new model; the console, fork
    and high-atomic keys that issue 13 added leave it as it was)."""
    path = ROOT / "scenarios" / "rezki-2019-256mb.yaml"
    before = "35513ec6c7f91f5d7d5c1eee05cebbca860389a4b683b9faf12b0ed45d03cade"
    assert load_scenario(path).scenario_hash() == before
    assert load_scenario(path, ["machine.sched.cpu_slowdown=2"]).scenario_hash() != before
    assert load_scenario(path, ["workloads.0.restart=false"]).scenario_hash() != before
