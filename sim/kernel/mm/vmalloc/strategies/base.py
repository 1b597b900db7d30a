"""The split-object strategy contract, and the registry of strategies.

``alloc_vmap_area`` needs, for an NE_FIT split, a second ``struct vmap_area``
while it holds the free-tree lock.  How it gets one changed between kernels,
and that is what a strategy models.  A strategy is a subclass of
:class:`SplitStrategy` with two hooks:

* ``lock_for_alloc(vm, task, gfp)``: everything from the ``retry:`` label of
  ``alloc_vmap_area`` to holding the free-tree lock (``vm.free_lock``), i.e.
  the preload if there is one.  A generator (it may sleep, be preempted, or
  migrate ``task`` to another CPU); it must return with the lock held.
* ``split_object(vm, task)``: the object ``adjust_va_to_fit_type`` takes for
  the split, under the lock, on the CPU ``task`` runs on at that instant; None
  when there is none (the split then fails, -ENOMEM).  Not a generator: the
  lock is a spinlock.

``vm`` is the :class:`SplitHost`: all a strategy may touch of vmalloc.  What a
strategy keeps per CPU (a preload slot) it keeps itself, sized by the CPU
count it is made with.  Class attributes: ``name`` (as scenarios spell it),
``commit`` (the kernel commit it models, or "counterfactual"), ``colour`` (in
figures), ``order`` (in tables, legends and lists of names) and ``preloads``.

Defining a subclass with its own ``name`` registers it (``__init_subclass__``);
``class X(SplitStrategy, register=False)`` does not.  The registry
(:data:`STRATEGIES`) is kept in ``order``; plug-ins from files or entry points
join it the same way (see :mod:`sim.engine.plugins`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable
from typing import Any, ClassVar, Protocol

from sim.kernel.mm.gfp import GFP_NOWAIT
from sim.kernel.mm.vmalloc.area import VmapArea
from sim.kernel.sched.cpu import Task
from sim.record.strategy_info import StrategyInfo, declare_strategy, forget_strategy

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class SchedOps(Protocol):
    """The scheduler calls a strategy may make for its task."""

    def preempt_disable(self, task: Task) -> None: ...
    def preempt_enable(self, task: Task) -> Iterable[Any]: ...
    def run(self, task: Task, seconds: float) -> Iterable[Any]: ...


class LockOps(Protocol):
    """Taking the free-tree lock (``spin_lock``)."""

    def lock(self, task: Task) -> Generator[Any, Any, None]: ...


class CounterOps(Protocol):
    """Counting: ``add`` a counter, ``add_time`` to a time total."""

    def add(self, name: str, n: int = 1) -> None: ...
    def add_time(self, name: str, seconds: float) -> None: ...


class Clock(Protocol):
    @property
    def now(self) -> float: ...


class StrategyCosts(Protocol):
    @property
    def t_check_lock(self) -> float: ...  # from the preload check to spin_lock


class SplitHost(Protocol):
    """What a strategy may touch of vmalloc (:class:`~sim.kernel.mm.vmalloc.alloc.Vmalloc`)."""

    @property
    def sched(self) -> SchedOps: ...
    @property
    def env(self) -> Clock: ...
    @property
    def free_lock(self) -> LockOps: ...
    @property
    def metrics(self) -> CounterOps: ...
    @property
    def params(self) -> StrategyCosts: ...

    def split_nowait(self, task: Task, gfp: int = int(GFP_NOWAIT)) -> VmapArea | None:
        """``kmem_cache_alloc(vmap_area_cachep, gfp)`` under the lock, on the task's CPU; counted."""
        ...

    def new_object(self, task: Task, gfp: int) -> Generator[Any, Any, VmapArea | None]:
        """``kmem_cache_alloc(vmap_area_cachep, gfp)``; may sleep if ``gfp`` allows."""
        ...

    def free_object_of(self, task: Task, va: VmapArea) -> None:
        """``kmem_cache_free(vmap_area_cachep, va)`` on the task's CPU."""
        ...


STRATEGIES: dict[str, type[SplitStrategy]] = {}  # name -> class, in display order


class SplitStrategy(ABC):
    """How the NE_FIT split's extra ``struct vmap_area`` is obtained (see the module doc)."""

    name: ClassVar[str]
    commit: ClassVar[str]
    colour: ClassVar[str] = "#999999"
    order: ClassVar[float] = 100.0
    preloads: ClassVar[bool] = False
    # counterfactual: after a split found no object, ``alloc_vmap_area`` drops the lock and goes
    # back to ``retry:`` at once, once per call, with no purge; ``lock_for_alloc`` then gets the
    # object outside the lock (no kernel does this; every kernel purges and retries)
    retry_split_unlocked: ClassVar[bool] = False

    def __init__(self, ncpus: int) -> None:
        self.ncpus = ncpus

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and "name" in cls.__dict__:
            _register(cls)

    @abstractmethod
    def lock_for_alloc(self, vm: SplitHost, task: Task, gfp: int) -> Generator[Any, Any, None]:
        """From ``retry:`` to holding ``vm.free_lock`` (the preload, if any)."""

    @abstractmethod
    def split_object(self, vm: SplitHost, task: Task) -> VmapArea | None:
        """The split's object on the CPU ``task`` runs on now, under the lock; None if none."""

    def preloaded(self, cpu: int) -> int:
        """Objects ``cpu`` holds for coming splits (none without a preload)."""
        return 0

    def objects_held(self, ncpus: int) -> int:
        """Objects held aside for coming splits on the whole machine (the memory a
        preload costs); by default the sum of :meth:`preloaded` over the CPUs."""
        return sum(self.preloaded(cpu) for cpu in range(ncpus))


def _register(cls: type[SplitStrategy]) -> None:
    name = cls.__dict__["name"]
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise TypeError(f"{where}: name {name!r} is not a strategy name (lower case, digits, '-', '_', '.')")
    hooks = ("lock_for_alloc", "split_object")
    missing = [m for m in hooks if getattr(getattr(cls, m), "__isabstractmethod__", False)]
    if missing:
        raise TypeError(f"{where}: strategy {name!r} does not define {' and '.join(missing)}")
    if not isinstance(getattr(cls, "commit", None), str):
        raise TypeError(f"{where}: strategy {name!r} needs a commit (the kernel commit it models, or 'counterfactual')")
    known = STRATEGIES.get(name)
    if known is not None and known is not cls:
        raise TypeError(f"{where}: strategy {name!r} is already defined by {known.__module__}.{known.__qualname__}")
    STRATEGIES[name] = cls
    ranked = sorted(STRATEGIES.items(), key=lambda item: item[1].order)  # stable: ties keep definition order
    STRATEGIES.clear()
    STRATEGIES.update(ranked)
    declare_strategy(StrategyInfo(name, float(cls.order), str(cls.colour), cls.commit, bool(cls.preloads)))


def unregister_module(module: str) -> list[str]:
    """Drop every strategy defined in ``module`` (a plug-in that failed half-way); their names."""
    gone = [name for name, cls in STRATEGIES.items() if cls.__module__ == module]
    for name in gone:
        del STRATEGIES[name]
        forget_strategy(name)
    return gone


def unknown_strategy_message(name: str) -> str:
    """``unknown strategy 'x'; known: nowait, preload, ...`` (one line)."""
    return f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}"


def strategy_class(name: str) -> type[SplitStrategy]:
    """The class registered as ``name``; KeyError with the known names otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(unknown_strategy_message(name)) from None


def make_strategy(name: str, ncpus: int) -> SplitStrategy:
    """A new strategy object by its scenario name, for a machine of ``ncpus`` CPUs."""
    return strategy_class(name)(ncpus)
