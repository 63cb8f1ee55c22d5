"""Stat identities on real files: a young file is not cached under one, and a debug file rewritten in
place is not attached under its old digest (canonical/filecache.py, canonical/buildidclaims.py).

- A file whose ctime is "now" (written just before the read) is read while
  young: it is identified by its SHA-256 and seen again it is hashed again,
  never answered from a cache keyed by its (device, inode, size, mtime, ctime).
  tests/unit/test_stat_trust.py models the one-tick kernels where this matters.
- A separate debug file rewritten in place with its size and mtime restored
  (``os.utime``: any kernel) between the binary's identification and its
  indexing changed only its ctime. Before the fix only (device, inode, size,
  mtime) was compared, so the rewritten tables were attached under the digest
  of the file that was hashed, an identity another container's genuine copy
  shares: that container's frames took the planted names.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration import test_hostile_elf_builder as eb
from tests.integration.test_debug_files import (
    LIBC,
    file_offset,
    libc_debug_file,
    libc_locals,
    place,
    symbolizer,
)
from tests.integration.test_file_identity import aged

BID = b"\x37" * 20
LIB = "/usr/lib/libx.so"


def test_a_file_written_just_now_is_not_cached_under_its_stat_identity(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = root / LIB.lstrip("/")
    elf = eb.Elf(build_id=BID, functions=["alpha", "beta"])
    s = Symbolizer(recheck_seconds=0)
    for _ in range(5):  # a read within 2 s of the write; written again if a stalled machine missed it
        offsets = eb.write(path, elf)  # its ctime is now
        fid = s.identify(LIB, root=str(root))
        if s.stats().get("identity_young_reads"):
            break
    else:
        raise AssertionError(f"no read was young in 5 tries: {s.stats()}")
    assert fid.identity == f"{BID.hex()}@{hashlib.sha256(path.read_bytes()).hexdigest()}"
    hashed = s.stats()["identity_files_hashed"]
    again = s.identify(LIB, root=str(root))  # the same stat identity: read and hashed again
    assert again.identity == fid.identity and s.stats()["identity_files_hashed"] == hashed + 1
    assert s.resolve_file(LIB, offsets["beta"], root=str(root)).symbol == "beta"
    s.close()


def test_a_debug_file_rewritten_in_place_with_its_mtime_restored_is_not_attached(tmp_path: Path) -> None:
    bid, debug = libc_debug_file()
    (start, size, names) = libc_locals(1)[0]
    name = min(names, key=len)
    forged_name = name[:-1] + ("X" if name[-1] != "X" else "Y")
    data = debug.read_bytes()
    forged = data.replace(b"\0" + name.encode() + b"\0", b"\0" + forged_name.encode() + b"\0")
    assert forged != data and len(forged) == len(data)
    bid_path = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    lib = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    hostile, honest = tmp_path / "hostile", tmp_path / "honest"
    for root in (hostile, honest):
        place(root, lib, LIBC)
        place(root, bid_path, debug)  # both start with the genuine debug file
    planted = hostile / bid_path.lstrip("/")
    off = file_offset(LIBC, start + size // 2)
    s = symbolizer()
    s.identify(lib, root=str(hostile))  # its debug file hashed: the genuine digest
    before = planted.stat()
    with planted.open("r+b") as f:  # in place: the same inode and size
        f.write(forged)
    os.utime(planted, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = planted.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert s.resolve_file(lib, off, root=str(hostile)).symbol == forged_name  # its own file: its names
    assert s.resolve_file(lib, off, root=str(honest)).symbol in names  # never the planted ones
    assert s.stats()["debug_files_rejected_changed"] == 1
    ids = {s.identify(lib, root=str(root)).identity for root in (hostile, honest)}
    assert len(ids) == 2
    s.close()


def _dwarf_only_program(tmp_path: Path) -> tuple[Path, int]:
    """A PIE whose static function only DWARF names (no .symtab): (path, file offset inside it)."""
    src = tmp_path / "p.c"
    src.write_text(
        "static __attribute__((noinline)) int stella_hidden_one(int x) { return x * 3 + 1; }\n"
        "int main(int argc, char **argv) { (void)argv; return stella_hidden_one(argc); }\n"
    )
    full, prog = tmp_path / "full", tmp_path / "root" / "app" / "prog"
    prog.parent.mkdir(parents=True)
    subprocess.run(["gcc", "-g", "-O1", "-o", str(full), str(src)], check=True)
    subprocess.run(
        ["strip", "--strip-all", "--keep-section=.debug_*", str(full), "-o", str(prog)], check=True
    )
    start = next(
        s["st_value"]
        for s in ELFFile(full.open("rb")).get_section_by_name(".symtab").iter_symbols()
        if s.name == "stella_hidden_one"
    )
    with prog.open("rb") as f:
        seg = next(g for g in ELFFile(f).iter_segments() if g["p_type"] == "PT_LOAD" and g["p_flags"] & 1)
        return prog, start - seg["p_vaddr"] + seg["p_offset"] + 2


def test_a_lazy_source_read_after_its_file_changed_is_refused_and_the_file_indexed_again(
    tmp_path: Path,
) -> None:
    """DWARF is read at the first miss, from the file kept open since indexing: a rewrite in place
    between the two (here a same-length name in .debug_str) must not name the indexed content."""
    prog, off = _dwarf_only_program(tmp_path)
    root = str(tmp_path / "root")
    s = Symbolizer(recheck_seconds=0, clock=aged)
    b = s.binary("/app/prog", root=root)
    assert b.lazy_pending  # indexed: .dynsym read, DWARF not yet
    data = prog.read_bytes()
    assert data.count(b"stella_hidden_one\0") == 1
    with prog.open("r+b") as f:  # in place: the same inode and size, a new ctime
        f.write(data.replace(b"stella_hidden_one\0", b"stella_planted_xy\0"))
    # the Binary as a process that learnt its identity keeps using it (canonical/frames.py)
    _, hit = b.lookup_file_offset(off)
    assert hit is None and b.load_reasons["dwarf"] == "unreadable_file" and b.stale
    assert s.cached_binary(b.identity) is None and s.stats()["binaries_stale"] == 1
    again = s.resolve_file("/app/prog", off, root=root)  # the file as it is now, indexed again
    assert again.symbol == "stella_planted_xy" and again.source == "dwarf", again
    s.close()


def test_a_refused_file_rewritten_in_place_with_its_mtime_restored_is_read_again(tmp_path: Path) -> None:
    """A refusal is remembered per stat identity, ctime included: a file not yet an ELF when first
    read (an installer writing in place, then restoring the package's mtime) is read again."""
    root = tmp_path / "root"
    path = root / LIB.lstrip("/")
    data, offsets = eb.build(eb.Elf(build_id=BID, functions=["alpha", "beta"]))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * len(data))
    s = Symbolizer(recheck_seconds=0, clock=aged)
    assert s.resolve_file(LIB, offsets["beta"], root=str(root)).error == "not_elf"
    assert s.resolve_file(LIB, offsets["beta"], root=str(root)).error == "not_elf"  # remembered
    before = path.stat()
    with path.open("r+b") as f:  # in place: the same inode and size
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert s.resolve_file(LIB, offsets["beta"], root=str(root)).symbol == "beta"
    s.close()
