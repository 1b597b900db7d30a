"""Stopping a command on SIGINT, SIGTERM or SIGHUP: an exception, so that cleanup runs.

Inside :func:`stop_on_signals` each of the three signals raises
:class:`Interrupted` in the main thread, wherever it is (in a SimPy run of the
serial executor, or waiting for a worker's chunk).  It is a BaseException, so
no ``except Exception`` on the way (a failed run is recorded, not fatal) takes
it for a failed run; the executor's ``__exit__`` stops the workers at once
instead of waiting for their chunks, and the command says what it kept.
A second signal during that cleanup is ignored; SIGKILL still works, and the
workers watch their parent (:mod:`sim.sweep.executors`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(BaseException):
    """A signal asked the command to stop; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(signum)  # args as given: SimPy re-raises a process's error as type(err)(*err.args)

    def __str__(self) -> str:
        return f"interrupted by {self.name}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` inside the block (the first one;
    later ones are ignored until the block ends); the previous handlers come back after.
    Outside the main thread, where Python cannot set handlers, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
