"""Calibrating the model's zones from a real /proc/zoneinfo: `vmsim machine --zoneinfo`,
the scenario key machine.zoneinfo, and the 6.1 profile's pcp high."""

from __future__ import annotations

import json

import pytest

from sim.config.scenario import load_scenario
from sim.config.zoneinfo import calibrated_zones, check_zones, late_freed_kib, parse_zoneinfo, read_zoneinfo
from sim.kernel.mm.zones import MemoryParams, build_zones, zone_batchsize
from sim.kernel.profile import get_profile
from sim.schema.errors import InputError
from tests.conftest import ROOT, vmsim

GUEST61 = ROOT / "scenarios" / "peer" / "guest-6.1-256mb"
GUEST52 = ROOT / "scenarios" / "peer" / "guest-5.2-256mb"


def _check(folder, profile):
    records = read_zoneinfo(folder / "zoneinfo.txt")
    mfk = int((folder / "min_free_kbytes.txt").read_text())
    return check_zones(records, mfk, (folder / "dmesg.txt").read_text(), profile)


@pytest.mark.parametrize(("folder", "profile"), [(GUEST61, "6.1"), (GUEST52, "5.2")])
def test_model_zones_calibrated_from_a_real_guest_equal_the_kernels(folder, profile):
    result = _check(folder, profile)
    assert result["calibration"]["method"] == "dmesg"
    assert result["min_free_kbytes"]["model"] == result["min_free_kbytes"]["real"]
    assert not result["min_free_kbytes"]["overridden"]  # the sqrt rule gave the real value by itself
    for zone in result["zones"]:
        for key, v in zone["values"].items():
            assert v["equal"], (zone["zone"], key, v)


def test_the_uncalibrated_model_differs_from_debians_61_guest():
    result = _check(GUEST61, "6.1")
    dma32 = next(z for z in result["zones"] if z["zone"] == "DMA32")["values"]
    assert dma32["managed"]["uncalibrated"] != dma32["managed"]["real"]
    assert result["min_free_kbytes"]["uncalibrated"] != result["min_free_kbytes"]["real"]


def test_late_frees_are_read_from_dmesg_and_protection_bounds_them_without_it():
    dmesg = (GUEST61 / "dmesg.txt").read_text()
    assert late_freed_kib(dmesg) == late_freed_kib(dmesg.replace("Freeing SMP alternatives", "x"))
    records = read_zoneinfo(GUEST61 / "zoneinfo.txt")
    exact = calibrated_zones(records, dmesg)
    rough = calibrated_zones(records, None)
    assert rough.method == "protection" and abs(rough.freed_after_boot - exact.freed_after_boot) <= 128
    dma = next(z for z in records if z.name == "DMA")
    boot_dma32 = dict(exact.zones)["DMA32"]
    assert dma.protection[1] == boot_dma32 // 256  # the protection is the boot-time figure


def test_zoneinfo_marks_are_stored_without_the_boost():
    text = (GUEST61 / "zoneinfo.txt").read_text()
    old = "        boost    0\n        min      410\n        low      512\n        high     614"
    new = "        boost    100\n        min      510\n        low      612\n        high     714"
    boosted = text.replace(old, new, 1)
    assert boosted != text
    dma32 = next(z for z in parse_zoneinfo(boosted) if z.name == "DMA32")
    assert (dma32.boost, dma32.min, dma32.low, dma32.high) == (100, 410, 512, 614)


def test_a_file_that_is_not_zoneinfo_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "z.txt"
    bad.write_text("hello\n")
    with pytest.raises(InputError, match=r"z\.txt: expected /proc/zoneinfo"):
        read_zoneinfo(bad)
    bad.write_text("Node 0, zone      DMA\n  pages free     x12\n")
    with pytest.raises(InputError) as err:
        read_zoneinfo(bad)
    assert err.value.where == 2
    with pytest.raises(InputError, match="cannot read zoneinfo"):
        read_zoneinfo(tmp_path / "missing.txt")


def test_vmsim_machine_with_zoneinfo_prints_model_and_real_side_by_side(monkeypatch, capsys):
    args = ["machine", "--zoneinfo", str(GUEST61 / "zoneinfo.txt"), "--dmesg", str(GUEST61 / "dmesg.txt"),
            "--min-free-kbytes", (GUEST61 / "min_free_kbytes.txt").read_text().strip(), "--kernel", "6.1"]  # fmt: skip
    code, out, err = vmsim(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "from dmesg" in out and "!=" not in out.replace("uncalibrated", "")
    code, out, _ = vmsim(monkeypatch, capsys, *args, "--json")
    assert json.loads(out)["calibration"]["method"] == "dmesg"
    code, _, err = vmsim(monkeypatch, capsys, "machine", "--ram", "256MiB", "--dmesg", "x")
    assert code == 2 and "needs --zoneinfo" in err


def test_scenario_zoneinfo_key_sets_the_zones_relative_to_the_file():
    scenario = load_scenario(ROOT / "scenarios" / "peer" / "fork-storm-256mb.yaml")
    memory = scenario.machine_config("preload-gfp").memory
    assert dict(memory.zones)["DMA"] == 3840 and memory.freed_after_boot > 0
    table = build_zones(256 << 20, 4, False, get_profile("6.1"), memory)
    real = {z.name: z for z in read_zoneinfo(GUEST61 / "zoneinfo.txt")}
    assert [(z.managed, z.min, z.high) for z in table.zones] == [
        (real[n].managed, real[n].min, real[n].high) for n in ("DMA", "DMA32")
    ]


def test_scenario_zoneinfo_errors_name_the_key(tmp_path):
    base = (ROOT / "scenarios" / "peer" / "boot-4cpu.yaml").read_text()
    path = tmp_path / "s.yaml"
    path.write_text(base.replace("  swap: off", "  swap: off\n  zoneinfo: nowhere.txt"))
    with pytest.raises(InputError, match=r"machine\.zoneinfo: cannot read zoneinfo"):
        load_scenario(path)
    path.write_text(base.replace("  swap: off", f"  swap: off\n  zoneinfo: {GUEST61}/zoneinfo.txt\n  memory:\n"
                                                "    zones: [[DMA32, 1000]]"))  # fmt: skip
    with pytest.raises(InputError, match="not both"):
        load_scenario(path)


def test_61_pcp_high_is_the_low_mark_split_over_cpus_and_older_profiles_keep_six_batches():
    params = MemoryParams(zones=(("DMA", 3840), ("DMA32", 45730)))
    new = build_zones(256 << 20, 4, False, get_profile("6.1"), params)
    old = build_zones(256 << 20, 4, False, get_profile("5.2"), params)
    for z_new, z_old in zip(new.zones, old.zones):
        assert z_new.pcp_high == max(z_new.low // 4, 4 * z_new.pcp_batch)
        assert z_old.pcp_high == 6 * zone_batchsize(z_old.managed)


def test_freed_after_boot_adds_to_managed_but_not_to_the_marks():
    base = MemoryParams(zones=(("DMA", 3840), ("DMA32", 45730)))
    late = MemoryParams(zones=(("DMA", 3840), ("DMA32", 45730)), freed_after_boot=2427)
    a = build_zones(256 << 20, 4, False, get_profile("6.1"), base)
    b = build_zones(256 << 20, 4, False, get_profile("6.1"), late)
    assert b.zones[1].managed == a.zones[1].managed + 2427
    assert (b.zones[1].min, b.zones[1].high, b.min_free_kbytes) == (a.zones[1].min, a.zones[1].high, a.min_free_kbytes)


def test_a_sweep_over_a_calibrated_scenario_finds_its_files_from_any_folder(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sw.yaml"
    base = ROOT / "scenarios" / "peer" / "fork-storm-256mb.yaml"
    factors = "factors:\n  workloads.1.size: [1MiB, 96MiB]\nreplications: 1\nset:\n  duration: 0.2s\n"
    sweep.write_text(f"name: sw\nscenario: {base}\n" + factors)
    monkeypatch.chdir(tmp_path)
    code, out, err = vmsim(monkeypatch, capsys, "sweep", str(sweep), "--executor", "serial", "--out", "o")
    assert code == 0, err
    assert "2 runs: 2 ok" in out


def test_scenario_hash_follows_the_zoneinfo_files_contents_not_their_path(tmp_path):
    import shutil

    copy = tmp_path / "peer"
    shutil.copytree(ROOT / "scenarios" / "peer", copy)
    a = load_scenario(ROOT / "scenarios" / "peer" / "fork-storm-256mb.yaml").scenario_hash()
    b = load_scenario(copy / "fork-storm-256mb.yaml").scenario_hash()
    assert a == b
    zi = copy / "guest-6.1-256mb" / "zoneinfo.txt"
    zi.write_text(zi.read_text().replace("managed  3840", "managed  3841"))
    assert load_scenario(copy / "fork-storm-256mb.yaml").scenario_hash() != a


def test_ram_and_cpus_must_describe_the_zoneinfo_machine():
    path = ROOT / "scenarios" / "peer" / "fork-storm-256mb.yaml"
    with pytest.raises(InputError, match=r"machine\.ram: 4096 MiB, but machine\.zoneinfo holds 255 MiB"):
        load_scenario(path, ["machine.ram=4GiB"])
    with pytest.raises(InputError, match=r"machine\.cpus: 8, but machine\.zoneinfo lists per-CPU pages of 4 CPUs"):
        load_scenario(path, ["machine.cpus=8"])


def test_a_numa_zoneinfo_is_refused_in_one_line(tmp_path):
    text = (GUEST61 / "zoneinfo.txt").read_text()
    path = tmp_path / "numa.txt"
    path.write_text(text + text.replace("Node 0,", "Node 1,"))
    with pytest.raises(InputError, match="vmsim models one node"):
        read_zoneinfo(path)


def test_a_tunable_set_after_boot_uses_the_managed_pages_of_that_time():
    boot = (("DMA", 3840), ("DMA32", 45730))
    late = MemoryParams(zones=boot, freed_after_boot=2428, min_free_kbytes=4096)
    final = MemoryParams(zones=(("DMA", 3840), ("DMA32", 45730 + 2428)), min_free_kbytes=4096)
    a = build_zones(256 << 20, 4, False, get_profile("6.1"), late)
    b = build_zones(256 << 20, 4, False, get_profile("6.1"), final)
    assert [(z.min, z.low, z.high) for z in a.zones] == [(z.min, z.low, z.high) for z in b.zones]
