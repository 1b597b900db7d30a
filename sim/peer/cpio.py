"""The ``newc`` cpio format that the kernel unpacks as an initramfs.

Written in Python so that building a guest needs no ``cpio`` binary, and so
that the archive is byte-for-byte the same for the same inputs (mtimes, inode
numbers and owners are fixed), which makes its content hash a cache key.
"""

from __future__ import annotations

import gzip
import io
import stat
from dataclasses import dataclass

_MAGIC = b"070701"


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, a regular file or a symlink (``target``)."""

    path: str
    mode: int
    data: bytes = b""

    @staticmethod
    def directory(path: str) -> Entry:
        return Entry(path, stat.S_IFDIR | 0o755)

    @staticmethod
    def file(path: str, data: bytes, executable: bool = False) -> Entry:
        return Entry(path, stat.S_IFREG | (0o755 if executable else 0o644), data)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, stat.S_IFLNK | 0o777, target.encode())


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    fields = (ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, 0, 0, len(name) + 1, 0)
    return _MAGIC + b"".join(b"%08X" % value for value in fields)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def write_newc(entries: list[Entry]) -> bytes:
    """The uncompressed archive: each entry's header, name and data, 4-byte aligned,
    then the ``TRAILER!!!`` record.  Parent directories must come before their files."""
    out = io.BytesIO()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = entry.path.lstrip("/").encode()
        head = _header(ino if entry.path != "TRAILER!!!" else 0, entry, name) + name + b"\0"
        out.write(head + _pad(len(head)))
        out.write(entry.data + _pad(len(entry.data)))
    return out.getvalue()


def gzip_newc(entries: list[Entry]) -> bytes:
    """The archive gzip-compressed with a zero mtime (deterministic)."""
    return gzip.compress(write_newc(entries), compresslevel=6, mtime=0)


def read_newc(data: bytes) -> list[Entry]:
    """Parse an uncompressed newc archive (for tests and for checking a cached image)."""
    entries: list[Entry] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 6] != _MAGIC:
            raise ValueError(f"not a newc cpio header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        body = data[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            break
        entries.append(Entry(name, mode, body))
    return entries
