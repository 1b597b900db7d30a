"""Plug-ins: extension classes from Python files (``--plugin FILE.py``) and entry points.

A plug-in is ordinary Python that defines subclasses of an extension point, e.g. a
:class:`~sim.kernel.mm.vmalloc.strategies.base.SplitStrategy`; defining the class registers
it.  :func:`load_plugins` imports the built-in strategies, the installed packages' entry points
of :data:`ENTRY_POINT_GROUPS` (``vmsim.strategies``: each names a module or class to import),
and the given files, each once per process.  Worker processes of a run or sweep call it with
the same paths (they arrive with each task), so a plug-in's classes exist wherever its runs run.

A file that cannot be loaded (missing, a syntax error, an exception, a class the registry
refuses) is an :class:`~sim.schema.errors.InputError` naming the file: one line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from types import ModuleType

import sim.kernel.mm.vmalloc.strategies  # noqa: F401  (the built-in strategies register first)
from sim.kernel.mm.vmalloc.strategies.base import unregister_module
from sim.schema.errors import InputError

ENTRY_POINT_GROUPS = ("vmsim.strategies",)
_files: dict[Path, ModuleType] = {}
_entry_points_loaded = False
_entry_points: list[dict[str, str]] = []  # the entry points loaded, for the manifest


def load_plugins(paths: Iterable[str | Path] = ()) -> list[ModuleType]:
    """Entry points (once per process), then each plug-in file (once per process); the file modules."""
    load_entry_points()
    return [load_plugin_file(path) for path in paths]


def load_entry_points() -> None:
    """Import every entry point of :data:`ENTRY_POINT_GROUPS` (the first call only)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for group in ENTRY_POINT_GROUPS:
        for ep in metadata.entry_points(group=group):
            try:
                ep.load()
                dist = getattr(ep, "dist", None)
                _entry_points.append({
                    "group": group, "name": ep.name, "value": ep.value,
                    "distribution": f"{dist.name} {dist.version}" if dist is not None else "",
                })  # fmt: skip
            except Exception as err:
                raise InputError(f"entry point {ep.name} = {ep.value} ({group})", None, _why(err)) from None


def load_plugin_file(path: str | Path) -> ModuleType:
    """Import the Python file ``path`` as a plug-in module (again only if it is another file)."""
    resolved = Path(path).expanduser().resolve()
    if resolved in _files:
        return _files[resolved]
    if not resolved.is_file():
        raise InputError(str(path), None, "no such plug-in file")
    if resolved.suffix != ".py":
        raise InputError(str(path), None, "a plug-in is a Python file (FILE.py)")
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    name = f"vmsim_plugin_{resolved.stem.replace('-', '_')}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise InputError(str(path), None, "cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        sys.modules.pop(name, None)
        unregister_module(name)
        if not isinstance(err, Exception):
            raise
        line = err.lineno if isinstance(err, SyntaxError) else _line_in(err, resolved)
        raise InputError(str(path), line, f"cannot load the plug-in: {_why(err)}") from None
    _files[resolved] = module
    return module


def _why(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, SyntaxError):
        text = " ".join((err.msg or "invalid syntax").split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _line_in(err: BaseException, path: Path) -> int | None:
    """The last line of ``path`` in the traceback of ``err`` (where the plug-in went wrong)."""
    line = None
    tb = err.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def forget_plugin_file(path: str | Path) -> None:
    """Undo :func:`load_plugin_file`: its strategies leave the registry, its module the process
    (for tests, and a long-lived process that reloads a plug-in)."""
    module = _files.pop(Path(path).expanduser().resolve(), None)
    if module is not None:
        unregister_module(module.__name__)
        sys.modules.pop(module.__name__, None)


def plugin_manifest(paths: Iterable[str | Path] = ()) -> dict[str, list[dict[str, object]]]:
    """What a results folder's manifest records of the plug-ins, so that a reader can tell
    which code produced a strategy's rows: each ``--plugin`` file with its SHA-256 and the
    strategies it defines, and each entry point loaded (group, name, value, distribution)."""
    from sim.kernel.mm.vmalloc.strategies.base import STRATEGIES

    files = []
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        module = _files.get(resolved)
        defined = [n for n, cls in STRATEGIES.items() if module is not None and cls.__module__ == module.__name__]
        digest = hashlib.sha256(resolved.read_bytes()).hexdigest() if resolved.is_file() else ""
        files.append({"file": str(resolved), "sha256": digest, "strategies": defined})
    return {"files": files, "entry_points": list(_entry_points)}
