"""`vmsim replay`: output format, --check, and one-line errors for bad traces."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.app.replay import parse_trace, replay

HEADER = '{"vectors":1,"search":"v5.3","workload":"t","seed":1,"note":"x"}'
STACK = '{"op":"alloc","size":20480,"align":16384,"vstart":18446683600570023936,"vend":18446718784942112767}'


def vmsim(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def write(tmp_path, *lines: str):
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_writes_one_result_line_per_op_in_the_vector_format(tmp_path):
    path = write(
        tmp_path,
        HEADER,
        f'{{"in":{STACK}}}',
        '{"in":{"op":"free","addr":18446683600570023936}}',
        '{"in":{"op":"check"}}',
    )
    res = vmsim("replay", str(path))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[0]["search"] == "v5.3"
    assert lines[1]["out"] == {"addr": 0xFFFFC90000000000, "fit": "NE", "objs_alloc": 1, "objs_free": 0}
    assert lines[2]["out"] == {"ok": True, "objs_free": 2}
    assert lines[3]["out"] == {"free": [[1, 2**64 - 1]], "busy": 0}
    assert "fit mix: FL 0 (0.0%), LE 0 (0.0%), RE 0 (0.0%), NE 1 (100.0%)" in res.stderr


def test_check_reports_the_first_mismatch_and_exits_1(tmp_path):
    wrong = '{"addr":18446683600570023936,"fit":"LE","objs_alloc":0,"objs_free":0}'
    path = write(tmp_path, HEADER, f'{{"in":{STACK},"out":{wrong}}}')
    res = vmsim("replay", str(path), "--check")
    assert res.returncode == 1
    assert "mismatches 1" in res.stdout
    assert "first mismatch at line 2" in res.stdout
    assert '"fit":"NE"' in res.stdout


def test_check_passes_on_matching_outputs(tmp_path):
    out = '{"addr":18446683600570023936,"fit":"NE","objs_alloc":1,"objs_free":0}'
    path = write(tmp_path, HEADER, f'{{"in":{STACK},"out":{out}}}')
    res = vmsim("replay", str(path), "--check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "compared 1 ops, mismatches 0" in res.stdout


def test_out_option_writes_the_file_atomically(tmp_path):
    path = write(tmp_path, f'{{"in":{STACK}}}')
    target = tmp_path / "sub" / "out.jsonl"
    res = vmsim("replay", str(path), "--out", str(target))
    assert res.returncode == 0, res.stderr
    assert len(target.read_text().splitlines()) == 2
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"in":{"op":"alloc","size":20480,"align":3,"vstart":0,"vend":5}}', "in.align: expected a power of two"),
        ('{"in":{"op":"alloc","size":100,"align":1,"vstart":0,"vend":5}}', "in.size: expected a multiple of 4096"),
        ('{"in":{"op":"alloc","size":4096,"align":1,"vstart":-1,"vend":5}}', "in.vstart: expected an integer"),
        ('{"in":{"op":"alloc","size":4096,"align":1,"vstart":0}}', "in.vend: missing"),
        ('{"in":{"op":"alloc","size":4096,"aling":1,"vstart":0,"vend":5}}', "in.align: missing"),
        ('{"in":{"op":"free","addr":1.5}}', "in.addr: expected an integer"),
        ('{"in":{"op":"grow"}}', "in.op: expected one of alloc, free, check"),
        ('{"in":{"op":"check","extra":1}}', "in.extra: unknown field"),
        ('{"in":{"op":"alloc","size":true,"align":1,"vstart":0,"vend":5}}', "in.size: expected an integer"),
        ('{"op":"check"}', "in: missing"),
        ('{"in":{"op":"check"}', "not valid JSON"),
    ],
)
def test_malformed_line_gives_one_line_error_with_line_number_and_exit_2(tmp_path, line, message):
    path = write(tmp_path, HEADER, '{"in":{"op":"check"}}', line)
    res = vmsim("replay", str(path))
    assert res.returncode == 2
    err = res.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"{path}:3: " in err
    assert message in err


def test_missing_file_gives_one_line_error_and_exit_2(tmp_path):
    res = vmsim("replay", str(tmp_path / "nope.jsonl"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"vmsim: {tmp_path / 'nope.jsonl'}: no such file"


def test_trace_without_header_uses_the_search_option():
    header, ops = parse_trace(['{"in":{"op":"check"}}'])
    assert header is None
    report, lines = replay(header, ops, search="v5.18")
    assert json.loads(next(lines))["search"] == "v5.18"
    assert report.search == "v5.18"
