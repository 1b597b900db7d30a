"""Bad input never hangs, crashes or eats the machine: one line on stderr and exit 2.

Three layers: the rows of issue 11's table (each a way a user lost time or a
machine), a corpus of about 150 malformed scenario files, sweep files and
command lines as a new user writes them, and a hypothesis fuzz test that
corrupts a valid scenario at random (deep nesting, aliases, odd scalars,
broken bytes).  Every case runs the real entry point in-process under a
deadline, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
BASE = (ROOT / "scenarios" / "rezki-2019-256mb.yaml").read_text()
SHORT = BASE.replace("duration: 60s", "duration: 0.5s").replace("replications: 3", "replications: 1")
SWEEP = f"""scenario: {ROOT / "scenarios" / "rezki-2019-256mb.yaml"}
set:
  duration: 0.5s
factors:
  workloads.0.workers: [64, 128]
replications: 1
"""
DEADLINE = 30  # seconds: far above the slowest case (under 5 s); a case past it has hung


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the test if the block runs longer than ``seconds`` (a hang)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def call(capsys, *args: str) -> tuple[int, str, str, float]:
    """Run ``vmsim ARGS`` in-process under the deadline: (exit status, stdout, stderr, seconds)."""
    from sim.cli import main

    start = time.perf_counter()
    with deadline(DEADLINE), pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err, time.perf_counter() - start


def assert_one_line(code: int, err: str, fragment: str = "") -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


def write(tmp_path: Path, text: str | bytes, name: str = "bad.yaml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def laughs(prefix: str) -> str:
    """A "billion laughs" document part: nine levels of nine aliases, under keys ``PREFIXa0`` ..."""
    lines = [f"{prefix}a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{prefix}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


# ---- issue 11's table, row by row -------------------------------------------------------------

FILE_ROWS = [
    ("alias-bomb-in-x-key", SHORT + laughs("x-"), "aliases expand to more than"),
    ("alias-bomb-in-description", SHORT.replace('description: "', 'x-old: "') + laughs("x-")
     + "description: *a9\n", "aliases expand to more than"),
    ("alias-bomb-in-workloads", SHORT.replace("workloads:\n", "x-w: " + "\n") + laughs("x-")
     + "workloads: *a9\n", "aliases expand to more than"),
    ("recursive-alias", SHORT + "x-r: &r [*r]\n", "alias refers to a node that contains it"),
    ("deep-list", SHORT + "x-deep: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested more than 64 levels"),
    ("ram-1e400", SHORT.replace("ram: 256MiB", "ram: 1e400B"), "machine.ram: '1e400B' is too large a number"),
    ("replications-1e9", SHORT.replace("replications: 1", "replications: 1000000000"), "pass --max-runs"),
    ("nul-and-control-bytes", SHORT.replace("seed:", 'x-n: "a\x00b\x07"\nseed:'), "control character 0x00"),
    ("cpus-100000", SHORT.replace("cpus: 4", "cpus: 100000"), "expected at most 8192 CPUs"),
    ("cpus-10e40", SHORT.replace("cpus: 4", "cpus: " + "1" + "0" * 40), "expected at most 8192 CPUs"),
    ("sample-interval-1ns", SHORT.replace("sample_interval: 100ms", "sample_interval: 1ns"), "use 5us or more"),
    ("ram-huge", SHORT.replace("ram: 256MiB", "ram: 99999999999999999999TiB"), "expected at most 64TiB"),
    ("ram-megabits", SHORT.replace("ram: 256MiB", "ram: 256Mb"), "reads as bits; write MB"),
    ("misspelled-required-key", SHORT.replace("duration:", "duraton:"), "duraton: unknown key 'duraton' (did you "
     "mean 'duration'?)"),
    ("ram-share-above-100", SHORT.replace("size: 92MiB", "size: 150%"), "workloads.1.size: expected a share of RAM "
     "from 0% to 100%, got '150%'"),
    ("ram-share-negative", SHORT.replace("size: 56MiB", "size: -5%"), "workloads.2.size: expected a share of RAM such "
     "as '36%'"),
    ("ram-share-exponent", SHORT.replace("pagetables: 2MiB", "pagetables: 1e-99999%"), "machine.boot_memory."
     "pagetables: expected a share of RAM such as '36%'"),
    ("ram-share-where-none-is-taken", SHORT.replace("worker_rss: 128KiB", "worker_rss: 1%"), "workloads.0.worker_rss:"
     " '1%': a share of RAM is taken only by anon_hog and shmem sizes"),
    ("ram-share-of-a-bad-ram", SHORT.replace("size: 92MiB", "size: 36%").replace("ram: 256MiB", "ram: lots"),
     "machine.ram: expected a size"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "fragment"), FILE_ROWS, ids=[row[0] for row in FILE_ROWS])
def test_issue_table_file_rows_are_one_line_and_exit_2(tmp_path, capsys, case, text, fragment):
    path = write(tmp_path, text)
    code, _, err, _ = call(capsys, "validate", path)
    assert_one_line(code, err, fragment)
    assert err.startswith(path)


def test_a_set_value_nested_10000_deep_is_one_line(capsys):
    value = "[" * 10_000 + "]" * 10_000
    code, _, err, _ = call(capsys, "validate", str(ROOT / "scenarios/rezki-2019-256mb.yaml"), "--set", f"x-y={value}")
    assert_one_line(code, err, "nested more than 64 levels")
    assert len(err) < 300


def test_ram_1e400_by_set_is_one_line(capsys):
    code, _, err, _ = call(capsys, "validate", str(ROOT / "scenarios/rezki-2019-256mb.yaml"), "--set",
                           "machine.ram=1e400B")  # fmt: skip
    assert_one_line(code, err, "--set machine.ram: '1e400B' is too large a number")


def test_dev_zero_as_a_scenario_is_refused_before_reading_it_all(capsys):
    code, _, err, _ = call(capsys, "validate", "/dev/zero")
    assert_one_line(code, err, "/dev/zero: larger than 1 MiB")


@pytest.mark.parametrize(("line", "where"), [("cpus: 4", "machine.cpus"), ("workers: 256", "workloads.0.workers"),
                                             ("oom_score_adj: 0", "workloads.1.oom_score_adj")])  # fmt: skip
def test_true_is_not_taken_for_a_number(tmp_path, capsys, line, where):
    key = line.split(":")[0]
    code, _, err, _ = call(capsys, "validate", write(tmp_path, SHORT.replace(line, f"{key}: true")))
    assert_one_line(code, err, f"{where}: expected a number, got true")


def test_swap_false_still_means_off(tmp_path, capsys):
    code, out, err, _ = call(capsys, "validate", write(tmp_path, SHORT.replace("swap: off", "swap: false")))
    assert code == 0, err


def test_megabytes_are_decimal_and_said_so():
    from sim.schema.units import parse_size

    assert parse_size("256MB") == 256_000_000 and parse_size("256MiB") == 256 << 20


def test_alias_bomb_in_a_sweep_file_is_one_line(tmp_path, capsys):
    path = write(tmp_path, SWEEP + laughs("x-") + "description: *a9\n", "sweep.yaml")
    code, _, err, _ = call(capsys, "validate", path)
    assert_one_line(code, err, "aliases expand to more than")


def test_a_million_point_grid_is_refused_before_any_point_is_built(tmp_path, capsys):
    workers = ", ".join(str(n) for n in range(1, 1001))
    sizes = ", ".join(f"{n}MiB" for n in range(1, 1001))
    text = SWEEP.replace("workloads.0.workers: [64, 128]", f"workloads.0.workers: [{workers}]\n"
                         f"  workloads.1.size: [{sizes}]")  # fmt: skip
    path = write(tmp_path, text, "sweep.yaml")
    code, _, err, seconds = call(capsys, "sweep", path)
    assert_one_line(code, err, "1,000,000 grid points x 2 strategies x 1 replications = 2,000,000 runs")
    assert "--max-runs" in err


def test_a_run_estimated_past_the_bound_asks_for_yes(tmp_path, capsys):
    path = write(tmp_path, SHORT.replace("duration: 0.5s", "duration: 1e6s").replace("sample_interval: 100ms",
                 "sample_interval: 100s"))  # fmt: skip
    code, out, err, _ = call(capsys, "run", path, "--out", str(tmp_path / "out"))
    assert_one_line(code, err, "more than the 8 h bound: pass --yes to run it")
    assert not (tmp_path / "out").exists()


CLI_ROWS = [
    (["answer", "--executor", "bogus"], "--executor: expected one of serial, process, dask, got 'bogus'"),
    (["run", "SCENARIO", "--seed", "-1"], "run: --seed: expected greater than or equal to 0"),
    (["sweep", "SWEEP", "-j", "0"], "sweep: --jobs: expected greater than or equal to 1"),
    (["replay", "x.jsonl", "--search", "v9"], "replay: --search: expected one of v5.3, v5.18"),
    (["sweep", "SWEEP", "--chunk", "0"], "sweep: --chunk: expected greater than or equal to 1"),
    (["machine", "--ram", "99999999TiB"], "--ram: expected at most 64TiB"),
    (["machine", "--ram", "1GiB", "--cpus", "100000"], "--cpus: expected at most 8192 CPUs"),
    (["validate", "SWEEP"], ""),  # a sweep file is recognised: exit 0 (checked below)
    (["run"], "run: Missing argument"),
    (["bogus"], "No such command 'bogus'"),
    (["run", "SCENARIO", "--nope"], "No such option: --nope"),
    (["machine", "--cpus", "x"], "--cpus: expected a valid integer"),
    (["validate", "/no/such/file.yaml"], "/no/such/file.yaml: no such file"),
    (["validate", "/"], "/: is a directory"),
]


@pytest.mark.parametrize(("args", "fragment"), CLI_ROWS, ids=[" ".join(row[0]) for row in CLI_ROWS])
def test_command_line_errors_are_one_line_and_exit_2(tmp_path, capsys, args, fragment):
    sweep = write(tmp_path, SWEEP, "sweep.yaml")
    args = [sweep if a == "SWEEP" else str(ROOT / "scenarios/rezki-2019-256mb.yaml") if a == "SCENARIO" else a
            for a in args]  # fmt: skip
    code, out, err, _ = call(capsys, *args)
    if args[0] == "validate" and args[1] == sweep:
        assert code == 0 and "ok (sweep: 2 points x 2 strategies x 1 replications = 4 runs)" in out, err
        return
    assert_one_line(code, err, fragment)


def test_run_out_naming_a_file_fails_before_simulating(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    code, out, err, seconds = call(capsys, "run", write(tmp_path, SHORT), "--out", str(target))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert target.read_text() == "mine"


def test_a_bug_prints_its_traceback_and_asks_to_be_reported(monkeypatch, capsys):
    import sim.config.scenario

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(sim.config.scenario, "load_scenario", broken)
    code, _, err, _ = call(capsys, "validate", str(ROOT / "scenarios/rezki-2019-256mb.yaml"))
    assert code == 1 and "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "this is a bug in vmsim" in err.splitlines()[-1]


# ---- a corpus of malformed files, as a new user writes them ----------------------------------

ODD_VALUES = ["many", "-1", "1e400", "[]", "{}", "null", "true", "''", ".nan", "-.inf", "0x10", "1_000", "~/x",
              "[[[[1]]]]", "{a: {b: {c: 1}}}", "256Mb", "10 parsecs", "'\\u0000'", "*undefined", "!!binary aGk="]
KEY_LINES = ["cpus: 4", "ram: 256MiB", "swap: off", "preemption: none", "slab: SLAB", "duration: 0.5s",
             "seed: 2019", "replications: 1", "sample_interval: 100ms", "workers: 256", "worker_rss: 128KiB",
             "size: 92MiB", "oom_score_adj: 0", "kernel: \"5.2\"", "strategies: [nowait, preload]"]  # fmt: skip
CORPUS = [(line, value) for line in KEY_LINES for value in ODD_VALUES[:10]]
CORPUS += [(line, value) for line in KEY_LINES[:5] for value in ODD_VALUES[10:]]


@pytest.mark.parametrize(("line", "value"), CORPUS, ids=[f"{line.split(':')[0]}={value}" for line, value in CORPUS])
def test_corpus_of_malformed_values_gives_one_line_or_is_valid(tmp_path, capsys, line, value):
    key = line.split(":")[0]
    assert SHORT.count(line) == 1, line
    code, out, err, _ = call(capsys, "validate", write(tmp_path, SHORT.replace(line, f"{key}: {value}")))
    if code == 0:  # some values are fine for some keys (a seed of 0x10 is 16)
        assert "ok (" in out and err == ""
    else:
        assert_one_line(code, err)


# ---- fuzz ---------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.sampled_from(["256MiB", "1e400B", "256Mb", "10ms", "1ns", "inf", "5.20", "SLUB", "nowait", "fork_storm"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                      inner, max_size=4), max_leaves=12)  # fmt: skip


def _paths(node, prefix=()):
    """Every key path of a YAML document (mappings and lists)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def corrupted_scenarios(draw) -> str:
    """A valid scenario with a few random corruptions: values replaced, nesting, aliases, bytes."""
    data = yaml.safe_load(SHORT)
    paths = [p for p in _paths(data) if p]
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths))
        node = data
        for part in path[:-1]:
            node = node[part]
        kind = draw(st.sampled_from(["value", "deep", "delete"]))
        if kind == "value":
            node[path[-1]] = draw(VALUES)
        elif kind == "deep":
            nested: object = 1
            for _ in range(draw(st.integers(1, 80))):
                nested = [nested]
            node[path[-1]] = nested
        elif isinstance(node, dict):
            node.pop(path[-1], None)
        paths = [p for p in _paths(data) if p]
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    tail = draw(st.sampled_from(["", laughs("x-"), "x-r: &r [*r]\n", "x-a: &a {b: *a}\n", "x-u: *nope\n",
                                 "x-deep: " + "[" * 500 + "]" * 500 + "\n"]))  # fmt: skip
    text += tail
    if draw(st.booleans()) and text:
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.text(max_size=5)) + text[at + draw(st.integers(0, 5)) :]
    return text


def check_validate(tmp_path: Path, capsys, text: str) -> None:
    path = write(tmp_path, text)
    code, out, err, _ = call(capsys, "validate", path)
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    assert err.count("\n") == (1 if code == 2 else 0), err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
          HealthCheck.too_slow])  # fmt: skip
@given(text=corrupted_scenarios())
def test_fuzzed_scenarios_are_accepted_or_one_line(tmp_path, capsys, text):
    check_validate(tmp_path, capsys, text)


@pytest.mark.long
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
          HealthCheck.too_slow])  # fmt: skip
@given(text=corrupted_scenarios())
def test_fuzzed_scenarios_are_accepted_or_one_line_long(tmp_path, capsys, text):
    check_validate(tmp_path, capsys, text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
