"""`pytest -m qemu`: a real guest boots and `vmsim peer` writes a results folder.

Needs qemu-system-x86, a kernel in /boot (linux-image-amd64), busybox-static,
stress-ng and e2fsprogs; skips, saying which is missing, where they are not.
Not part of the default suite or CI: a boot under TCG takes about a minute.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from sim.peer.image import BUSYBOX, STRESS_NG, find_kernel
from sim.schema.errors import InputError
from tests.conftest import ROOT, vmsim

pytestmark = pytest.mark.qemu


def _require_guest_tools() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 missing (apt-get install qemu-system-x86)")
    if not BUSYBOX.exists() or not STRESS_NG.exists() or shutil.which("mke2fs") is None:
        pytest.skip("busybox-static, stress-ng or e2fsprogs missing")
    try:
        find_kernel()
    except InputError as err:
        pytest.skip(str(err))


def test_a_short_guest_run_writes_a_folder_that_compare_and_plot_read(tmp_path, monkeypatch, capsys):
    _require_guest_tools()
    out = tmp_path / "peer"
    code, text, err = vmsim(monkeypatch, capsys, "peer", str(ROOT / "scenarios" / "peer" / "boot-4cpu.yaml"),
                            "--set", "duration=3s", "--accel", "tcg", "--out", str(out))  # fmt: skip
    assert code == 0, err
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs["status"].tolist() == ["ok"], runs["error"].tolist()
    assert runs["forks"].iloc[0] > 0 and runs["vmalloc_calls"].iloc[0] > 0
    assert not pd.read_parquet(out / "timeseries.parquet").empty
    assert (out / "guest" / "r000" / "zoneinfo.txt").exists()
    code, _, err = vmsim(monkeypatch, capsys, "plot", str(out))
    assert code == 0, err
    model = tmp_path / "model"
    code, _, err = vmsim(monkeypatch, capsys, "run", str(ROOT / "scenarios" / "peer" / "boot-4cpu.yaml"),
                         "--set", "duration=0.2s", "--out", str(model))  # fmt: skip
    assert code == 0, err
    code, text, err = vmsim(monkeypatch, capsys, "compare", str(model), str(out))
    assert code == 0 and "vmalloc calls per fork" in text
