"""Network receive page frags: the order-3 GFP_ATOMIC allocations of a NIC's NAPI poll (Linux 5.3).

A receive queue's NAPI poll runs in softirq context on the CPU its interrupt is
bound to, and refills its receive buffers from a page frag: a 32 KiB compound
page (order 3, ``SKB_FRAG_PAGE_ORDER`` / ``PAGE_FRAG_CACHE_MAX_ORDER`` with 4 KiB
pages) carved into buffers, one per packet.  When the current page has no room
for another buffer, a new one is allocated; each buffer holds a reference, so
the page is freed when the last packet carved from it has been consumed (its
reader copied the data out and freed the skb).  Two refill functions, with
different masks:

* ``skb_page_frag_refill`` (net/core/sock.c), which virtio-net's mergeable receive
  buffers use from ``virtnet_poll``'s refill with GFP_ATOMIC: order 3 with
  ``(GFP_ATOMIC & ~__GFP_DIRECT_RECLAIM) | __GFP_COMP | __GFP_NOWARN | __GFP_NORETRY``,
  then one page with GFP_ATOMIC.  The order-3 request keeps __GFP_ATOMIC without
  __GFP_NOMEMALLOC, so in the slow path it is ALLOC_HARDER: it takes blocks from the
  high-atomic reserve and reserves pageblocks (``reserve_highatomic_pageblock``);
* ``__page_frag_cache_refill`` (mm/page_alloc.c), behind ``napi_alloc_frag`` and
  ``netdev_alloc_frag``: order 3 with ``GFP_ATOMIC | __GFP_COMP | __GFP_NOWARN |
  __GFP_NORETRY | __GFP_NOMEMALLOC``, then one page with GFP_ATOMIC.  __GFP_NOMEMALLOC
  keeps ``gfp_to_alloc_flags`` from giving ALLOC_HARDER, so this one never reserves
  a pageblock nor uses the reserve (it sees the reserve subtracted instead).

The order-0 fallback is ALLOC_HARDER (GFP_ATOMIC), but order 0 never touches the
reserve.  If both fail the packet is dropped (virtio-net leaves the refill to its
delayed work; the buffer is missing from the ring).

The model works per page, not per packet: a page is allocated when a packet finds
no room, serves the next ``32 KiB // frag_size`` packets (Poisson arrivals, or
``4 KiB // frag_size`` for an order-0 fallback), and is freed when the last of them
has been consumed, each packet ``hold`` after its arrival (exponential).  Each queue
is a SimPy process, not a scheduler task: softirq context cannot sleep and
GFP_ATOMIC never does, and the softirq's CPU time is not charged to the CPU (an
estimate would be a few per cent of one CPU at the default rate).  The page is
freed on the queue's CPU.  A page that all its packets have left before it is
replaced is reused in the kernel instead of being freed and allocated again; at
the default rate and hold time that does not happen, and it is not modelled.
The pages are charged to ``slab_unreclaimable``: unmovable, unreclaimable kernel
memory (the skb heads that point at them are kmalloc'd there too).

Counters under the spec's name (``net_rx.`` by default): ``frag_blocks``
(order-3 pages), ``frag_blocks_highatomic`` (of those, the ones in reserved
pageblocks), ``frag_fallbacks`` (order-0 pages) and ``frag_drops`` (packets that
found no buffer).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sim.kernel.mm.gfp import GFP_ATOMIC, Gfp
from sim.kernel.mm.vmalloc.space import PAGE_SIZE
from sim.schema.units import Duration, Rate, Size
from sim.workloads.base import WorkloadSpec

FRAG_ORDER = 3  # get_order(32768): SKB_FRAG_PAGE_ORDER, PAGE_FRAG_CACHE_MAX_ORDER
POOL = "slab_unreclaimable"

# (order-3 mask, order-0 mask) of each refill function (5.3)
REFILL_GFP: dict[str, tuple[int, int]] = {
    "skb_page_frag_refill": (
        int((GFP_ATOMIC & ~Gfp.DIRECT_RECLAIM) | Gfp.COMP | Gfp.NOWARN | Gfp.NORETRY),
        int(GFP_ATOMIC),
    ),
    "page_frag_alloc": (
        int(GFP_ATOMIC | Gfp.COMP | Gfp.NOWARN | Gfp.NORETRY | Gfp.NOMEMALLOC),
        int(GFP_ATOMIC),
    ),
}
SITE = {"skb_page_frag_refill": "skb_page_frag_refill", "page_frag_alloc": "__page_frag_cache_refill"}


class NetRxSpec(WorkloadSpec):
    """A network receive stream whose NAPI poll refills its buffers from page frags.

    Defaults: 10,000 packets/s is about 120 Mbit/s of MTU-sized packets, a guest
    pulling a download or a backup stream over virtio-net (an estimate); 1536 bytes
    is virtio-net's mergeable buffer for a 1500-byte MTU (``get_mergeable_buf_len``,
    v5.3: the 12-byte header plus GOOD_PACKET_LEN, 1518, aligned to 64), 21 to a
    32 KiB page; 20 ms is the wait of a posted buffer in a 256-entry ring refilled
    at half empty (13-26 ms at that rate) plus a reader that is woken promptly (an
    estimate); one queue is QEMU's virtio-net default (no ``mq=on``)."""

    kind: Literal["net_rx"] = "net_rx"
    packet_rate: Rate = Field(10_000.0, ge=0, description="packets received per second, all queues (Poisson)")
    frag_size: Size = Field(1536, ge=64, le=PAGE_SIZE, description="bytes of one receive buffer")
    hold: Duration = Field(
        0.02, gt=0, description="mean time from a buffer's refill to the free of its packet (exponential)"
    )
    queues: int = Field(1, ge=1, le=64, description="receive queues; queue i's NAPI runs on CPU i mod cpus")
    refill: Literal["skb_page_frag_refill", "page_frag_alloc"] = Field(
        "skb_page_frag_refill", description="the page frag refill: virtio-net's, or napi_alloc_frag's"
    )


class NetRx:
    """The running ``net_rx`` workload: one NAPI refill process per receive queue."""

    def __init__(self, spec: NetRxSpec) -> None:
        self.spec = spec
        self.prefix = spec.label

    def start(self, machine: Any, rng: np.random.Generator) -> None:
        self.m = machine
        for q, r in enumerate(rng.spawn(self.spec.queues)):
            machine.env.process(self._napi(q % machine.sched.ncpus, r, self.spec.packet_rate / self.spec.queues))

    def _napi(self, cpu: int, rng: np.random.Generator, rate: float) -> Generator[Any, Any, None]:
        """One receive queue: at each packet that finds no room, a new page frag
        (``skb_page_frag_refill`` / ``__page_frag_cache_refill``), whose packets
        arrive and are consumed; the page is freed after the last of them."""
        env, pa, spec, metrics = self.m.env, self.m.page_alloc, self.spec, self.m.metrics
        if rate <= 0:
            return
        if spec.start:
            yield env.timeout(spec.start)
        high_gfp, low_gfp = REFILL_GFP[spec.refill]
        site = SITE[spec.refill]
        per_block = (PAGE_SIZE << FRAG_ORDER) // spec.frag_size
        per_page = PAGE_SIZE // spec.frag_size
        p = self.prefix
        yield env.timeout(rng.exponential(1.0 / rate))  # the first packet
        while True:
            if pa.alloc_pages_nowait(cpu, high_gfp, FRAG_ORDER, pool=POOL, site=site):
                order, n, highatomic = FRAG_ORDER, per_block, int(pa.last_block_highatomic)
                metrics.add(f"{p}.frag_blocks")
                if highatomic:
                    metrics.add(f"{p}.frag_blocks_highatomic")
            elif pa.alloc_pages_nowait(cpu, low_gfp, 0, pool=POOL, site=site):
                order, n, highatomic = 0, per_page, 0
                metrics.add(f"{p}.frag_fallbacks")
            else:
                metrics.add(f"{p}.frag_drops")
                yield env.timeout(rng.exponential(1.0 / rate))  # the next packet tries again
                continue
            gaps = rng.exponential(1.0 / rate, n)  # between this page's packets, then to the next page's first
            arrivals = np.concatenate(([0.0], np.cumsum(gaps[:-1])))
            last_free = float((arrivals + rng.exponential(spec.hold, n)).max())
            freed = env.timeout(last_free)
            freed.callbacks.append(lambda _ev, o=order, h=highatomic: pa.free_pages(cpu, o, pool=POOL, highatomic=h))
            yield env.timeout(float(gaps.sum()))
