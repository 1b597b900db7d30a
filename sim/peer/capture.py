"""What the guest printed, as vmsim's own tables.

The agent's data port carries framed sections (``@@vmsim begin NAME`` ...
``@@vmsim end NAME``), sample lines (``@@S``: one zone of /proc/zoneinfo;
``@@V``: chosen /proc/vmstat counters) that the sampler may interleave with any
section, and ``@@vmsim info`` lines.  :func:`parse_guest` splits them;
:func:`runs_row`, :func:`timeseries_rows` and :func:`dmesg_events` turn them
into a runs.parquet row (every column that can be measured; the others None,
never zero), timeseries rows (free pages, watermarks and boost per zone,
reclaim and pool counters) and events (page allocation failures with their
mode and call chain, OOM kills, vmap failures, BUGs).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from sim.kernel.mm.gfp import Gfp
from sim.record.results import RUN_COLUMNS

ERRNO_ENOMEM, ERRNO_EBUSY = 12, 16
PAGEBLOCK_ORDER = 9  # x86_64: a fallback below it calls boost_watermark (steal_suitable_fallback)
_HIST_ENTRY = re.compile(r"^\{ (.*) \} hitcount:\s+(\d+)")
_HIST_FIELD = re.compile(r"([\w.]+):\s+(.*?)(?=, [\w.]+:|$)")
_DMESG = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")


@dataclass
class Histogram:
    """One hist trigger's table: its trigger text, and (key fields, hitcount) entries."""

    event: str
    trigger: str
    entries: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    dropped: int = 0

    @property
    def filtered(self) -> bool:
        return " if " in self.trigger

    def hits(self, where: Any = None) -> int:
        return sum(n for key, n in self.entries if where is None or where(key))


@dataclass
class GuestOutput:
    """The data port of one boot, split up."""

    sections: dict[str, str] = field(default_factory=dict)
    zone_samples: list[tuple[float, str, list[int]]] = field(default_factory=list)
    vmstat_samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    started: bool = False
    done: bool = False
    garbled: int = 0  # sample lines that did not parse
    kmsg_lost: int = 0  # kernel log records overwritten before the agent read them
    errors: list[str] = field(default_factory=list)


def parse_guest(text: str) -> GuestOutput:
    """Split the data port's text (see the module docstring); tolerant of a guest
    that died midway (the sections it finished are kept)."""
    out = GuestOutput()
    kmsg: list[str] = []
    seen: set[int | None] = set()
    current: str | None = None
    body: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line.startswith(("@@S ", "@@V ")):
            _sample(line, out)
            continue
        if line.startswith("@@K "):
            seq = _kmsg_seq(line)
            if seq is None or seq not in seen:
                seen.add(seq)
                kmsg.append(_kmsg_line(line[4:]))
            continue
        if line.startswith("@@vmsim begin "):
            current, body = line.split(maxsplit=2)[2], []
        elif line.startswith("@@vmsim end ") and current is not None:
            out.sections[current] = "\n".join(body)
            current = None
        elif line.startswith("@@vmsim info "):
            parts = line.split(maxsplit=3)
            if len(parts) == 4:
                out.info[parts[2]] = parts[3]
        elif line.startswith("@@vmsim error"):
            out.errors.append(line.removeprefix("@@vmsim error").strip())
        elif line == "@@vmsim start":
            out.started = True
        elif line == "@@vmsim done":
            out.done = True
        elif current is not None:
            body.append(line)
    if kmsg:
        out.sections["dmesg"] = "\n".join(kmsg)
        numbers = sorted(s for s in seen if s is not None)
        out.kmsg_lost = (numbers[-1] - numbers[0] + 1 - len(numbers)) if numbers else 0
    return out


def _kmsg_seq(line: str) -> int | None:
    """The sequence number of a ``@@K prio,seq,usec,flags;text`` record (None for a continuation)."""
    head = line[4:].partition(";")[0].split(",")
    return int(head[1]) if len(head) >= 3 and head[1].isdigit() else None


def _sample(line: str, out: GuestOutput) -> None:
    """One ``@@S`` or ``@@V`` line into ``out``; a garbled line is counted and skipped."""
    parts = line.split()
    try:
        if parts[0] == "@@S" and len(parts) == 9:  # boost "-": a kernel whose zoneinfo has no boost line
            values = [-1 if x == "-" else int(x) for x in parts[3:9]]
            out.zone_samples.append((float(parts[1]), parts[2], values))
        elif parts[0] == "@@V" and len(parts) % 2 == 0:
            out.vmstat_samples.append((float(parts[1]), dict(zip(parts[2::2], (int(x) for x in parts[3::2])))))
        else:
            raise ValueError(line)
    except ValueError:
        out.garbled += 1


def _kmsg_line(record: str) -> str:
    """A /dev/kmsg record (``prio,seq,usec,flags;text``, or a continuation line
    that starts with a space) as a dmesg line, ``[seconds] text``."""
    head, sep, text = record.partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3 or not fields[2].isdigit():
        return record
    return f"[{int(fields[2]) / 1e6:12.6f}] {text}"


def parse_kv(text: str) -> dict[str, int]:
    """``name value`` lines (/proc/vmstat) as a dict; other lines are skipped."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _value(text: str) -> Any:
    """A hist key's value: an int (decimal or 0x) where it is one, else the text."""
    text = text.strip()
    try:
        return int(text, 0)
    except ValueError:
        return text


def parse_hists(text: str) -> list[Histogram]:
    """Every histogram in the hist section (``@@hist PATH`` then the hist file,
    which holds one table per trigger on that event)."""
    hists: list[Histogram] = []
    event = ""
    for line in text.splitlines():
        if line.startswith("@@hist "):
            event = line.split("/")[-2]
        elif line.startswith("# trigger info:"):
            trigger = line.removeprefix("# trigger info:").replace("[active]", "").strip()
            hists.append(Histogram(event, trigger))
        elif hists and (m := _HIST_ENTRY.match(line)):
            key = {name: _value(value) for name, value in _HIST_FIELD.findall(m.group(1))}
            hists[-1].entries.append((key, int(m.group(2))))
        elif hists and line.strip().startswith("Dropped:"):
            hists[-1].dropped = int(line.split()[-1])
    return hists


def _signed(value: int) -> int:
    """A hist key printed as an unsigned 64-bit number, as the s64 it was."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _pick(hists: list[Histogram], event: str, filtered: bool | None = None, has: str = "") -> list[Histogram]:
    """The histograms of ``event`` (with or without a filter, with ``has`` in the trigger)."""
    return [h for h in hists if h.event == event and (filtered is None or h.filtered == filtered) and has in h.trigger]


def counter_values(out: GuestOutput) -> dict[str, int | None]:
    """The kernel-call counts of the measured window, from the hist triggers and
    the vmstat difference; None where the guest gave no figure."""
    hists = parse_hists(out.sections.get("hist", ""))
    start = parse_kv(out.sections.get("measure_start", ""))
    end = parse_kv(out.sections.get("measure_end", ""))
    c: dict[str, int | None] = dict.fromkeys(
        ("vmalloc_calls", "vmalloc_calls_fork", "vmalloc_failures", "vmap_ebusy", "forks", "fork_calls",
         "fork_errors", "fork_enomem", "nowait_page_failures", "nowait_page_failures_silent",
         "page_alloc_failures", "split_nowait_attempts", "split_nowait_failures", "vmap_area_allocs_reclaim",
         "preload_fills", "direct_reclaims", "oom_kills", "processes", "fallback_steals", "watermark_boost",
         "children_local", "children_remote")
    )  # fmt: skip
    direct = int(Gfp.DIRECT_RECLAIM)
    nowarn = int(Gfp.NOWARN)
    if ava := _pick(hists, "ava", filtered=False):
        c["vmalloc_calls"] = ava[0].hits()
    if ava_fork := _pick(hists, "ava", filtered=True):
        c["vmalloc_calls_fork"] = ava_fork[0].hits()
    if ava_ret := _pick(hists, "ava_ret"):
        c["vmalloc_failures"] = ava_ret[0].hits()
        c["vmap_ebusy"] = ava_ret[0].hits(lambda k: _signed(k["ret"]) == -ERRNO_EBUSY)
    fork_calls = _pick(hists, "fork")
    fork_ret = _pick(hists, "fork_ret")
    if fork_calls and fork_ret:
        c["fork_calls"] = fork_calls[0].hits()
        c["fork_errors"] = fork_ret[0].hits()
        c["fork_enomem"] = fork_ret[0].hits(lambda k: _signed(k["ret"]) == -ERRNO_ENOMEM)
        c["forks"] = c["fork_calls"] - c["fork_errors"]
    if warn := _pick(hists, "warn"):
        c["page_alloc_failures"] = warn[0].hits()
        c["nowait_page_failures"] = warn[0].hits(lambda k: not k["gfp"] & direct)
        c["nowait_page_failures_silent"] = warn[0].hits(lambda k: not k["gfp"] & direct and k["gfp"] & nowarn)
    allocs = [h for h in hists if h.event.startswith("kmem_cache_alloc") and "ptr == 0" not in h.trigger]
    fails = [h for h in hists if h.event.startswith("kmem_cache_alloc") and "ptr == 0" in h.trigger]
    if allocs:
        c["split_nowait_attempts"] = sum(h.hits(lambda k: not k["gfp_flags"] & direct) for h in allocs)
        c["vmap_area_allocs_reclaim"] = sum(h.hits(lambda k: bool(k["gfp_flags"] & direct)) for h in allocs)
        c["split_nowait_failures"] = sum(h.hits(lambda k: not k["gfp_flags"] & direct) for h in fails)
        if c["vmalloc_calls"] is not None:
            c["preload_fills"] = max(c["vmap_area_allocs_reclaim"] - c["vmalloc_calls"], 0)
    if extfrag := _pick(hists, "mm_page_alloc_extfrag"):
        c["fallback_steals"] = extfrag[0].hits()
        c["watermark_boost"] = extfrag[0].hits(lambda k: k["fallback_order"] < PAGEBLOCK_ORDER)
    if placed := _pick(hists, "sched_wakeup_new"):  # the parent's CPU is "cpu" (4.17+) or "common_cpu"
        here = lambda k: k.get("cpu", k.get("common_cpu"))  # noqa: E731
        c["children_local"] = placed[0].hits(lambda k: here(k) == k["target_cpu"])
        c["children_remote"] = placed[0].hits(lambda k: here(k) != k["target_cpu"])
    if start and end:
        stalls = [k for k in end if k.startswith("allocstall_")]
        c["direct_reclaims"] = sum(end[k] - start.get(k, 0) for k in stalls)
        c["oom_kills"] = end.get("oom_kill", 0) - start.get("oom_kill", 0)
        c["processes"] = end.get("processes", 0) - start.get("processes", 0)
    return c


def measure_window(out: GuestOutput) -> tuple[float | None, float | None]:
    """Uptimes at the start and the end of the measured window."""

    def first(name: str) -> float | None:
        lines = out.sections.get(name, "").split()
        try:
            return float(lines[0])
        except (IndexError, ValueError):
            return None

    return first("measure_start"), first("measure_end")


def timeseries_rows(out: GuestOutput, run_id: str) -> list[dict[str, Any]]:
    """One row per sample inside the measured window: time from its start, and per
    zone free/boost/min/low/high (zones with managed pages), the total free,
    kswapd's reclaimed pages (cumulative) and the pools."""
    t0, t1 = measure_window(out)
    if t0 is None:
        return []
    end = t1 if t1 is not None else float("inf")
    rows: dict[float, dict[str, Any]] = defaultdict(dict)
    for t, zone, (free, boost, wmin, low, high, managed) in out.zone_samples:
        if managed <= 0 or not t0 <= t <= end:
            continue
        row = rows[t]  # zoneinfo's min/low/high include the boost (min_wmark_pages); keep them apart
        if boost < 0:  # zoneinfo without a boost line (5.2): marks as printed, boost unknown
            boost, row[f"{zone}_boost"] = 0, None
        else:
            row[f"{zone}_boost"] = boost
        row.update({f"{zone}_free": free, f"{zone}_min": wmin - boost})
        row.update({f"{zone}_low": low - boost, f"{zone}_high": high - boost})
        row["free"] = row.get("free", 0) + free
    names = {
        "pgsteal_kswapd": "kswapd_reclaimed", "nr_anon_pages": "anon", "nr_shmem": "shmem",
        "nr_slab_unreclaimable": "slab_unreclaimable", "nr_page_table_pages": "pagetables",
        "nr_free_pages": "nr_free_pages", "oom_kill": "oom_kills", "pgscan_direct": "pgscan_direct",
        "nr_slab_reclaimable": "slab_reclaimable",
    }  # fmt: skip
    for t, values in out.vmstat_samples:
        if t not in rows:
            continue
        row = rows[t]
        for key, name in names.items():
            if key in values:
                row[name] = values[key]
        if "nr_kernel_stack" in values:
            row["kernel_stack"] = values["nr_kernel_stack"] // 4  # KiB in /proc/vmstat
        if "nr_file_pages" in values:
            row["file"] = values["nr_file_pages"] - values.get("nr_shmem", 0)
        row["allocstall"] = sum(v for k, v in values.items() if k.startswith("allocstall_"))
    return [{"run_id": run_id, "time": round(t - t0, 3), **rows[t]} for t in sorted(rows)]


def _chain(lines: list[str], start: int) -> tuple[str, int | None]:
    """The call chain after a failure report (``Call Trace:`` lines), innermost
    first as ``a <- b <- c``, and the CPU from the ``CPU: N PID:`` line."""
    frames: list[str] = []
    cpu = None
    for line in lines[start + 1 : start + 60]:
        m = _DMESG.match(line)
        text = m.group(2) if m else line
        if cpu is None and (c := re.match(r"CPU: (\d+) PID:", text.strip())):
            cpu = int(c.group(1))
        if "Mem-Info" in text or "Out of memory" in text or "page allocation failure" in text:
            break
        f = re.match(r"\s*(?:\? )?([A-Za-z_][\w.]*)\+0x", text.strip())
        if f and not text.strip().startswith("?"):
            frames.append(f.group(1).split(".")[0])
    return " <- ".join(frames[:12]), cpu


def dmesg_events(dmesg: str, run_id: str, t0: float | None) -> list[dict[str, Any]]:
    """Failure events from the guest's kernel log, with times from the start of
    the measured window: page allocation failures (``split_nowait_failure`` when
    the chain holds alloc_vmap_area and the mode has no direct reclaim, else
    ``page_alloc_failure``), OOM kills, vmap -EBUSY, BUGs."""
    lines = dmesg.splitlines()
    events: list[dict[str, Any]] = []
    base = t0 or 0.0
    for i, line in enumerate(lines):
        m = _DMESG.match(line)
        if not m:
            continue
        t, text = float(m.group(1)) - base, m.group(2)
        if fail := re.match(r"(\S+): page allocation failure: order:(\d+), mode:(0x[0-9a-f]+)\(([^)]*)\)", text):
            chain, cpu = _chain(lines, i)
            mode = int(fail.group(3), 16)
            nowait = not mode & int(Gfp.DIRECT_RECLAIM)
            kind = "split_nowait_failure" if nowait and "alloc_vmap_area" in chain else "page_alloc_failure"
            event = {"run_id": run_id, "kind": kind, "time": t, "task": fail.group(1), "order": int(fail.group(2))}
            events.append({**event, "gfp": fail.group(3), "mode": fail.group(4), "chain": chain, "cpu": cpu})
        elif kill := re.match(r"Out of memory: Killed process (\d+) \(([^)]*)\).*?anon-rss:(\d+)kB", text):
            events.append({"run_id": run_id, "kind": "oom_kill", "time": t, "pid": int(kill.group(1)),
                           "victim": kill.group(2), "anon": int(kill.group(3)) // 4})  # fmt: skip
        elif "vmap allocation for size" in text and "failed" in text:
            events.append({"run_id": run_id, "kind": "vmap_ebusy", "time": t, "message": text})
        elif text.startswith("BUG: sleeping function called from invalid context"):
            events.append({"run_id": run_id, "kind": "bug_sleeping_in_atomic", "time": t, "message": text})
        elif text.startswith("WARNING:") and "vmalloc" in text:
            events.append({"run_id": run_id, "kind": "vmalloc_warning", "time": t, "message": text})
    return events


def runs_row(
    out: GuestOutput, base: dict[str, Any], samples: list[dict[str, Any]], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """The runs.parquet row: every RUN_COLUMNS column, measured ones filled, the
    rest None (the model's internals a guest cannot show: fit types, preload
    misses, purges, time in direct reclaim)."""
    row: dict[str, Any] = dict.fromkeys(RUN_COLUMNS)
    row.update(base)
    c = counter_values(out)
    for key in ("vmalloc_calls", "vmalloc_failures", "split_nowait_attempts", "split_nowait_failures",
                "preload_fills", "vmap_ebusy", "forks", "fork_enomem", "nowait_page_failures",
                "direct_reclaims", "oom_kills"):  # fmt: skip
        row[key] = c[key]
    t0, t1 = measure_window(out)
    row["sim_seconds"] = (t1 - t0) if t0 is not None and t1 is not None else None
    if samples:
        row["min_free_pages"] = min(s["free"] for s in samples if "free" in s)
        row["seconds_below_min"] = _seconds_below_min(samples)
    row["sleep_in_atomic_bugs"] = sum(e["kind"] == "bug_sleeping_in_atomic" for e in events)
    row["guest_kmsg_lost"] = out.kmsg_lost  # events.parquet misses what the log lost
    if "swap" in out.sections:  # /proc/swaps after the agent set up zram: 0 means swapon failed
        swaps = [line.split() for line in out.sections["swap"].splitlines() if line.startswith("/dev/")]
        row["guest_swap_kib"] = sum(int(f[2]) for f in swaps if len(f) > 2 and f[2].isdigit())
    row["guest_samples_garbled"] = out.garbled
    for key, value in c.items():
        if key not in row:
            row[f"guest_{key}"] = value
    return row


def _seconds_below_min(samples: list[dict[str, Any]]) -> float:
    """Sampled time during which every zone was at or below its (boosted) min: the
    state in which a GFP_NOWAIT request fails (lowmem_reserve aside)."""
    total = 0.0
    for prev, cur in pairwise(samples):
        zones = [k[: -len("_free")] for k in cur if k.endswith("_free") and k != "nr_free"]
        if zones and all(cur[f"{z}_free"] <= cur[f"{z}_min"] + (cur[f"{z}_boost"] or 0) for z in zones):
            total += cur["time"] - prev["time"]
    return total
