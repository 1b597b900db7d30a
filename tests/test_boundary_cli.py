"""`vmsim boundary`: planning the probes of a sweep's factor, one-line errors, and a real run.

The bisection itself is pinned in tests/test_boundary.py; here, what a probe runs (the
factor's kind and range, the combinations of the other factors, the seeds), that bad
input is one line and exit 2, and one tiny real search whose table and files agree with
its probes and do not depend on the executor.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from sim.config.sweepfile import load_sweep
from sim.sweep.boundary import INTEGER, SIZE, plan_boundary, probe_key, probe_runs

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "scenarios" / "answer" / "base" / "fork-storm.yaml"
MIB = 1 << 20


def sweep_file(tmp_path: Path, factors: str, duration: str = "0.3s", name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    text = f"name: {name}\nscenario: {BASE}\nset:\n  duration: {duration}\nfactors:\n{factors}replications: 1\n"
    path.write_text(text)
    return path


def vmsim(capsys, *args: str) -> tuple[int, str, str]:
    from sim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def test_ram_is_a_size_bisected_per_combination_of_the_other_factors(tmp_path):
    path = sweep_file(tmp_path, "  machine.ram: [256MiB, 160MiB, 1GiB]\n  machine.swap: [off, 200MiB/s]\n")
    plan = plan_boundary(load_sweep(path), "machine.ram", replications=3)
    assert (plan.axis.kind, plan.axis.low, plan.axis.high) == (SIZE, 160 * MIB, 1024 * MIB)
    assert plan.axis.granule == MIB and plan.axis.show(592 * MIB) == "592MiB"
    assert plan.combinations == ({"machine.swap": False}, {"machine.swap": "200MiB/s"})
    runs = probe_runs(plan, [(1, 300 * MIB)])
    assert [r.replication for r in runs] == [0, 1, 2]
    assert dict(runs[0].overrides) == {("machine", "swap"): "200MiB/s", ("machine", "ram"): 300 * MIB}


def test_workers_are_an_integer_and_the_range_can_be_given(tmp_path):
    path = sweep_file(tmp_path, "  workloads.0.workers: [32, 128, 512]\n")
    plan = plan_boundary(load_sweep(path), "workloads.0.workers")
    assert (plan.axis.kind, plan.axis.low, plan.axis.high, plan.axis.granule) == (INTEGER, 32, 512, 1)
    assert plan.combinations == ({},)
    wider = plan_boundary(load_sweep(path), "workloads.0.workers", low="8", high="1024")
    assert (wider.axis.low, wider.axis.high) == (8, 1024)
    # a scenario key that the sweep does not vary, with its range
    cpus = plan_boundary(load_sweep(path), "machine.cpus", low="2", high="16")
    assert (cpus.axis.kind, cpus.combinations) == (INTEGER, ({"workloads.0.workers": 32},
                                                             {"workloads.0.workers": 128},
                                                             {"workloads.0.workers": 512}))  # fmt: skip


def test_probe_seeds_differ_by_value_and_combination_and_never_by_run_order():
    a = probe_key("machine.ram", {"machine.swap": False}, 300 * MIB)
    assert a == probe_key("machine.ram", {"machine.swap": False}, 300 * MIB)
    assert a != probe_key("machine.ram", {"machine.swap": False}, 301 * MIB)
    assert a != probe_key("machine.ram", {"machine.swap": "200MiB/s"}, 300 * MIB)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--factor", "machine.swap"], "--factor machine.swap: expected a numeric factor"),
        (["--factor", "machine.rma"], "--factor machine.rma: unknown key 'rma' in machine (did you mean 'ram'?)"),
        (["--factor", "machine.cpus"], "--factor machine.cpus: not a factor of this sweep; give its range"),
        (["--factor", "machine.preemption", "--low", "none", "--high", "full"], "expected a numeric factor"),
        (["--factor", "machine.ram", "--low", "1MiB"], "--low 1MiB: machine.ram: expected at least 32MiB"),
        (["--factor", "machine.ram", "--low", "1GiB", "--high", "160MiB"], "expected a range with low < high"),
    ],
)
def test_bad_factor_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, args, fragment):
    path = sweep_file(tmp_path, "  machine.ram: [160MiB, 1GiB]\n  machine.swap: [off, 200MiB/s]\n")
    code, out, err = vmsim(capsys, "boundary", str(path), *args, "--executor", "serial")
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"vmsim: {path}: ") and fragment in err, err
    assert out == ""


def test_more_runs_than_max_runs_is_refused_before_running(tmp_path, capsys):
    path = sweep_file(tmp_path, "  machine.ram: [160MiB, 1GiB]\n  machine.swap: [off, 200MiB/s]\n")
    args = ["--factor", "machine.ram", "--steps", "100", "--max-runs", "50"]
    code, out, err = vmsim(capsys, "boundary", str(path), *args)
    assert code == 2 and err.count("\n") == 1, err
    assert "2 combinations x up to 102 probes x 1 replications = 204 runs" in err and out == ""


def test_missing_sweep_file_is_one_line(tmp_path, capsys):
    code, _, err = vmsim(capsys, "boundary", str(tmp_path / "nope.yaml"), "--factor", "machine.ram")
    assert code == 2 and err.count("\n") == 1 and "nope.yaml" in err, err


def test_real_search_writes_a_table_and_files_that_agree_with_its_probes(tmp_path, capsys):
    path = sweep_file(tmp_path, "  machine.ram: [160MiB, 1GiB]\n")
    args = ["boundary", str(path), "--factor", "machine.ram", "--steps", "2"]
    code, out, err = vmsim(capsys, *args, "--executor", "serial", "--out", str(tmp_path / "serial"))
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "serial" / "boundary.csv").open()))
    found = json.loads((tmp_path / "serial" / "boundary.json").read_text())
    assert len(rows) == 1 and len(found["combinations"]) == 1
    row, combo = rows[0], found["combinations"][0]
    probes = {p["value"]: p for p in combo["probes"]}
    assert row["outcome"] == combo["outcome"] == "bracket"  # 160 MiB fails within 0.3 s; 1 GiB does not
    assert combo["direction"] == row["direction"] == "falling"
    assert int(row["clean"]) == combo["clean"] and int(row["failing"]) == combo["failing"]
    assert 160 * MIB <= combo["failing"] < combo["clean"] <= 1024 * MIB
    assert probes[combo["clean"]]["failures"] == 0 and probes[combo["failing"]]["failures"] > 0
    assert len(probes) == 4  # the two ends and two midpoints
    for p in probes.values():
        assert p["runs"] == 1 and p["vmalloc_calls"] > 0 and p["text"].endswith("iB")
        assert p["rate_per_million"] == pytest.approx(p["failures"] / p["vmalloc_calls"] * 1e6)
        assert p["lo"] <= p["rate_per_million"] < p["hi"]
    failing = probes[combo["failing"]]
    assert float(row["failing_rate_per_million"]) == pytest.approx(failing["rate_per_million"])
    assert float(row["clean_hi"]) == pytest.approx(probes[combo["clean"]]["hi"])
    assert f"failures at and below {row['failing_text']}, none observed at {row['clean_text']}" in out
    assert "below its Wilson 95% upper bound" in out
    # the same command on two worker processes gives the same files, byte for byte
    code, _, err = vmsim(capsys, *args, "--executor", "process", "-j", "2", "--out", str(tmp_path / "pool"))
    assert code == 0, err
    for name in ("boundary.csv", "boundary.json"):
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
