"""Strategy plug-ins: a strategy in one file outside sim/, loaded by --plugin (and entry
points), runs, validates, and shows in the printed table, runs.parquet, the figures and
report.md in the order and colour its class declares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.engine import plugins
from sim.engine.plugins import forget_plugin_file, load_plugin_file
from sim.kernel.mm.vmalloc.strategies import STRATEGIES, SplitStrategy, make_strategy
from sim.record.strategy_info import strategy_colour, strategy_order

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "preload_two.py"
SCENARIO = ROOT / "scenarios" / "rezki-2019-256mb.yaml"
SHORT = ["--set", "duration=0.3s", "--set", "replications=1", "--set", "strategies=[nowait, preload, preload-two]"]


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """``vmsim ARGS`` in a fresh process (so the plug-in is loaded there, not here)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture
def preload_two():
    """The example plug-in loaded in this process, and forgotten afterwards."""
    module = load_plugin_file(EXAMPLE)
    yield module
    forget_plugin_file(EXAMPLE)
    assert "preload-two" not in STRATEGIES


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("suite") / "plugin-run"
    done = cli("run", "--plugin", EXAMPLE, SCENARIO, *SHORT, "--out", out)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("preload-two ")]
    assert row.split()[-2:] == ["1/1", "ok"]  # in run's printed table, after the built-in ones
    names = [line.split()[0] for line in done.stdout.splitlines() if line.split()[:1] in (["nowait"], ["preload"])]
    assert names == ["nowait", "preload"]
    return out


def test_a_plugin_strategy_runs_and_is_recorded(run_folder):
    runs = pd.read_parquet(run_folder / "runs.parquet")
    mine = runs[runs["strategy"] == "preload-two"]
    assert len(mine) == 1 and (mine["status"] == "ok").all()
    assert int(mine["preload_fills"].iloc[0]) > 0 and int(mine["vmalloc_calls"].iloc[0]) > 0


def test_a_plugin_strategy_is_in_the_legend_and_the_report(run_folder, preload_two):
    import matplotlib

    matplotlib.use("Agg")
    from sim.analysis.plots import failure_curves_figure
    from sim.analysis.report import load_suite, render

    runs = pd.read_parquet(run_folder / "runs.parquet")
    fig = failure_curves_figure(runs)
    (legend,) = fig.legends  # one legend for the figure
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:3] == ["nowait", "preload", "preload-two"]  # the strategies in the classes' order
    handle = legend.legend_handles[labels.index("preload-two")]
    assert handle.get_color() == preload_two.PreloadTwoSplit.colour
    text = render(load_suite(run_folder.parent))
    header = next(line for line in text.splitlines() if line.startswith("| rank |"))
    assert header.index("nowait /10^6") < header.index("| preload /10^6") < header.index("preload-two /10^6")
    assert any(line.startswith("| preload-two | ") for line in text.splitlines())  # what the preload costs


def test_the_plugin_class_declares_its_order_colour_and_commit(preload_two):
    cls = preload_two.PreloadTwoSplit
    assert STRATEGIES["preload-two"] is cls and issubclass(cls, SplitStrategy)
    assert list(STRATEGIES)[:5] == ["nowait", "preload", "preload-lockless", "preload-gfp", "atomic"]
    assert list(STRATEGIES)[-1] == "preload-two" and cls.commit == "counterfactual"
    assert strategy_order(["preload-two", "atomic", "nowait"]) == ["nowait", "atomic", "preload-two"]
    assert strategy_colour("preload-two") == cls.colour
    assert make_strategy("preload-two", 2).preloaded(1) == 0
    assert load_plugin_file(EXAMPLE) is preload_two  # a file loads once per process


def test_validation_accepts_a_plugin_strategy_only_when_the_plugin_is_loaded(tmp_path):
    done = cli("validate", SCENARIO, "--set", "strategies=[nowait, preload-two]")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "unknown strategy 'preload-two'" in line and "nowait, preload, preload-lockless, preload-gfp, atomic" in line
    done = cli("validate", "--plugin", EXAMPLE, SCENARIO, "--set", "strategies=[nowait, preload-two]")
    assert done.returncode == 0 and done.stdout.endswith("ok (6 runs: 2 strategies x 3 replications)\n"), done.stderr


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise RuntimeError('no such luck')\n", "bad.py:1: cannot load the plug-in: RuntimeError: no such luck"),
        ("def broken(:\n", "bad.py:1: cannot load the plug-in: SyntaxError: "),
        (
            "from sim.kernel.mm.vmalloc.strategies.nowait import NowaitSplit\n"
            "class Again(NowaitSplit):\n    name = 'preload'\n    commit = 'x'\n",
            "bad.py:2: cannot load the plug-in: TypeError: ",
        ),
    ],
    ids=["raises", "syntax", "name-taken"],
)
def test_a_bad_plugin_file_is_one_line_naming_the_file(tmp_path, source, expected):
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    done = cli("validate", "--plugin", bad, SCENARIO)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"vmsim: {bad.parent}/") and expected in line, line
    assert "preload" in STRATEGIES and "again" not in STRATEGIES


def test_the_manifest_records_the_plugin_file_its_hash_and_its_strategies(run_folder):
    import hashlib
    import json

    manifest = json.loads((run_folder / "manifest.json").read_text())
    (entry,) = manifest["plugins"]["files"]
    assert entry["file"] == str(EXAMPLE.resolve())
    assert entry["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert entry["strategies"] == ["preload-two"]


def test_resuming_a_sweep_whose_plugin_file_changed_is_refused(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text(EXAMPLE.read_text())
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        f"name: tiny\nscenario: {SCENARIO}\nset: {{duration: 0.05s}}\nfactors:\n  machine.cpus: [2]\n"
        "replications: 1\nseed: 7\nstrategies: [preload-two]\n"
    )
    out = tmp_path / "out"
    args = ("sweep", "--plugin", plugin, sweep, "--executor", "serial", "--out", out, "--yes")
    assert cli(*args).returncode == 0
    assert cli(*args, "--resume").returncode == 0  # the same code: nothing to do
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    done = cli(*args, "--resume")
    assert done.returncode == 2, done.stderr
    assert "strategy 'preload-two' came from a plug-in file that has changed" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_missing_plugin_file_is_one_line(tmp_path):
    done = cli("run", "--plugin", tmp_path / "nope.py", SCENARIO)
    assert done.returncode == 2 and done.stderr == f"vmsim: {tmp_path / 'nope.py'}: no such plug-in file\n"


def test_sweep_workers_load_the_plugin(tmp_path):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        f"name: tiny\nscenario: {SCENARIO}\nset: {{duration: 0.1s}}\nfactors:\n  machine.ram: [144MiB, 256MiB]\n"
        "replications: 1\nseed: 7\nstrategies: [nowait, preload-two]\n"
    )
    out = tmp_path / "out"
    done = cli("sweep", "--plugin", EXAMPLE, sweep, "--executor", "process", "-j", "2", "--out", out, "--yes")
    assert done.returncode == 0, done.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs["strategy"]) == ["nowait", "nowait", "preload-two", "preload-two"]
    assert (runs["status"] == "ok").all(), runs["error"].tolist()


def test_entry_points_of_vmsim_strategies_are_loaded(monkeypatch):
    loaded = []

    class EntryPoint:
        name, value = "two", "preload_two"

        def load(self):
            loaded.append(load_plugin_file(EXAMPLE))

    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.setattr(plugins, "_entry_points", [])
    entry_points = {"vmsim.strategies": [EntryPoint()]}
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: entry_points.get(group, []))
    try:
        plugins.load_plugins()
        plugins.load_plugins()  # once per process
        assert len(loaded) == 1 and "preload-two" in STRATEGIES
        assert plugins.plugin_manifest()["entry_points"] == [
            {"group": "vmsim.strategies", "name": "two", "value": "preload_two", "distribution": ""}
        ]
    finally:
        forget_plugin_file(EXAMPLE)


def test_the_mempool_example_takes_every_split_from_its_reserve_refilled_before_the_lock():
    from sim.config.scenario import load_scenario
    from sim.engine.run import run_once

    path = ROOT / "examples" / "mempool.py"
    module = load_plugin_file(path)
    try:
        cls = module.MempoolSplit
        assert STRATEGIES["mempool"] is cls and cls.commit == "counterfactual" and "What a patch would change" in (
            module.__doc__ or "")  # fmt: skip
        sc = load_scenario(SCENARIO, ["duration=1.5s", "replications=1", "strategies=[nowait, mempool]"])
        row = run_once(sc, "mempool", 0, sc.seed).row
        # under the 2019 pressure no split went without an object: each took one from the reserve
        assert row["fit_ne"] > 0 and row["split_from_preload"] == row["fit_ne"]
        assert row["split_nowait_attempts"] == 0 and row["split_nowait_failures"] == 0
        # one GFP_KERNEL refill per object taken, plus the reserve's first fill (at most POOL)
        assert row["fit_ne"] <= row["preload_fills"] <= row["fit_ne"] + module.POOL
    finally:
        forget_plugin_file(path)
    assert "mempool" not in STRATEGIES


def test_the_retry_kernel_example_retries_a_failed_split_unlocked_instead_of_purging():
    from sim.config.scenario import load_scenario
    from sim.engine.run import run_once

    path = ROOT / "examples" / "retry_kernel.py"
    module = load_plugin_file(path)
    try:
        assert module.RetryKernelSplit.retry_split_unlocked and "What a patch would change" in (module.__doc__ or "")
        sc = load_scenario(SCENARIO, ["duration=3s", "replications=1", "strategies=[nowait, retry-kernel]"])
        nowait, retry = (run_once(sc, s, 0, sc.seed) for s in ("nowait", "retry-kernel"))
        assert nowait.row["split_nowait_failures"] > 0 and nowait.row["overflow_purges"] > 0  # v5.2 purges
        failed = retry.row["split_nowait_failures"]
        assert failed > 0 and retry.counters["split_retries_unlocked"] == failed  # each failure retried once
        assert retry.row["overflow_purges"] == 0 and retry.row["vmap_ebusy"] == 0  # ...with no purge, no -EBUSY
        assert not any(e["kind"] == "warn_alloc" for e in retry.events)  # the first try is __GFP_NOWARN
    finally:
        forget_plugin_file(path)
