"""Build the compiled model (mypyc; SimPy's loop with Cython) in place and write sim/_native_manifest.json.

    python tools/build_native.py            # compile tools/native_modules.txt beside the sources
    python tools/build_native.py --clean    # remove the extensions and the manifest

The manifest holds each compiled source's sha256; ``sim/_native.py`` loads the compiled
modules only while every hash still matches (otherwise all of ``sim`` runs pure).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "sim" / "_native_manifest.json"
GROUP = "sim._mypyc"  # the shared library: sim/_mypyc__mypyc.*.so

LIST = ROOT / "tools" / "native_modules.txt"  # the modules compiled, one path a line


# SimPy's event loop, vendored (vmsim_simpy/README.md): Cython compiles its plain Python as it is
CYTHON_MODULES = ["vmsim_simpy/core.py", "vmsim_simpy/events.py"]


def native_modules() -> list[str]:
    """The paths to compile: $VMSIM_NATIVE_MODULES (space-separated) or tools/native_modules.txt."""
    if os.environ.get("VMSIM_NATIVE_MODULES"):
        return os.environ["VMSIM_NATIVE_MODULES"].split()
    lines = (line.split("#")[0].strip() for line in LIST.read_text().splitlines())
    return [line for line in lines if line]


def clean() -> None:
    MANIFEST.unlink(missing_ok=True)
    for folder in ("sim", "vmsim_simpy"):
        for made in (*(ROOT / folder).rglob("*.so"), *(ROOT / folder).rglob("*.c")):
            made.unlink()
    shutil.rmtree(ROOT / "build", ignore_errors=True)


def build(modules: list[str]) -> None:
    from Cython import __version__ as cython_version
    from Cython.Build import cythonize
    from mypy.version import __version__ as mypy_version
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    os.chdir(ROOT)
    ext = mypycify(modules, opt_level="3", debug_level="0", group_name=GROUP)
    ext += cythonize(CYTHON_MODULES, compiler_directives={"language_level": 3, "annotation_typing": False}, quiet=True)
    setup(name="vmsim-native", ext_modules=ext, script_args=["build_ext", "--inplace", "--quiet"])
    everything = modules + CYTHON_MODULES
    sources = {m[:-3].replace("/", "."): hashlib.sha256((ROOT / m).read_bytes()).hexdigest() for m in everything}
    manifest = {"mypyc": mypy_version, "cython": cython_version, "python": sys.version.split()[0], "sources": sources}
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    where = MANIFEST.relative_to(ROOT)
    print(f"compiled {len(modules)} modules with mypyc, {len(CYTHON_MODULES)} with Cython; manifest {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true")
    args = parser.parse_args()
    if args.clean:
        clean()
    else:
        build(native_modules())


if __name__ == "__main__":
    main()
