"""The answer's background lane: uptime sweeps run in a child process beside the rest, with
the same results as when every sweep runs in turn."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sim.app.answer import run_answer

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "scenarios" / "answer" / "base" / "fork-storm.yaml"


def _suite(folder: Path) -> Path:
    folder.mkdir()
    (folder / "uptime-tiny.yaml").write_text(
        f"name: uptime-tiny\nscenario: {BASE}\nset: {{duration: 0.4s}}\nreplications: 2\nstrategies: [nowait]\n"
    )
    (folder / "ram.yaml").write_text(
        f"name: ram\nscenario: {BASE}\nset: {{duration: 0.3s}}\nreplications: 1\nstrategies: [nowait]\n"
        "factors:\n  machine.ram: [192MiB, 256MiB]\n"
    )
    return folder


def _rows(out: Path, sweep: str) -> pd.DataFrame:
    runs = pd.read_parquet(out / sweep / "runs.parquet").drop(columns=["wall_seconds"])
    return runs.sort_values("run_id").reset_index(drop=True)


def test_the_uptime_sweeps_run_in_a_lane_and_give_the_results_of_a_serial_answer(tmp_path, capfd):
    suite = _suite(tmp_path / "suite")
    laned = run_answer(tmp_path / "laned", executor="process", jobs=2, suite=suite)
    assert "(background lane)" in capfd.readouterr().out
    serial = run_answer(tmp_path / "serial", executor="serial", suite=suite)
    assert laned["sweeps"] == serial["sweeps"] == {
        "ram": {"runs": 2, "statuses": {"ok": 2}}, "uptime-tiny": {"runs": 2, "statuses": {"ok": 2}},
    }  # fmt: skip
    for sweep in ("ram", "uptime-tiny"):
        pd.testing.assert_frame_equal(_rows(tmp_path / "laned", sweep), _rows(tmp_path / "serial", sweep))
    assert (tmp_path / "laned" / "report.md").exists()
