"""Signals stop a sweep or a run quickly, its worker processes die with it, what finished is kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sim.config.sweepfile import load_sweep
from tests.test_sweep import vmsim

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "scenarios" / "rezki-2019-256mb.yaml"
# four runs of about a second each: two in flight on two workers when the signal comes
SHORT = f"""\
name: short
scenario: {BASE}
set: {{duration: 0.6s}}
factors:
  machine.ram: [160MiB, 256MiB]
replications: 1
seed: 3
strategies: [nowait, preload]
"""


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: the command and every descendant, even
    those that were re-parented to init when the command died."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "sim.cli", *args], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def finished_lines(out: Path) -> int:
    path = out / "status.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def gone_within(sid: int, seconds: float) -> float:
    """Seconds until no process of session ``sid`` is left (fails after ``seconds``)."""
    t0 = time.monotonic()
    wait_for(lambda: not session_processes(sid), seconds)
    return time.monotonic() - t0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killing_a_sweep_ends_every_worker_and_resume_finishes_it(tmp_path, monkeypatch, capsys, signum):
    path = tmp_path / "short.yaml"
    path.write_text(SHORT)
    out = tmp_path / "out"
    proc = start(["sweep", str(path), "-j", "2", "--chunk", "1", "--out", str(out)])
    try:
        wait_for(lambda: finished_lines(out) >= 1 or proc.poll() is not None)
        assert len(session_processes(proc.pid)) >= 4  # the command, forkserver, tracker, workers
        os.kill(proc.pid, signum)  # the command only, as `kill` would
        proc.wait(timeout=5)
        gone_within(proc.pid, 5)
    finally:
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
    if signum == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        err = proc.stderr.read()
        assert "stopped by SIGTERM" in err and f"--resume --out {out}" in err
    kept = finished_lines(out)
    assert 1 <= kept < 4
    code, stdout, _ = vmsim(monkeypatch, capsys, "sweep", str(path), "-j", "2", "--resume", "--out", str(out))
    assert code == 0, stdout
    assert f"{kept} kept from before, {4 - kept} run now" in stdout
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs["run_id"]) == [spec.run_id for spec in load_sweep(path).runs()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_a_sweep_within_seconds_and_says_how_to_resume(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text(SHORT.replace("0.6s", "60s"))  # runs far longer than the test waits, compiled too
    out = tmp_path / "out"
    proc = start(["sweep", str(path), "-j", "2", "--out", str(out), "--set", "machine.cpus=2"])
    try:
        wait_for(lambda: len(session_processes(proc.pid)) >= 5 or proc.poll() is not None)
        time.sleep(0.5)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # the terminal sends it to the whole group
        proc.wait(timeout=5)
        stopped = time.monotonic() - t0
        gone_within(proc.pid, 5)
    finally:
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
    err = proc.stderr.read()
    assert proc.returncode == 130 and stopped < 3, err
    lines = [line for line in err.splitlines() if line.startswith("vmsim:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "stopped by SIGINT; 0 of 4 runs finished are kept" in lines[0]
    assert f"vmsim sweep {path} --resume --set machine.cpus=2 --out {out}" in lines[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_a_run_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = start(["run", str(BASE), "--set", "duration=60s", "--set", "replications=1", "--out", str(out)])
    try:
        assert "2 strategies x 1 replications" in proc.stdout.readline()  # loaded, now simulating
        time.sleep(0.5)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=5)
        stopped = time.monotonic() - t0
    finally:
        for pid in session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
    err = proc.stderr.read()
    assert proc.returncode == 130 and stopped < 3, err
    assert "stopped by SIGINT after 0 of 2 runs; nothing written" in err and "Traceback" not in err
    assert not out.exists()


def test_run_on_two_workers_gives_the_tables_of_one(tmp_path, monkeypatch, capsys):
    args = ["run", str(BASE), "--set", "duration=0.2s", "--set", "replications=2", "--seed", "5"]
    code1, _, _ = vmsim(monkeypatch, capsys, *args, "--out", str(tmp_path / "j1"))
    code2, stdout, _ = vmsim(monkeypatch, capsys, *args, "--out", str(tmp_path / "j2"), "-j", "2")
    assert code1 == code2 == 0, stdout
    assert stdout.count(": ok in ") == 4
    for table in ("runs", "events", "timeseries", "counters"):
        a = pd.read_parquet(tmp_path / "j1" / f"{table}.parquet")
        b = pd.read_parquet(tmp_path / "j2" / f"{table}.parquet")
        if table == "runs":
            a, b = a.drop(columns="wall_seconds"), b.drop(columns="wall_seconds")
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_run_refuses_an_out_that_is_a_file_before_simulating(tmp_path, monkeypatch, capsys, make):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    out = afile if make == "file" else afile / "sub"
    code, stdout, err = vmsim(monkeypatch, capsys, "run", str(BASE), "--out", str(out))
    assert code == 2 and err.startswith("vmsim: --out: ") and len(err.splitlines()) == 1
    assert ": ok in " not in stdout and afile.read_text() == "keep me"


def test_run_into_an_existing_results_folder_overwrites_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    args = ["run", str(BASE), "--set", "duration=0.1s", "--set", "replications=1", "--out", str(out)]
    assert vmsim(monkeypatch, capsys, *args)[0] == 0
    assert vmsim(monkeypatch, capsys, *args)[0] == 0
    assert len(pd.read_parquet(out / "runs.parquet")) == 2


def test_sweep_set_shortens_the_base_and_is_part_of_the_plan(tmp_path, monkeypatch, capsys):
    path = tmp_path / "short.yaml"
    path.write_text(SHORT)
    plan = load_sweep(path, ["duration=0.1s", "replications=2"])
    assert plan.base.duration == pytest.approx(0.1) and plan.replications == 2 and len(plan.runs()) == 8
    assert plan.points[0].scenario_hash != load_sweep(path).points[0].scenario_hash
    out = tmp_path / "out"
    code, stdout, _ = vmsim(monkeypatch, capsys, "sweep", str(path), "--executor", "serial", "--set",
                            "duration=0.1s", "--out", str(out))  # fmt: skip
    assert code == 0, stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sweep"]["cli_set"] == ["duration=0.1s"] and manifest["scenario"]["duration"] == 0.1
    code, _, err = vmsim(monkeypatch, capsys, "sweep", str(path), "--executor", "serial", "--resume",
                         "--out", str(out))  # fmt: skip
    assert code == 2 and "another sweep" in err  # a resume needs the same --set


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("machine.ram=1GiB", "--set machine.ram=1GiB: overlaps factor machine.ram"),
        ("duration=soon", "--set duration=soon: duration:"),
        ("name=other", "--set name=other: name names the base scenario"),
        ("nosuch.key=1", "--set nosuch.key=1: "),
        ("duration", "--set duration: expected KEY.PATH=VALUE"),
    ],
)
def test_a_bad_sweep_set_is_one_line_naming_the_option(tmp_path, monkeypatch, capsys, option, message):
    path = tmp_path / "short.yaml"
    path.write_text(SHORT)
    code, _, err = vmsim(monkeypatch, capsys, "sweep", str(path), "--dry-run", "--set", option)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"vmsim: {message}"), err


def test_progress_without_a_terminal_prints_plain_lines_by_tenths_and_a_heartbeat():
    import io

    from sim.app.progress import sweep_progress as _sweep_progress

    stream = io.StringIO()
    with _sweep_progress(stream, interval=0.0, heartbeat=60.0) as update:
        for done in range(0, 101, 5):
            update(done, 0, 100)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("runs 0/100 done, 0 failed") and lines[-1].startswith("runs 100/100 done")
    assert len(lines) == 11  # the start, then every tenth up to the end
    stream = io.StringIO()
    with _sweep_progress(stream, interval=0.0, heartbeat=0.5) as update:
        update(3, 1, 100)
        time.sleep(1.6)  # no chunk finishes: the heartbeat speaks
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("runs 3/100 done, 1 failed") for line in lines)
