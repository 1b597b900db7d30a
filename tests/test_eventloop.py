"""sim.kernel.eventloop processes events as SimPy 4.1 does, event for event.

Random programs of processes (timeouts with ties, shared events succeeded and waited
for, ``|`` and ``&`` conditions, children joined, callbacks, failures caught or not)
run on SimPy and on the model's loop; each leaves a trace of what every process saw
and when, which must be the same, across two ``run(until)`` calls.
"""

from __future__ import annotations

from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.kernel import eventloop

DELAYS = st.sampled_from([0, 0.25, 0.5, 1, 1.5])
KEYS = st.integers(0, 2)
OPS = st.one_of(
    st.tuples(st.just("timeout"), DELAYS),
    st.tuples(st.just("succeed"), KEYS),
    st.tuples(st.just("wait"), KEYS),
    st.tuples(st.just("either"), KEYS, DELAYS),
    st.tuples(st.just("both"), KEYS, DELAYS),
    st.tuples(st.just("spawn"), st.integers(0, 3)),
    st.tuples(st.just("join")),
    st.tuples(st.just("callback"), DELAYS),
    st.tuples(st.just("raise")),
    st.tuples(st.just("processed"), DELAYS),
)
PROGRAM = st.lists(st.lists(OPS, max_size=8), min_size=1, max_size=4)


class Boom(Exception):
    """A process's failure."""


def play(loop: Any, program: list[list[tuple]], untils: tuple[float, float]) -> list[tuple]:
    """Run ``program`` on ``loop`` (the simpy module or sim.kernel.eventloop); the trace."""
    env = loop.Environment()
    trace: list[tuple] = []
    events: dict[int, Any] = {}

    def shared(key: int) -> Any:
        if key not in events or events[key].processed:
            events[key] = env.event()
        return events[key]

    def body(pid: int, ops: list[tuple], depth: int):
        child = None
        for i, op in enumerate(ops):
            kind = op[0]
            here = (float(env.now), pid, i, kind)
            if kind == "timeout":
                value = yield env.timeout(op[1], value=(pid, i))
                trace.append((*here, float(env.now), value))
            elif kind == "succeed":
                event = shared(op[1])
                if not event.triggered:
                    event.succeed((pid, i))
                trace.append((*here, event.triggered))
            elif kind == "wait":
                value = yield shared(op[1])
                trace.append((*here, float(env.now), value))
            elif kind in ("either", "both"):
                event = shared(op[1])
                timer = env.timeout(op[2])
                yield (event | timer) if kind == "either" else (event & timer)
                trace.append((*here, float(env.now), event.triggered, timer.processed))
            elif kind == "spawn" and depth < 2:
                child = env.process(body(pid * 10 + op[1], program[op[1] % len(program)], depth + 1))
                trace.append(here)
            elif kind == "join" and child is not None:
                try:
                    value = yield child
                    trace.append((*here, float(env.now), value))
                except Boom as err:
                    trace.append((*here, float(env.now), "caught", str(err)))
            elif kind == "callback":
                timer = env.timeout(op[1])
                timer.callbacks.append(lambda _ev, h=here: trace.append((*h, "callback", float(env.now))))
            elif kind == "raise" and depth > 0:  # a child fails; its parent may be joining it
                raise Boom(f"{pid}:{i}")
            elif kind == "processed":  # yield an event already processed: goes on at once
                timer = env.timeout(op[1])
                yield timer
                value = yield timer
                trace.append((*here, float(env.now), value))
        return (pid, "done")

    for pid, ops in enumerate(program):
        env.process(body(pid, ops, 0))
    for until in untils:
        try:
            env.run(until=until)
            trace.append(("run", float(env.now), len(env._queue)))
        except Exception as err:  # a failure nobody caught stops the run, as in SimPy
            trace.append(("run", type(err).__name__, str(err)))
            break
    return trace


@settings(max_examples=300, deadline=None)
@given(PROGRAM, st.sampled_from([(0.5, 3.0), (1, 1.25), (2.0, 10.0)]))
def test_random_programs_leave_the_same_trace_as_simpy(program, untils):
    assert play(eventloop, program, untils) == play(simpy, program, untils)


def test_processes_resume_in_simpys_order_at_equal_times():
    """Three processes and a shared event due at one instant: who sees what at time 0 is
    SimPy's order (the starts are URGENT, then the queue in scheduling order)."""
    program = [[("timeout", 0), ("succeed", 0)], [("wait", 0), ("timeout", 0)], [("either", 0, 0)]]
    trace = play(eventloop, program, (1.0, 2.0))
    assert trace == play(simpy, program, (1.0, 2.0))
    # process 0's timeout, its succeed, 1's wait, 2's condition, then 1's timeout (SimPy 4.1.2's order)
    assert [entry[1] for entry in trace if entry[0] == 0.0] == [0, 0, 1, 2, 1]


def test_run_until_a_time_stops_before_events_due_then_and_goes_on_from_there():
    env = eventloop.Environment()
    seen: list[float] = []

    def ticker():
        while True:
            yield env.timeout(1)
            seen.append(env.now)

    env.process(ticker())
    env.run(until=2)
    assert env.now == 2.0 and seen == [1.0]  # the until event comes before the tick due at 2
    env.run(until=3.5)
    assert seen == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="must be greater"):
        env.run(until=3.5)


def test_an_uncaught_failure_stops_the_run_with_a_copy_of_the_error():
    env = eventloop.Environment()

    def failing():
        yield env.timeout(1)
        raise Boom("out of memory")

    env.process(failing())
    with pytest.raises(Boom, match="out of memory") as caught:
        env.run(until=5)
    assert isinstance(caught.value.__cause__, Boom)


def test_yielding_something_that_is_not_an_event_is_an_error():
    env = eventloop.Environment()

    def wrong():
        yield 42

    env.process(wrong())
    with pytest.raises(RuntimeError, match="Invalid yield value"):
        env.run()
