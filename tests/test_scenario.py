"""Scenario files: schema, units, one-line errors with line numbers, --set, hash, vmsim validate/schema."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.cli import parse_set_options
from sim.config.scenario import MemorySection, Scenario, SchedSection, VmallocSection, load_scenario, resolved_dict
from sim.kernel.machine import Machine
from sim.kernel.mm.vmalloc.alloc import VmallocParams
from sim.kernel.mm.vmalloc.strategies import STRATEGIES
from sim.kernel.mm.zones import MemoryParams
from sim.kernel.profile import PROFILES
from sim.kernel.sched.cpu import PREEMPT_MODELS, SchedParams
from sim.schema.errors import InputError
from sim.workloads.fork_storm import ForkStormSpec
from sim.workloads.pressure import AnonHogSpec
from sim.workloads.registry import WORKLOADS
from tests.conftest import vmsim

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "full.yaml"
FULL = DATA.read_text()
MiB = 1 << 20


def variant(tmp_path: Path, old: str, new: str, name: str = "bad") -> tuple[Path, int]:
    """full.yaml with ``old`` replaced by ``new``: the file and the 1-based line where ``new`` starts."""
    assert FULL.count(old) == 1, old
    text = FULL.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path, text[: text.index(new)].count("\n") + 1


def error_of(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> str:
    with pytest.raises(InputError) as exc:
        load_scenario(path, overrides)
    message = str(exc.value)
    assert "\n" not in message
    return message


# (case, text in full.yaml, replacement, key path, fragments the message must contain)
BAD = [
    (
        "misspelled-key",
        "  cpus: 4",
        "  cpu: 4",
        "machine.cpu",
        ["unknown key 'cpu'", "did you mean 'cpus'?", "allowed: cpus, ram"],
    ),
    ("wrong-size-unit", "ram: 256MiB", "ram: 256MiBs", "machine.ram", ["unknown size unit 'MiBs'", "KiB, MiB, GiB"]),
    (
        "wrong-time-unit",
        "duration: 60s",
        "duration: 10 parsecs",
        "duration",
        ["unknown time unit 'parsecs'", "ms, s, min"],
    ),
    ("wrong-type", "    workers: 64", "    workers: many", "workloads.0.workers", ["expected an integer, got 'many'"]),
    (
        "unknown-kind",
        "kind: page_cache_reader",
        "kind: page_cache_readr",
        "workloads.2.kind",
        ["unknown workload kind 'page_cache_readr'", "did you mean 'page_cache_reader'?", *WORKLOADS],
    ),
    (
        "unknown-strategy",
        "[nowait, preload]",
        "[nowait, preloud]",
        "strategies.1",
        ["did you mean 'preload'?", *STRATEGIES],
    ),
    ("unknown-preemption", "preemption: none", "preemption: fulll", "machine.preemption", list(PREEMPT_MODELS)),
    ("kernel-5.20", "kernel: 5.2", "kernel: 5.20", "kernel", ["unknown kernel profile '5.20'", ", ".join(PROFILES)]),
    (
        "slab-on-6.8",
        "  slab: SLUB",
        "  slab: SLAB",
        "machine.slab",
        ["kernel 6.8 has no SLAB", "expected one of: SLUB"],
    ),
    ("duplicate-key", "seed: 2019", "seed: 2019\nseed: 7", "seed", ["duplicate key (first given at line 7)"]),
    (
        "nested-key",
        "      file_clean: 2e5",
        "      file_clena: 2e5",
        "machine.memory.reclaim_rates.file_clena",
        ["file_clean"],
    ),
    (
        "workload-key",
        "    workers: 64",
        "    workerz: 64",
        "workloads.0.workerz",
        ["did you mean 'workers'", "fork_max"],
    ),
    ("no-unit-here", "fls_cpu: 32", "fls_cpu: 32MiB", "machine.vmalloc.lazy_max_mb_per_fls_cpu", ["plain number"]),
    (
        "swap-moved",
        "    watermark_boost_factor: 15000",
        "    swap_bw_pages_s: 100",
        "machine.memory.swap_bw_pages_s",
        ["machine.swap"],
    ),
    ("boot-over-ram", "    anon: 16MiB", "    anon: 240MiB", "machine.boot_memory", ["more than ram"]),
    ("no-strategies", "[nowait, preload]", "[]", "strategies", ["at least 1"]),
]


def bad_file(tmp_path: Path, case: str, old: str, new: str) -> tuple[Path, int]:
    path, line = variant(tmp_path, old, new, case)
    if case == "slab-on-6.8":  # SLAB is fine on 5.2: move the scenario to 6.8
        path.write_text(path.read_text().replace("kernel: 5.2", "kernel: 6.8"))
    if case == "duplicate-key":
        line += 1
    if case == "boot-over-ram":  # a check of the whole section points at the section
        line = FULL[: FULL.index("boot_memory:")].count("\n") + 1
    return path, line


def test_full_scenario_becomes_machine_configs_and_workload_specs():
    s = load_scenario(DATA)
    assert (s.name, s.kernel, s.strategies, s.duration, s.seed) == (
        "rezki-2019-256mb",
        "5.2",
        ["nowait", "preload"],
        60,
        2019,
    )
    assert s.runs() == [(st, r) for st in ("nowait", "preload") for r in range(3)]
    config = s.machine_config("preload")
    assert (config.cpus, config.ram, config.thp, config.kernel) == (4, 256 * MiB, None, "5.2")
    assert (config.preemption, config.slab, config.strategy, config.sample_interval) == ("none", "SLUB", "preload", 0.1)
    assert config.memory.swap_bw_pages_s is None and config.memory.stat_interval_s == 1.0
    assert config.memory.direct_reclaim_latency.stall_ms == 100.0  # "100ms" in a *_ms field
    assert config.memory.reclaim_rates == dataclasses.replace(MemoryParams().reclaim_rates, file_clean=2e5)
    assert config.sched == dataclasses.replace(SchedParams(), sched_latency=6e-3)
    assert config.vmalloc == VmallocParams()
    fork, hog, reader = s.workloads
    assert isinstance(fork, ForkStormSpec) and fork.workers == 64 and fork.fork_cpu == pytest.approx(100e-6)
    assert isinstance(hog, AnonHogSpec) and (hog.label, hog.size, hog.hold) == ("background-anon", 100 * MiB, 3600)
    assert reader.kind == "page_cache_reader" and reader.rate == 25 * MiB
    assert s.boot_pages()["file_clean"] == 8192 and dict(s.machine.boot_memory.items())["anon"] == 16 * MiB
    Machine(config, np.random.SeedSequence(1))  # the kernel side accepts it


def test_name_defaults_to_the_file_stem_and_empty_sections_to_the_kernel_defaults(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("strategies: nowait\nduration: 1s\nmachine:\n  memory:\nworkloads:\n  - kind: fork_storm\n")
    s = load_scenario(path)
    assert (s.name, s.strategies, s.replications, s.seed) == ("tiny", ["nowait"], 1, 0)
    config = s.machine_config("nowait")
    assert config.memory == MemoryParams() and config.sched == SchedParams() and config.ram == 256 * MiB


def test_x_keys_hold_yaml_anchors_and_are_ignored(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "x-fork: &fork {kind: fork_storm, workers: 3}\nstrategies: [nowait]\nduration: 1s\n"
        "workloads:\n  - *fork\n  - <<: *fork\n    workers: 5\n"
    )
    assert [w.workers for w in load_scenario(path).workloads] == [3, 5]


def test_parameter_sections_follow_the_kernel_dataclasses():
    for section, cls, left_out in (
        (MemorySection, MemoryParams, {"swap_bw_pages_s"}),
        (SchedSection, SchedParams, set()),
        (VmallocSection, VmallocParams, set()),
    ):
        assert set(section.model_fields) == {f.name for f in dataclasses.fields(cls)} - left_out
    assert set(type(MemorySection.model_fields["reclaim_rates"].default_factory()).model_fields) == {
        f.name for f in dataclasses.fields(MemoryParams().reclaim_rates)
    }


def test_swap_bandwidth_is_set_in_pages_per_second_and_off_has_several_spellings():
    on = load_scenario(DATA, ["machine.swap=80MiB/s"])
    assert on.machine_config("nowait").memory.swap_bw_pages_s == 20480
    assert resolved_dict(on)["machine"]["swap"] == "80MiB/s"
    for off in ("off", "none", "false", "0", ""):
        assert load_scenario(DATA, [f"machine.swap={off}"]).machine_config("nowait").memory.swap_bw_pages_s is None


@pytest.mark.parametrize(("case", "old", "new", "where", "fragments"), BAD, ids=[c[0] for c in BAD])
def test_bad_value_is_one_line_with_file_line_key_path_and_allowed_values(tmp_path, case, old, new, where, fragments):
    path, line = bad_file(tmp_path, case, old, new)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: {where}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_yaml_syntax_error_missing_file_and_non_mapping_are_one_line(tmp_path):
    path, line = variant(tmp_path, "  cpus: 4", "  cpus: [4")
    assert error_of(path).startswith(
        f"{path}:{line + 1}: YAML syntax: while parsing a flow sequence (from line {line})"
    )
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"
    listing = tmp_path / "list.yaml"
    listing.write_text("# a list\n- kind: fork_storm\n")
    assert error_of(listing).startswith(f"{listing}:2: expected a mapping of scenario keys (name, description, kernel")


def test_set_overrides_are_applied_and_revalidated():
    s = load_scenario(DATA, ["workloads.0.workers=32", "machine.cpus=8", "strategies=[preload-gfp]", "kernel=5.5"])
    assert (s.workloads[0].workers, s.machine.cpus, s.strategies, s.kernel) == (32, 8, ["preload-gfp"], "5.5")
    s = load_scenario(DATA, ["machine.memory.oom_kill_latency.p95_ms=1s", "machine.thp=on"])
    assert s.machine_config("nowait").memory.oom_kill_latency.p95_ms == 1000.0 and s.machine_config("nowait").thp
    src = str(DATA)
    assert (
        error_of(DATA, ["machine.cpus=0"]) == f"{src}: --set machine.cpus: should be greater than or equal to 1, got 0"
    )
    assert error_of(DATA, ["machine.ram=1parsec"]).startswith(f"{src}: --set machine.ram: unknown size unit 'parsec'")
    assert error_of(DATA, ["kernel=5.20"]).startswith(f"{src}: --set kernel: unknown kernel profile '5.20'")
    assert error_of(DATA, ["kernel=6.8", "machine.slab=SLAB"]).startswith(f"{src}: --set machine.slab: kernel 6.8 has")


def test_set_of_a_path_the_schema_lacks_names_the_path():
    src = str(DATA)
    assert error_of(DATA, ["machine.cpu=8"]).startswith(f"{src}: --set machine.cpu: unknown key 'cpu' in machine (did")
    assert error_of(DATA, ["workloads.0.workerz=8"]).startswith(f"{src}: --set workloads.0.workerz: unknown key")
    assert "no index 9" in error_of(DATA, ["workloads.9.workers=8"])
    assert "single value" in error_of(DATA, ["machine.cpus.x=8"])
    assert (
        error_of(DATA, ["seed"])
        == f"{src}: --set seed: expected KEY.PATH=VALUE, e.g. machine.cpus=8 or workloads.0.workers=32"
    )
    with pytest.raises(InputError, match=r"^--set seed: expected KEY.PATH=VALUE"):
        parse_set_options(["machine.cpus=2", "seed"])
    assert parse_set_options(None) == []


def test_resolved_dict_is_strict_json_with_readable_units_and_validates_back():
    s = load_scenario(DATA)
    data = resolved_dict(s)
    json.dumps(data, allow_nan=False)
    assert (data["machine"]["ram"], data["machine"]["swap"], data["machine"]["boot_memory"]["file_clean"]) == (
        "256MiB",
        "off",
        "32MiB",
    )
    assert data["machine"]["memory"]["watermark_boost_factor"] == 15000  # defaults are filled in
    again = Scenario.model_validate(data)
    assert again == s and again.scenario_hash() == s.scenario_hash()
    endless = load_scenario(DATA, ["workloads.1.hold=.inf"])
    assert resolved_dict(endless)["workloads"][1]["hold"] == "inf"


def test_scenario_pickles_for_process_pool_executors():
    s = load_scenario(DATA, ["machine.swap=80MiB/s"])
    again = pickle.loads(pickle.dumps(s))
    assert again == s and again.machine_config("nowait") == s.machine_config("nowait")


def test_hash_is_stable_and_changes_with_any_value(tmp_path):
    h = load_scenario(DATA).scenario_hash()
    assert len(h) == 64 and h == load_scenario(DATA).scenario_hash()
    same, _ = variant(tmp_path, "ram: 256MiB", "ram: 268435456", "bytes")
    same.write_text(same.read_text().replace("name: rezki-2019-256mb", "name: other").replace("description:", "#"))
    assert load_scenario(same).scenario_hash() == h  # spelling, name and description do not count
    for change in ("workloads.0.workers=65", "machine.memory.reclaim_rates.slab=1", "seed=1", "strategies=[nowait]"):
        assert load_scenario(DATA, [change]).scenario_hash() != h, change


def test_a_tenant_given_as_a_share_of_ram_resolves_to_its_bytes_at_each_ram(tmp_path):
    path, _ = variant(tmp_path, "    size: 100MiB", "    size: 35.9375%", "share")
    path.write_text(path.read_text().replace("file_clean: 32MiB", "file_clean: 9.375 %"))
    small = load_scenario(path)
    assert small.workloads[1].size == 92 * MiB and small.machine.boot_memory.file_clean == 24 * MiB
    large = load_scenario(path, ["machine.ram=1GiB"])
    assert large.workloads[1].size == 368 * MiB and large.machine.boot_memory.file_clean == 96 * MiB
    assert large.machine.boot_memory.anon == 16 * MiB  # an absolute size stays as it is
    odd = load_scenario(path, ["workloads.1.size=36%"])  # 96,636,764.16 bytes: whole pages, rounded down
    assert odd.workloads[1].size == 96_636_764 // 4096 * 4096


def test_a_share_hashes_as_the_bytes_it_gives(tmp_path):
    path, _ = variant(tmp_path, "    size: 100MiB", "    size: 35.9375%", "share")
    assert load_scenario(path).scenario_hash() == load_scenario(DATA, ["workloads.1.size=92MiB"]).scenario_hash()
    assert resolved_dict(load_scenario(path))["workloads"][1]["size"] == "92MiB"


def test_a_sweep_over_ram_scales_the_shares_at_each_point(tmp_path):
    from sim.config.sweepfile import load_sweep

    base, _ = variant(tmp_path, "    size: 100MiB", "    size: 25%", "share")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"scenario: {base}\nfactors:\n  machine.ram: [256MiB, 1GiB]\n")
    plan = load_sweep(sweep)
    sizes = [plan.scenario(point).workloads[1].size for point in plan.points]
    assert sizes == [64 * MiB, 256 * MiB] and plan.base.workloads[1].size == 64 * MiB


def test_validate_cli_prints_one_line_per_file_and_exits_2_without_traceback(tmp_path):
    bad = [bad_file(tmp_path, case, old, new) for case, old, new, _, _ in BAD]
    files = [str(DATA)] + [str(path) for path, _ in bad]
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "validate", *files], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == f"{DATA}: ok (6 runs: 2 strategies x 3 replications)\n"
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == len(bad)
    for (path, line), (_, _, _, where, _), text in zip(bad, BAD, lines):
        assert text.startswith(f"{path}:{line}: {where}: "), text


def test_validate_cli_reports_a_bad_set_in_one_line_and_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "validate", str(DATA), "--set", "machine.cpu=8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{DATA}: --set machine.cpu: unknown key 'cpu' in machine (did you mean 'cpus'?); allowed: cpus, ram, thp, "
        "swap, preemption, slab, zoneinfo, dmesg, boot_memory, memory, sched, vmalloc"
    ]


def test_validate_cli_accepts_a_good_file_and_applies_set(monkeypatch, capsys):
    code, out, err = vmsim(monkeypatch, capsys, "validate", str(DATA), "--set", "replications=1", "--set", "seed=1")
    assert (code, err) == (0, "")
    assert out == f"{DATA}: ok (2 runs: 2 strategies x 1 replication)\n"


def test_schema_cli_prints_json_schema_with_every_workload_kind(monkeypatch, capsys, tmp_path):
    code, out, _ = vmsim(monkeypatch, capsys, "schema")
    assert code == 0
    schema = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Scenario.model_fields)
    assert set(schema["required"]) == {"strategies", "duration", "workloads"}
    mapping = schema["properties"]["workloads"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(WORKLOADS)
    target = tmp_path / "schema.json"
    code, _, _ = vmsim(monkeypatch, capsys, "schema", "--out", str(target))
    assert code == 0 and target.read_text() == out
