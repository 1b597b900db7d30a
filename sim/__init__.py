"""vmsim: the version, and which build of the model this process runs: compiled or pure Python.

The compiled build (``tools/build_native.py``, run by ``make``: mypyc for the hot modules
of the model and its event loop) puts one extension module beside each compiled
source (``space.py`` -> ``space.cpython-311-....so``) and writes
``sim/_native_manifest.json``: the sha256 of every compiled source as it was
compiled.  Python's import system prefers an extension module to a ``.py`` of the same
name, so an edited source would be shadowed by its old compiled self.  This module
prevents that, once, when ``sim`` is first imported:

* ``VMSIM_PURE=1``: every module of ``sim`` is loaded from its ``.py``;
* no manifest, or no extension: pure Python (there is nothing compiled to load);
* any compiled source whose hash differs from the manifest (edited since the build),
  or an extension missing: pure Python for *all* of them, with one line on stderr.
  The compiled modules call one another directly in C, so a fresh ``.py`` next to
  stale compiled callers would not be run; the group is all or nothing.

``BUILD_MODE`` says which it is ("compiled" or "pure") and ``BUILD_REASON`` why.  This runs in
``sim/__init__.py`` because it must run before any module of ``sim`` is imported.
"""

from __future__ import annotations

__version__ = "0.1.0"

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_native_manifest.json"
EXT_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


class PureSourceFinder(importlib.abc.MetaPathFinder):
    """Load every module of ``sim`` from its ``.py``, never from an extension."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if not fullname.startswith("sim.") or path is None:
            return None
        leaf = fullname.rpartition(".")[2]
        for folder in path:
            source = Path(folder) / (leaf + ".py")
            if source.is_file():
                loader = importlib.machinery.SourceFileLoader(fullname, str(source))
                return importlib.util.spec_from_file_location(fullname, source, loader=loader)
        return None  # a package or something else: the normal finders


def source_hash(path: Path) -> str:
    """sha256 of a source file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_build(manifest_path: Path = MANIFEST, root: Path = PACKAGE_DIR.parent) -> tuple[str, str]:
    """("compiled" or "pure", reason), from the environment and the manifest at
    ``manifest_path`` of the sources under ``root``."""
    if os.environ.get("VMSIM_PURE", "") not in ("", "0"):
        return "pure", "VMSIM_PURE is set"
    if not manifest_path.is_file():
        return "pure", "no compiled build (see tools/build_native.py)"
    manifest = json.loads(manifest_path.read_text())
    stale = []
    for module, digest in manifest["sources"].items():
        source = root / (module.replace(".", "/") + ".py")
        ext = source.with_name(source.stem + EXT_SUFFIX)
        if not ext.is_file():
            return "pure", f"compiled module {module} missing"
        if not source.is_file() or source_hash(source) != digest:
            stale.append(module)
    if stale:
        more = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
        return "pure", f"compiled build is stale ({stale[0]}{more} edited since); rebuild with `make native`"
    return "compiled", f"{len(manifest['sources'])} modules compiled by mypyc {manifest.get('mypyc', '?')}"


def install() -> tuple[str, str]:
    """Decide the mode; in pure mode put the source finder first.  Say so if stale."""
    mode, reason = check_build()
    if mode == "pure":
        if not any(isinstance(f, PureSourceFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, PureSourceFinder())
        if "stale" in reason or "missing" in reason:
            print(f"vmsim: running pure Python: {reason}", file=sys.stderr)
    return mode, reason


BUILD_MODE, BUILD_REASON = install()
