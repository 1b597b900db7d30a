"""The process side of memory (include/linux/mm_types.h, Linux 5.3): ``struct mm_struct``
as far as the pools charge it and the OOM killer ranks and frees it.

Split off oom_kill.py so that the pools (which charge an owner on every allocation)
and the allocation context (which names the owner) need not import the OOM killer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

OWNER_POOLS = ("anon", "pagetables", "kernel_stack")  # the pools charged to an mm (MM_ANONPAGES, ...)
OOM_SCORE_ADJ_MIN: Final = -1000


class MemoryOwner:
    """A process whose memory the OOM killer ranks and frees (``struct mm_struct``)."""

    __slots__ = (
        "charged", "name", "on_kill", "oom_killed", "oom_score_adj", "reaped", "swap", "tasks", "watched", "zones",
    )  # fmt: skip

    def __init__(
        self, name: str, *, oom_score_adj: int = 0, on_kill: Callable[[MemoryOwner], None] | None = None
    ) -> None:
        self.name = name
        self.charged = dict.fromkeys(OWNER_POOLS, 0)
        # the zones its pages sit in, per pool (page_zone of each page, counted)
        self.zones: dict[str, list[int]] = {pool: [0, 0, 0] for pool in OWNER_POOLS}
        self.swap = 0  # anon pages swapped out (MM_SWAPENTS)
        self.oom_score_adj = oom_score_adj
        self.on_kill = on_kill
        self.tasks: list[Any] = []  # the scheduler tasks that use this mm
        self.oom_killed = False
        self.reaped = False  # MMF_OOM_SKIP: its memory is gone
        self.watched = 0  # how many of ``tasks`` MemoryPools watches for their exit

    @property
    def exited(self) -> bool:
        """All its tasks have exited (no task holds the mm: ``find_lock_task_mm`` fails)."""
        return bool(self.tasks) and all(getattr(t, "state", None) == "dead" for t in self.tasks)

    @property
    def pages(self) -> int:
        """Pages charged to this process now."""
        return sum(self.charged.values())

    def badness(self, totalpages: int) -> int | None:
        """``oom_badness`` (5.3): rss + swap entries + page tables, plus oom_score_adj
        times (totalpages / 1000) in integer arithmetic; None if it may not be chosen
        (OOM_SCORE_ADJ_MIN, already killed, or no live task holds the mm)."""
        if self.oom_score_adj == OOM_SCORE_ADJ_MIN or self.oom_killed or self.exited:
            return None
        points = self.charged["anon"] + self.swap + self.charged["pagetables"]
        points += self.oom_score_adj * (totalpages // 1000)
        return max(points, 1)

    def kill(self) -> None:
        """Deliver SIGKILL: the workload's callback decides what its tasks do next."""
        if self.on_kill is not None:
            self.on_kill(self)

    def __repr__(self) -> str:
        return f"MemoryOwner({self.name}, {self.charged}, killed={self.oom_killed})"
