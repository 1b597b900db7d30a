"""printk to a serial console (kernel/printk/printk.c, Linux 5.2 to 6.9) and what warn_alloc prints.

printk stores a record in the log buffer; then, if its CPU gets the console lock
(``console_trylock_spinning``), it writes every pending record out itself
(``console_unlock``) before printk returns, each record with interrupts off and no
preemption in between (``console_may_schedule`` is 0 on this path).  A record reaches
the console only if its level is below ``console_loglevel`` (``suppress_message_printing``).
An 8250 UART console waits for the transmitter before each character
(``serial8250_console_putchar`` -> ``wait_for_xmitr(UART_LSR_THRE)``) and sends "\\n" as
"\\r\\n" (``uart_console_write``), so a record costs its bytes at the line rate: 10 bits
per character with 8N1.  When another CPU is still writing, printk spins until that CPU
hands the console over after its current record, then writes the rest and its own
(``console_owner``/``console_waiter``, 4.16 to 6.x); the model makes it wait for what is
still queued, then write its own bytes (the earlier writer keeps its full time: the
hand-over that would end it sooner is not modelled).

Code that prints calls :meth:`Console.printk` with the bytes of its lines: the CPU owes
that time.  Callers pay it with ``yield from console.write_out(task, lock)`` where the
kernel's printk returns, which for a failed NE_FIT split is under the vmap lock:
``adjust_va_to_fit_type``'s ``kmem_cache_alloc(GFP_NOWAIT)`` fails inside the page
allocator, which cannot yield here, so the time is paid right after the core returns,
before the lock is dropped.  The time is the console's, not the CPU's work, so
``sched.cpu_slowdown`` does not stretch it.

What warn_alloc prints (mm/page_alloc.c 5.2: ``pr_warn`` of the failure line,
``dump_stack()``, then ``warn_alloc_show_mem`` at most once a second): every line at
KERN_WARNING or the default message level, both 4.  Sizes measured on the seven
"page allocation failure: order:0, mode:0x40800(GFP_NOWAIT|__GFP_COMP)" reports of the
v5.2.1 guest (``results/peer/rezki-2019-v52/guest/r00{1,3,6,7}/dmesg.txt``, the split in
``alloc_vmap_area`` <- ``copy_process``), "\\r\\n" counted, without the timestamps
(CONFIG_PRINTK_TIME off in that kernel; with it, 15 bytes more per line):

* the failure line: 1 line, 128 bytes;
* ``dump_stack``: 30 lines, 1,314-1,315 bytes (CPU line, "Call Trace:", 21 frames, the
  user registers);
* Mem-Info (``show_mem``, 2 populated zones): 17-18 lines, 1,617-1,645 bytes: about 690
  for the node-wide part (the vmstat record, the node line, the page totals) and 473 a
  zone (its watermark line, lowmem_reserve, its free-area line).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

from sim.kernel import eventloop  # SimPy 4.1.2's loop, compiled (sim/kernel/eventloop.py)
from sim.kernel.sched.cpu import Task
from sim.kernel.sched.locks import SpinLock
from sim.record.metrics import Metrics

KERN_WARNING = 4  # pr_warn, and printk without a level (CONFIG_MESSAGE_LOGLEVEL_DEFAULT=4)
BITS_PER_CHAR = 10  # 8N1: start bit, 8 data bits, stop bit
WARN_ALLOC_LINE_BYTES = 128  # "<comm>: page allocation failure: order:0, mode:...,mems_allowed=0"
DUMP_STACK_BYTES = 1315  # the split's call chain from alloc_vmap_area <- copy_process
MEMINFO_NODE_BYTES = 690  # "Mem-Info:", the vmstat record, the node line, the page totals
MEMINFO_ZONE_BYTES = 473  # per populated zone: its line, lowmem_reserve[], its free areas


def warn_alloc_bytes(zones: int, show_mem: bool) -> int:
    """Console bytes of one warn_alloc report on a node with ``zones`` populated zones,
    with the Mem-Info block if ``show_mem`` (it has its own ratelimit)."""
    nbytes = WARN_ALLOC_LINE_BYTES + DUMP_STACK_BYTES
    if show_mem:
        nbytes += MEMINFO_NODE_BYTES + MEMINFO_ZONE_BYTES * zones
    return nbytes


def vmap_warn_bytes(size: int) -> int:
    """Console bytes of ``alloc_vmap_area``'s overflow warning (mm/vmalloc.c 5.2)."""
    return len(f"vmap allocation for size {size} failed: use vmalloc=<size> to increase size") + 2


class Console:
    """The serial console printk writes to, shared by the CPUs.

    ``baud``: the line rate in bits per second (0: no serial console, printk costs
    nothing); ``loglevel``: ``console_loglevel``, a record of a lower level is written.
    """

    __slots__ = ("busy_until", "bytes_per_s", "env", "loglevel", "metrics", "owed")

    def __init__(self, env: eventloop.Environment, metrics: Metrics, baud: int = 0, loglevel: int = 7) -> None:
        if baud < 0:
            raise ValueError(f"console_baud must be 0 (no serial console) or positive, not {baud}")
        self.env = env
        self.metrics = metrics
        self.bytes_per_s = baud / BITS_PER_CHAR
        self.loglevel = loglevel
        self.owed: dict[int, int] = {}  # CPU -> bytes its printk calls queued that it has not written yet
        self.busy_until = 0.0  # when the line is done with everything queued so far

    def shows(self, level: int = KERN_WARNING) -> bool:
        """A record of ``level`` goes out on the serial line (``!suppress_message_printing``)."""
        return self.bytes_per_s > 0 and level < self.loglevel

    def printk(self, cpu: int, nbytes: int, level: int = KERN_WARNING) -> None:
        """``cpu`` printed ``nbytes`` of console text at ``level``: it owes the writing time."""
        if nbytes > 0 and self.shows(level):
            self.owed[cpu] = self.owed.get(cpu, 0) + nbytes
            self.metrics.add("console_bytes", nbytes)

    def write_out(self, task: Task, held: SpinLock | None = None) -> Iterable[Any]:
        """The time ``task``'s CPU owes the console, spent now (``yield from``), with
        ``held`` (a lock the task holds) held throughout; the time the lock's waiters
        waited meanwhile is counted.  Nothing owed: an empty tuple (a hot path)."""
        if task.cpu not in self.owed:
            return ()
        return self._write(task, held)

    def _write(self, task: Task, held: SpinLock | None) -> Generator[Any, Any, None]:
        nbytes = self.owed.pop(task.cpu)
        env = self.env
        start = env.now
        seconds = max(0.0, self.busy_until - start) + nbytes / self.bytes_per_s
        self.busy_until = start + seconds
        yield env.timeout(seconds)  # the CPU stays busy with this task: interrupts off per record
        metrics = self.metrics
        metrics.add_time("console", seconds)
        if held is not None:
            waited = held.waited_since(start)
            if waited > 0:
                metrics.add_time("console_lock_wait:" + held.name, waited)
