"""Reading a real machine's /proc/zoneinfo (and dmesg) to calibrate the model's zones.

The kernel computes min_free_kbytes, the watermarks and lowmem_reserve once at
boot (``init_per_zone_wmark_min``, a postcore initcall in 6.1), *before* the
initrd and the kernel's init sections are freed; /proc/zoneinfo shows the
managed pages *after* those frees.  So the managed pages the formulas saw are
the final ones less what dmesg reports as freed later ("Freeing initrd memory",
"Freeing unused kernel image ... memory", "Freeing unused decrypted memory").
Without a dmesg, the lowmem_reserve ("protection") values, which are the
boot-time managed pages of the zones above divided by the ratio, bound it.

:func:`calibrated_zones` returns the boot-time managed pages per zone, which
``MemoryParams.zones`` takes, and how many pages were freed after boot, which
``MemoryParams.freed_after_boot`` adds back for the run.  Nothing here copies a
watermark from the file: the model recomputes them, and ``vmsim machine
--zoneinfo`` shows both side by side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sim.schema.errors import InputError

MODEL_ZONES = ("DMA", "DMA32", "Normal")
LOWMEM_RESERVE_RATIO = 256  # DMA's and DMA32's sysctl_lowmem_reserve_ratio

# frees that happen after init_per_zone_wmark_min (initcalls, then kernel_init)
_LATE_FREE = re.compile(
    r"Freeing (?:initrd memory|unused kernel image \([^)]*\) memory|unused kernel memory"
    r"|unused decrypted memory|unused kernel image memory): (\d+)K"
)


@dataclass
class ZoneRecord:
    """One zone of /proc/zoneinfo: the values vmsim can compare with its own."""

    name: str
    free: int = 0
    boost: int = 0
    min: int = 0  # base marks: zoneinfo prints them with the boost added; the parser takes it off
    low: int = 0
    high: int = 0
    spanned: int = 0
    present: int = 0
    managed: int = 0
    protection: tuple[int, ...] = ()
    pcp_high: int | None = None  # CPU 0's pageset
    pcp_batch: int | None = None
    stat_threshold: int | None = None
    cpus: int = 0  # pagesets listed (one per possible CPU)
    counters: dict[str, int] = field(default_factory=dict)


def parse_zoneinfo(text: str, source: str = "zoneinfo") -> list[ZoneRecord]:
    """Every zone in ``text`` (the format of /proc/zoneinfo, 4.x to 6.x), in file order;
    an InputError naming ``source`` and the line if it is not zoneinfo."""
    zones: list[ZoneRecord] = []
    zone: ZoneRecord | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        head = re.match(r"Node\s+(\d+),\s+zone\s+(\S+)", line)
        if head:
            zone = ZoneRecord(head.group(2))
            zones.append(zone)
            continue
        if zone is None:
            continue
        words = line.split()
        try:
            if line.startswith("  pages free"):
                zone.free = int(words[2])
            elif words[:1] == ["protection:"]:
                zone.protection = tuple(int(x) for x in re.findall(r"\d+", line))
            elif len(words) == 2 and words[0] in ("boost", "min", "low", "high", "spanned", "present", "managed"):
                setattr(zone, words[0], int(words[1]))
            elif len(words) == 2 and words[0] in ("high:", "batch:") and zone.pcp_batch is None:
                if words[0] == "high:":
                    zone.pcp_high = int(words[1])
                else:
                    zone.pcp_batch = int(words[1])
            elif words[:1] == ["cpu:"]:
                zone.cpus += 1
            elif line.startswith("  vm stats threshold:") and zone.stat_threshold is None:
                zone.stat_threshold = int(words[-1])
            elif len(words) == 2 and words[0].startswith("nr_") and words[1].isdigit():
                zone.counters[words[0]] = int(words[1])
        except ValueError:
            raise InputError(source, lineno, f"expected a number in {line.strip()!r}") from None
    if not zones:
        raise InputError(source, None, "expected /proc/zoneinfo text ('Node 0, zone DMA32' lines); found none")
    names = [z.name for z in zones]
    if len(set(names)) != len(names):
        raise InputError(source, None, "a zone appears twice (a NUMA machine?): vmsim models one node")
    for z in zones:  # min/low/high include the boost (min_wmark_pages, 5.0+): keep the base marks
        z.min, z.low, z.high = z.min - z.boost, z.low - z.boost, z.high - z.boost
    return zones


def read_zoneinfo(path: Path) -> list[ZoneRecord]:
    """:func:`parse_zoneinfo` of a file; a missing or unreadable file is an InputError."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError(str(path), None, f"cannot read zoneinfo: {err.strerror}") from None
    return parse_zoneinfo(text, str(path))


def read_dmesg(path: Path) -> str:
    """A saved kernel log's text; a missing or unreadable file is an InputError."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError as err:
        raise InputError(str(path), None, f"cannot read dmesg: {err.strerror}") from None


def late_freed_kib(dmesg: str) -> int:
    """KiB that dmesg says the kernel freed after the watermarks were set up."""
    return sum(int(m.group(1)) for m in _LATE_FREE.finditer(dmesg))


@dataclass(frozen=True)
class Calibration:
    """Boot-time managed pages per model zone, and what was freed after boot."""

    zones: tuple[tuple[str, int], ...]  # (name, managed at boot), DMA to Normal, populated only
    freed_after_boot: int  # pages, returned to the zone that held them (see calibrated_zones)
    freed_zone: str
    method: str  # "dmesg" or "protection"


def machine_ram(records: list[ZoneRecord]) -> int:
    """Bytes of RAM the zones hold (present pages of DMA, DMA32 and Normal)."""
    from sim.kernel.mm.zones import PAGE_SHIFT

    return sum(z.present for z in records if z.name in MODEL_ZONES) << PAGE_SHIFT


def populated(records: list[ZoneRecord]) -> list[ZoneRecord]:
    """The model's zones (DMA, DMA32, Normal) that manage any pages."""
    return [z for z in records if z.name in MODEL_ZONES and z.managed > 0]


def calibrated_zones(records: list[ZoneRecord], dmesg: str | None = None) -> Calibration:
    """The managed pages the boot-time formulas saw.

    With ``dmesg``: final managed less the late frees, taken off the zone that
    holds the kernel image and the initrd (DMA32 below 4 GiB; Normal on a
    machine without DMA32).  Without it: the late frees are estimated from the
    protection that the zone below keeps against the zone (boot managed // 256),
    at the middle of its 256-page step; exact to within 128 pages.
    """
    zones = populated(records)
    if not zones:
        raise InputError("zoneinfo", None, "no populated DMA, DMA32 or Normal zone")
    names = [z.name for z in zones]
    freed_zone = "DMA32" if "DMA32" in names else names[-1]
    index = names.index(freed_zone)
    final = zones[index].managed
    if dmesg is not None and late_freed_kib(dmesg):
        freed, method = late_freed_kib(dmesg) // 4, "dmesg"
    elif index > 0 and len(zones[index - 1].protection) > MODEL_ZONES.index(freed_zone):
        step = zones[index - 1].protection[MODEL_ZONES.index(freed_zone)]  # boot managed // 256
        boot = step * LOWMEM_RESERVE_RATIO + LOWMEM_RESERVE_RATIO // 2
        freed, method = max(final - boot, 0), "protection"
    else:
        freed, method = 0, "none"
    boot_zones = tuple((z.name, z.managed - (freed if z.name == freed_zone else 0)) for z in zones)
    return Calibration(boot_zones, freed, freed_zone, method)


def check_zones(
    records: list[ZoneRecord], min_free_kbytes: int | None, dmesg: str | None, profile_name: str, thp: bool = True
) -> dict[str, Any]:
    """The model's zone table from the file's managed pages, beside the file's own
    values: per zone (managed, min, low, high, lowmem_reserve, pcp batch and high,
    vmstat threshold) ``model``, ``real`` and ``equal``; and the same for a model
    that is not calibrated (its managed-pages law for the same RAM)."""
    from sim.kernel.mm.zones import MemoryParams, build_zones
    from sim.kernel.profile import get_profile

    cal = calibrated_zones(records, dmesg)
    zones = populated(records)
    ncpus = max(zones[0].cpus, 1)
    ram = machine_ram(records)
    profile = get_profile(profile_name)
    params = MemoryParams(zones=cal.zones, freed_after_boot=cal.freed_after_boot, freed_zone=cal.freed_zone)
    try:
        table = build_zones(ram, ncpus, thp, profile, params)
        overridden = False
        if min_free_kbytes is not None and min_free_kbytes != table.min_free_kbytes:
            overridden = True  # set by a user or a distribution: the kernel's marks follow it
            table = build_zones(ram, ncpus, thp, profile, replace(params, min_free_kbytes=min_free_kbytes))
        plain = build_zones(ram, ncpus, thp, profile)
    except ValueError as err:
        raise InputError("zoneinfo", None, f"cannot model these zones: {err}") from None
    return {
        "profile": profile_name,
        "cpus": ncpus,
        "ram_bytes": ram,
        "calibration": {
            "method": cal.method,
            "freed_after_boot": cal.freed_after_boot,
            "zone": cal.freed_zone,
            "boot_managed": dict(cal.zones),
        },
        "min_free_kbytes": {
            "model": table.min_free_kbytes,
            "real": min_free_kbytes,
            "overridden": overridden,
            "uncalibrated": plain.min_free_kbytes,
        },
        "zones": [_zone_rows(z, table, plain) for z in zones],
    }


def _zone_rows(real: ZoneRecord, table: Any, plain: Any) -> dict[str, Any]:
    """One zone's values, model (calibrated and not) against the file."""

    def of(t: Any) -> Any:
        return next((z for z in t.zones if z.name == real.name), None)

    model, uncal = of(table), of(plain)
    fields = {
        "managed": (real.managed, lambda z: z.managed),
        "min": (real.min, lambda z: z.min),
        "low": (real.low, lambda z: z.low),
        "high": (real.high, lambda z: z.high),
        "pcp_batch": (real.pcp_batch, lambda z: z.pcp_batch),
        "pcp_high": (real.pcp_high, lambda z: z.pcp_high),
        "stat_threshold": (real.stat_threshold, lambda z: z.stat_threshold),
    }
    for j, name in enumerate(MODEL_ZONES):
        if j < len(real.protection):
            fields[f"protection_{name}"] = (real.protection[j], lambda z, j=j: z.lowmem_reserve[j])
    rows = {}
    for key, (value, get) in fields.items():
        m = get(model) if model is not None else None
        u = get(uncal) if uncal is not None else None
        rows[key] = {"real": value, "model": m, "equal": m == value, "uncalibrated": u}
    return {"zone": real.name, "values": rows}
