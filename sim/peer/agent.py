"""The guest agent: a busybox ``sh`` script run as the guest's ``/init``.

Stage 1 (in the initramfs) loads the modules, mounts the root disk read-only
and switches to it.  Stage 2 sets the kernel tunables, records the boot state,
starts the setup workloads (page cache, shmem, hogs, swap), arms the counters,
runs the measured workloads for the duration while a sampler reads
/proc/zoneinfo and /proc/vmstat on an interval, then prints the counters and
powers off.  Everything the host needs goes to the serial ports ttyS1 to ttyS3 (one
writer each, so that lines never interleave): framed sections on ttyS1::

    @@vmsim begin NAME
    ...
    @@vmsim end NAME

on ttyS2 one line per sample, ``@@S <uptime> <zone> <free> <boost> <min> <low>
<high> <managed>`` and ``@@V <uptime> name value ...``, and on ttyS3 every kernel log
record as ``@@K <prio>,<seq>,<usec>,<flags>;<text>`` (streamed from /dev/kmsg
from the start of stage 2, so that a reader keeping pace loses nothing to the ring
buffer, which keeps its default size: a larger one costs the guest RAM.  An OOM
storm can still outrun it; the host counts the lost records, ``guest_kmsg_lost``).
The kernel's own console stays on ttyS0.

Counters (ftrace, no ring buffer: hist triggers only):

* ``vmsim/ava``: a kprobe on ``alloc_vmap_area`` keyed by size (all callers, and
  again for the stress-ng fork workers only), and its return probe keyed by error
  value: vmalloc calls and failures;
* ``vmsim/fork``: a kprobe on ``kernel_clone`` (``_do_fork`` before 5.10) keyed by
  clone flags, and its return probe keyed by error, both for the fork workers only;
* ``vmsim/warn``: a kprobe on ``warn_alloc`` keyed by gfp and its fourth argument
  (the order for the page allocator's calls): every page allocation that failed in
  the slow path, __GFP_NOWARN ones included (they return inside warn_alloc, after
  the probe);
* ``kmem_cache_alloc`` (and ``kmem_cache_alloc_node`` where it exists) from
  inside ``alloc_vmap_area`` (a call-site address range from /proc/kallsyms)
  keyed by gfp, and again for NULL results: busy descriptors, preload fills
  and GFP_NOWAIT split objects, and which of them failed;
* ``mm_page_alloc_extfrag``: every fallback of ``__rmqueue_fallback`` keyed by
  migratetypes and the order taken; one below pageblock order is a call of
  ``boost_watermark`` (``steal_suitable_fallback``): the watermark boosts;
* ``sched_wakeup_new`` of the fork workers' children keyed by the parent's CPU and
  the child's: where ``wake_up_new_task`` puts a child.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

# one writer per serial port, so that no two processes interleave within a line
DATA_PORT = "/dev/ttyS1"  # framed sections and info lines, from the agent alone
SAMPLE_PORT = "/dev/ttyS2"  # @@S / @@V lines, from the sampler
KMSG_PORT = "/dev/ttyS3"  # @@K lines, from the /dev/kmsg reader
PORT_FILES = ("data.log", "samples.log", "kmsg.log")  # what QEMU writes ttyS1..ttyS3 to


@dataclass(frozen=True)
class GuestCommand:
    """A workload as the guest runs it: a name, a shell command, and its oom_score_adj
    (None: whatever the program sets itself)."""

    name: str
    command: str
    oom_score_adj: int | None = None


@dataclass(frozen=True)
class GuestPlan:
    """Everything the agent does, in order (built by :mod:`sim.peer.translation`)."""

    scenario: str
    duration_s: int
    sample_interval_s: float
    settle_s: int = 10  # after the setup workloads start, before measuring (a hog faults its memory in)
    sysctls: tuple[tuple[str, str], ...] = ()
    zram_bytes: int = 0
    page_cache_mib: int = 0
    shmem_mib: int = 0
    setup: tuple[GuestCommand, ...] = ()  # started in the background before measuring
    measured: tuple[GuestCommand, ...] = ()  # run for duration_s, in parallel
    notes: tuple[str, ...] = field(default=())


STAGE1 = """
# stage 1, in the initramfs: modules, root disk, switch_root
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /modules/*.ko; do [ -e "$m" ] && insmod "$m" 2>/dev/null; done
i=0
until mount -o ro /dev/vda /root 2>/dev/null; do
  i=$((i+1)); [ $i -lt 50 ] || { echo "@@vmsim error no root disk" > /dev/ttyS1; poweroff -f; }; sleep 0.2
done
mount -t tmpfs -o size=1m tmpfs /root/run
cp /init /root/run/agent
[ -d /extra ] && cp /extra/* /root/run/
umount /proc /sys
mount --move /dev /root/dev
exec switch_root /root /bin/busybox sh /run/agent stage2
"""


def _section(name: str, command: str) -> str:
    """``command``'s output framed as section ``name`` on the data port."""
    return f"{{ echo '@@vmsim begin {name}'; {command}; echo '@@vmsim end {name}'; }} >&3 2>&1"


def _spawn(cmd: GuestCommand, background: bool) -> str:
    """The shell line that starts a workload with its oom_score_adj, output to /tmp/NAME.out."""
    adj = "" if cmd.oom_score_adj is None else f"echo {cmd.oom_score_adj} > /proc/self/oom_score_adj; "
    inner = shlex.quote(f"{adj}exec {cmd.command}")
    log = f"/tmp/{cmd.name}.out"
    return f"sh -c {inner} > {log} 2>&1" + (" &" if background else "")


# The sampler forks nothing: under heavy reclaim a fork (a kernel stack, page tables)
# can stall for tens of seconds, and a sampler that forks awk and sleep stalls with it.
# Shell builtins only: read for the files, read -t on a FIFO that never speaks for the pause.
SAMPLER = r"""
sample_once() {
  read t rest < "${UPTIME:-/proc/uptime}"
  z=; f=-1; b=-
  while read -r k v rest; do
    case "$k" in
      Node) z=${rest##* }; f=-1; b=- ;;
      pages) [ "$v" = free ] && f=$rest ;;
      boost) b=$v ;;
      min) mi=$v ;;
      low) lo=$v ;;
      high) hi=$v ;;
      managed) [ "$f" -ge 0 ] && echo "@@S $t $z $f $b $mi $lo $hi $v" ;;
    esac
  done < "${ZONEINFO:-/proc/zoneinfo}"
  line="@@V $t"
  while read -r k v; do
    case "$k" in
      nr_free_pages|allocstall_*|pgscan_*|pgsteal_*|oom_kill|pageoutrun|pswpout) line="$line $k $v" ;;
      compact_stall|nr_slab_reclaimable|nr_slab_unreclaimable) line="$line $k $v" ;;
      nr_anon_pages|nr_shmem|nr_file_pages|nr_kernel_stack|nr_page_table_pages) line="$line $k $v" ;;
    esac
  done < "${VMSTAT:-/proc/vmstat}"
  echo "$line"
}
sample() {
  [ -p /run/tick ] || mkfifo /run/tick
  while :; do
    sample_once
    read -t "$1" _ <> /run/tick
  done
}
"""

TRACING = r"""
T=/sys/kernel/tracing
mount -t tracefs nodev $T 2>/dev/null || { mount -t debugfs nodev /sys/kernel/debug; T=/sys/kernel/debug/tracing; }
# alloc_vmap_area's text: from its address to the next text symbol above it
range=$(awk '$3 == "alloc_vmap_area" && !a { a = $1; next }
  a && ($2 == "t" || $2 == "T") && $1 > a && (b == "" || $1 < b) { b = $1 }
  END { print a, b }' /proc/kallsyms)
set -- $range; AVA_LO=$1; AVA_HI=$2
FORK=_do_fork; FLAGS='%di:u64'  # before 5.10
grep -q ' kernel_clone$' /proc/kallsyms && { FORK=kernel_clone; FLAGS='+0(%di):u64'; }
echo "p:vmsim/ava alloc_vmap_area size=%di:u64" >> $T/kprobe_events
echo "r1024:vmsim/ava_ret alloc_vmap_area ret=\$retval:s64" >> $T/kprobe_events
echo "p:vmsim/fork $FORK flags=$FLAGS" >> $T/kprobe_events
echo "r1024:vmsim/fork_ret $FORK ret=\$retval:s64" >> $T/kprobe_events
echo "p:vmsim/warn warn_alloc gfp=%di:x32 order=%cx:u32" >> $T/kprobe_events
echo "@@vmsim info fork_function $FORK" >&3
echo "@@vmsim info alloc_vmap_area 0x$AVA_LO-0x$AVA_HI" >&3
"""

ARM = r"""
W='comm == "stress-ng-fork"'
echo 'hist:keys=size:vals=hitcount' > $T/events/vmsim/ava/trigger
echo "hist:keys=size:vals=hitcount if $W" >> $T/events/vmsim/ava/trigger
echo 'hist:keys=ret:vals=hitcount if ret < 0 && ret >= -4095' > $T/events/vmsim/ava_ret/trigger
echo "hist:keys=flags:vals=hitcount if $W" > $T/events/vmsim/fork/trigger
echo "hist:keys=ret:vals=hitcount if ret < 0 && $W" > $T/events/vmsim/fork_ret/trigger
echo 'hist:keys=gfp,order:vals=hitcount' > $T/events/vmsim/warn/trigger
N=$T/events/sched/sched_wakeup_new
[ -d $N ] && echo "hist:keys=cpu,target_cpu:vals=hitcount if $W" > $N/trigger  # cpu: 4.17+
E=$T/events/kmem/mm_page_alloc_extfrag
[ -d $E ] && echo 'hist:keys=alloc_migratetype,fallback_migratetype,fallback_order:vals=hitcount' > $E/trigger
for ev in kmem_cache_alloc kmem_cache_alloc_node; do
  [ -d $T/events/kmem/$ev ] || continue
  [ -n "$AVA_HI" ] || continue
  f="call_site >= 0x$AVA_LO && call_site < 0x$AVA_HI"
  echo "hist:keys=gfp_flags:vals=hitcount if $f" > $T/events/kmem/$ev/trigger
  echo "hist:keys=gfp_flags,ptr:vals=hitcount if ptr == 0 && $f" >> $T/events/kmem/$ev/trigger
done
"""

HISTS = (
    "for h in $T/events/vmsim/*/hist $T/events/kmem/kmem_cache_alloc/hist $T/events/kmem/kmem_cache_alloc_node/hist"
    " $T/events/kmem/mm_page_alloc_extfrag/hist $T/events/sched/sched_wakeup_new/hist;"
    ' do [ -e "$h" ] && { echo "@@hist $h"; while read -r l; do echo "$l"; done < "$h"; }; done;'
    ' echo "@@kprobe_profile"; while read -r l; do echo "$l"; done < $T/kprobe_profile'
)

# uptime, fork count and vmstat with builtins only: the end snapshot runs while every other
# process is stopped, and a forked cat would add its own fork and stack to the counters
SNAPSHOT = (
    'read -r l < /proc/uptime; echo "$l"; '
    'while read -r k v rest; do [ "$k" = processes ] && echo "$k $v"; done < /proc/stat; '
    'while read -r l; do echo "$l"; done < /proc/vmstat'
)

WAIT_MEASURED = """i=0
while [ $i -lt 60 ]; do
  alive=; for p in $MEASURED; do kill -0 $p 2>/dev/null && alive=1; done
  [ -z "$alive" ] && break; sleep 1; i=$((i+1))
done
echo "@@vmsim info measured_stop_wait_s $i" >&3"""


def render(plan: GuestPlan) -> str:
    """The whole agent script (stage 1 and stage 2 in one file)."""
    lines = ["#!/bin/busybox sh", "# vmsim guest agent", 'if [ "$1" != stage2 ]; then', STAGE1.strip(), "fi", ""]
    lines += [
        "# stage 2, on the root disk",
        "mkdir -p /run/bin && /bin/busybox --install -s /run/bin",
        "export PATH=/run/bin:/bin:/usr/bin:/sbin:/usr/sbin",
        "mount -t proc proc /proc; mount -t sysfs sysfs /sys",
        "mount -t tmpfs -o size=64m tmpfs /tmp; mkdir -p /dev/shm; mount -t tmpfs tmpfs /dev/shm",
        f"exec 3> {DATA_PORT}",
        "echo -1000 > /proc/self/oom_score_adj",  # the agent and what it starts itself: never OOM victims
        # cat ends with EPIPE when records it had not read were overwritten; start again
        # (from the oldest record: the host drops repeats by sequence number)
        f"(while :; do cat /dev/kmsg; sleep 0.2; done) 2>/dev/null | sed 's/^/@@K /' > {KMSG_PORT} &",
        "cd /tmp",
        "echo '@@vmsim start'  >&3",
    ]
    lines.append(_section("boot", "uname -r; echo min_free_kbytes $(cat /proc/sys/vm/min_free_kbytes); "
                                  "cat /proc/meminfo; echo @@zoneinfo; cat /proc/zoneinfo; echo @@vmstat; "
                                  "cat /proc/vmstat"))  # fmt: skip
    for key, value in plan.sysctls:  # after the boot snapshot, which is the calibration's input
        lines.append(f"echo {shlex.quote(value)} > /proc/sys/{key.replace('.', '/')}")
    if plan.zram_bytes:
        setup = f"echo {plan.zram_bytes} > /sys/block/zram0/disksize && mkswap /dev/zram0 && swapon /dev/zram0"
        lines.append(_section("swap", f"{setup}; cat /proc/swaps"))
    if plan.page_cache_mib:
        lines.append(f"dd if=/data/filler of=/dev/null bs=1M count={plan.page_cache_mib} 2>/dev/null")
    if plan.shmem_mib:
        lines.append(f"dd if=/dev/zero of=/dev/shm/shmem bs=1M count={plan.shmem_mib} 2>/dev/null")
    lines.append(TRACING)
    lines.append(SAMPLER)
    lines.append(f"sample {plan.sample_interval_s} > {SAMPLE_PORT} 2>/dev/null &")
    lines.append("SAMPLER=$!")
    for cmd in plan.setup:
        lines.append(_spawn(cmd, background=True))
    lines.append(f"sleep {plan.settle_s}")
    lines.append(ARM)
    lines.append(_section("measure_start", SNAPSHOT))
    lines.append("MEASURED=")
    for cmd in plan.measured:
        lines.append(_spawn(cmd, background=True))
        lines.append('MEASURED="$MEASURED $!"')
    lines.append(f"sleep {plan.duration_s}")  # the window ends here, whatever the workloads' stopping takes
    # a snapshot: every other process stopped while the counters are read, so that the
    # hist files (read one after another) and vmstat agree to the same instant
    lines.append("kill -STOP -1")
    lines.append(_section("measure_end", SNAPSHOT))
    lines.append(_section("hist", HISTS))
    lines.append("kill -CONT -1")
    lines.append("kill $SAMPLER 2>/dev/null")
    lines.append(WAIT_MEASURED)
    outputs = " ".join(f"/tmp/{c.name}.out" for c in (*plan.setup, *plan.measured))
    lines.append(_section("outputs", f'for f in {outputs}; do echo "@@file $f"; cat $f; done'))
    lines.append(_section("zoneinfo_end", "cat /proc/zoneinfo"))
    lines.append("sleep 2")
    lines.append("echo '@@vmsim done' >&3")
    lines.append("sync; poweroff -f")
    return "\n".join(lines) + "\n"
