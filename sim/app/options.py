"""Options shared by several commands, checked before any simulating: ``--set`` overrides,
``--plugin`` files, the ``--out`` folder, and the computing-time bound.

Each refuses bad input with an :class:`~sim.schema.errors.InputError` naming the option.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from sim.schema.errors import InputError


def parse_set_options(values: list[str] | None) -> list[str]:
    """The ``--set`` options, each checked for KEY.PATH=VALUE syntax (an InputError if not);
    pass the result to ``load_scenario``, which checks the paths against the schema."""
    from sim.config.paths import parse_override

    for text in values or []:
        try:
            parse_override(text)
        except ValueError as err:
            raise InputError(f"--set {text.partition('=')[0].strip()[:60]}", None, str(err)) from None
    return list(values or [])


def set_params(sets: list[str]) -> dict[str, str]:
    """``--set`` options as the run rows' parameter columns: KEY.PATH -> VALUE text."""
    return {text.split("=", 1)[0]: text.split("=", 1)[1] for text in sets}


def load_plugin_options(paths: list[Path] | None) -> tuple[str, ...]:
    """Load the entry-point plug-ins and the ``--plugin`` files (an InputError naming a bad one);
    their absolute paths, for worker processes to load."""
    from sim.engine.plugins import load_plugins

    files = tuple(str(Path(p).expanduser().resolve()) for p in paths or ())
    load_plugins(files)
    return files


def check_out_folder(target: Path, option: str = "--out") -> None:
    """Refuse, before any simulating, a results folder that cannot be one: an existing file
    (or a file on its path), or a place this user cannot write; an existing folder is fine."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputError(option, None, f"{target} is a file, not a results folder")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(option, None, f"cannot make the folder {target}: {existing} is a file")
    try:  # the one sure test, for root and read-only file systems too: make a folder there
        os.rmdir(tempfile.mkdtemp(prefix=".vmsim-probe-", dir=existing))
    except OSError as err:
        raise InputError(option, None, f"cannot write in {existing}: {err.strerror or err}") from None


def estimate(source: str, probes: list[tuple[Any, int]], root_seed: int, runs: int, workers: int, sure: bool) -> str:
    """:func:`sim.engine.cost.estimate_runs` against MAX_ESTIMATED_SECONDS: the one-line
    estimate, or an InputError if it is above the bound and ``sure`` is not set."""
    from sim.engine.cost import estimate_runs
    from sim.schema.limits import MAX_ESTIMATED_SECONDS

    return estimate_runs(source, probes, root_seed, runs, workers, MAX_ESTIMATED_SECONDS, sure)
