"""`vmsim machine`: the boot-time zone table, its units, THP default and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from sim.schema.units import parse_size
from tests.conftest import vmsim


def rows(text: str) -> dict[str, list[str]]:
    split = [line.split() for line in text.splitlines()]
    return {words[0]: words for words in split if words[:1] in (["DMA"], ["DMA32"], ["Normal"])}


def test_machine_prints_managed_pages_watermarks_and_reserves_for_256mb(monkeypatch, capsys):
    code, out, err = vmsim(monkeypatch, capsys, "machine", "--ram", "256MiB", "--cpus", "4")
    assert code == 0, err
    assert "min_free_kbytes 1919 (sqrt rule)" in out and "THP off" in out
    table = rows(out)
    assert table["DMA32"][1:5] == ["53600", "445", "556", "667"]
    assert table["DMA"][1:5] == ["3977", "33", "41", "49"]
    assert "(0, 209)" in " ".join(table["DMA"])


def test_thp_defaults_on_from_512mb_and_raises_min_free_kbytes(monkeypatch, capsys):
    code, out, _ = vmsim(monkeypatch, capsys, "machine", "--ram", "1GiB")
    assert code == 0 and "min_free_kbytes 45056 (THP rule; the sqrt rule gives 4013)" in out
    assert rows(out)["DMA32"][2:5] == ["11086", "13857", "16628"]
    code, out, _ = vmsim(monkeypatch, capsys, "machine", "--ram", "1GiB", "--thp", "off")
    assert "min_free_kbytes 4013 (sqrt rule)" in out
    code, out, _ = vmsim(monkeypatch, capsys, "machine", "--ram", "512MiB")
    assert "THP off (hugepage_init" in out


def test_json_output_has_every_zone_and_its_lowmem_reserve(monkeypatch, capsys):
    code, out, _ = vmsim(monkeypatch, capsys, "machine", "--ram", "4G", "--thp", "off", "--kernel", "6.3", "--json")
    data = json.loads(out)
    assert code == 0 and data["kernel"] == "6.3" and data["min_free_kbytes"] == 8162
    zones = {z["name"]: z for z in data["zones"]}
    assert (zones["Normal"]["min"], zones["Normal"]["low"], zones["Normal"]["high"]) == (499, 754, 1009)
    assert zones["DMA"]["lowmem_reserve"] == {"DMA": 0, "DMA32": 3054, "Normal": 4050}


@pytest.mark.parametrize(
    ("text", "value"),
    [("256MiB", 256 << 20), ("4G", 4 << 30), ("1GiB", 1 << 30), ("512m", 512 << 20), ("65536K", 64 << 20),
     ("1.5GiB", 3 << 29), ("1048576", 1 << 20)],
)  # fmt: skip
def test_sizes_take_binary_units(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ram", "lots"], "vmsim: --ram: expected a size"),
        (["--ram", "16MiB"], "vmsim: --ram: expected at least 32MiB"),
        (["--ram", "1G", "--thp", "maybe"], "vmsim: --thp: expected on or off"),
        (["--ram", "1G", "--kernel", "4.19"], "vmsim: --kernel: expected one of 5.2"),
        (["--ram", "1G", "--cpus", "0"], "vmsim: --cpus: should be greater than or equal to 1"),
        (["--ram", "1G", "--cpus", "100000"], "vmsim: --cpus: expected at most 8192 CPUs"),
        (["--ram", "99999999TiB"], "vmsim: --ram: expected at most 64TiB"),
        (["--ram", "256Mb"], "vmsim: --ram: size unit 'Mb' in '256Mb' reads as bits"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, args, message):
    code, out, err = vmsim(monkeypatch, capsys, "machine", *args)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1 and out == ""


def test_the_installed_entry_point_runs_the_command():
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "vmsim"]
    assert script.value == "sim.cli:main"
    exe = shutil.which("vmsim", path=str(Path(sys.executable).parent)) or shutil.which("vmsim")
    assert exe is not None, "the vmsim console script is not installed"
    res = subprocess.run(
        [exe, "machine", "--ram", "16GiB", "--thp", "off"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    normal = rows(res.stdout)["Normal"]
    assert normal[2:5] == ["3258", "6548", "9838"]
    with pytest.raises(ValueError):
        parse_size("12 parsecs")
