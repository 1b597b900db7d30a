"""Sweeps: sweep files, grid and filter, seeds, executors, crash and resume, merged tables, vmsim sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sim.cli import main
from sim.config.filters import FilterError, keeps, parse_filter
from sim.config.sweepfile import RunSpec, load_sweep
from sim.engine.run import run_seed
from sim.schema.errors import InputError
from sim.sweep.runner import ChunkTask, make_chunks, run_chunk, run_sweep
from sim.sweep.store import StatusLine, SweepStore

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "scenarios" / "rezki-2019-256mb.yaml"
# a 2x2 grid of a short fork storm: 144 MiB with 256 workers ends in OOM kills (events)
TINY = f"""\
# tiny sweep for the tests
name: tiny
scenario: {BASE}
set: {{duration: 0.15s}}
factors:
  machine.ram: [144MiB, 256MiB]
  workloads.0.workers: [64, 256]
replications: 2
seed: 7
strategies: [nowait, preload]
"""


def sweep_file(tmp_path: Path, text: str = TINY, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def runs_table(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "runs.parquet").drop(columns="wall_seconds")


def status_lines(folder: Path) -> list[dict]:
    lines = []
    for text in (folder / "status.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            continue
    return lines


def vmsim(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["vmsim", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


# --- plan: grid, columns, seeds -------------------------------------------------------------


def test_grid_points_are_numbered_in_grid_order_with_values_as_written(tmp_path):
    plan = load_sweep(sweep_file(tmp_path))
    assert [p.index for p in plan.points] == [0, 1, 2, 3]
    assert [p.values for p in plan.points][:2] == [
        {"machine.ram": "144MiB", "workloads.0.workers": 64},
        {"machine.ram": "144MiB", "workloads.0.workers": 256},
    ]
    assert len({p.scenario_hash for p in plan.points}) == 4
    runs = plan.runs()
    assert len(runs) == 4 * 2 * 2
    assert [r.run_id for r in runs] == sorted(r.run_id for r in runs)
    assert runs[0].run_id == "rezki-2019-256mb/p0000/nowait/r000"
    assert plan.base.duration == pytest.approx(0.15)


def test_a_point_replication_has_one_seed_for_every_strategy_and_others_differ(tmp_path):
    plan = load_sweep(sweep_file(tmp_path))
    seeds: dict[tuple[int, int], set] = {}
    for spec in plan.runs():
        state = tuple(run_seed(plan.seed, spec.point, spec.replication).generate_state(4))
        seeds.setdefault((spec.point, spec.replication), set()).add(state)
    assert all(len(states) == 1 for states in seeds.values())  # strategies share it
    distinct = {next(iter(states)) for states in seeds.values()}
    assert len(distinct) == len(seeds) == 4 * 2  # points and replications differ


def test_filter_drops_points_and_the_rest_keep_their_grid_index(tmp_path):
    text = TINY + "filter: \"not (machine.ram == '144MiB' and workloads.0.workers == 256)\"\n"
    plan = load_sweep(sweep_file(tmp_path, text))
    assert [p.index for p in plan.points] == [0, 2, 3]


@pytest.mark.parametrize(
    ("expr", "kept"),
    [
        ("machine.ram == 256MiB", [False, True]),
        ("machine.ram < 200MiB", [True, False]),
        ("workloads.0.workers in [64, 128] and not machine.ram >= 1GiB", [True, True]),
        ("workloads.0.workers not in [64] or machine.ram != '144MiB'", [False, True]),
        ("duration > 10ms", [True, False]),
    ],
)
def test_filter_language_compares_values_sizes_and_durations(expr, kept):
    points = [
        {"machine.ram": "144MiB", "workloads.0.workers": 64, "duration": "1s"},
        {"machine.ram": "256MiB", "workloads.0.workers": 64, "duration": "5ms"},
    ]
    tree = parse_filter(expr, ["machine.ram", "workloads.0.workers", "duration"])
    assert [keeps(tree, p) for p in points] == kept


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("machine.rma == 1", "unknown factor 'machine.rma' (did you mean 'machine.ram'?)"),
        ("machine.ram ==", "unexpected end"),
        ("(machine.ram == 1", "missing ')'"),
        ("__import__('os')", "unknown factor '__import__'"),
        ("machine.ram; 1", "unexpected ';'"),
    ],
)
def test_filter_is_parsed_never_evaluated_as_python(expr, fragment):
    with pytest.raises(FilterError, match=None) as exc:
        parse_filter(expr, ["machine.ram"])
    assert fragment in str(exc.value)


def test_chunks_are_contiguous_ranges_of_pending_runs():
    runs = [RunSpec(f"s/p{i:04d}/a/r000", i, "a", 0) for i in range(7)]
    pending = {r.run_id for r in runs} - {runs[2].run_id, runs[3].run_id}
    chunks = make_chunks(runs, pending, 2)
    assert [[r.point for r in c] for c in chunks] == [[0, 1], [4, 5], [6]]


# --- bad sweep files --------------------------------------------------------------------------

BAD = [
    ("unknown key", "seed: 7\n", "seeds: 7\n", "seeds: unknown key 'seeds' (did you mean 'seed'?)"),
    (
        "bad factor key",
        "  machine.ram: [144MiB, 256MiB]\n",
        "  machine.rams: [144MiB, 256MiB]\n",
        "factors.machine.rams: unknown key 'rams' in machine (did you mean 'ram'?)",
    ),
    (
        "bad factor value",
        "  machine.ram: [144MiB, 256MiB]\n",
        "  machine.ram: [144MiB,\n    16MiB]\n",
        "factors.machine.ram[1]: value '16MiB': expected at least 32MiB of RAM",
    ),
    (
        "factor index past the list",
        "  workloads.0.workers: [64, 256]\n",
        "  workloads.7.workers: [64, 256]\n",
        "factors.workloads.7.workers: workloads has 3 item(s) in the file; no index 7",
    ),
    (
        "bad filter",
        "seed: 7\n",
        "seed: 7\nfilter: machine.ram == 1 and\n",
        "filter: unexpected end of the filter",
    ),
    (
        "filter names no factor",
        "seed: 7\n",
        "seed: 7\nfilter: cpus == 4\n",
        "filter: unknown factor 'cpus'",
    ),
    (
        "strategies as a factor",
        "  workloads.0.workers: [64, 256]\n",
        "  strategies: [[nowait]]\n",
        "factors.strategies: set strategies with the sweep's own key 'strategies'",
    ),
    (
        "bad strategy",
        "strategies: [nowait, preload]\n",
        "strategies: [nowait, preloda]\n",
        "strategies.1: unknown strategy 'preloda' (did you mean 'preload'?)",
    ),
    ("bad set value", "set: {duration: 0.15s}\n", "set: {duration: soon}\n", "set.duration: expected a duration"),
    (
        "value listed twice",
        "  machine.ram: [144MiB, 256MiB]\n",
        "  machine.ram: [144MiB, 144MiB]\n",
        "factors.machine.ram[1]: value '144MiB' is listed twice",
    ),
    ("empty factor", "  workloads.0.workers: [64, 256]\n", "  workloads.0.workers: []\n", "needs at least one value"),
]


@pytest.mark.parametrize(("case", "old", "new", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_sweep_file_is_one_line_with_file_line_key_path_and_exit_2(
    tmp_path, monkeypatch, capsys, case, old, new, fragment
):
    assert TINY.count(old) == 1
    text = TINY.replace(old, new)
    path = sweep_file(tmp_path, text, "bad.yaml")
    line = text[: text.index(new)].count("\n") + 1 + new.rstrip("\n").count("\n")  # the last line of ``new``
    code, _, err = vmsim(monkeypatch, capsys, "sweep", str(path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith(f"vmsim: {path}:{line}: "), err
    assert fragment in err
    assert not (tmp_path / "out").exists()


def test_a_point_that_fails_as_a_whole_names_the_point(tmp_path):
    text = TINY.replace("machine.ram: [144MiB, 256MiB]", "machine.ram: [40MiB, 256MiB]")
    with pytest.raises(InputError) as exc:
        load_sweep(sweep_file(tmp_path, text, "small.yaml"))
    message = str(exc.value)
    assert "factors: point 0 (machine.ram='40MiB', workloads.0.workers=64): machine.boot_memory:" in message


def test_dry_run_lists_the_points_and_writes_nothing(tmp_path, monkeypatch, capsys):
    text = TINY + "filter: workloads.0.workers != 64\n"
    code, out, _ = vmsim(monkeypatch, capsys, "sweep", str(sweep_file(tmp_path, text)), "--dry-run")
    assert code == 0
    assert "tiny: 2 points x 2 strategies x 2 replications = 8 runs, root seed 7" in out
    assert "p0001 machine.ram=144MiB workloads.0.workers=256" in out and "p0003 " in out and "p0000" not in out
    assert not (tmp_path / "results").exists() and not Path("results/tiny").exists()


def test_the_example_sweep_file_validates():
    plan = load_sweep(ROOT / "scenarios" / "sweeps" / "fork-pressure.yaml")
    assert plan.strategies == ("nowait", "preload")
    assert plan.replications == 3 and plan.base.duration == 20
    rams = {p.values["machine.ram"] for p in plan.points}
    assert {"160MiB", "512MiB"} <= rams
    assert plan.base.name == "rezki-2019-256mb"


# --- running ------------------------------------------------------------------------------------


def test_serial_process_and_dask_executors_give_identical_tables(tmp_path):
    plan = load_sweep(sweep_file(tmp_path))
    outs = {}
    for executor, chunk_size in (("serial", 16), ("process", 3), ("dask", 1)):  # chunking changes nothing either
        outs[executor] = tmp_path / executor
        outcome = run_sweep(plan, outs[executor], executor=executor, jobs=2, chunk_size=chunk_size)
        assert outcome.statuses == {"ok": 16}, outcome
    serial = runs_table(outs["serial"])
    assert serial["run_id"].is_unique and serial["run_id"].is_monotonic_increasing
    assert len(serial) == 16
    for executor in ("process", "dask"):
        pd.testing.assert_frame_equal(serial, runs_table(outs[executor]))
        for table in ("runs.parquet", "events.parquet", "timeseries.parquet", "counters.parquet"):
            assert pq.read_schema(outs["serial"] / table).equals(pq.read_schema(outs[executor] / table)), table
        for table in ("events.parquet", "timeseries.parquet", "counters.parquet"):
            serial_table = pd.read_parquet(outs["serial"] / table)
            pd.testing.assert_frame_equal(serial_table, pd.read_parquet(outs[executor] / table))
    events = pd.read_parquet(outs["serial"] / "events.parquet")
    assert len(events) > 0 and events["run_id"].is_monotonic_increasing
    # one column per factor, as written, and the point index
    assert list(serial.columns[:4]) == ["run_id", "point", "machine.ram", "workloads.0.workers"]
    assert set(serial["machine.ram"]) == {"144MiB", "256MiB"}
    assert serial["workloads.0.workers"].dtype.kind == "i"
    manifest = json.loads((outs["serial"] / "manifest.json").read_text())
    assert manifest["sweep"]["complete"] is True
    point3 = manifest["sweep"]["points"][3]
    assert point3["values"] == {"machine.ram": "256MiB", "workloads.0.workers": 256}
    assert set(manifest["runs"]) == set(serial["run_id"])
    assert all(r["status"] == "ok" for r in manifest["runs"].values())
    key = manifest["seeds"]["rezki-2019-256mb/p0002/preload/r001"]
    assert key == {"entropy": 7, "spawn_key": [2, 1]}
    assert manifest["scenario"]["duration"] == pytest.approx(0.15)


def test_dask_runs_on_an_existing_cluster_given_its_scheduler_address(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = sweep_file(tmp_path, TINY + "filter: machine.ram == 256MiB and workloads.0.workers == 64\n")
    plan = load_sweep(path)
    serial = run_sweep(plan, tmp_path / "serial", executor="serial")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster:
        outcome = run_sweep(plan, tmp_path / "remote", executor="dask", scheduler=cluster.scheduler_address)
    assert outcome.statuses == serial.statuses == {"ok": 4}
    pd.testing.assert_frame_equal(runs_table(tmp_path / "serial"), runs_table(tmp_path / "remote"))


def test_a_chunk_whose_worker_crashes_is_recorded_and_retried_on_resume(tmp_path):
    plan = load_sweep(sweep_file(tmp_path))
    out = tmp_path / "out"
    outcome = run_sweep(plan, out, executor="serial", chunk_size=4, chunk_fn=crash_on_point_1)
    assert outcome.crashed == 4 and outcome.statuses == {"ok": 12, "error": 4}
    runs = pd.read_parquet(out / "runs.parquet")
    crashed = runs[runs["point"] == 1]
    assert set(crashed["status"]) == {"error"}
    assert crashed["error"].str.contains("worker crash: RuntimeError: simulated crash").all()
    assert json.loads((out / "manifest.json").read_text())["sweep"]["complete"] is False
    again = run_sweep(plan, out, executor="serial", resume=True)
    assert again.skipped == 12 and again.ran == 4 and again.statuses == {"ok": 16} and again.crashed == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs["run_id"].is_unique and len(runs) == 16 and set(runs["status"]) == {"ok"}


def crash_on_point_1(task: ChunkTask):
    """A chunk function whose worker 'dies' on grid point 1."""
    if any(spec.point == 1 for spec in task.runs):
        raise RuntimeError("simulated crash")
    return run_chunk(task)


def test_a_dead_pool_worker_fails_its_chunks_and_the_pool_is_replaced(tmp_path):
    plan = load_sweep(sweep_file(tmp_path))
    out = tmp_path / "out"
    outcome = run_sweep(plan, out, executor="process", jobs=2, chunk_size=2, chunk_fn=exit_on_point_1)
    runs = pd.read_parquet(out / "runs.parquet")
    crashed = runs["error"].str.contains("worker crash: BrokenProcessPool")
    # point 1 and the chunks queued in the pool when it died; the chunks submitted later ran in a new pool
    assert crashed[runs["point"] == 1].all() and 4 <= outcome.crashed == crashed.sum() <= 12
    assert set(runs.loc[runs["point"] == 3, "status"]) == {"ok"}
    again = run_sweep(plan, out, executor="process", jobs=2, resume=True)
    assert again.ran == outcome.crashed and again.statuses == {"ok": 16}


def exit_on_point_1(task: ChunkTask):
    """A chunk function whose worker process dies on grid point 1 (as a segfault or the OOM killer would)."""
    if any(spec.point == 1 for spec in task.runs):
        os._exit(1)
    return run_chunk(task)


def test_a_folder_with_results_needs_resume_and_the_same_sweep(tmp_path):
    path = sweep_file(tmp_path)
    out = tmp_path / "out"
    run_sweep(load_sweep(path), out, executor="serial")
    with pytest.raises(InputError, match="add --resume"):
        run_sweep(load_sweep(path), out, executor="serial")
    again = run_sweep(load_sweep(path), out, executor="serial", resume=True)
    assert again.ran == 0 and again.skipped == 16
    other = sweep_file(tmp_path, TINY.replace("seed: 7", "seed: 8"), "other.yaml")
    with pytest.raises(InputError, match="another sweep"):
        run_sweep(load_sweep(other), out, executor="serial", resume=True)


def test_status_log_ignores_a_torn_line_and_appends_on_a_fresh_one(tmp_path):
    store = SweepStore(tmp_path)
    with store.status_log() as log:
        log.append([StatusLine("a", "ok", "p1")])
    with store.status_path.open("a") as fh:
        fh.write('{"run_id": "b", "sta')  # SIGKILL in the middle of a write
    assert set(store.read_status()) == {"a"}
    with store.status_log() as log:
        log.append([StatusLine("c", "ok", "p2")])
    assert set(store.read_status()) == {"a", "c"}


def test_sigkill_midway_then_resume_runs_every_run_exactly_once(tmp_path, monkeypatch, capsys):
    path = sweep_file(tmp_path)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sim.cli", "sweep", str(path), "-j", "2", "--chunk", "1", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = out / "status.jsonl"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if status.exists() and status_lines(out):
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the pool's workers too
        proc.wait()
    before = {line["run_id"]: line for line in status_lines(out)}
    assert 1 <= len(before) < 16, proc.stderr.read()
    assert not (out / "runs.parquet").exists()
    resume = ["sweep", str(path), "--executor", "serial", "--resume", "--out", str(out)]
    code, stdout, _ = vmsim(monkeypatch, capsys, *resume)
    assert code == 0, stdout
    runs = pd.read_parquet(out / "runs.parquet")
    plan = load_sweep(path)
    assert sorted(runs["run_id"]) == [r.run_id for r in plan.runs()]  # every run exactly once
    assert set(runs["status"]) == {"ok"}
    lines = status_lines(out)
    assert len(lines) == 16 and len({line["run_id"] for line in lines}) == 16  # finished runs not run again
    walls = dict(zip(runs["run_id"], runs["wall_seconds"]))
    for rid, line in before.items():
        assert walls[rid] == pytest.approx(line["wall_seconds"], abs=1e-6)
    assert f"{len(before)} kept from before, {16 - len(before)} run now" in stdout
