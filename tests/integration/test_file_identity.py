"""Cache identity without hashing every file: two files claiming one build-id never share symbols.

A real ELF (this machine's libz) is copied into container-like roots; a
patched copy changes one byte of a function name in ``.dynstr``, which leaves
the build-id note untouched, so both files claim one build-id with different
content. Each file must be answered with its own names, whichever is read
first, whether or not the first one still exists; byte-identical copies share
one parsed Binary; a file modified in place with its size and mtime restored
(only its ctime changes) is read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration.test_hostile_inputs import cli

LIBZ = Path("/lib/x86_64-linux-gnu/libz.so.1")
MODULE = "/usr/lib/libz.so.1"


def aged() -> int:
    """A clock an hour ahead: files the test just wrote count as old, so their stat identity is trusted
    (canonical/buildidclaims.py, STAT_TRUST_SECONDS; young files: tests/integration/test_young_files.py)."""
    return time.time_ns() + 3_600 * 10**9


def _function(path: Path) -> tuple[str, int, int]:
    """(name, file offset inside it, file offset of its name's first byte in .dynstr) of a libz function."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        dynstr = elf.get_section_by_name(".dynstr")
        text = elf.get_section_by_name(".text")
        for s in elf.get_section_by_name(".dynsym").iter_symbols():
            e = s.entry
            if s.name == "deflateBound" and e.st_info.type == "STT_FUNC" and e.st_size > 8:
                off = e.st_value - text["sh_addr"] + text["sh_offset"] + 4
                return s.name, off, dynstr["sh_offset"] + e.st_name
    raise AssertionError("deflateBound not found in libz")


@pytest.fixture(scope="module")
def libz() -> tuple[bytes, bytes, str, int]:
    """(original bytes, patched bytes, original name, file offset inside the function)."""
    name, off, name_at = _function(LIBZ)
    data = LIBZ.read_bytes()
    assert data[name_at : name_at + len(name)] == name.encode()
    patched = bytearray(data)
    patched[name_at] = ord("D")  # deflateBound -> DeflateBound: same build-id note, other content
    return data, bytes(patched), name, off


def place(root: Path, data: bytes) -> Path:
    p = root / MODULE.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def symbol(s: Symbolizer, root: Path, off: int) -> str:
    r = s.resolve_file(MODULE, off, root=str(root))
    assert r.resolved, r
    return r.symbol


@pytest.mark.parametrize("first", ["original", "patched"])
def test_two_files_claiming_one_build_id_never_share(libz, tmp_path: Path, first: str) -> None:
    data, patched, name, off = libz
    a, b = place(tmp_path / "a", data).parents[2], place(tmp_path / "b", patched).parents[2]
    s = Symbolizer(clock=aged, recheck_seconds=0)
    order = [(a, name), (b, "D" + name[1:])]
    if first == "patched":
        order.reverse()
    for root, want in order + order:
        assert symbol(s, root, off) == want
    ia, ib = s.identify(MODULE, root=str(a)), s.identify(MODULE, root=str(b))
    assert ia.build_id == ib.build_id and ia.identity != ib.identity
    # the later claimant is named by its whole SHA-256 (a 128-bit prefix: a collision of two crafted
    # files in ~2^64 hashes; docs/function-ids.md, "Why the whole file is hashed")
    later, later_data = (ib, patched) if first == "original" else (ia, data)
    assert later.identity == f"{later.build_id}@{hashlib.sha256(later_data).hexdigest()}"
    assert s.stats()["identity_files_hashed"] == 2  # the second claimant and the first, once
    # A byte-identical copy in a third root (another inode) shares the original's parsed Binary.
    c = place(tmp_path / "c", data).parents[2]
    loaded = s.stats()["binaries_loaded"]
    assert s.binary(MODULE, root=str(c)) is s.binary(MODULE, root=str(a))
    assert s.stats()["binaries_loaded"] == loaded and s.stats()["identity_shared"] == 1
    s.close()


def test_a_file_alone_with_its_build_id_is_not_hashed(libz, tmp_path: Path) -> None:
    data, _, name, off = libz
    p = place(tmp_path / "a", data)
    b = tmp_path / "b" / MODULE.lstrip("/")
    b.parent.mkdir(parents=True)
    os.link(p, b)  # the same file (device, inode) under another root: another container sharing a layer
    s = Symbolizer(clock=aged)
    assert symbol(s, tmp_path / "a", off) == name and symbol(s, tmp_path / "b", off) == name
    assert (
        s.identify(MODULE, root=str(tmp_path / "a")).identity
        == s.identify(MODULE, root=str(tmp_path / "b")).identity
    )
    stats = s.stats()
    assert stats.get("identity_files_hashed", 0) == 0 and stats["binaries_loaded"] == 1
    st, fid = p.stat(), s.identify(MODULE, root=str(tmp_path / "a"))
    sid = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    assert fid.identity == f"{fid.build_id}@file-" + "-".join(f"{v:x}" for v in sid)
    s.close()


@pytest.mark.parametrize("then", ["deleted", "replaced"])
def test_a_first_claimant_gone_or_replaced_is_never_shared(libz, tmp_path: Path, then: str) -> None:
    data, patched, name, off = libz
    pa = place(tmp_path / "a", data)
    s = Symbolizer(clock=aged, recheck_seconds=0)
    assert symbol(s, tmp_path / "a", off) == name
    if then == "deleted":
        pa.unlink()
    else:  # same path, new file with the patched content: the old claim cannot be verified
        tmp = pa.with_suffix(".new")
        tmp.write_bytes(patched)
        tmp.rename(pa)
    # An identical copy of the gone file cannot be proved identical: its own entry, its own names.
    c = place(tmp_path / "c", data).parents[2]
    assert symbol(s, c, off) == name
    assert s.stats()["identity_claims_dropped"] == 1 and s.stats()["binaries_loaded"] == 2
    b = place(tmp_path / "b", patched).parents[2]
    assert symbol(s, b, off) == "D" + name[1:]
    assert symbol(s, c, off) == name
    if then == "replaced":
        assert symbol(s, tmp_path / "a", off) == "D" + name[1:]
    s.close()


@pytest.mark.parametrize("recheck", [0.0, 0.2])
def test_a_file_changed_in_place_with_size_and_mtime_restored_is_read_again(
    libz, tmp_path: Path, recheck: float
) -> None:
    data, patched, name, off = libz
    p = place(tmp_path / "a", data)
    s = Symbolizer(recheck_seconds=recheck)
    assert symbol(s, tmp_path / "a", off) == name
    before = p.stat()
    time.sleep(0.05)  # past the filesystem clock's tick: the ctime of the write differs
    with p.open("r+b") as f:  # in place: same inode, same size
        f.write(patched)
    os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = p.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns
    time.sleep(recheck)  # the documented recheck window (recheck_seconds) has passed
    assert symbol(s, tmp_path / "a", off) == "D" + name[1:]
    s.close()


def test_cli_symbolize_file_batch_names_each_copy(libz, tmp_path: Path) -> None:
    """``symbolize --file`` resolves its offsets as one batch: each copy gets its own names, in order."""
    data, patched, name, off = libz
    for sub, content, want in [("a", data, name), ("b", patched, "D" + name[1:])]:
        root = place(tmp_path / sub, content).parents[2]
        args = ["--no-lines", "--root", str(root), "--file", MODULE, hex(off), str(off + 1), "0x0"]
        p = cli("symbolize", *args)
        rows = [json.loads(line) for line in p.stdout.splitlines()]
        assert [r["input"] for r in rows] == [hex(off), str(off + 1), "0x0"], p.stdout
        assert [r.get("symbol") for r in rows[:2]] == [want, want], p.stdout
        assert p.returncode == 1 and not rows[2].get("symbol"), (p.returncode, p.stdout, p.stderr)


def test_a_file_over_max_file_bytes_is_refused_unhashed(libz, tmp_path: Path) -> None:
    """``max_file_bytes`` still bounds every file, hashed or not: refused, counted, remembered."""
    data, _, _, off = libz
    root = place(tmp_path / "a", data).parents[2]
    s = Symbolizer(clock=aged, limits=Limits(max_file_bytes=len(data) - 1))
    for _ in range(3):
        r = s.resolve_file(MODULE, off, root=str(root))
        assert not r.resolved and r.error == "budget_exceeded", r
    stats = s.stats()
    assert stats.get("identity_files_hashed", 0) == 0 and stats["files_refused_remembered"] >= 2
    s.close()


def test_more_claimants_than_remembered_each_keep_their_own_names(libz, tmp_path: Path) -> None:
    """Ten different files claim one build-id (8 remembered): each answered with its own names."""
    data, patched, name, off = libz
    at = next(i for i in range(len(data)) if data[i] != patched[i])
    roots = []
    for k in range(10):
        variant = bytearray(data)
        variant[at] = ord("A") + k  # Aeflate..., Beflate..., ...: ten contents, one build-id
        roots.append((place(tmp_path / f"r{k}", bytes(variant)).parents[2], chr(ord("A") + k) + name[1:]))
    s = Symbolizer(clock=aged, recheck_seconds=0)
    for root, want in roots + roots:
        assert symbol(s, root, off) == want
    same = place(tmp_path / "twin", bytes(variant)).parents[2]  # identical to the last, remembered one
    assert s.binary(MODULE, root=str(same)) is s.binary(MODULE, root=str(roots[-1][0]))
    s.close()


def test_a_file_without_build_id_is_keyed_by_its_digest(libz, tmp_path: Path) -> None:
    data, _, name, off = libz
    with LIBZ.open("rb") as f:
        note = ELFFile(f).get_section_by_name(".note.gnu.build-id")["sh_offset"]
    nobid = bytearray(data)
    nobid[note + 8 : note + 12] = (0x99).to_bytes(4, "little")  # n_type: no longer NT_GNU_BUILD_ID
    root = place(tmp_path / "a", bytes(nobid)).parents[2]
    s = Symbolizer(clock=aged)
    assert symbol(s, root, off) == name
    fid = s.identify(MODULE, root=str(root))
    digest = hashlib.sha256(nobid).hexdigest()
    assert (fid.kind, fid.build_id) == ("fallback", f"sha256-{digest[:40]}")
    assert fid.identity == f"{fid.build_id}@{digest}"
    s.close()
