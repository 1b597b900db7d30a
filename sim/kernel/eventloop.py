"""The event loop the model runs on: SimPy 4.1.2's, rewritten to compile.

Every kernel code path of the model is a SimPy process.  SimPy itself is plain
Python whose objects keep their attributes in dictionaries and whose
``env.timeout`` goes through a descriptor, so in the compiled build
(docs/compiled.md) its loop and every call into it stayed interpreted, even
with SimPy compiled by Cython.  This module is the part of SimPy
the model uses, with SimPy's semantics, as typed classes that mypyc compiles to
native ones:

* :class:`Environment`: ``now``, ``schedule``, ``step``, ``run(until)``,
  ``peek``, and the factories ``process``, ``timeout``, ``event``, ``all_of``,
  ``any_of``;
* :class:`Event` with ``succeed``, ``fail``, ``trigger``, ``triggered``,
  ``processed``, ``ok``, ``value``, ``defused`` and ``&``/``|``;
* :class:`Timeout`, :class:`Process` (a generator driven by the events it
  yields), :class:`Condition` with :class:`AllOf` and :class:`AnyOf`.

Events are processed in SimPy's order, which the model's results depend on:
the heap holds (time, priority, event id, event), ids count up from 0 in
scheduling order, a process starts with an URGENT ``Initialize`` event, a
triggered event's callbacks run in the order they were added, and a process
that yields an already processed event goes on at once.  ``run(until)`` stops
as SimPy's does (an URGENT event at ``until``, processed before anything else
due then, and rescheduled at priority -1 with its remaining callbacks).
``tests/test_eventloop.py`` runs random programs of processes on both loops and
requires the same trace, event for event.

One difference, not visible in a result: the clock is a float from the start
(SimPy's is the int 0 until it first moves).  Not provided: interrupts,
resources, stores, real time.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from heapq import heappop, heappush
from typing import Any, Final

from mypy_extensions import mypyc_attr

EventPriority = int
URGENT: Final = 0  # SimPy's priority of Initialize and of run()'s until event
NORMAL: Final = 1  # every other event
Infinity: Final = float("inf")


class _Pending:
    """The value of an event not yet triggered (SimPy's ``PENDING``)."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Final = _Pending()

EventCallback = Callable[["Event"], None]


@mypyc_attr(native_class=False)
class EmptySchedule(Exception):
    """No event is left to process."""


@mypyc_attr(native_class=False)
class StopSimulation(Exception):
    """Raised by the callback of ``run``'s until event to stop the loop."""


def _stop_simulation(event: Event) -> None:
    """``StopSimulation.callback``: stop ``run`` with the until event's value, or its error."""
    if event._ok:
        raise StopSimulation(event._value)
    raise event._value  # a failed event's value is its exception


class Environment:
    """Simulated time and the queue of events due (SimPy's ``Environment``)."""

    def __init__(self, initial_time: float = 0.0) -> None:
        self._now: float = float(initial_time)
        self._queue: list[tuple[float, int, int, Event]] = []
        self._eid = 0  # SimPy's itertools.count(): the next event id
        self._active_proc: Process | None = None

    @property
    def now(self) -> float:
        """The current simulated time."""
        return self._now

    @property
    def active_process(self) -> Process | None:
        """The process whose generator runs now, if any."""
        return self._active_proc

    def process(self, generator: Generator[Any, Any, Any]) -> Process:
        """A new :class:`Process` running ``generator``."""
        return Process(self, generator)

    def timeout(self, delay: float = 0, value: Any = None) -> Timeout:
        """A new :class:`Timeout` that fires ``delay`` from now with ``value``."""
        return Timeout(self, delay, value)

    def event(self) -> Event:
        """A new untriggered :class:`Event`."""
        return Event(self)

    def all_of(self, events: Iterable[Event]) -> AllOf:
        return AllOf(self, events)

    def any_of(self, events: Iterable[Event]) -> AnyOf:
        return AnyOf(self, events)

    def schedule(self, event: Event, priority: int = NORMAL, delay: float = 0) -> None:
        """Queue ``event`` to be processed ``delay`` from now."""
        eid = self._eid
        self._eid = eid + 1
        heappush(self._queue, (self._now + delay, priority, eid, event))

    def peek(self) -> float:
        """The time of the next event, or infinity if none is queued."""
        if self._queue:
            return self._queue[0][0]
        return Infinity

    def step(self) -> None:
        """Process the next event: run its callbacks; a failed event nobody defused raises."""
        if not self._queue:
            raise EmptySchedule()
        now, _, _, event = heappop(self._queue)
        self._now = now
        callbacks = event.callbacks
        event.callbacks = None
        assert callbacks is not None  # an event is queued once per trigger
        i = 0
        try:
            for callback in callbacks:
                callback(event)
                i += 1
        except StopSimulation:
            # as SimPy: the callbacks not yet run stay with the event, which is queued again first
            event.callbacks = callbacks[i + 1 :]
            self.schedule(event, -1)
            raise
        if not event._ok and not event._defused:
            err: BaseException = event._value
            exc = type(err)(*err.args)
            exc.__cause__ = err
            raise exc

    def run(self, until: float | Event | None = None) -> Any:
        """Process events until ``until`` (a time, or an event's processing), or none is left."""
        if until is not None:
            if not isinstance(until, Event):
                at: float = until if isinstance(until, int) else float(until)
                if at <= self._now:
                    raise ValueError(f"until ({at}) must be greater than the current simulation time")
                stop = Event(self)
                stop._ok = True
                stop._value = None
                self.schedule(stop, URGENT, at - self._now)
                until = stop
            elif until.callbacks is None:
                return until.value
            assert until.callbacks is not None
            until.callbacks.append(_stop_simulation)
        try:
            while True:
                self.step()
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            if until is not None:
                assert not until.triggered
                raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}') from None
        return None


class Event:
    """An event that may happen (SimPy's ``Event``): triggered by ``succeed``/``fail``,
    then processed by the environment, which calls its callbacks."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.callbacks: list[EventCallback] | None = []
        self._value: Any = PENDING
        self._ok = False
        self._defused = False

    def __repr__(self) -> str:
        return f"<{self._desc()} object at {id(self):#x}>"

    def _desc(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def triggered(self) -> bool:
        """True once the event has been triggered (its callbacks are due)."""
        return self._value is not PENDING

    @property
    def processed(self) -> bool:
        """True once its callbacks have run."""
        return self.callbacks is None

    @property
    def ok(self) -> bool:
        """True if the event succeeded."""
        return self._ok

    @property
    def defused(self) -> bool:
        """True if a failed event's error was handled (it will not crash the run)."""
        return self._defused

    @defused.setter
    def defused(self, value: bool) -> None:
        self._defused = True

    @property
    def value(self) -> Any:
        """The event's value; AttributeError before it is triggered."""
        if self._value is PENDING:
            raise AttributeError(f"Value of {self} is not yet available")
        return self._value

    def trigger(self, event: Event) -> None:
        """Trigger with the state and value of ``event`` (usable as a callback)."""
        self._ok = event._ok
        self._value = event._value
        self.env.schedule(self)

    def succeed(self, value: Any = None) -> Event:
        """Mark successful with ``value`` and queue for processing."""
        if self._value is not PENDING:
            raise RuntimeError(f"{self} has already been triggered")
        self._ok = True
        self._value = value
        self.env.schedule(self)
        return self

    def fail(self, exception: BaseException) -> Event:
        """Mark failed with ``exception`` and queue for processing."""
        if self._value is not PENDING:
            raise RuntimeError(f"{self} has already been triggered")
        if not isinstance(exception, BaseException):
            raise TypeError(f"{exception} is not an exception.")
        self._ok = False
        self._value = exception
        self.env.schedule(self)
        return self

    def __and__(self, other: Event) -> Condition:
        return Condition(self.env, all_events, [self, other])

    def __or__(self, other: Event) -> Condition:
        return Condition(self.env, any_events, [self, other])


class Timeout(Event):
    """An event processed ``delay`` after its creation (SimPy's ``Timeout``)."""

    def __init__(self, env: Environment, delay: float, value: Any = None) -> None:
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        self.env = env
        self.callbacks = []
        self._value = value
        self._delay = delay
        self._ok = True
        self._defused = False
        env.schedule(self, NORMAL, delay)

    def _desc(self) -> str:
        value = "" if self._value is None else f", value={self._value}"
        return f"{type(self).__name__}({self._delay}{value})"


class Initialize(Event):
    """Starts a process: queued URGENT at its creation (SimPy's ``Initialize``)."""

    def __init__(self, env: Environment, process: Process) -> None:
        self.env = env
        self.callbacks = [process._resume]
        self._value = None
        self._ok = True
        self._defused = False
        env.schedule(self, URGENT)


class Process(Event):
    """A generator driven by the events it yields (SimPy's ``Process``); as an event it
    is processed when the generator returns (its value) or raises (its error)."""

    def __init__(self, env: Environment, generator: Generator[Any, Any, Any]) -> None:
        if not hasattr(generator, "throw"):
            raise ValueError(f"{generator} is not a generator.")
        self.env = env
        self.callbacks = []
        self._value = PENDING
        self._ok = False
        self._defused = False
        self._generator = generator
        self._target: Event | None = Initialize(env, self)

    def _desc(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @property
    def target(self) -> Event | None:
        """The event the process waits for (None once it has ended)."""
        return self._target

    @property
    def name(self) -> str:
        """The name of the generator function."""
        return str(getattr(self._generator, "__name__", repr(self._generator)))

    @property
    def is_alive(self) -> bool:
        """True until the generator has ended."""
        return self._value is PENDING

    def _resume(self, event: Event) -> None:
        """The process's callback on the event it waits for (SimPy's ``Process._resume``):
        send the event's value into the generator (or throw its error), and go on
        with every yielded event that is already processed; stop at one that is not,
        or end the process when the generator ends."""
        env = self.env
        env._active_proc = self
        generator = self._generator
        target: Event | None = event
        while True:
            try:
                if event._ok:
                    nxt = generator.send(event._value)
                else:
                    event._defused = True
                    err: BaseException = event._value
                    exc = type(err)(*err.args)  # an exclusive copy, as SimPy makes
                    exc.__cause__ = err
                    nxt = generator.throw(exc)
            except StopIteration as stop:
                target = None
                self._ok = True
                self._value = stop.args[0] if len(stop.args) else None
                env.schedule(self)
                break
            except BaseException as error:
                target = None
                self._ok = False
                if error.__traceback__ is not None:
                    error.__traceback__ = error.__traceback__.tb_next
                self._value = error
                env.schedule(self)
                break
            if not isinstance(nxt, Event):
                raise RuntimeError(f'Invalid yield value "{nxt}"')
            event = nxt
            target = nxt
            callbacks = nxt.callbacks
            if callbacks is not None:  # not processed yet: resume when it is
                callbacks.append(self._resume)
                break
        self._target = target
        env._active_proc = None


class ConditionValue:
    """The events of a condition that were processed when it was (SimPy's ``ConditionValue``)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __getitem__(self, key: Event) -> Any:
        if key not in self.events:
            raise KeyError(str(key))
        return key._value

    def __contains__(self, key: object) -> bool:
        return key in self.events

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ConditionValue):
            return self.events == other.events
        return self.todict() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<ConditionValue {self.todict()}>"

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def todict(self) -> dict[Event, Any]:
        return {event: event._value for event in self.events}


def all_events(events: tuple[Event, ...], count: int) -> bool:
    """True once every event has been processed (``&``)."""
    return len(events) == count


def any_events(events: tuple[Event, ...], count: int) -> bool:
    """True once any event has been processed (``|``)."""
    return count > 0 or len(events) == 0


class Condition(Event):
    """Triggered once ``evaluate(events, processed count)`` holds (SimPy's ``Condition``);
    fails with the first of its events that fails."""

    def __init__(
        self, env: Environment, evaluate: Callable[[tuple[Event, ...], int], bool], events: Iterable[Event]
    ) -> None:
        super().__init__(env)
        self._evaluate = evaluate
        self._events = tuple(events)
        self._count = 0
        if not self._events:
            self.succeed(ConditionValue())
            return
        for event in self._events:
            if self.env is not event.env:
                raise ValueError("It is not allowed to mix events from different environments")
        check = self._check
        for event in self._events:
            if event.callbacks is None:
                check(event)
            else:
                event.callbacks.append(check)
        assert self.callbacks is not None
        self.callbacks.append(self._build_value)

    def _desc(self) -> str:
        return f"{type(self).__name__}({self._evaluate.__name__}, {self._events})"

    def _populate_value(self, value: ConditionValue) -> None:
        for event in self._events:
            if isinstance(event, Condition):
                event._populate_value(value)
            elif event.callbacks is None:
                value.events.append(event)

    def _build_value(self, event: Event) -> None:
        self._remove_check_callbacks()
        if event._ok:
            value = ConditionValue()
            self._value = value
            self._populate_value(value)

    def _remove_check_callbacks(self) -> None:
        """Take ``_check`` off the events not yet processed (breaks the reference cycles)."""
        check = self._check
        for event in self._events:
            if event.callbacks and check in event.callbacks:
                event.callbacks.remove(check)
            if isinstance(event, Condition):
                event._remove_check_callbacks()

    def _check(self, event: Event) -> None:
        if self._value is not PENDING:
            return
        self._count += 1
        if not event._ok:
            event._defused = True
            self.fail(event._value)
        elif self._evaluate(self._events, self._count):
            self.succeed()


class AllOf(Condition):
    """Processed once all ``events`` are."""

    def __init__(self, env: Environment, events: Iterable[Event]) -> None:
        super().__init__(env, all_events, events)


class AnyOf(Condition):
    """Processed once any of ``events`` is."""

    def __init__(self, env: Environment, events: Iterable[Event]) -> None:
        super().__init__(env, any_events, events)
