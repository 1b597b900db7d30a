"""`vmsim compare`: the model beside the real kernel, per fork and per call, and
`vmsim peer`'s one-line refusals (no QEMU needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from sim.analysis.comparison import Ratio, compare_folders, pooled, zone_measures
from sim.record.results import RUN_COLUMNS, write_run_folder
from tests.conftest import ROOT, vmsim


def _folder(path, strategy, kernel, rows, samples):
    full = [{**dict.fromkeys(RUN_COLUMNS), "strategy": strategy, "kernel": kernel, "status": "ok", "error": "", **r}
            for r in rows]  # fmt: skip
    write_run_folder(path, {"guest": {"accel": "tcg", "accel_reason": "asked for"}}, full, [], samples,
                     list(RUN_COLUMNS))  # fmt: skip


def test_ratios_are_pooled_over_runs_and_missing_columns_give_none():
    runs = pd.DataFrame({"forks": [100, 300], "vmalloc_calls": [10, 50], "oom_kills": [None, None]})
    assert pooled(runs, Ratio("x", "vmalloc_calls", "forks")) == pytest.approx(60 / 400)
    assert pooled(runs, Ratio("x", "oom_kills", "forks")) is None
    assert pooled(runs, Ratio("x", "fit_ne", "forks")) is None


def test_zone_measures_use_the_steady_state_and_know_a_missing_boost():
    samples = pd.DataFrame({"run_id": "a", "time": [0, 1, 2, 3, 4], "DMA32_free": [9000, 100, 200, 300, 400],
                            "DMA32_boost": [0, 0, 512, 512, 0]})  # fmt: skip
    m = zone_measures(samples)
    assert m["boost share"] == pytest.approx(2 / 4) and m["DMA32 free median"] == 250
    assert zone_measures(samples.assign(DMA32_boost=None))["boost share"] is None


def test_compare_writes_a_table_with_ratios_and_flags_a_gap(tmp_path, monkeypatch, capsys):
    model, real = tmp_path / "model", tmp_path / "real"
    series = [{"run_id": "m", "time": t, "DMA32_free": 1000, "DMA32_boost": 0} for t in range(4)]
    _folder(model, "preload-gfp", "6.1", [{"run_id": "m", "forks": 1000, "vmalloc_calls": 400, "sim_seconds": 10,
                                            "preload_fills": 400, "oom_kills": 0}], series)  # fmt: skip
    _folder(real, "real", "6.1.0-57-amd64", [{"run_id": "r", "forks": 1000, "vmalloc_calls": 100, "sim_seconds": 10,
                                              "preload_fills": 103}], [])  # fmt: skip
    text = compare_folders(model, real)
    line = next(x for x in text.splitlines() if x.startswith("| vmalloc calls per fork"))
    assert "| 0.4 [0.37, 0.431] | 0.1 [0.0829, 0.12] | 4 | >25% |" in line  # Wilson intervals of 400 and 100 in 1000
    assert "| OOM kills per 1000 forks | 0 | - | - |" in text  # the guest gave no figure: "-", not 0
    code, out, err = vmsim(monkeypatch, capsys, "compare", str(model), str(real))
    assert code == 0, err
    assert (real / "compare.md").read_text() == out.split("written:")[0]
    code, _, err = vmsim(monkeypatch, capsys, "compare", str(model), str(real), "--strategy", "nowait")
    assert code == 2 and "--strategy" in err
    code, _, err = vmsim(monkeypatch, capsys, "compare", str(tmp_path / "none"), str(real))
    assert code == 2 and "runs.parquet" in err and "\n" not in err.strip()


def test_peer_without_qemu_names_the_package(monkeypatch, capsys):
    import sim.peer.qemu as qemu

    monkeypatch.setattr(qemu.shutil, "which", lambda name: None)
    kernel = ROOT / "tests" / "data" / "peer" / "v61-reclaim" / "data.log"  # any file stands for a bzImage
    code, _, err = vmsim(monkeypatch, capsys, "peer", str(ROOT / "scenarios" / "peer" / "boot-4cpu.yaml"),
                         "--kernel", str(kernel))  # fmt: skip
    assert code == 2 and "apt-get install qemu-system-x86" in err and err.count("\n") == 1


def test_peer_refuses_a_model_only_workload_before_looking_for_qemu(monkeypatch, capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text((ROOT / "scenarios" / "peer" / "boot-4cpu.yaml").read_text()
                    + "  - {kind: bpf_jit}\n")  # fmt: skip
    code, _, err = vmsim(monkeypatch, capsys, "peer", str(path))
    assert code == 2 and "workloads.1.kind: bpf_jit has no counterpart" in err and err.count("\n") == 1
    code, _, err = vmsim(monkeypatch, capsys, "peer", "build-kernel")
    assert code == 2 and "source folder" in err


def test_model_counters_absent_from_a_run_count_as_zero_but_a_guests_stay_missing(tmp_path):
    from sim.analysis.comparison import load_side
    from sim.record.results import write_table

    model, real = tmp_path / "model", tmp_path / "real"
    rows = [{"run_id": "a", "forks": 100}, {"run_id": "b", "forks": 100}]
    _folder(model, "nowait", "5.2", rows, [])
    write_table(model / "counters.parquet", [{"run_id": "a", "name": "watermark_boost", "value": 3.0}])
    _folder(real, "real", "5.2.1", [{"run_id": "r", "forks": 100}], [])
    boosts = Ratio("b", "watermark_boost", "forks", 1e3)
    assert pooled(load_side(model, None, real=False).runs, boosts) == pytest.approx(15.0)  # 3 in 200 forks
    assert pooled(load_side(real, None, real=True).runs, boosts) is None


def test_compare_says_when_the_two_folders_ran_different_scenarios(tmp_path):
    model, real = tmp_path / "model", tmp_path / "real"
    _folder(model, "nowait", "5.2", [{"run_id": "m", "scenario": "a", "forks": 10, "sim_seconds": 1}], [])
    _folder(real, "real", "5.2.1", [{"run_id": "r", "scenario": "b", "forks": 10, "sim_seconds": 1}], [])
    assert "**Different scenarios: the model ran a, the guest b.**" in compare_folders(model, real)
    _folder(real, "real", "5.2.1", [{"run_id": "r", "scenario": "a", "forks": 10, "sim_seconds": 1}], [])
    assert "Different scenarios" not in compare_folders(model, real)
