"""The bounds on what a scenario or sweep may ask for, each with where it comes from.

Inputs beyond these are refused with one line before anything runs, because
each would otherwise hang, exhaust memory or simulate something no kernel
runs.  Where the kernel has a limit, the bound is the kernel's; where the
bound is the model's (what it handles in reasonable time or memory), it says
which measurement set it.  A bound that a user may need to raise (the number
of runs, the estimated time) is a parameter of the command with a flag that
raises it; the others are facts about the kernel.
"""

from __future__ import annotations

# x86-64's largest CONFIG_NR_CPUS (with CONFIG_MAXSMP).  The model builds a machine
# of 8192 CPUs in about 10 s here; a run's cost grows with its CPUs, and the cost
# estimate (sim.engine.cost) says what a given scenario will take.
MAX_CPUS = 8192
# The largest physical address space of x86-64 with 4-level page tables
# (MAX_PHYSMEM_BITS = 46): 64 TiB.  The zone model computes watermarks for it.
MAX_RAM = 1 << 46
# PID_MAX_LIMIT on 64-bit (include/linux/threads.h): at most 4M tasks can exist.
MAX_TASKS = 4 * 1024 * 1024
# Samples of the time series per run: each sample holds every zone's counters, so
# 10^5 samples are tens of MiB of rows per run (100ms over 10,000 s).
MAX_SAMPLES = 100_000
# Runs of one command (strategies x replications x grid points), before --max-runs
# raises it: every run is planned, and its row held, in memory.
MAX_RUNS = 100_000
# Estimated computing time above which run and sweep ask for --yes (seconds): a working
# day.  The estimate (sim.engine.cost) comes from a run's start, which is often its slowest part:
# it was 2x the real time on the shipped fork-pressure sweep and 15x on 1024 CPUs, so the
# bound is set to catch the mistakes that are orders of magnitude off (a duration of
# 1e6 s, a million-point grid), not to police a long sweep that was meant.
MAX_ESTIMATED_SECONDS = 8 * 3600.0


def runs_limit_message(what: str, runs: int, limit: int) -> str:
    """The one-line reason a plan of ``runs`` runs is refused."""
    return f"{what} = {runs:,} runs; more than {limit:,} (pass --max-runs {runs} to plan them anyway)"
