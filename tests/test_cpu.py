"""CPUs, preemption models, spinlocks, mutexes, migration and might_sleep."""

from __future__ import annotations

import numpy as np
import pytest

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.sched.cpu import SchedParams, Scheduler
from sim.kernel.sched.locks import Mutex, SpinLock
from sim.record.metrics import Metrics


def make(ncpus=2, model="full", seed=1, **params):
    env = eventloop.Environment()
    metrics = Metrics()
    sched = Scheduler(env, ncpus, np.random.default_rng(seed), model, SchedParams(**params), metrics)
    return env, sched, metrics


def spinner(sched, seconds, log, step=1e-4):
    """A CPU hog that records (time, cpu) after every step."""

    def body(task):
        for _ in range(round(seconds / step)):
            yield from sched.run(task, step)
            log.append((sched.env.now, task.cpu))

    return body


def test_one_task_runs_without_waiting():
    env, sched, metrics = make(ncpus=1)
    log = []
    sched.spawn("a", spinner(sched, 0.01, log), cpu=0)
    env.run()
    assert env.now == pytest.approx(0.01)
    assert metrics.counters["preemptions"] == 0


def test_full_model_preempts_a_hog_when_another_task_waits():
    env, sched, metrics = make(ncpus=1, model="full")
    a, b = [], []
    sched.spawn("a", spinner(sched, 0.1, a), cpu=0)
    sched.spawn("b", spinner(sched, 0.1, b), cpu=0)
    env.run()
    assert metrics.counters["preemptions"] > 5
    assert b[0][0] < 0.05  # b did not wait for a to finish
    assert env.now == pytest.approx(0.2)


def test_none_model_never_preempts_at_segment_ends():
    env, sched, metrics = make(ncpus=1, model="none")
    a, b = [], []
    sched.spawn("a", spinner(sched, 0.1, a), cpu=0)
    sched.spawn("b", spinner(sched, 0.1, b), cpu=0)
    env.run()
    assert metrics.counters["preemptions"] == 0
    assert b[0][0] == pytest.approx(0.1 + 1e-4)


def test_none_model_yields_at_cond_resched_once_the_slice_is_over():
    env, sched, metrics = make(ncpus=1, model="none")
    b = []

    def polite(task):
        for _ in range(1000):
            yield from sched.run(task, 1e-4)
            yield from sched.cond_resched(task)

    sched.spawn("a", polite, cpu=0)
    sched.spawn("b", spinner(sched, 0.01, b), cpu=0)
    env.run()
    assert metrics.counters["preemptions"] >= 1
    assert b[0][0] < 0.05


def test_preempt_disable_prevents_preemption_and_migration():
    env, sched, metrics = make(ncpus=2, model="full", p_migrate_on_preempt=1.0)
    a = []

    def atomic_hog(task):
        sched.preempt_disable(task)
        for _ in range(500):
            yield from sched.run(task, 1e-4)
            a.append(task.cpu)
        yield from sched.preempt_enable(task)

    sched.spawn("a", atomic_hog, cpu=0)
    for i in range(3):
        sched.spawn(f"w{i}", spinner(sched, 0.05, []), cpu=0, pinned=True)
    env.run(until=0.0505)
    assert set(a) == {0}
    assert len(a) == 500  # ran 50 ms without being preempted


def test_preempted_task_under_full_model_can_resume_on_another_cpu():
    env, sched, metrics = make(ncpus=2, model="full", p_migrate_on_preempt=1.0)
    a = []
    sched.spawn("a", spinner(sched, 0.2, a), cpu=0, pinned=False)
    sched.spawn("b", spinner(sched, 0.2, []), cpu=0, pinned=True)
    sched.spawn("c", spinner(sched, 0.2, []), cpu=1, pinned=True)
    env.run()
    assert {cpu for _, cpu in a} == {0, 1}
    assert metrics.counters["migrations"] > 0


def test_pinned_tasks_never_migrate():
    env, sched, metrics = make(ncpus=4, model="full", p_migrate_on_preempt=1.0, p_migrate_on_wake=1.0)
    logs = [[] for _ in range(4)]

    def body_for(log):
        def body(task):
            for _ in range(200):
                yield from sched.run(task, 1e-4)
                yield from sched.sleep(task, 1e-4, "test")
                log.append(task.cpu)

        return body

    for i in range(4):
        sched.spawn(f"p{i}", body_for(logs[i]), cpu=1, pinned=True)
    env.run()
    assert all(set(log) == {1} for log in logs)


def test_sleep_inside_a_spinlock_is_recorded_as_a_bug():
    env, sched, metrics = make(ncpus=1, model="none")
    lock = SpinLock(sched, "vmap_area_lock")

    def bad(task):
        yield from lock.lock(task)
        yield from sched.sleep(task, 1e-3, "kmem_cache_alloc(GFP_KERNEL)")
        yield from lock.unlock(task)

    sched.spawn("bad", bad)
    env.run()
    assert metrics.counters["sleep_in_atomic_bugs"] == 1
    (bug,) = metrics.events_of("bug_sleeping_in_atomic")
    assert bug["site"] == "kmem_cache_alloc(GFP_KERNEL)"
    assert bug["task"] == "bad" and bug["cpu"] == 0 and bug["preempt_count"] == 1


def test_sleep_outside_any_lock_is_fine():
    env, sched, metrics = make(ncpus=1)

    def good(task):
        yield from sched.sleep(task, 1e-3, "site")

    sched.spawn("good", good)
    env.run()
    assert metrics.counters["sleep_in_atomic_bugs"] == 0


def test_spinlock_waiters_spin_on_their_cpu_and_get_the_lock_in_order():
    env, sched, metrics = make(ncpus=3, model="full")
    lock = SpinLock(sched, "l")
    order = []

    def user(name, delay):
        def body(task):
            yield from sched.run(task, delay)
            yield from lock.lock(task)
            order.append((name, env.now, task.cpu))
            yield from sched.run(task, 1e-3)
            yield from lock.unlock(task)

        return body

    spinning = []

    def watch():
        yield env.timeout(5e-4)  # a holds the lock, b and c spin
        spinning.extend((c.curr.name, c.curr.preempt_count) for c in sched.cpus)

    sched.spawn("a", user("a", 0.0), cpu=0)
    sched.spawn("b", user("b", 1e-4), cpu=1)
    sched.spawn("c", user("c", 2e-4), cpu=2)
    env.process(watch())
    env.run()
    assert spinning == [("a", 1), ("b", 1), ("c", 1)]  # each waiter keeps its CPU, preemption off
    assert [o[0] for o in order] == ["a", "b", "c"]
    assert [o[2] for o in order] == [0, 1, 2]
    assert order[1][1] == pytest.approx(1e-3)
    assert order[2][1] == pytest.approx(2e-3)
    assert metrics.seconds["lock_wait:l"] == pytest.approx((1e-3 - 1e-4) + (2e-3 - 2e-4))


def test_rt_spinlock_taken_with_preemption_disabled_is_a_bug():
    env, sched, metrics = make(ncpus=1, model="rt")
    lock = SpinLock(sched, "vmap_area_lock")

    def v53_pattern(task):
        sched.preempt_disable(task)
        yield from lock.lock(task)
        yield from sched.preempt_enable(task)
        yield from lock.unlock(task)

    sched.spawn("t", v53_pattern)
    env.run()
    assert metrics.counters["sleep_in_atomic_bugs"] == 1


def test_mutex_waiter_sleeps_and_leaves_its_cpu_to_others():
    env, sched, metrics = make(ncpus=1, model="none")
    m = Mutex(sched, "vmap_purge_lock")
    ran = []

    def holder(task):
        yield from m.lock(task)
        yield from sched.sleep(task, 5e-3, "io")
        m.unlock(task)

    def waiter(task):
        yield from m.lock(task)
        ran.append(("waiter", env.now))
        m.unlock(task)

    def other(task):
        yield from sched.run(task, 1e-3)
        ran.append(("other", env.now))

    sched.spawn("h", holder)
    sched.spawn("w", waiter)
    sched.spawn("o", other)
    env.run()
    assert ran[0] == ("other", pytest.approx(1e-3))
    assert ran[1] == ("waiter", pytest.approx(5e-3))
    assert m.holder is None


def test_woken_task_moves_to_an_idle_cpu_when_its_own_is_busy():
    env, sched, metrics = make(ncpus=2, model="none", p_migrate_on_wake=0.0)
    where = []

    def sleeper(task):
        yield from sched.sleep(task, 1e-3, "s")
        where.append(task.cpu)

    sched.spawn("s", sleeper, cpu=0)
    sched.spawn("hog", spinner(sched, 0.01, []), cpu=0, pinned=True)
    env.run()
    assert where == [1]


def test_per_cpu_data_is_read_on_the_cpu_of_the_moment():
    env, sched, metrics = make(ncpus=2, model="none", p_migrate_on_wake=1.0)
    sched.cpus[0].percpu["slot"] = "A"
    sched.cpus[1].percpu["slot"] = "B"
    seen = []

    def body(task):
        seen.append(sched.this_cpu(task).percpu["slot"])
        yield from sched.sleep(task, 1e-3, "s")
        seen.append(sched.this_cpu(task).percpu["slot"])

    sched.spawn("t", body, cpu=0)
    env.run()
    assert seen == ["A", "B"]


def test_same_seed_gives_the_same_schedule():
    def trace(seed):
        env, sched, metrics = make(ncpus=3, model="full", seed=seed)
        log = []
        for i in range(6):
            sched.spawn(f"t{i}", spinner(sched, 0.05, log), cpu=i % 3)
        env.run()
        return log, dict(metrics.counters)

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)  # the schedule does draw from the stream it is given


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        make(model="lazy")
    env, sched, _ = make()
    with pytest.raises(ValueError):
        sched.spawn("x", lambda t: iter(()), cpu=7)


def test_a_task_enqueued_after_a_long_solo_run_waits_for_the_next_tick():
    env, sched, metrics = make(ncpus=1, model="full")
    b = []

    def late():
        yield env.timeout(0.05)
        sched.spawn("b", spinner(sched, 1e-3, b), cpu=0)

    sched.spawn("a", spinner(sched, 0.1, []), cpu=0)
    env.process(late())
    env.run()
    # check_preempt_tick runs at ticks (every 4 ms); the ticks before 50 ms saw a alone
    assert b[0][0] > 0.052 - 1e-9
    assert b[0][0] < 0.0525


def test_an_idle_cpu_pulls_a_movable_task_past_a_runqueue_of_pinned_ones():
    env, sched, metrics = make(ncpus=3, model="none")
    ran = []

    def short(task):
        yield from sched.run(task, 1e-3)

    def movable(task):
        ran.append((env.now, task.cpu))
        yield from sched.run(task, 1e-3)

    sched.spawn("short", short, cpu=2, pinned=True)
    sched.spawn("hog0", spinner(sched, 0.02, []), cpu=0, pinned=True)
    sched.spawn("hog1", spinner(sched, 0.02, []), cpu=1, pinned=True)
    sched.spawn("p0", spinner(sched, 0.01, []), cpu=0, pinned=True)
    sched.spawn("p1", spinner(sched, 0.01, []), cpu=0, pinned=True)
    sched.spawn("m", movable, cpu=1)
    env.run()
    assert ran == [(pytest.approx(1e-3), 2)]  # CPU 2 went idle and took m from CPU 1


@pytest.mark.parametrize("extra_on_1, expected", [(False, "a"), (True, "b")])
def test_an_idle_cpu_pulls_from_the_longest_runqueue_the_lowest_cpu_on_a_tie(extra_on_1, expected):
    env, sched, metrics = make(ncpus=3, model="none")
    ran = []

    def short(task):
        yield from sched.run(task, 1e-3)

    def waiter(task):
        ran.append((task.name, task.cpu, env.now))
        yield from sched.run(task, 1e-4)

    sched.spawn("hog0", spinner(sched, 0.01, []), cpu=0, pinned=True)
    sched.spawn("hog1", spinner(sched, 0.01, []), cpu=1, pinned=True)
    sched.spawn("short", short, cpu=2, pinned=True)
    sched.spawn("a", waiter, cpu=0)  # every CPU is busy: both wait where they were put
    sched.spawn("b", waiter, cpu=1)
    if extra_on_1:
        sched.spawn("c", waiter, cpu=1)
    env.run(until=1.05e-3)
    assert ran == [(expected, 2, pytest.approx(1e-3))]  # CPU 2 went idle at 1 ms and pulled


def test_a_forked_task_starts_on_its_parents_cpu_among_equally_loaded_ones():
    env, sched, metrics = make(ncpus=3, model="none")
    for i in range(3):
        sched.spawn(f"hog{i}", spinner(sched, 0.01, []), cpu=i, pinned=True)
    env.run(until=1e-4)
    assert sched.spawn("child", spinner(sched, 1e-4, []), near=2).cpu == 2
    env.run(until=2e-4)  # the child waits on CPU 2
    assert sched.spawn("next", spinner(sched, 1e-4, []), near=2).cpu == 0  # the first after 2 of the least loaded
    assert sched.spawn("plain", spinner(sched, 1e-4, [])).cpu == 0


@pytest.mark.parametrize("model, breaks", [("full", True), ("none", False)])
def test_cond_resched_lock_lets_a_spinning_waiter_in_only_under_full_preemption(model, breaks):
    env, sched, metrics = make(ncpus=2, model=model)
    lock = SpinLock(sched, "vmap_area_lock")
    got = []

    def purger(task):
        yield from lock.lock(task)
        for _ in range(100):  # 100 merges of 10 us, offering the lock after each
            yield from sched.run(task, 1e-5)
            yield from lock.cond_resched_lock(task)
        yield from lock.unlock(task)

    def allocator(task):
        yield from sched.run(task, 1.55e-4)
        yield from lock.lock(task)
        got.append(env.now)
        yield from lock.unlock(task)

    sched.spawn("purger", purger, cpu=0)
    sched.spawn("alloc", allocator, cpu=1)
    env.run()
    assert got[0] == pytest.approx(1.6e-4 if breaks else 1e-3)


def _forking_parent(sched, name, log):
    """A parent that runs 1 ms, forks a child on its CPU and waits for it (wait4), then logs its return."""

    def child(task):
        log.append(f"{name}'s child")
        yield from sched.run(task, 1e-3)

    def body(task):
        yield from sched.run(task, 1e-3)
        kid = sched.spawn(f"{name}-child", child, near=task.cpu)
        yield from sched.wait_event(task, sched.exit_event(kid), "wait4", waker=kid)
        log.append(f"{name} again")

    return body


@pytest.mark.parametrize("pick, second", [("vruntime", "A again"), ("fifo", "B's child")])
def test_a_parent_woken_by_its_childs_exit_runs_before_a_child_forked_after_it_under_cfs_order(pick, second):
    """CFS (pick=vruntime) places a woken parent at its own vruntime, ahead of a child
    forked later (START_DEBIT); FIFO queues it behind that child."""
    env, sched, metrics = make(ncpus=1, model="none", pick=pick)
    log = []
    for name in "AB":
        sched.spawn(name, _forking_parent(sched, name, log), cpu=0)
    env.run()
    assert log[:2] == ["A's child", second]


@pytest.mark.parametrize("affine, cpu", [(True, 1), (False, 0)])
def test_a_parent_woken_by_its_exiting_child_moves_to_the_childs_cpu_when_none_is_idle(affine, cpu):
    env, sched, metrics = make(ncpus=2, model="none", wake_affine=affine, p_migrate_on_wake=0.0)
    for i in range(2):
        sched.spawn(f"hog{i}", spinner(sched, 0.01, []), cpu=i, pinned=True)
    woke_on = []

    def parent(task):
        kid = sched.spawn("child", spinner(sched, 1e-3, []), cpu=1)
        yield from sched.wait_event(task, kid.process, "wait4", waker=kid)
        woke_on.append(task.cpu)

    sched.spawn("parent", parent, cpu=0)
    env.run()
    assert woke_on == [cpu]


def test_pick_must_be_known():
    with pytest.raises(ValueError, match="pick"):
        make(pick="lottery")
