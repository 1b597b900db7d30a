"""Build the compiled model (mypyc) in place and write sim/_native_manifest.json.

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



def native_modules() -> list[str]:
    """The paths to compile: $VMSIM_NATIVE_MODULES (space-separated) or tools/native_modules.txt."""
    if os.environ.get("VMSIM_NATIVE_MODULES"):
        return os.environ["VMSIM_NATIVE_MODULES"].split()
    lines = (line.split("#")[0].strip() for line in LIST.read_text().splitlines())
    return [line for line in lines if line]


def clean() -> None:
    MANIFEST.unlink(missing_ok=True)
    for made in (*(ROOT / "sim").rglob("*.so"), *(ROOT / "sim").rglob("*.c")):
        made.unlink()
    shutil.rmtree(ROOT / "build", ignore_errors=True)


def build(modules: list[str]) -> None:
    from mypy.version import __version__ as mypy_version
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    os.chdir(ROOT)
    # hashed before compiling: a source edited during the build then reads as stale, not as built
    sources = {m[:-3].replace("/", "."): hashlib.sha256((ROOT / m).read_bytes()).hexdigest() for m in modules}
    ext = mypycify(modules, opt_level="3", debug_level="0", group_name=GROUP)
    setup(name="vmsim-native", ext_modules=ext, script_args=["build_ext", "--inplace", "--quiet"])
    manifest = {"mypyc": mypy_version, "python": sys.version.split()[0], "sources": sources}
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    where = MANIFEST.relative_to(ROOT)
    print(f"compiled {len(modules)} modules with mypyc; manifest {where}")


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
