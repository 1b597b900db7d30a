"""The guest's files, built from what is installed on the host (no downloads).

A guest boots from two pieces:

* an **initramfs** (gzip'd newc cpio): static busybox, the kernel modules the
  guest needs (virtio, the block driver, ext4, zram, with their dependencies
  from ``modules.dep``) and the per-run agent as ``/init``;
* a **root disk** (an ext2 image made by ``mke2fs -d``): busybox, stress-ng with
  the shared libraries ``ldd`` lists, and a filler file to read into the page
  cache.  Files on a disk are page cache, which reclaim can drop, as on a real
  machine; files in an initramfs are not (ramfs), which would send a small
  guest to the OOM killer at once.

Both are cached by the hash of their content under the user's cache folder
(``$XDG_CACHE_HOME/vmsim/peer``), so a second run reuses them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sim.peer.cpio import Entry, gzip_newc
from sim.schema.errors import InputError

# modules the guest loads when the kernel has them as modules (dependencies from modules.dep)
GUEST_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "zram")  # ext4 asks for crc32c at mount
BUSYBOX = Path("/bin/busybox")
STRESS_NG = Path("/usr/bin/stress-ng")


@dataclass(frozen=True)
class GuestKernel:
    """The kernel to boot and, for a distribution kernel, its modules folder."""

    vmlinuz: Path
    version: str
    modules_dir: Path | None


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vmsim/peer`` (default ``~/.cache/vmsim/peer``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmsim" / "peer"


def find_kernel(kernel: Path | None = None, modules: Path | None = None, boot: Path = Path("/boot")) -> GuestKernel:
    """The kernel to boot: ``kernel`` if given, else the newest ``/boot/vmlinuz-*``
    (Debian's linux-image-amd64).  Its modules are ``modules`` if given, else
    ``/lib/modules/VERSION`` when it exists; a kernel built with everything it
    needs built in (the v5.2 recipe) has none."""
    if kernel is None:
        found = sorted(boot.glob("vmlinuz-*"), key=lambda p: _version_key(p.name.removeprefix("vmlinuz-")))
        if not found:
            raise InputError(
                "--kernel", None, f"no kernel in {boot}: install linux-image-amd64, or pass --kernel BZIMAGE"
            )
        kernel = found[-1]
    if not Path(kernel).is_file():
        raise InputError("--kernel", None, f"{kernel}: no such kernel image (expected a bzImage or /boot/vmlinuz-*)")
    version = Path(kernel).name.removeprefix("vmlinuz-") if Path(kernel).name.startswith("vmlinuz-") else ""
    if modules is None and version and Path(f"/lib/modules/{version}/modules.dep").is_file():
        modules = Path(f"/lib/modules/{version}")
    if modules is not None and not (Path(modules) / "modules.dep").is_file():
        raise InputError("--modules", None, f"{modules}: expected a /lib/modules/VERSION folder with modules.dep")
    if modules is not None and not version:
        version = Path(modules).name
    return GuestKernel(Path(kernel), version, Path(modules) if modules is not None else None)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


def module_order(modules_dir: Path, wanted: tuple[str, ...] = GUEST_MODULES) -> list[Path]:
    """The .ko files for ``wanted`` and everything they depend on, dependencies
    first (from ``modules.dep``); modules the kernel has built in are skipped."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" in line:
            mod, rest = line.split(":", 1)
            deps[_module_name(mod)] = [mod, *rest.split()]
    order: list[str] = []

    def visit(path: str) -> None:
        name = _module_name(path)
        for dep in reversed(deps.get(name, [path])[1:]):
            visit(dep)
        if path not in order:
            order.append(path)

    for name in wanted:
        if name in deps:
            visit(deps[name][0])
    return [modules_dir / rel for rel in order]


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def initramfs(kernel: GuestKernel, init_script: str, extra: tuple[Path, ...] = ()) -> bytes:
    """The initramfs: busybox, the modules (``/modules/NN-name.ko`` in load order),
    ``extra`` files under ``/extra`` (not loaded at boot; test_vmalloc runs when
    loaded) and ``init_script`` as ``/init``."""
    if not BUSYBOX.is_file():
        raise InputError("peer", None, f"{BUSYBOX} missing: install busybox-static (apt-get install busybox-static)")
    entries = [Entry.directory(d) for d in ("bin", "dev", "proc", "sys", "root", "modules")]
    entries.append(Entry.file("bin/busybox", BUSYBOX.read_bytes(), executable=True))
    entries.append(Entry.symlink("bin/sh", "busybox"))
    if kernel.modules_dir is not None:
        for i, ko in enumerate(module_order(kernel.modules_dir)):
            entries.append(Entry.file(f"modules/{i:02d}-{_module_name(ko.name)}.ko", _module_bytes(ko)))
    if extra:
        entries.append(Entry.directory("extra"))
        for path in extra:
            name = path.name.split(".ko")[0] + ".ko" if ".ko" in path.name else path.name
            entries.append(Entry.file(f"extra/{name}", _module_bytes(path)))
    entries.append(Entry.file("init", init_script.encode(), executable=True))
    return gzip_newc(entries)


def _module_bytes(path: Path) -> bytes:
    """A module's bytes, decompressed if the distribution ships it as .ko.xz/.ko.zst."""
    if path.suffix == ".xz":
        import lzma

        return lzma.decompress(path.read_bytes())
    if path.suffix == ".zst":
        if shutil.which("zstd") is None:
            raise InputError(str(path), None, "a zstd-compressed module: install zstd (apt-get install zstd)")
        out = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=False)
        if out.returncode != 0:
            raise InputError(str(path), None, f"zstd could not decompress it: {out.stderr.decode().strip()}")
        return out.stdout
    return path.read_bytes()


def shared_libraries(binary: Path) -> list[Path]:
    """The files ``ldd`` lists for ``binary`` (libraries and the dynamic loader)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    paths = []
    for line in out.stdout.splitlines():
        match = re.search(r"(/\S+)\s*\(0x", line)
        if match:
            paths.append(Path(match.group(1)))
    return paths


def root_disk(filler_mib: int) -> Path:
    """The ext2 root disk (cached): busybox, stress-ng and its libraries at their
    host paths, and ``/data/filler`` of ``filler_mib`` MiB (sparse; reading it
    fills the page cache)."""
    if not STRESS_NG.is_file():
        raise InputError("peer", None, f"{STRESS_NG} missing: install stress-ng (apt-get install stress-ng)")
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    if not Path(mke2fs).exists():
        raise InputError("peer", None, "mke2fs missing: install e2fsprogs (apt-get install e2fsprogs)")
    files = [BUSYBOX, STRESS_NG, *shared_libraries(STRESS_NG)]
    digest = hashlib.sha256(f"disk-v1 filler={filler_mib}".encode())
    for path in files:
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    target = cache_dir() / f"root-{digest.hexdigest()[:16]}.ext2"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmsim-root-") as tmp:
        root = Path(tmp)
        for path in files:
            dest = root / path.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path.resolve(), dest)
        for d in ("proc", "sys", "dev", "tmp", "run", "data", "sbin", "usr/sbin", "sys/kernel/tracing"):
            (root / d).mkdir(parents=True, exist_ok=True)
        with open(root / "data" / "filler", "wb") as fh:
            fh.truncate(filler_mib << 20)
        used = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and f.name != "filler")
        size_mib = (used >> 20) + filler_mib + 32
        tmp_img = target.with_suffix(f".{os.getpid()}.tmp")
        made = subprocess.run(
            [mke2fs, "-q", "-F", "-t", "ext2", "-d", str(root), "-L", "vmsim", str(tmp_img), f"{size_mib}M"],
            check=False,
            capture_output=True,
        )
        if made.returncode != 0:
            tmp_img.unlink(missing_ok=True)
            raise InputError("peer", None, f"mke2fs could not build the root disk: {made.stderr.decode().strip()}")
        os.replace(tmp_img, target)
    return target
