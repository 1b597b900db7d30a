"""`vmsim peer`, host side: the initramfs, the module order, the scenario translation,
the agent script and the kernel build recipe (no QEMU needed)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from sim.config.scenario import load_scenario
from sim.peer.agent import GuestCommand, GuestPlan, render
from sim.peer.cpio import Entry, gzip_newc, read_newc, write_newc
from sim.peer.image import find_kernel, module_order
from sim.peer.kbuild import REQUIRED, config_edits, missing_options
from sim.peer.translation import translate
from sim.schema.errors import InputError
from tests.conftest import ROOT

REZKI = ROOT / "scenarios" / "rezki-2019-256mb.yaml"
PEER = ROOT / "scenarios" / "peer" / "fork-storm-256mb.yaml"


def test_newc_archive_round_trips_and_is_byte_identical_for_the_same_entries():
    entries = [Entry.directory("bin"), Entry.file("bin/x", b"abc\x00", executable=True), Entry.symlink("bin/y", "x")]
    data = write_newc(entries)
    back = read_newc(data)
    assert [(e.path, e.mode, e.data) for e in back] == [(e.path, e.mode, e.data) for e in entries]
    assert gzip_newc(entries) == gzip_newc(entries)  # deterministic: a content hash is a cache key
    assert gzip.decompress(gzip_newc(entries)) == data
    assert len(data) % 4 == 0


def test_module_order_puts_dependencies_first_and_skips_builtins(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/a/virtio_blk.ko: kernel/a/virtio_ring.ko kernel/a/virtio.ko\n"
        "kernel/a/virtio_pci.ko: kernel/a/virtio.ko kernel/a/virtio_ring.ko\n"
        "kernel/a/virtio.ko: kernel/a/virtio_ring.ko\n"
        "kernel/a/virtio_ring.ko:\n"
    )
    order = [p.name for p in module_order(tmp_path, ("virtio_pci", "virtio_blk", "ext4"))]
    assert order == ["virtio_ring.ko", "virtio.ko", "virtio_pci.ko", "virtio_blk.ko"]


def test_find_kernel_names_the_package_when_no_kernel_is_installed(tmp_path):
    with pytest.raises(InputError, match="install linux-image-amd64"):
        find_kernel(boot=tmp_path)
    with pytest.raises(InputError, match="no such kernel image"):
        find_kernel(tmp_path / "bzImage")


def test_translation_runs_the_fork_storm_measured_and_the_hog_and_shmem_before():
    t = translate(load_scenario(REZKI), str(REZKI))
    assert t.machine.cpus == 4 and t.machine.ram_mib == 256
    assert "preempt=none" in t.machine.cmdline
    (fork,) = t.plan.measured
    assert "--fork 256 --fork-max 1 --timeout 60s" in fork.command
    (hog,) = t.plan.setup
    assert "--vm 1 --vm-bytes 92m --vm-keep" in hog.command and hog.oom_score_adj == 0
    assert "--oomable" not in hog.command  # the model's hog restarts, so stress-ng's must too
    assert t.plan.shmem_mib == 56 and t.plan.page_cache_mib == 24
    notes = " ".join(t.notes)
    assert "SLAB" in notes and "does not restart a fork instance" in notes


def test_translation_of_the_peer_scenario_needs_no_restart_note_and_applies_sysctls():
    t = translate(load_scenario(PEER, ["machine.memory.watermark_boost_factor=0"]), str(PEER))
    assert ("vm.watermark_boost_factor", "0") in t.plan.sysctls
    assert not any("does not restart a fork instance" in n for n in t.notes)
    assert "preempt=voluntary" in t.machine.cmdline


SMALL = """name: small
kernel: "6.1"
strategies: [preload-gfp]
duration: 5s
machine: {cpus: 2, ram: 256MiB, slab: SLUB, preemption: PREEMPT}
workloads:
  - {kind: fork_storm, workers: 4}
  - WORKLOAD
"""


@pytest.mark.parametrize(
    ("preemption", "workload", "key", "reason"),
    [
        ("none", "{kind: module_load}", "workloads.1.kind", "module_load has no counterpart"),
        ("none", "{kind: vmap_blocks}", "workloads.1.kind", "vmap_blocks has no counterpart"),
        ("none", "{kind: net_rx}", "workloads.1.kind", "virtio-net device the guest lacks"),
        ("none", "{kind: test_vmalloc}", "workloads.1.kind", "test_vmalloc module"),
        ("rt", "{kind: shmem, size: 1MiB}", "machine.preemption", "PREEMPT_RT"),
    ],
)
def test_a_workload_or_machine_with_no_real_counterpart_is_refused_in_one_line(tmp_path, preemption, workload, key,
                                                                               reason):  # fmt: skip
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.replace("PREEMPT", preemption).replace("WORKLOAD", workload))
    with pytest.raises(InputError) as err:
        translate(load_scenario(path), str(path), guest_modules=None)
    assert err.value.where == key and reason in err.value.message
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_hog_with_a_hold_time_is_refused():
    scenario = load_scenario(PEER, ["workloads.1.hold=5s"])
    with pytest.raises(InputError, match="hold time"):
        translate(scenario, str(PEER))


def test_agent_script_is_valid_shell_and_arms_every_counter():
    plan = GuestPlan(
        "x", 30, 1.0, sysctls=(("vm.min_free_kbytes", "4096"),), shmem_mib=8, page_cache_mib=4,
        setup=(GuestCommand("hog", "/usr/bin/stress-ng --vm 1", 0),),
        measured=(GuestCommand("fork", "/usr/bin/stress-ng --fork 4", None),),
    )  # fmt: skip
    script = render(plan)
    sh = shutil.which("busybox") or shutil.which("sh")
    args = [sh, "sh", "-n"] if sh and sh.endswith("busybox") else [sh, "-n"]
    done = subprocess.run([*args, "/dev/stdin"], input=script, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for probe in ("p:vmsim/ava alloc_vmap_area", "vmsim/fork_ret", "p:vmsim/warn warn_alloc", "kmem_cache_alloc_node"):
        assert probe in script
    assert "echo 4096 > /proc/sys/vm/min_free_kbytes" in script
    assert "kill -STOP -1" in script and script.index("kill -STOP -1") < script.index("@@vmsim begin hist")
    assert "echo 0 > /proc/self/oom_score_adj; exec /usr/bin/stress-ng --vm 1" in script


def test_kernel_recipe_keeps_what_the_comparison_needs(tmp_path):
    args = config_edits()
    assert args[args.index("SLAB") - 1] == "--enable" and args[args.index("SLUB") - 1] == "--disable"
    assert missing_options("CONFIG_SLAB=y\nCONFIG_VMAP_STACK=y\n") == [
        n for n in REQUIRED if n not in ("SLAB", "VMAP_STACK")
    ]
    assert missing_options("\n".join(f"CONFIG_{n}=y" for n in REQUIRED)) == []


def test_build_kernel_refuses_a_folder_that_is_not_a_kernel_tree(tmp_path):
    from sim.peer.kbuild import build_kernel

    with pytest.raises(InputError, match="expected a Linux source tree"):
        build_kernel(tmp_path)


def test_reference_config_of_the_recipe_matches_the_research_config_where_present():
    """The recipe sets every option the research's v5.2 .config has as y among REQUIRED."""
    config = Path(ROOT.parent / "shared" / "research" / "real-kernel" / "v52.config")
    if not config.exists():
        pytest.skip("../shared/research/real-kernel/v52.config is not beside this checkout")
    assert missing_options(config.read_text()) == []


def test_more_boots_into_a_folder_add_replications_and_other_work_is_refused(tmp_path):
    from sim.peer.session import _first_new_replication
    from sim.record.results import write_json

    meta = {"guest_kernel": "/boot/vmlinuz-x", "cmdline": "console=ttyS0", "plan": {"duration_s": 30}, "accel": "tcg"}
    assert _first_new_replication(tmp_path, meta) == 0
    (tmp_path / "guest" / "r000").mkdir(parents=True)
    (tmp_path / "guest" / "r003").mkdir()
    write_json(tmp_path / "manifest.json", {"guest": meta})
    assert _first_new_replication(tmp_path, meta) == 4
    with pytest.raises(InputError, match="other work or another kernel"):
        _first_new_replication(tmp_path, {**meta, "plan": {"duration_s": 60}})


def test_the_sampler_turns_proc_files_into_sample_lines_without_forking(tmp_path):
    """The agent's sampler, run by busybox sh on captured /proc files, prints the lines the
    parser reads (the zones with managed pages, the boost apart, the chosen vmstat counters)."""
    from sim.peer.agent import SAMPLER
    from sim.peer.capture import parse_guest

    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed")
    zoneinfo = ROOT / "scenarios" / "peer" / "guest-6.1-256mb" / "zoneinfo.txt"
    (tmp_path / "uptime").write_text("12.50 40.00\n")
    (tmp_path / "vmstat").write_text("nr_free_pages 41000\nnr_shmem 2\nnr_shmem_hugepages 0\noom_kill 3\npgfault 9\n")
    script = SAMPLER + "sample_once\n"
    env = {"UPTIME": str(tmp_path / "uptime"), "ZONEINFO": str(zoneinfo), "VMSTAT": str(tmp_path / "vmstat")}
    done = subprocess.run([busybox, "sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    out = parse_guest(done.stdout)
    assert out.garbled == 0
    from sim.config.zoneinfo import parse_zoneinfo

    real = [(z.name, z.free, z.managed) for z in parse_zoneinfo(zoneinfo.read_text())]
    assert [(z, v[0], v[5]) for _, z, v in out.zone_samples] == real
    ((t, values),) = out.vmstat_samples
    assert t == 12.5 and values == {"nr_free_pages": 41000, "nr_shmem": 2, "oom_kill": 3}
    assert not any(word in SAMPLER for word in ("awk", "sleep", "cat ", "grep"))  # builtins only
