"""Where a sweep's chunks run: in process, in a local process pool, or on a Dask cluster.

All three go through the ``concurrent.futures`` interface (Mesa 4's runner
and the ecosystem notes argue for it): :class:`SerialExecutor` is an Executor
that runs a call when it is submitted, the process pool is the standard
library's, and Dask's ``Client.submit`` / ``as_completed`` follow the same
interface, so a sweep that outgrows one machine runs unchanged on a cluster.
:meth:`Backend.map_unordered` keeps a bounded window of chunks in flight (the
parent never holds more than a few futures, and the serial executor really
runs one chunk at a time between status-log writes) and yields each chunk with
its result or the exception that its future raised.

The executor, the run configuration and the store are three separate things:
nothing here knows what a chunk does.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

EXECUTORS = ("serial", "process", "dask")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_POLL_SECONDS = 0.2


class SerialExecutor(cf.Executor):
    """A concurrent.futures Executor that runs each call in this process when it is submitted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # the caller records it as a failed chunk
            future.set_exception(err)
        return future


def _worker_init(parent: int | None = None) -> None:
    """Set up a worker process: one thread for any BLAS (runs are single-threaded simulations),
    Ctrl-C left to the parent (which stops the workers itself), and, given the sweep's ``parent``
    pid, death with it: a watcher thread ends this process as soon as the parent is gone, even
    after a SIGKILL that gave it no chance to clean up."""
    for name in _THREAD_VARS:
        os.environ.setdefault(name, "1")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None and parent != os.getpid():
        _set_pdeathsig()
        threading.Thread(target=_die_with, args=(parent,), name="vmsim-parent-watch", daemon=True).start()


def _set_pdeathsig() -> None:
    """SIGKILL when the process that started this one (the forkserver, or the sweep) dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``; elsewhere the watcher thread alone does it)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _die_with(parent: int) -> None:
    """Wait until process ``parent`` has ended (a pidfd where there is one, else polling), then
    end this process at once: its chunk's parts are of no use to anyone (the parent appends the
    status lines, so an unfinished chunk simply runs again on --resume)."""
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while _alive(parent):
            time.sleep(_POLL_SECONDS)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """forkserver where there is one (workers fork from a clean server with ``preload`` imported:
    fast, and no parent threads carried into them), else the platform's default."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(preload)
        return ctx
    return multiprocessing.get_context()


class Backend:
    """An executor for chunks, with a bounded window of futures in flight."""

    name = "serial"

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)
        self._pool: cf.Executor | None = None

    def window(self) -> int:
        """How many chunks may be in flight at once."""
        return 1

    def _executor(self) -> cf.Executor:
        return SerialExecutor()

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """(task, result) for every task as it finishes; the result is the exception the call
        raised if it raised one.  A broken pool (a worker process died) fails its chunks and is
        replaced, so the chunks after it still run."""
        if self._pool is None:
            self._pool = self._executor()
        pending = iter(tasks)
        inflight: dict[cf.Future, Any] = {}
        window = self.window()
        while True:
            while len(inflight) < window:
                task = next(pending, None)
                if task is None:
                    break
                inflight[self._submit(fn, task)] = task
            if not inflight:
                return
            done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                task = inflight.pop(future)
                error = future.exception()
                yield task, (future.result() if error is None else error)

    def _submit(self, fn: Callable[[Any], Any], task: Any) -> cf.Future:
        assert self._pool is not None
        try:
            return self._pool.submit(fn, task)
        except cf.BrokenExecutor:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._executor()
            return self._pool.submit(fn, task)

    def close(self) -> None:
        """Wait for the chunks in flight, then release the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Stop now: chunks in flight are dropped (the serial executor has none)."""
        self._pool = None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        """On an error the chunks in flight still finish; on a KeyboardInterrupt or another
        BaseException (a signal) the workers are stopped at once."""
        if kind is not None and not issubclass(kind, Exception):
            self.abort()
        else:
            self.close()


class ProcessBackend(Backend):
    """A local ProcessPoolExecutor of ``jobs`` workers."""

    name = "process"

    def window(self) -> int:
        return 2 * self.jobs

    def _executor(self) -> cf.Executor:
        ctx = _process_context(["sim.sweep.runner"])
        return cf.ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )

    def abort(self) -> None:
        """SIGKILL every worker, then let the pool go without waiting; the forkserver and the
        resource tracker end by themselves once no worker holds their pipes."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())  # the pool's own worker list
        for process in processes:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=1)


class DaskBackend(Backend):
    """Dask distributed: a LocalCluster of ``jobs`` single-threaded worker processes started for
    the sweep, or the existing cluster whose scheduler is at ``address``.  Workers write the part
    files themselves, so the results folder must be one that every worker can reach."""

    name = "dask"

    def __init__(self, jobs: int = 1, address: str | None = None) -> None:
        super().__init__(jobs)
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            from sim.schema.errors import InputError

            raise InputError("--executor dask", None, "needs dask[distributed]: pip install 'vmsim[dask]'") from None
        self._cluster = None
        local = address is None
        if local:
            self._cluster = LocalCluster(
                n_workers=self.jobs,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(address, timeout="30s")
            except OSError as err:
                from sim.schema.errors import InputError

                raise InputError("--scheduler", None, f"cannot reach the Dask scheduler at {address}: {err}") from None
        self._client.run(_worker_init, os.getpid() if local else None)

    def window(self) -> int:
        threads = sum(self._client.nthreads().values()) or self.jobs
        return 2 * threads

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """As :meth:`Backend.map_unordered`, with ``Client.submit`` and ``distributed.as_completed``."""
        from distributed import as_completed

        pending = iter(tasks)
        inflight: dict[str, Any] = {}
        done_iter = as_completed()

        def submit_next() -> bool:
            task = next(pending, None)
            if task is None:
                return False
            future = self._client.submit(fn, task, pure=False)
            inflight[future.key] = task
            done_iter.add(future)
            return True

        for _ in range(self.window()):
            if not submit_next():
                break
        for future in done_iter:
            task = inflight.pop(future.key)
            try:
                result = future.result()
            except Exception as err:  # KilledWorker, or what the chunk raised
                result = err
            future.release()
            yield task, result
            submit_next()

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def abort(self) -> None:
        """Drop the chunks in flight: closing the client releases its futures (a remote
        cluster forgets them), and a local cluster is stopped."""
        self.close()


def make_backend(executor: str, jobs: int | None = None, scheduler: str | None = None) -> Backend:
    """The backend called ``executor`` (serial, process or dask) with ``jobs`` workers
    (default: the CPU count); ``scheduler`` is the address of an existing Dask cluster."""
    jobs = jobs or os.cpu_count() or 1
    if executor == "serial":
        return Backend(1)
    if executor == "process":
        return ProcessBackend(jobs)
    if executor == "dask":
        return DaskBackend(jobs, scheduler)
    raise ValueError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
