#!/usr/bin/env python3
"""Generate the v6.9 vmap-node test vectors (tests/data/vectors69/*.jsonl).

Each workload drives build/vectors69/driver (the kernel's own v6.9 code, see
tools/vectors69/README.md) op by op: the generator chooses an op, the driver
answers, and later ops use the answers (frees of returned addresses).  Every
check line is re-verified here (free blocks never touch; busy + lazy + pooled +
free tile [1, 2^64-1); the object identity), independently of the driver's own
per-op checks.

    tools/vectors69/build.sh
    /work/main/.venv/bin/python tools/vectors69/generate.py            # write all files
    /work/main/.venv/bin/python tools/vectors69/generate.py --verify   # replay and compare
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "build" / "vectors69" / "driver"
OUT = ROOT / "tests" / "data" / "vectors69"

PAGE = 4096
VMALLOC_START = 0xFFFFC90000000000
VMALLOC_END = 0xFFFFE8FFFFFFFFFF
MODULES_VADDR = 0xFFFFFFFFC0000000
MODULES_END = 0xFFFFFFFFFF000000
TOP = 2**64 - 1
CHECK_EVERY = 200
STACK = 20480
STACK_ALIGN = 16384


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Driver:
    """One driver process = one file's kernel state, booted with ncpus possible CPUs."""

    def __init__(self, ncpus: int, driver: Path = DRIVER):
        self.p = subprocess.Popen([str(driver), str(ncpus)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        self.nodes = self.ask("N")["nodes"]

    def ask(self, line: str) -> dict:
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline()
        if not out:
            sys.exit(f"driver died on {line!r} (exit {self.p.wait()})")
        return json.loads(out)

    def run(self, op: dict) -> dict:
        k = op["op"]
        if k == "alloc":
            return self.ask(f"A {op['size']} {op['align']} {op['vstart']} {op['vend']} {op['cpu']} "
                            f"{int(op.get('fail_split', False))}")
        if k == "free":
            return self.ask(f"F {op['addr']}")
        if k == "purge":
            return self.ask(f"P {int(op['full'])}")
        if k == "check":
            return self.ask("C")
        raise ValueError(k)

    def close(self):
        assert self.p.stdin
        self.p.stdin.close()
        if self.p.wait() != 0:
            sys.exit("driver failed")


class Recorder:
    """Runs ops through the driver, records lines, inserts checks and verifies them."""

    def __init__(self, name, workload, ncpus, seed, note):
        self.name, self.workload, self.seed, self.note = name, workload, seed, note
        self.d = Driver(ncpus)
        self.nodes = self.d.nodes
        self.lines: list[str] = []
        self.since_check = 0
        self.stats: Counter = Counter()
        self.size_of: dict[int, int] = {}   # every area that is busy, lazy or pooled: start -> size
        self.busy: set[int] = set()
        self.tree_allocs = 0
        self.objs_alloc = 0
        self.objs_free = 0

    # -- ops
    def op(self, op: dict) -> dict:
        out = self.d.run(op)
        self.lines.append(dumps({"in": op, "out": out}))
        self._account(op, out)
        if op["op"] == "check":
            self.since_check = 0
            self._verify(out)
        else:
            self.since_check += 1
            if self.since_check >= CHECK_EVERY - 1:
                self.check()
        return out

    def alloc(self, size, align, vstart=VMALLOC_START, vend=VMALLOC_END, cpu=0, fail_split=False):
        op = {"op": "alloc", "size": size, "align": align, "vstart": vstart, "vend": vend, "cpu": cpu}
        if fail_split:
            op["fail_split"] = True
        return self.op(op)["addr"]

    def free(self, addr):
        return self.op({"op": "free", "addr": addr})

    def purge(self, full=False):
        return self.op({"op": "purge", "full": full})

    def check(self):
        return self.op({"op": "check"})

    # -- bookkeeping and verification
    def _account(self, op, out):
        s = self.stats
        k = op["op"]
        s["ops"] += 1
        if k == "alloc":
            s["allocs"] += 1
            if out["addr"] is None:
                s["failed"] += 1
                return
            s[out["fit"]] += 1
            if out["fit"] != "POOL":
                self.tree_allocs += 1
            self.objs_alloc += out["objs_alloc"]
            self.objs_free += out["objs_free"]
            a = out["addr"]
            assert a % op["align"] == 0 and a >= op["vstart"] and a + op["size"] <= op["vend"]
            assert a not in self.busy
            if out["fit"] == "POOL":
                assert self.size_of[a] == op["size"]
            self.size_of[a] = op["size"]
            self.busy.add(a)
        elif k == "free":
            if out["ok"]:
                s["frees"] += 1
                self.busy.remove(op["addr"])
                if self.nodes > 1 and out["node"] != (op["addr"] // (16 * PAGE)) % self.nodes:
                    s["routed_by_vn_id"] += 1
            else:
                assert op["addr"] not in self.busy
                s["frees_rejected"] += 1
        elif k == "purge":
            s["purges_full" if op["full"] else "purges"] += 1
            s["purged"] += out["purged"]
            s["pooled"] += out["pooled"]
            s["decayed"] += out["decayed"]
            self.objs_free += out["objs_free"]
        elif k == "check":
            s["checks"] += 1

    def _verify(self, out):
        free = out["free"]
        for (_s0, e0), (s1, _e1) in itertools.pairwise(free):
            assert e0 < s1, "free blocks touch or overlap"
        assert out["busy"] == len(self.busy)
        lazy = [a for _node, starts in out["lazy"] for a in starts]
        for _node, starts in out["lazy"]:
            assert starts == sorted(starts), "lazy list not address-sorted"
        pooled = []
        for _node, pages, starts in out["pools"]:
            for a in starts:
                assert self.size_of[a] == pages * PAGE
            pooled += starts
        held = set(self.busy) | set(lazy) | set(pooled)
        assert len(held) == len(self.busy) + len(lazy) + len(pooled), "an area is held twice"
        # forget areas that went back to the free space
        self.size_of = {a: sz for a, sz in self.size_of.items() if a in held}
        ranges = sorted([(a, a + self.size_of[a]) for a in held] + [tuple(b) for b in free])
        at = 1
        for s0, e0 in ranges:
            assert s0 == at, f"gap or overlap at {at:#x}"
            at = e0
        assert at == TOP
        # objects: one per free block and per held area
        assert 1 + self.tree_allocs + self.objs_alloc - self.objs_free == len(free) + len(held)

    def finish(self, path: Path):
        if not self.lines or not self.lines[-1].startswith('{"in":{"op":"check"'):
            self.check()
        extra = self.d.ask("S")
        self.stats["rotations"] = extra["rotations"]
        self.stats["failed_fail_split"] = extra["refused_splits"]
        self.d.close()
        header = {"vectors": 1, "search": "v5.18", "kernel": "v6.9", "nodes": self.nodes,
                  "workload": self.workload, "seed": self.seed, "note": self.note}
        path.write_text(dumps(header) + "\n" + "\n".join(self.lines) + "\n")
        return self.stats


# ------------------------------------------------------------------ workloads
def ri(rng, lo, hi):
    """Uniform integer in [lo, hi]."""
    return int(rng.integers(lo, hi + 1))


class Live:
    """The generator's view of the caller: live areas and the lazily freed pages."""

    def __init__(self, rng):
        self.rng = rng
        self.areas: list[tuple[int, int]] = []
        self.lazy_pages = 0

    def add(self, addr, size):
        self.areas.append((addr, size))

    def pop_random(self):
        i = ri(self.rng, 0, len(self.areas) - 1)
        self.areas[i], self.areas[-1] = self.areas[-1], self.areas[i]
        return self.areas.pop()


def free_one(rec, live, threshold, p_full):
    addr, size = live.pop_random()
    assert rec.free(addr)["ok"]
    live.lazy_pages += size // PAGE
    maybe_purge(rec, live, threshold, p_full)


def maybe_purge(rec, live, threshold, p_full):
    if rec.d and live.rng.random() < p_full:
        rec.purge(full=True)
        live.lazy_pages = 0
    elif live.lazy_pages > threshold:
        rec.purge(full=False)
        live.lazy_pages = 0


def w_fork(name, seed, ncpus, live_target, nops, threshold, p_full, note):
    rng = np.random.default_rng(seed)
    rec = Recorder(name, "fork_stacks", ncpus, seed, note)
    live = Live(rng)
    while rec.stats["ops"] < nops:
        grow = len(live.areas) < live_target
        if not live.areas or (rng.random() < (0.8 if grow else 0.5)):
            addr = rec.alloc(STACK, STACK_ALIGN, cpu=ri(rng, 0, ncpus - 1))
            assert addr is not None
            live.add(addr, STACK)
        else:
            free_one(rec, live, threshold, p_full)
    return rec


FAVOURITE_PAGES = [1, 2, 4, 8, 16, 64, 255, 256]  # + guard page: 2,3,5,9,17,65,256,257 pages


def mixed_request(rng, ncpus, stack_share=0.0, fav_share=0.5):
    """One mixed request: (size, align, vstart, vend, cpu, fail_split)."""
    cpu = ri(rng, 0, ncpus - 1)
    if rng.random() < stack_share:
        # mostly real stacks; some stack-sized areas at page alignment land in the same pool
        return STACK, STACK_ALIGN if rng.random() < 0.85 else PAGE, VMALLOC_START, VMALLOC_END, cpu, False
    pages = int(rng.choice(FAVOURITE_PAGES)) if rng.random() < fav_share else ri(rng, 1, 300)
    size = (pages + 1) * PAGE
    u = rng.random()
    align = 1 if u < 0.4 else PAGE if u < 0.65 else 2 ** ri(rng, 0, 20)
    w = rng.random()
    if w < 0.7:
        vstart, vend = VMALLOC_START, VMALLOC_END
    elif w < 0.85:
        vstart, vend = VMALLOC_START + ri(rng, 1, 1024) * PAGE, VMALLOC_END
    else:
        vstart, vend = MODULES_VADDR, MODULES_END
    return size, align, vstart, vend, cpu, bool(rng.random() < 0.01)


def w_mixed(name, workload, seed, ncpus, live_target, nops, threshold, p_full, note,
            stack_share=0.0, p_bogus=0.02, fav_share=0.5):
    rng = np.random.default_rng(seed)
    rec = Recorder(name, workload, ncpus, seed, note)
    live = Live(rng)
    freed_recently: list[int] = []
    while rec.stats["ops"] < nops:
        if live.areas and rng.random() < p_bogus:
            # a free that must be refused: a double free, an address inside an area, or noise
            c = rng.random()
            if c < 0.4 and freed_recently:
                addr = freed_recently[ri(rng, 0, len(freed_recently) - 1)]
            elif c < 0.8:
                a, sz = live.areas[ri(rng, 0, len(live.areas) - 1)]
                addr = a + ri(rng, 1, sz // PAGE - 1) * PAGE if sz > PAGE else a + 1
            else:
                addr = VMALLOC_START + ri(rng, 0, 2**30) * PAGE
            if addr in rec.busy:
                continue
            rec.free(addr)
            continue
        grow = len(live.areas) < live_target
        if not live.areas or rng.random() < (0.8 if grow else 0.5):
            size, align, vstart, vend, cpu, fs = mixed_request(rng, ncpus, stack_share, fav_share)
            addr = rec.alloc(size, align, vstart, vend, cpu, fs)
            if addr is not None:
                live.add(addr, size)
        else:
            addr, size = live.pop_random()
            assert rec.free(addr)["ok"]
            freed_recently = (freed_recently + [addr])[-16:]
            live.lazy_pages += size // PAGE
            maybe_purge(rec, live, threshold, p_full)
    return rec


def w_boundary(name, seed):
    """Hand-made cases on 4 CPUs / 4 nodes."""
    rng = np.random.default_rng(seed)
    rec = Recorder(name, "boundary", 4, seed,
                   "boundary: pools of 1,2,3,4,5,8 entries through repeated non-full purges (decay of "
                   "len>>2, and whole pools when len<4), pool hits on CPUs that share a node, pool heads "
                   "of the wrong alignment rotating to the tail (also before a failing request), areas of "
                   "exactly 256 (pooled) and 257 (never pooled) pages, fail_split on a pool hit and on NE, "
                   "sub-window and module-window areas (never pooled), lazy frees routed by vn_id vs by "
                   "address, full purges emptying all pools, double frees, frees of unknown and interior "
                   "addresses, frees of lazy and pooled areas; 4 CPUs; check every 40 ops")
    global CHECK_EVERY
    saved, CHECK_EVERY = CHECK_EVERY, 40
    try:
        # 1. pools with 1,2,3,4,5,8 entries on node 0, one size class each, decayed step by step
        counts = [1, 2, 3, 4, 5, 8]
        made = {}
        for k, pages in zip(counts, [2, 3, 4, 6, 7, 9]):
            made[pages] = [rec.alloc(pages * PAGE, 1, cpu=0) for _ in range(k)]
        for addrs in made.values():
            for a in rng.permutation(addrs):
                assert rec.free(int(a))["ok"]
        rec.check()
        rec.purge(False)          # populate: decay runs first on empty pools
        rec.check()
        for _ in range(6):
            rec.purge(False)      # decay only: nothing lazy
            rec.check()
        # 2. the same with a full purge in the middle
        for k, pages in zip(counts, [2, 3, 4, 6, 7, 9]):
            made[pages] = [rec.alloc(pages * PAGE, 1, cpu=4) for _ in range(k)]  # cpu 4 -> node 0
        for addrs in made.values():
            for a in addrs[::-1]:
                assert rec.free(a)["ok"]
        rec.purge(False)
        rec.check()
        rec.purge(True)
        rec.check()

        # 3. rotation: a pool of 5-page areas on node 1 whose starts are not all 64 KiB aligned
        addrs = [rec.alloc(5 * PAGE, PAGE, cpu=1) for _ in range(6)]
        for a in addrs:
            rec.free(a)
        rec.purge(False)
        rec.check()
        for align in [65536, 65536, 1 << 20, PAGE, 65536, 1 << 20, 1]:
            rec.alloc(5 * PAGE, align, cpu=5)          # cpu 5 -> node 1
            rec.check()
        # a request that rotates the pool and then fails in the tree (align 2^63)
        rec.alloc(5 * PAGE, 1 << 63, cpu=1)
        rec.alloc(5 * PAGE, 1 << 62, cpu=1, fail_split=True)
        rec.check()
        # fail_split on a pool hit (no effect) and on an NE split (fails)
        rec.alloc(5 * PAGE, 1, cpu=1, fail_split=True)
        rec.alloc(7 * PAGE, 65536, cpu=1, fail_split=True)
        rec.alloc(7 * PAGE, 65536, vstart=VMALLOC_START + 3 * PAGE, cpu=1, fail_split=True)
        rec.check()

        # 4. exactly 256 and 257 pages
        big = [rec.alloc(256 * PAGE, 1, cpu=2), rec.alloc(257 * PAGE, 1, cpu=2),
               rec.alloc(256 * PAGE, 1 << 20, cpu=3), rec.alloc(257 * PAGE, 1 << 20, cpu=3)]
        for a in big:
            rec.free(a)
        rec.purge(False)
        rec.check()
        rec.alloc(256 * PAGE, 1, cpu=6)   # node 2: pool hit
        rec.alloc(257 * PAGE, 1, cpu=6)   # never pooled: tree
        rec.alloc(256 * PAGE, 1 << 23, cpu=7)  # node 3: wrong alignment, rotates, tree
        rec.check()

        # 5. lazy routing: a vmalloc-window area carries its CPU's node; sub-window and
        #    module-window areas go to the node of their address
        sub = [rec.alloc(3 * PAGE, 1, vstart=VMALLOC_START + k * PAGE, cpu=k % 4) for k in range(1, 9)]
        mod = [rec.alloc(3 * PAGE, PAGE, vstart=MODULES_VADDR, vend=MODULES_END, cpu=k % 4)
               for k in range(8)]
        win = [rec.alloc(3 * PAGE, 1, cpu=k % 4) for k in range(8)]
        for a in sub + mod + win:
            rec.free(a)
        rec.check()
        rec.purge(False)
        rec.check()

        # 6. refused frees
        a = rec.alloc(4 * PAGE, 1, cpu=0)
        rec.free(a + PAGE)                  # interior
        rec.free(a + 1)                     # interior, unaligned
        rec.free(VMALLOC_START - PAGE)      # unknown
        rec.free(0)
        rec.free(TOP)
        rec.free(a)
        rec.free(a)                         # double free: lazy
        rec.purge(False)
        rec.free(a)                         # pooled now
        rec.purge(True)
        rec.free(a)                         # free space now
        rec.check()

        # 7. merge order: many neighbouring areas freed in random order, some pooled, some not
        areas = [rec.alloc(ri(rng, 1, 6) * PAGE, 1, cpu=ri(rng, 0, 3),
                           vstart=VMALLOC_START if rng.random() < 0.7 else VMALLOC_START + PAGE)
                 for _ in range(60)]
        for i in rng.permutation(len(areas)):
            rec.free(areas[int(i)])
        rec.purge(False)
        rec.check()
        for _ in range(5):
            rec.purge(False)
            rec.check()

        # 8. random small pools, repeated decays, hits on all CPUs
        live = Live(rng)
        for _ in range(600):
            if not live.areas or rng.random() < 0.55:
                pages = int(rng.choice([2, 3, 5, 256, 257]))
                align = int(rng.choice([1, PAGE, 8192, 65536]))
                a = rec.alloc(pages * PAGE, align, cpu=ri(rng, 0, 7))
                live.add(a, pages * PAGE)
            else:
                a, _sz = live.pop_random()
                rec.free(a)
            if rng.random() < 0.05:
                rec.purge(rng.random() < 0.2)
        while live.areas:
            rec.free(live.pop_random()[0])
        rec.purge(False)
        rec.check()
        rec.purge(True)
        rec.check()
    finally:
        CHECK_EVERY = saved
    return rec


WORKLOADS = {
    "a_fork_n4": lambda: w_fork(
        "a_fork_n4", 6901, ncpus=4, live_target=300, nops=6500, threshold=256, p_full=0.004,
        note="fork stacks: 20480 B at 16 KiB align in the vmalloc window from random CPUs 0..3 "
             "(4 nodes); the live set grows to ~300, then allocs and frees of random live stacks "
             "alternate; a non-full purge when the lazily freed pages exceed 256 (lazy_max_pages "
             "scaled down), a full purge with probability 0.004 after a free; check every 200 ops"),
    "b_mixed_n8": lambda: w_mixed(
        "b_mixed_n8", "mixed", 6902, ncpus=8, live_target=150, nops=6000, threshold=8192, p_full=0.002,
        fav_share=0.8,
        note="mixed on 8 CPUs / 8 nodes: sizes 1..300 pages + guard (80% from 1,2,4,8,16,64,255,256, "
             "20% uniform), align 1 (40%), 4096 (25%) or 2^k with k uniform in 0..20; 70% the vmalloc "
             "window, 15% vstart = VMALLOC_START + k*4096 (k in 1..1024), 15% the module window; ~1% "
             "fail_split; random frees around ~150 live, 2% refused frees (double, interior, unknown); "
             "non-full purge above 8192 lazy pages, full purge with probability 0.002 after a free; "
             "check every 200 ops"),
    "c_mixed_n1": lambda: w_mixed(
        "c_mixed_n1", "mixed_single_node", 6903, ncpus=1, live_target=150, nops=6000, threshold=8192,
        p_full=0.002, fav_share=0.8, stack_share=0.3,
        note="nodes=1 (one CPU: the node layer is off, no pools; lazy frees and purges only): the "
             "mixed requests of b_mixed_n8 with 30% stack-sized requests added (85% at 16 KiB align, "
             "15% at 4 KiB), all on CPU 0; same purge rule as b_mixed_n8; check every 200 ops"),
    "d_many_n128": lambda: w_mixed(
        "d_many_n128", "many_nodes", 6904, ncpus=256, live_target=400, nops=5500, threshold=2048,
        p_full=0.002, stack_share=0.85,
        note="256 CPUs -> 128 nodes (cpu % 128 wraps): 85% stack-sized requests (20480 B, 85% at "
             "16 KiB align, 15% at 4 KiB), 15% the mixed requests of b_mixed_n8 (half from the "
             "favourite sizes), random CPUs 0..255, ~400 live, 2% refused frees; non-full purge "
             "above 2048 lazy pages, full purge with probability 0.002 after a free; check every 200 ops"),
    "e_boundary_n4": lambda: w_boundary("e_boundary_n4", 6905),
}


def stats_row(name, nodes, s):
    return (f"| `{name}.jsonl` | {nodes} | {s['ops']} | {s['allocs']} | {s['POOL']} | {s['FL']} | "
            f"{s['LE']} | {s['RE']} | {s['NE']} | {s['failed']} ({s['failed_fail_split']}) | "
            f"{s['frees']} | {s['frees_rejected']} | {s['purges']} | {s['purges_full']} | "
            f"{s['purged']} | {s['pooled']} | {s['decayed']} | {s['rotations']} | {s['routed_by_vn_id']} |")


TABLE_HEAD = ("| file | nodes | ops | allocs | POOL | FL | LE | RE | NE | failed (by fail_split) | "
              "frees | refused frees | purges | full purges | purged | pooled | decayed | rotations | "
              "routed by vn_id |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def verify_file(path: Path, driver: Path) -> Counter:
    """Replay a file through the driver (booted with ncpus = nodes) and compare every result."""
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    d = Driver(head["nodes"], driver)
    assert d.nodes == head["nodes"]
    for i, line in enumerate(lines[1:], 2):
        rec = json.loads(line)
        got = d.run(rec["in"])
        if got != rec["out"]:
            sys.exit(f"{path.name}:{i}: expected {rec['out']}, driver says {got}")
    d.close()
    return Counter(lines=len(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--driver", type=Path, default=DRIVER)
    ap.add_argument("--only", action="append", choices=sorted(WORKLOADS))
    ap.add_argument("--verify", action="store_true", help="replay the existing files instead")
    a = ap.parse_args(argv)
    names = a.only or sorted(WORKLOADS)
    if not a.driver.exists():
        sys.exit(f"{a.driver} missing: run tools/vectors69/build.sh first")
    if a.verify:
        for n in names:
            c = verify_file(a.out / f"{n}.jsonl", a.driver)
            print(f"{n}: {c['lines']} lines agree")
        return
    a.out.mkdir(parents=True, exist_ok=True)
    print(TABLE_HEAD)
    for n in names:
        rec = WORKLOADS[n]()
        s = rec.finish(a.out / f"{n}.jsonl")
        print(stats_row(n, rec.nodes, s), flush=True)


if __name__ == "__main__":
    main()
