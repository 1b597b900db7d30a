"""Per-caller accounting of vmap requests: calls, fit types and failure causes.

Every workload counts its own requests under a label (``tv.fix_size_alloc_test``,
``modules``, ``percpu``...) so that a run's counters say which caller made
which NE_FIT splits and which caller failed, and why:

* ``<label>.calls``, ``<label>.fit_fl|le|re|ne``, ``<label>.failures``;
* ``<label>.fail_no_space`` -- no free block in the window (ENOENT/ERANGE in the
  core): real exhaustion, or an impossible alignment;
* ``<label>.fail_no_memory`` -- anything that needed memory: the NE_FIT split's
  object (also counted as ``<label>.fail_split_object``, the GFP_NOWAIT failure
  of the 2019 discussion), the busy descriptor, the ``vm_struct``, the pages.

The machine's vmalloc path does not hand the failure cause to its caller, and
the fit type only if the busy area carries it (a ``fit`` attribute), so both
are otherwise read from the machine's counters around the call: the core's
``fit_counts`` and the ``vmap_fail_*`` / ``vmalloc_page_failures`` counters.
When other tasks' requests finish inside the same call with fit types that
differ from each other, the fit is not certain; it is then taken from the
core's ``last_fit`` and the call is also counted in ``<label>.fit_ambiguous``.
With one task allocating at a time the counts are exact.
"""

from __future__ import annotations

from typing import Any

from sim.kernel.mm.vmalloc.space import FIT_NAMES

FIT_KEYS = {fit: "fit_" + name.lower() for fit, name in FIT_NAMES.items()}
_CAUSE_COUNTERS = ("vmap_fail_no_space", "vmap_fail_no_split_object", "vmalloc_page_failures")

Snapshot = tuple[tuple[int, ...], tuple[int, ...]]


class VmapTally:
    """Counts one workload's vmap requests under labels of its own."""

    def __init__(self, machine: Any) -> None:
        self.metrics = machine.metrics
        self.space = machine.vmalloc.space

    def begin(self) -> Snapshot:
        """The counters before a request (pass it to :meth:`success` or :meth:`failure`)."""
        counters = self.metrics.counters
        return tuple(self.space.fit_counts), tuple(counters[name] for name in _CAUSE_COUNTERS)

    def success(self, label: str, before: Snapshot, va: Any = None) -> int:
        """Count a successful request and return its fit type (1..4); ``va`` is
        its busy area, which may know its fit."""
        fit = getattr(va, "fit", 0)
        if fit in FIT_KEYS:
            self.record_fit(label, fit)
            return fit
        fits = self.space.fit_counts
        changed = [fit for fit in FIT_KEYS if fits[fit] != before[0][fit]]
        if len(changed) == 1:
            fit = changed[0]
        else:  # several different carves finished during the call
            fit = self.space.last_fit
            self.metrics.add(label + ".fit_ambiguous")
        self.record_fit(label, fit)
        return fit

    def record_fit(self, label: str, fit: int) -> None:
        """Count a successful request whose fit type the caller knows."""
        metrics = self.metrics
        metrics.add(label + ".calls")
        metrics.add(f"{label}.{FIT_KEYS[fit]}")

    def failure(self, label: str, before: Snapshot) -> str:
        """Count a failed request and return its cause: ``no_space`` or ``no_memory``."""
        counters = self.metrics.counters
        no_space, split, pages = (counters[name] - old for name, old in zip(_CAUSE_COUNTERS, before[1]))
        cause = "no_space" if no_space > 0 and split == 0 and pages == 0 else "no_memory"
        self.record_failure(label, cause, split_object=split > 0)
        return cause

    def record_failure(self, label: str, cause: str, split_object: bool = False) -> None:
        """Count a failed request whose cause the caller knows."""
        metrics = self.metrics
        metrics.add(label + ".calls")
        metrics.add(label + ".failures")
        metrics.add(f"{label}.fail_{cause}")
        if split_object:
            metrics.add(label + ".fail_split_object")
