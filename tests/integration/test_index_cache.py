"""The on-disk index cache (canonical/indexcache.py): same answers as indexing, and never trusted blindly.

Real files: a copy of this machine's libstdc++ (``.dynsym``, thousands of
C++ aliases), a C program built here with gcc (``.symtab`` and ``.dynsym``)
and runc (stripped Go: Go's table is read lazily, as without a cache). A
second Symbolizer (an agent restart) must load the tables from the cache and
give every function the ID a Symbolizer without a cache gives; a cache file
that is truncated, bit-flipped, for another file, re-checksummed after
tampering, or not a regular file must be ignored, counted and rewritten,
with the answers unchanged.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from stellaops_runtime.canonical import indexcache
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration.test_file_identity import aged  # the files written here count as old

LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"

C_PROGRAM = r"""
#include <stdio.h>
static int helper(int x) { return x * 3 + 1; }
int work(int n) { int s = 0; for (int i = 0; i < n; i++) s += helper(i); return s; }
int other(int n) __attribute__((noinline));
int other(int n) { return work(n) + helper(n); }
int main(int argc, char **argv) { printf("%d\n", other(argc)); return 0; }
"""


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("bins")
    out = []
    if Path(LIBSTDCXX).exists():
        lib = d / "libstdc++.so.6"
        shutil.copyfile(LIBSTDCXX, lib)
        out.append(lib)
    if shutil.which("gcc"):
        src = d / "prog.c"
        src.write_text(C_PROGRAM)
        prog = d / "prog"
        subprocess.run(["gcc", "-O2", "-rdynamic", "-o", str(prog), str(src)], check=True)
        out.append(prog)
    if not out:
        pytest.skip("neither libstdc++ nor gcc available")
    return out


def _all_ids(sym: Symbolizer, path: Path) -> list[str]:
    """The ID of every function's entry and middle, and of a few offsets in no function."""
    b = sym.binary(str(path))
    offsets = []
    for t in b.tables:
        for start, end in zip(t.starts, t.ends, strict=True):
            for v in (start, start + (end - start) // 2):
                off = b.layout.offset_of(v)
                if off is not None:
                    offsets.append(off)
    offsets += [0, 1]
    return [r.function_id for r in sym.resolve_file_many(str(path), offsets)]


def _reference(path: Path) -> list[str]:
    sym = Symbolizer(clock=aged)
    try:
        return _all_ids(sym, path)
    finally:
        sym.close()


def _with_cache(path: Path, cache: Path) -> tuple[list[str], dict[str, int]]:
    sym = Symbolizer(clock=aged, index_cache_dir=str(cache))
    try:
        ids = _all_ids(sym, path)
        return ids, {k: v for k, v in sym.stats().items() if k.startswith("index_cache_")}
    finally:
        sym.close()


def _cache_file(cache: Path) -> Path:
    files = [p for p in cache.iterdir() if p.suffix == ".idx" and not p.name.startswith(".tmp")]
    assert len(files) == 1, files
    return files[0]


def test_a_restart_loads_the_tables_and_gives_the_same_ids(binaries: list[Path], tmp_path: Path) -> None:
    for path in binaries:
        cache = tmp_path / path.name
        ref = _reference(path)
        first, c1 = _with_cache(path, cache)
        assert c1 == {"index_cache_misses": 1, "index_cache_written": 1}
        second, c2 = _with_cache(path, cache)
        assert c2 == {"index_cache_hits": 1}
        assert first == ref and second == ref
        assert sum(1 for i in ref if ":+0x" not in i) > 10  # resolved functions, not only misses
        assert oct(_cache_file(cache).stat().st_mode & 0o777) == "0o600"


def _rewrite_payload(data: bytes, edit: bytes) -> bytes:
    """``edit`` as the payload under a header whose length and CRC match it (a forger's file)."""
    magic, version, count, _, _ = indexcache._HEADER.unpack_from(data)
    return indexcache._HEADER.pack(magic, version, count, len(edit), zlib.crc32(edit)) + edit


def _corruptions(good: bytes, other_identity_file: bytes) -> dict[str, bytes]:
    hdr = indexcache._HEADER.size
    payload = good[hdr:]
    (id_len,) = struct.unpack_from("<I", payload)
    src_at = 4 + id_len
    (src_len,) = struct.unpack_from("<I", payload, src_at)
    tab_at = src_at + 4 + src_len
    n, _, _ = indexcache._TABLE.unpack_from(payload, tab_at)
    starts_at = tab_at + indexcache._TABLE.size
    offs_at = starts_at + 16 * n
    swapped = bytearray(payload)  # the first two starts swapped: out of order
    swapped[starts_at : starts_at + 16] = (
        payload[starts_at + 8 : starts_at + 16] + payload[starts_at : starts_at + 8]
    )
    far = bytearray(payload)  # a name offset far past the string table
    far[offs_at : offs_at + 4] = struct.pack("<I", 0xFFFFFFF0)
    many = bytearray(payload)  # an entry count no file can hold
    many[tab_at : tab_at + 8] = struct.pack("<Q", 1 << 60)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "header only": good[:hdr],
        "bit flipped": bytes(flipped),
        "wrong magic": b"XXXXXXXX" + good[8:],
        "other version": good[:8] + struct.pack("<I", 99) + good[12:],
        "another file's cache": other_identity_file,
        "starts out of order, re-checksummed": _rewrite_payload(good, bytes(swapped)),
        "name offset outside, re-checksummed": _rewrite_payload(good, bytes(far)),
        "huge entry count, re-checksummed": _rewrite_payload(good, bytes(many)),
        "trailing bytes, re-checksummed": _rewrite_payload(good, payload + b"\0" * 9),
        "NUL bytes": b"\0" * len(good),
    }


def test_damaged_or_forged_cache_files_are_ignored_and_rewritten(
    binaries: list[Path], tmp_path: Path
) -> None:
    path = binaries[0]
    ref = _reference(path)
    cache = tmp_path / "c"
    _with_cache(path, cache)
    target = _cache_file(cache)
    good = target.read_bytes()
    other = tmp_path / "other"
    _with_cache(binaries[-1], other)  # a cache file written for another file
    for name, bad in _corruptions(good, _cache_file(other).read_bytes()).items():
        target.write_bytes(bad)
        ids, counts = _with_cache(path, cache)
        assert ids == ref, name
        assert counts == {"index_cache_rejected": 1, "index_cache_written": 1}, (name, counts)
        assert target.read_bytes() == good, name  # rebuilt from the binary


def test_a_cache_path_that_is_not_a_file_is_not_read(binaries: list[Path], tmp_path: Path) -> None:
    path = binaries[0]
    ref = _reference(path)
    cache = tmp_path / "c"
    _with_cache(path, cache)
    target = _cache_file(cache)
    target.unlink()
    os.mkfifo(target)  # a reader must not block on it
    ids, counts = _with_cache(path, cache)
    assert ids == ref and counts == {"index_cache_rejected": 1, "index_cache_written": 1}
    assert target.is_file()
    target.unlink()
    target.mkdir()
    ids, counts = _with_cache(path, cache)
    assert ids == ref and counts == {"index_cache_rejected": 1, "index_cache_write_failed": 1}


def test_an_unwritable_or_full_cache_still_resolves(binaries: list[Path], tmp_path: Path) -> None:
    path = binaries[0]
    ref = _reference(path)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ids, counts = _with_cache(path, blocker)
    assert ids == ref and counts == {"index_cache_unreadable": 1, "index_cache_write_failed": 1}
    full = tmp_path / "full"
    full.mkdir()
    sym = Symbolizer(clock=aged, index_cache_dir=str(full))
    assert sym.index_cache is not None
    sym.index_cache.max_files = 2
    (full / "a.idx").write_bytes(b"x")
    (full / "b.idx").write_bytes(b"y")
    try:
        assert _all_ids(sym, path) == ref
        assert sym.stats()["index_cache_full"] == 1
    finally:
        sym.close()


def test_a_file_replaced_at_its_path_gets_its_own_cache_entry(binaries: list[Path], tmp_path: Path) -> None:
    if len(binaries) < 2:
        pytest.skip("needs two different binaries")
    cache = tmp_path / "c"
    at = tmp_path / "bin"
    shutil.copyfile(binaries[0], at)
    ids_a, _ = _with_cache(at, cache)
    replacement = tmp_path / "bin.new"
    shutil.copyfile(binaries[1], replacement)
    os.replace(replacement, at)  # another file (inode, ctime) at the same path
    ids_b, counts = _with_cache(at, cache)
    assert counts == {"index_cache_misses": 1, "index_cache_written": 1}
    assert ids_b == _reference(at) and ids_b != ids_a
    assert len([p for p in cache.iterdir() if p.suffix == ".idx"]) == 2


def test_files_written_under_other_indexing_rules_are_not_read(binaries: list[Path], tmp_path: Path) -> None:
    path = binaries[0]
    cache = tmp_path / "c"
    _with_cache(path, cache)
    sym = Symbolizer(clock=aged, index_cache_dir=str(cache))
    assert sym.index_cache is not None
    sym.index_cache.rules = "an older agent's rules"
    try:
        assert _all_ids(sym, path) == _reference(path)
        st = sym.stats()
        assert st["index_cache_misses"] == 1 and "index_cache_hits" not in st
    finally:
        sym.close()


def test_a_table_over_the_symbol_budget_is_refused(binaries: list[Path], tmp_path: Path) -> None:
    path = binaries[0]
    cache = tmp_path / "c"
    _with_cache(path, cache)
    sym = Symbolizer(clock=aged, index_cache_dir=str(cache))
    try:
        identity = sym.identify(str(path)).identity
        assert sym.index_cache is not None
        good = Path(sym.index_cache.path_for(identity)).read_bytes()
        with pytest.raises(indexcache.CacheFileError, match="symbol budget"):
            indexcache.decode(good, identity, max_entries=10)
        assert len(indexcache.decode(good, identity)) >= 1
        small = indexcache.IndexCache(str(cache), max_entries=10, bump=sym.bump)
        assert small.load(identity) is None
        assert sym.stats()["index_cache_rejected"] == 1
    finally:
        sym.close()


def test_the_size_caps_apply_to_reading_and_writing(binaries: list[Path], tmp_path: Path) -> None:
    path = binaries[0]
    cache = tmp_path / "c"
    sym = Symbolizer(clock=aged, index_cache_dir=str(cache))
    assert sym.index_cache is not None
    assert (sym.index_cache.max_files, sym.index_cache.max_file_bytes) == (4096, 256 << 20)
    sym.close()
    _with_cache(path, cache)
    size = _cache_file(cache).stat().st_size
    sym = Symbolizer(clock=aged, index_cache_dir=str(cache))
    assert sym.index_cache is not None
    sym.index_cache.max_file_bytes = size - 1  # the file on disk is now over the cap: not read
    try:
        assert _all_ids(sym, path) == _reference(path)
        st = sym.stats()
        assert st["index_cache_rejected"] == 1 and st["index_cache_too_big"] == 1
        assert "index_cache_written" not in st and not any(cache.glob("*.idx"))
    finally:
        sym.close()


def test_off_by_default_and_bounded_by_the_symbol_budget(tmp_path: Path) -> None:
    assert Symbolizer().index_cache is None
    sym = Symbolizer(clock=aged, index_cache_dir=str(tmp_path), limits=Limits(max_symbols=1234))
    assert sym.index_cache is not None and sym.index_cache.max_entries == 1234


RUNC = "/usr/sbin/runc"  # stripped Go: .dynsym cached, Go's function table read lazily as before


def test_lazy_sources_are_read_as_before_with_a_cache(tmp_path: Path) -> None:
    if not Path(RUNC).exists():
        pytest.skip(f"{RUNC} not installed")
    ref_sym = Symbolizer(clock=aged)
    b = ref_sym.binary(RUNC)
    table = max(b.load_all(), key=len)  # the gopclntab table
    assert table.source == "gopclntab"
    offsets = [o for o in (b.layout.offset_of(s + 1) for s in table.starts[::50]) if o is not None]
    ref = [r.function_id for r in ref_sym.resolve_file_many(RUNC, offsets)]
    ref_sym.close()
    for round_ in ("written", "loaded"):
        sym = Symbolizer(clock=aged, index_cache_dir=str(tmp_path))
        try:
            res = sym.resolve_file_many(RUNC, offsets)
            assert [r.function_id for r in res] == ref, round_
            assert any(r.source == "gopclntab" for r in res)
            assert sym.stats()["index_cache_hits" if round_ == "loaded" else "index_cache_written"] == 1
        finally:
            sym.close()


def test_the_agent_config_turns_the_cache_on(binaries: list[Path], tmp_path: Path) -> None:
    """``symbols.indexCacheDir``: a second agent (a restart) loads what the first one indexed."""
    from stellaops_runtime.agent.canonicalizer_setup import make_canonicalizer
    from stellaops_runtime.contracts.config import parse_config

    path, cache = binaries[0], tmp_path / "index"
    config = parse_config({"symbols": {"indexCacheDir": str(cache)}})
    counts = []
    for _ in range(2):
        fc = make_canonicalizer(config, node_name="n")
        assert fc is not None
        fc.symbolizer.clock = aged  # the binary was just built: young, it would be keyed by its digest
        try:
            ids = _all_ids(fc.symbolizer, path)
            counts.append({k: v for k, v in fc.symbolizer.stats().items() if k.startswith("index_cache_")})
        finally:
            fc.symbolizer.close()
    assert counts == [{"index_cache_misses": 1, "index_cache_written": 1}, {"index_cache_hits": 1}]
    assert ids == _reference(path)
    off = make_canonicalizer(parse_config({}), node_name="n")
    assert off is not None and off.symbolizer.index_cache is None  # off by default
