"""Where `vmsim answer` and `make run` write: never over the committed answer unless asked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import sim.app.answer as answer_app
from sim.app.answer import default_out
from tests.conftest import ROOT, vmsim

COMMITTED = Path("results") / "answer"


def _targets(monkeypatch, capsys, *args: str) -> list[Path]:
    """The output folders `vmsim answer ARGS` hands to run_answer (which is not run)."""
    seen: list[Path] = []

    def fake_run_answer(out: Path, **_: object) -> dict:
        seen.append(Path(out))
        return {"sweeps": {}, "report": str(Path(out) / "report.md")}

    monkeypatch.setattr(answer_app, "run_answer", fake_run_answer)
    code, _, err = vmsim(monkeypatch, capsys, "answer", *args)
    assert code == 0, err
    return seen


def test_answer_without_out_does_not_write_the_committed_answer(monkeypatch, capsys):
    assert _targets(monkeypatch, capsys) == [default_out()]
    assert _targets(monkeypatch, capsys, "--quick") == [default_out(quick=True)]
    assert COMMITTED not in (default_out(), default_out(quick=True))


def test_answer_writes_the_committed_answer_when_given_its_path(monkeypatch, capsys):
    assert _targets(monkeypatch, capsys, "--out", str(COMMITTED)) == [COMMITTED]


@pytest.mark.parametrize("quick", [False, True])
def test_the_default_answer_folders_are_ignored_by_git(quick):
    path = default_out(quick) / "report.md"
    res = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, capture_output=True)
    if res.returncode == 128:
        pytest.skip("not a git checkout")
    assert res.returncode == 0, f"{path} would be committed"


def test_make_run_writes_the_default_folder_unless_asked():
    def dry_run(*extra: str) -> str:
        res = subprocess.run(["make", "-n", "-W", "pyproject.toml", "run", *extra], cwd=ROOT, capture_output=True,
                             text=True)  # fmt: skip
        if res.returncode != 0:
            pytest.skip(f"make -n run failed here: {res.stderr[-200:]}")
        return next(line for line in res.stdout.splitlines() if "vmsim answer" in line)

    assert dry_run().endswith(f"vmsim answer --out {default_out()}")
    assert dry_run(f"ANSWER_OUT={COMMITTED}").endswith(f"vmsim answer --out {COMMITTED}")
