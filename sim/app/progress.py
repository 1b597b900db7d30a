"""Progress of a sweep on standard error, for ``vmsim sweep`` and a terminal or a log file."""

from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def sweep_progress(stream=None, interval: float = 10.0, heartbeat: float = 60.0):
    """Progress on standard error: a rich bar (runs done, failures, ETA) on a terminal; else plain
    lines, one each time another tenth of the runs has finished (at most every ``interval``
    seconds) and at least every ``heartbeat`` seconds, so a sweep piped to a log is never silent."""
    from rich.console import Console

    console = Console(stderr=True)
    if stream is None and console.is_terminal:
        with rich_progress(console) as update:
            yield update
        return
    with plain_progress(stream or sys.stderr, interval, heartbeat) as update:
        yield update


@contextmanager
def rich_progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
        TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("sweep", total=None, failed=0)

        def update(done: int, failed: int, total: int) -> None:
            bar.update(task, completed=done, total=total, failed=failed)

        yield update


@contextmanager
def plain_progress(stream, interval: float, heartbeat: float):
    import threading
    import time

    start = time.monotonic()
    state = {"done": 0, "failed": 0, "total": 0, "first": None, "printed_done": -1, "printed_at": start}
    lock = threading.Lock()
    stop = threading.Event()

    def line() -> None:
        done, total, first = state["done"], state["total"], state["first"]
        elapsed = time.monotonic() - start
        text = f"runs {done}/{total} done, {state['failed']} failed, {elapsed:.0f} s"
        if first is not None and 0 < done - first < total - first:
            eta = elapsed / (done - first) * (total - done)
            text += f", about {eta:.0f} s to go"
        print(text, file=stream, flush=True)
        state["printed_done"], state["printed_at"] = done, time.monotonic()

    def update(done: int, failed: int, total: int) -> None:
        with lock:
            state.update(done=done, failed=failed, total=total)
            if state["first"] is None:
                state["first"] = done
            since = time.monotonic() - state["printed_at"]
            tenth_more = done - state["printed_done"] >= max(1, total // 10)
            if state["printed_done"] < 0 or done == total or (tenth_more and since >= interval):
                line()

    def beat() -> None:
        while not stop.wait(1.0):
            with lock:
                if time.monotonic() - state["printed_at"] >= heartbeat and state["done"] < state["total"]:
                    line()

    watcher = threading.Thread(target=beat, name="vmsim-progress", daemon=True)
    watcher.start()
    try:
        yield update
    finally:
        stop.set()
