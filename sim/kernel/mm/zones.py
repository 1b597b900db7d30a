"""The memory layout of the simulated machine and its boot-time watermark tables.

Everything here is pure arithmetic done once at boot (no SimPy, no randomness):

* :func:`managed_pages_model`: pages per zone that the buddy allocator manages,
  for a QEMU/KVM x86_64 guest of a given RAM size (see its docstring for the
  model and its calibration);
* :func:`init_per_zone_wmark_min` (sqrt rule), :func:`set_recommended_min_free_kbytes`
  (the THP rule), :func:`setup_per_zone_wmarks`, :func:`setup_per_zone_lowmem_reserve`,
  :func:`zone_batchsize` and the vmstat thresholds, as Linux 5.3 computes them;
* :func:`build_zones`: the whole table, which ``vmsim machine`` prints and
  :class:`sim.kernel.mm.page_alloc.PageAllocator` boots from.

The run-time parameters of the page allocator and reclaim live in
:class:`MemoryParams` (defaults: the 256 MB guest of the 2019 report), and the ``ALLOC_*``
flags of mm/internal.h are defined here, below watermarks.py which tests them
(:mod:`sim.kernel.mm.internal` holds the alloc context and the zone operations).
This module was split off page_alloc.py to keep both under 400 lines.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, Final

from sim.kernel.profile import KernelProfile

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PAGEBLOCK_NR_PAGES: Final = 512  # pageblock_order 9 on x86_64
SWAP_CLUSTER_MAX: Final = 32
MIGRATE_PCPTYPES: Final = 3

ZONE_DMA: Final = 0
ZONE_DMA32: Final = 1
ZONE_NORMAL: Final = 2
ZONE_NAMES = ("DMA", "DMA32", "Normal")
WMARK_MIN: Final = 0
WMARK_LOW: Final = 1
WMARK_HIGH: Final = 2

# alloc_flags (mm/internal.h 5.3); 6.3 renamed HARDER/HIGH as NON_BLOCK/MIN_RESERVE
ALLOC_WMARK_MIN: Final = 0
ALLOC_WMARK_LOW: Final = 1
ALLOC_WMARK_HIGH: Final = 2
ALLOC_WMARK_MASK: Final = 0x03
ALLOC_NO_WATERMARKS: Final = 0x04
ALLOC_OOM: Final = 0x08
ALLOC_HARDER: Final = 0x10
ALLOC_NON_BLOCK: Final = 0x10
ALLOC_HIGH: Final = 0x20
ALLOC_MIN_RESERVE: Final = 0x20
ALLOC_CPUSET: Final = 0x40
ALLOC_NOFRAGMENT: Final = 0x100  # 5.0 (6bb154504f8b): steal only whole pageblocks
ALLOC_KSWAPD: Final = 0x200
ALLOC_HIGHATOMIC: Final = 0x400  # 6.3 (its own bit here)
ALLOC_RESERVES: Final = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM
PAGE_ALLOC_COSTLY_ORDER: Final = 3
MAX_RECLAIM_RETRIES: Final = 16

MIB: Final = 1 << 20
GIB: Final = 1 << 30

# --- the managed-pages model (QEMU/KVM x86_64 guest, i440fx) ----------------------
# DMA: pfn 1..4095 minus the BIOS/real-mode reservations; the v5.2.1 guest's /proc/zoneinfo
# shows the same (results/peer/rezki-2019-v52-unpressured/guest/r000/zoneinfo.txt)
DMA_MANAGED: Final = 3977
DMA32_LOW_RESERVED: Final = 336  # firmware pages at the top of RAM below the PCI hole
# (RAM pages, pages reserved at boot) at 256 MiB, 1, 4, 16 GiB: an estimate (see managed_pages_model)
RESERVED_ANCHORS: tuple[tuple[int, int], ...] = (
    (65_536, 7_840),
    (262_144, 10_348),
    (1_048_576, 7_480),
    (4_194_304, 118_152),
)
SMALL_KERNEL_RESERVED: Final = 6_816  # below 256 MiB: kernel image + early allocations ...
SMALL_MEMMAP_DIVISOR: Final = 64  # ... + one 64-byte struct page per 4 KiB page


@dataclass(frozen=True)
class ReclaimRates:
    """kswapd reclaim rates in pages/s at a full CPU: estimates, clean cache scaled down from
    Lumpkin's 2018 kswapd figures (~2e6 pages/s on a 52-core Xeon; lore, "vmscan: Support
    multiple kswapd threads per node")."""

    file_clean: float = 2e5
    file_mapped: float = 2e4
    slab: float = 5e4
    file_dirty: float = 5e3  # (estimate) writeback-bound; kswapd only, never direct reclaim


@dataclass(frozen=True)
class DirectReclaimLatency:
    """One ``try_to_free_pages`` call (mm/vmscan.c): lognormal CPU time, or with
    probability p_stall a ``stall_ms`` x k sleep, k uniform in 1..stall_k_max.

    p_stall = p_stall_max x scarcity, scarcity = 1 - reclaimable / (stall_knee_high x
    sum of the zones' high marks), clipped to [0, 1]: ~0 with plenty of cache,
    p_stall_max when the LRUs are nearly empty, 0 when they are empty (nothing to
    isolate, so no too_many_isolated sleep).  An estimate, shaped after bcc's
    tools/drsnoop_example.txt (0.03-0.6 ms, outliers at multiples of the 100 ms sleeps)."""

    median_ms: float = 0.2
    sigma: float = 0.8
    p_stall_max: float = 0.2
    stall_ms: float = 100.0
    stall_k_max: int = 3
    stall_knee_high: float = 4.0


@dataclass(frozen=True)
class OomKillLatency:
    """Time from the kill to the victim's memory being freed (exit or oom_reaper):
    lognormal with this median and 95th percentile (an estimate, not measured)."""

    median_ms: float = 5.0
    p95_ms: float = 100.0

    @property
    def sigma(self) -> float:
        return math.log(self.p95_ms / self.median_ms) / 1.6448536269514722


@dataclass(frozen=True)
class MemoryParams:
    """Page allocator and reclaim parameters; defaults are for the 256 MB, 4-CPU, no-swap
    KVM guest of the 2019 report (lore 20190606120411.8298-3-urezki@gmail.com), with the
    kernel's sysctl defaults; the rates and the latencies are estimates."""

    min_free_kbytes: int | None = None  # None: sqrt rule, then the THP rule
    zones: tuple[tuple[str, int], ...] | None = None  # explicit (name, managed pages at boot), low to high
    freed_after_boot: int = 0  # pages freed after the watermarks were set (initrd, init sections)
    freed_zone: str = "DMA32"  # the zone they return to (the one holding the kernel image and initrd)
    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000  # 0 disables boosting
    lowmem_reserve_ratio: tuple[int, int, int] = (256, 256, 32)
    highatomic_pages: int = 0  # initial high-atomic reserve (free pages) of the preferred zone; the kernel has none
    vmstat_drift: bool = True  # False: every NR_FREE_PAGES change is folded at once
    stat_interval_s: float | None = 1.0  # vmstat_update folding all CPUs; None: never
    pcp_batch: int | None = None  # None: zone_batchsize()
    pcp_high: int | None = None  # None: 6 x batch
    swap_bw_pages_s: float | None = None  # None: no swap; else anon/shmem reclaim rate
    reclaim_rates: ReclaimRates = field(default_factory=ReclaimRates)
    kswapd_cpu_share: float | None = None  # None: 1 / (1 + tasks on the least busy CPU)
    kswapd_empty_pass_s: float = 1e-4  # (estimate) a reclaim pass that finds nothing
    direct_reclaim_latency: DirectReclaimLatency = field(default_factory=DirectReclaimLatency)
    pcp_drain_ms: float = 0.2  # (estimate) drain_all_pages
    oom_kill_latency: OomKillLatency = field(default_factory=OomKillLatency)
    oom_report_ms: float = 1.0  # (estimate) dump_header under oom_lock
    refault_delay_ms: tuple[float, float] = (5.0, 50.0)  # uniform
    hz: int = 250
    warn_ratelimit_s: float = 5.0  # DEFAULT_RATELIMIT_INTERVAL
    warn_ratelimit_burst: int = 10  # DEFAULT_RATELIMIT_BURST
    # The serial console printk writes warn_alloc's report to (sim/kernel/printk.py), paid by
    # the failing task, under the vmap lock for a failed split.  console_baud: bits/s, 8N1;
    # 115200 (11,520 bytes/s) is the usual console=ttyS0,115200 (a bare console=ttyS0 is
    # 9600n8: Documentation/admin-guide/serial-console.rst); 0: no serial console (VGA,
    # netconsole).  console_loglevel: records below it reach the console.  3 is loglevel=3,
    # the command line vmsim peer boots its guests with (sim/peer/translation.py): there the
    # KERN_WARNING report stays in the log buffer (the 5.2 guest's console.log has none of
    # its 7 reports) and costs nothing.  The kernel's own default is 7
    # (CONFIG_CONSOLE_LOGLEVEL_DEFAULT), 4 with "quiet": set 7 for a guest booted without either.
    console_baud: int = 115200
    console_loglevel: int = 3


@dataclass(frozen=True)
class ZoneInfo:
    """One zone's boot-time values, as /proc/zoneinfo shows them."""

    idx: int
    name: str
    managed: int
    min: int
    low: int
    high: int
    lowmem_reserve: tuple[int, ...]  # indexed by classzone (zone type) 0..2
    max_boost: int
    pcp_batch: int
    pcp_high: int
    stat_threshold: int  # calculate_normal_threshold
    pressure_threshold: int  # calculate_pressure_threshold (used only with a drift mark)
    percpu_drift_mark: int  # 0: none


@dataclass(frozen=True)
class ZoneTable:
    """The machine's zones (populated ones, low to high) and the global values."""

    ram_bytes: int
    ncpus: int
    kernel: str
    min_free_kbytes: int
    sqrt_min_free_kbytes: int
    thp_requested: bool
    thp_enabled: bool  # after hugepage_init's 512 MB test
    zones: tuple[ZoneInfo, ...]

    @property
    def managed(self) -> int:
        return sum(z.managed for z in self.zones)


def fls(x: int) -> int:
    """Find last set bit, 1-based (``fls``)."""
    return int(x).bit_length()


def _interp_reserved(ram_pages: int) -> int:
    anchors = RESERVED_ANCHORS
    if ram_pages <= anchors[0][0]:
        return SMALL_KERNEL_RESERVED + ram_pages // SMALL_MEMMAP_DIVISOR
    for (x0, y0), (x1, y1) in pairwise(anchors):
        if ram_pages <= x1:
            return y0 + (y1 - y0) * (ram_pages - x0) // (x1 - x0)
    (x0, y0), (x1, y1) = anchors[-2], anchors[-1]
    return y1 + (y1 - y0) * (ram_pages - x1) // (x1 - x0)


def managed_pages_model(ram_bytes: int) -> list[tuple[str, int]]:
    """Managed pages per populated zone of a QEMU/KVM x86_64 guest (i440fx).

    Spans: DMA is pfn 0-4095 (16 MiB), DMA32 up to 4 GiB, Normal above.  QEMU's
    i440fx puts RAM below 4 GiB up to 3.5 GiB; a larger guest gets 3 GiB there and
    the rest above 4 GiB (the PCI hole), so from 3.5 GiB on Normal holds RAM - 3 GiB.
    Managed = span - pages reserved at boot (kernel image, memmap, early
    allocations).  DMA keeps 3,977 pages; DMA32 below the hole keeps 336 firmware
    pages when Normal exists; the rest of the reservation comes off the top zone,
    as memblock allocates top-down.

    How many pages are reserved is calibrated, not derived, to managed counts that
    are themselves estimates (256 MiB: 57.6k, 1 GiB: 251.7k, 4 GiB: 1.04M, 16 GiB: 4.08M)
    that need 7,840 / 10,348 / 7,480 / 118,152 reserved pages.  No single law of
    "kernel + 64 bytes of memmap per page" fits all four: it fits 256 MiB and 1 GiB
    (6,816 + RAM/64), but would reserve ~23k pages at 4 GiB, not 7.5k.  So the
    reservation is interpolated linearly between those anchors (below 256 MiB:
    6,816 + RAM/64; above 16 GiB: the 4-16 GiB slope).  Pass explicit zone sizes
    (``MemoryParams.zones``) to model a specific machine's /proc/zoneinfo.
    """
    ram_pages = ram_bytes >> PAGE_SHIFT
    if ram_pages < 2 * 4096:
        raise ValueError(f"RAM of {ram_bytes} bytes is too small to model (need at least 32 MiB)")
    below_4g = ram_pages if ram_pages < (3584 * MIB) >> PAGE_SHIFT else (3 * GIB) >> PAGE_SHIFT
    spans = [4096, below_4g - 4096, ram_pages - below_4g]
    reserved = _interp_reserved(ram_pages)
    managed = [DMA_MANAGED, spans[1], spans[2]]
    if spans[2] > 0:
        managed[1] -= DMA32_LOW_RESERVED
        reserved -= DMA32_LOW_RESERVED
    for idx in (2, 1):  # top-down
        take = min(reserved, managed[idx])
        managed[idx] -= take
        reserved -= take
    return [(ZONE_NAMES[i], managed[i]) for i in range(3) if managed[i] > 0]


def init_per_zone_wmark_min(lowmem_pages: int) -> int:
    """min_free_kbytes by the sqrt rule, clamped to [128, 65536] (``init_per_zone_wmark_min``,
    5.3).  At that point no watermark is set, so lowmem = all managed pages."""
    lowmem_kbytes = lowmem_pages * (PAGE_SIZE >> 10)
    return min(max(math.isqrt(lowmem_kbytes * 16), 128), 65536)


def set_recommended_min_free_kbytes(nr_zones: int, free_buffer_pages: int) -> int:
    """The THP recommendation in kB (``set_recommended_min_free_kbytes``, mm/khugepaged.c
    5.3): 2 + 3x3 pageblocks per zone up to Normal, capped at 5 % of lowmem above
    the high marks (``nr_free_buffer_pages``).  The caller keeps the larger value."""
    recommended = PAGEBLOCK_NR_PAGES * nr_zones * 2
    recommended += PAGEBLOCK_NR_PAGES * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    recommended = min(recommended, free_buffer_pages // 20)
    return recommended << (PAGE_SHIFT - 10)


def setup_per_zone_wmarks(min_free_kbytes: int, managed: list[int], scale_factor: int) -> list[tuple[int, int, int]]:
    """(min, low, high) per zone (``__setup_per_zone_wmarks``, 5.3): min in proportion
    to the zone's share of lowmem; the gaps are the larger of min/4 and
    managed x watermark_scale_factor / 10000."""
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem = sum(managed)
    marks = []
    for m in managed:
        wmin = pages_min * m // lowmem
        gap = max(wmin >> 2, m * scale_factor // 10000)
        marks.append((wmin, wmin + gap, wmin + 2 * gap))
    return marks


def setup_per_zone_lowmem_reserve(managed: list[int], idxs: list[int], ratio: tuple[int, ...]) -> list[tuple[int, ...]]:
    """lowmem_reserve[classzone] per zone (``setup_per_zone_lowmem_reserve``, 5.3): what a
    lower zone keeps back from requests that could have used the zones above it.
    ``idxs`` are the zone types of the populated zones in ``managed``."""
    by_type = [0, 0, 0]
    for i, m in zip(idxs, managed):
        by_type[i] = m
    reserve = [[0, 0, 0] for _ in range(3)]
    for j in range(3):
        pages = by_type[j]
        for lower in range(j - 1, -1, -1):
            reserve[lower][j] = pages // ratio[lower] if ratio[lower] >= 1 else 0
            pages += by_type[lower]
    return [tuple(reserve[i]) for i in idxs]


def zone_batchsize(managed: int) -> int:
    """Pages a per-CPU list moves at a time (``zone_batchsize``, 5.3): about 1/4096 of
    the zone, at most 64, rounded down to 2^n - 1 after scaling by 1.5."""
    batch = min(managed // 1024, (1024 * 1024) // PAGE_SIZE) // 4
    batch = max(batch, 1)
    return (1 << (fls(batch + batch // 2) - 1)) - 1


def zone_highsize(low: int, batch: int, ncpus: int, profile: KernelProfile) -> int:
    """The per-CPU list's high mark.  Before 5.14, 6 x batch (``pageset_set_batch``);
    from 5.14 (b92ca18e8ca5, ``zone_highsize``) the zone's low watermark split over
    the node's CPUs, at least 4 x batch, when ``profile.pcp_high_from_low``."""
    if profile.pcp_high_from_low:
        return max(low // ncpus, batch << 2)
    return 6 * batch


def calculate_normal_threshold(managed: int, ncpus: int) -> int:
    """Per-CPU vmstat fold threshold (``calculate_normal_threshold``, mm/vmstat.c 5.3)."""
    return min(125, 2 * fls(ncpus) * (1 + fls(managed >> (27 - PAGE_SHIFT))))


def calculate_pressure_threshold(low: int, wmin: int, ncpus: int) -> int:
    """Reduced threshold while kswapd is awake (``calculate_pressure_threshold``, 5.3)."""
    return min(125, max(1, (low - wmin) // ncpus))


def build_zones(
    ram_bytes: int, ncpus: int, thp: bool, profile: KernelProfile, params: MemoryParams | None = None
) -> ZoneTable:
    """The boot-time zone table: managed pages, min_free_kbytes (sqrt rule, then the THP
    rule when THP survives ``hugepage_init``'s < 512 MB test on totalram), per-zone
    watermarks, lowmem_reserve, maximum boost, pcp batch/high, vmstat thresholds."""
    params = params or MemoryParams()
    if ncpus < 1:
        raise ValueError("ncpus must be at least 1")
    layout = list(params.zones) if params.zones is not None else managed_pages_model(ram_bytes)
    idxs = [ZONE_NAMES.index(name) for name, _ in layout]
    if idxs != sorted(set(idxs)):
        raise ValueError(f"zones must be distinct and ordered DMA, DMA32, Normal: {layout}")
    managed = [m for _, m in layout]
    if any(m <= 0 for m in managed):
        raise ValueError(f"zone sizes must be positive: {layout}")
    late = [params.freed_after_boot if ZONE_NAMES[i] == params.freed_zone else 0 for i in idxs]
    if params.freed_after_boot and not any(late):
        raise ValueError(f"freed_zone {params.freed_zone} is not a populated zone: {layout}")
    sqrt_kb = init_per_zone_wmark_min(sum(managed))
    min_kb = sqrt_kb
    thp_enabled = thp and sum(managed) >= (512 * MIB) >> PAGE_SHIFT  # hugepage_init
    scale = params.watermark_scale_factor
    if thp_enabled:
        highs = [h for _, _, h in setup_per_zone_wmarks(min_kb, managed, scale)]
        free_buffer = sum(max(m - h, 0) for m, h in zip(managed, highs))
        min_kb = max(min_kb, set_recommended_min_free_kbytes(len(managed), free_buffer))
    # a tunable written after boot (sysctl) recomputes from the managed pages of that time,
    # which include what was freed after the boot-time computation
    final = [m + extra for m, extra in zip(managed, late)]
    sysctl_marks = params.min_free_kbytes is not None or scale != MemoryParams.watermark_scale_factor
    if params.min_free_kbytes is not None:
        min_kb = params.min_free_kbytes
    marks = setup_per_zone_wmarks(min_kb, final if sysctl_marks else managed, scale)
    sysctl_reserve = params.lowmem_reserve_ratio != MemoryParams.lowmem_reserve_ratio
    reserves = setup_per_zone_lowmem_reserve(final if sysctl_reserve else managed, idxs, params.lowmem_reserve_ratio)
    zones = []
    for idx, m, extra, (wmin, low, high), reserve in zip(idxs, managed, late, marks, reserves):
        batch = zone_batchsize(m) if params.pcp_batch is None else params.pcp_batch
        pcp_high = zone_highsize(low, batch, ncpus, profile) if params.pcp_high is None else params.pcp_high
        boost_cap = high * params.watermark_boost_factor // 10000
        normal = calculate_normal_threshold(m, ncpus)
        drift_mark = high + ncpus * normal if ncpus * normal > low - wmin else 0
        zones.append(
            ZoneInfo(
                idx=idx,
                name=ZONE_NAMES[idx],
                managed=m + extra,
                min=wmin,
                low=low,
                high=high,
                lowmem_reserve=reserve,
                max_boost=max(PAGEBLOCK_NR_PAGES, boost_cap) if boost_cap else 0,
                pcp_batch=max(1, batch),
                pcp_high=pcp_high,
                stat_threshold=normal,
                pressure_threshold=calculate_pressure_threshold(low, wmin, ncpus),
                percpu_drift_mark=drift_mark,
            )
        )
    return ZoneTable(ram_bytes, ncpus, profile.name, min_kb, sqrt_kb, thp, thp_enabled, tuple(zones))


def zone_table_dict(table: ZoneTable) -> dict[str, Any]:
    """The table as plain data (``vmsim machine --json``); lowmem_reserve keyed by zone name."""
    out = asdict(table)
    out["managed"] = table.managed
    for zone, info in zip(out["zones"], table.zones):
        zone["lowmem_reserve"] = {o.name: info.lowmem_reserve[o.idx] for o in table.zones}
    return out
