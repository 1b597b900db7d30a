#!/usr/bin/env python3
"""Copy the kernel pieces the v6.9 vector harness needs into an ignored build dir.

Nothing copied here is ever committed: this script only knows *names*.  It reads a
kernel tree (a bare git mirror or a checkout), cuts the listed definitions out of
mm/vmalloc.c and include/linux/vmalloc.h by name, copies lib/rbtree.c and the
rbtree/list headers unchanged, and writes everything under --out (default
build/vectors69, which .gitignore covers).

    python3 tools/vectors69/extract.py --tree /work/.mirror/ec-jt+linux-6.9.0/repo

Pieces are emitted in their original source order, verbatim (comments included),
into <out>/vmalloc_pieces.c; driver.c includes that file after its shims.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

# Files copied unchanged.
COPY = [
    "lib/rbtree.c",
    "include/linux/rbtree.h",
    "include/linux/rbtree_augmented.h",
    "include/linux/rbtree_types.h",
    "include/linux/list.h",
]

# (kind, name) cut out of mm/vmalloc.c, in any order (emitted in source order).
VMALLOC_PIECES = [
    # configuration macros and globals of the global KVA allocator and the node layer
    ("define", "DEBUG_AUGMENT_PROPAGATE_CHECK"),
    ("define", "DEBUG_AUGMENT_LOWEST_MATCH_CHECK"),
    ("decl", "free_vmap_area_lock"),
    ("decl", "vmap_initialized"),
    ("decl", "vmap_area_cachep"),
    ("decl", "free_vmap_area_list"),
    ("decl", "free_vmap_area_root"),
    ("decl", "ne_fit_preload_node"),
    ("struct", "rb_list"),
    ("define", "MAX_VA_SIZE_PAGES"),
    ("struct", "vmap_pool"),
    ("struct", "vmap_node"),
    ("decl", "vmap_nodes"),
    ("decl", "nr_vmap_nodes"),
    ("decl", "vmap_zone_size"),
    ("decl", "vmap_lazy_nr"),
    ("decl", "purge_nodes"),
    ("enum", "fit_type"),
    # node helpers
    ("func", "addr_to_node_id"),
    ("func", "addr_to_node"),
    ("func", "id_to_node"),
    ("func", "encode_vn_id"),
    ("func", "decode_vn_id"),
    ("func", "is_vn_id_valid"),
    # augmented free tree
    ("func", "va_size"),
    ("func", "get_subtree_max_size"),
    ("macro", "RB_DECLARE_CALLBACKS_MAX"),
    ("func", "__find_vmap_area"),
    ("func", "find_va_links"),
    ("func", "get_va_next_sibling"),
    ("func", "__link_va"),
    ("func", "link_va"),
    ("func", "link_va_augment"),
    ("func", "__unlink_va"),
    ("func", "unlink_va"),
    ("func", "unlink_va_augment"),
    ("func", "augment_tree_propagate_from"),
    ("func", "insert_vmap_area"),
    ("func", "insert_vmap_area_augment"),
    ("func", "__merge_or_add_vmap_area"),
    ("func", "merge_or_add_vmap_area"),
    ("func", "merge_or_add_vmap_area_augment"),
    ("func", "is_within_this_va"),
    ("func", "find_vmap_lowest_match"),
    ("func", "classify_va_fit_type"),
    ("func", "va_clip"),
    ("func", "va_alloc"),
    ("func", "__alloc_vmap_area"),
    # pools, node allocation, purge, lazy free
    ("func", "size_to_va_pool"),
    ("func", "node_pool_add_va"),
    ("func", "node_pool_del_va"),
    ("func", "node_alloc"),
    ("func", "reclaim_list_global"),
    ("func", "decay_va_pool_node"),
    ("func", "purge_vmap_node"),
    ("func", "__purge_vmap_area_lazy"),
    ("func", "free_vmap_area_noflush"),
    ("func", "find_vmap_area"),
    ("func", "find_unlink_vmap_area"),
    # boot
    ("func", "vmap_init_free_space"),
    ("func", "vmap_init_nodes"),
]

HEADER_PIECES = [("struct", "vmap_area")]  # from include/linux/vmalloc.h


class Tree:
    def __init__(self, path: str, rev: str):
        self.path = Path(path)
        self.rev = rev
        self.blobs: dict[str, str] = {}
        self.is_git = (self.path / "HEAD").exists() and (self.path / "objects").exists()
        if not self.is_git and (self.path / ".git").exists():
            self.commit = self._git(["rev-parse", "HEAD"], git_dir=self.path / ".git").strip()
        elif self.is_git:
            self.commit = self._git(["rev-parse", rev]).strip()
        else:
            self.commit = "unknown"

    def _git(self, args, git_dir=None):
        return subprocess.run(["git", "--git-dir", str(git_dir or self.path), *args],
                              check=True, capture_output=True, text=True).stdout

    def read(self, rel: str) -> str:
        if self.is_git:
            data = subprocess.run(["git", "--git-dir", str(self.path), "show", f"{self.rev}:{rel}"],
                                  check=True, capture_output=True).stdout
        else:
            data = (self.path / rel).read_bytes()
        # the git blob id, so the pieces can be matched against any other copy of the tree
        self.blobs[rel] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return data.decode()


_PROTO_TYPE_LINE = re.compile(r"^[A-Za-z_][\w \t\*]*$")


def _one(matches, kind, name):
    if len(matches) != 1:
        sys.exit(f"extract: {kind} {name!r}: {len(matches)} candidate definitions, expected 1")
    return matches[0]


def find_piece(lines: list[str], kind: str, name: str) -> tuple[int, int]:
    """Return [first, last] line indexes (inclusive) of the named definition."""
    n = len(lines)
    if kind == "func":
        cands = []
        pat = re.compile(r"^(?:[A-Za-z_][^;{}()]*[\s\*])?" + re.escape(name) + r"\(")
        for i, ln in enumerate(lines):
            if not pat.match(ln):
                continue
            # a definition: the next line that is exactly "{" comes before any ';' line end
            j = i
            while j < n and lines[j] != "{":
                if lines[j].rstrip().endswith(";"):
                    break
                j += 1
            if j < n and lines[j] == "{":
                cands.append(i)
        i = _one(cands, kind, name)
        start = i
        while start > 0 and _PROTO_TYPE_LINE.match(lines[start - 1]) and lines[start - 1].strip():
            start -= 1
        j = i
        while lines[j] != "{":
            j += 1
        k = j + 1
        while lines[k] != "}":
            k += 1
        return start, k
    if kind in ("struct", "enum"):
        pat = re.compile(r"^(?:static )?" + kind + r" " + re.escape(name) + r" \{")
        i = _one([i for i, ln in enumerate(lines) if pat.match(ln)], kind, name)
        k = i + 1
        while not lines[k].startswith("}"):
            k += 1
        assert lines[k].rstrip().endswith(";"), (kind, name, lines[k])
        return i, k
    if kind == "define":
        pat = re.compile(r"^#define " + re.escape(name) + r"\b")
        i = _one([i for i, ln in enumerate(lines) if pat.match(ln)], kind, name)
        k = i
        while lines[k].rstrip().endswith("\\"):
            k += 1
        return i, k
    if kind == "decl":
        pat = re.compile(r"\b" + re.escape(name) + r"\b")
        cands = [i for i, ln in enumerate(lines)
                 if ln[:1].isalpha() and pat.search(ln) and ln.rstrip().endswith(";")
                 and not re.search(r"\b" + re.escape(name) + r"\(", ln)]
        i = _one(cands, kind, name)
        return i, i
    if kind == "macro":
        i = _one([i for i, ln in enumerate(lines) if ln.startswith(name + "(")], kind, name)
        depth, k = 0, i
        while True:
            depth += lines[k].count("(") - lines[k].count(")")
            if depth == 0:
                return i, k
            k += 1
    raise ValueError(kind)


def cut(text: str, pieces) -> list[tuple[int, str]]:
    lines = text.split("\n")
    out = []
    seen = set()
    for kind, name in pieces:
        a, b = find_piece(lines, kind, name)
        if a in seen:
            sys.exit(f"extract: {name} overlaps an earlier piece")
        seen.add(a)
        out.append((a, "\n".join(lines[a:b + 1])))
    out.sort()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", default=os.environ.get("KTREE", "/work/.mirror/ec-jt+linux-6.9.0/repo"),
                    help="kernel tree: bare git dir or checkout")
    ap.add_argument("--rev", default="HEAD", help="revision when --tree is a git dir")
    ap.add_argument("--out", default="build/vectors69")
    a = ap.parse_args(argv)

    tree = Tree(a.tree, a.rev)
    out = Path(a.out)
    for rel in COPY:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(tree.read(rel))

    makefile = tree.read("Makefile")
    ver = ".".join(re.search(rf"^{k} = (\d+)", makefile, re.M).group(1)
                   for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))

    parts = [f"/* Generated by tools/vectors69/extract.py from {a.tree} ({tree.commit}, v{ver}).\n"
             f" * Build artefact: never commit. */\n"]
    for src, pieces in (("include/linux/vmalloc.h", HEADER_PIECES), ("mm/vmalloc.c", VMALLOC_PIECES)):
        parts.append(f"\n/* ---- from {src} ---- */\n")
        for line, body in cut(tree.read(src), pieces):
            parts.append(f"\n#line {line + 1} \"{src}\"\n{body}\n")
    (out / "vmalloc_pieces.c").write_text("".join(parts))
    (out / "SOURCE").write_text(f"tree={a.tree}\nrev={a.rev}\ncommit={tree.commit}\nversion={ver}\n"
                                + "".join(f"blob {b} {rel}\n" for rel, b in sorted(tree.blobs.items())))
    print(f"extract: {len(VMALLOC_PIECES) + len(HEADER_PIECES)} pieces, {len(COPY)} files "
          f"from {tree.commit[:12]} (v{ver}) -> {out}")


if __name__ == "__main__":
    main()
