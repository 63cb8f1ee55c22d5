"""native/symaddr.py's lookup of a uprobe's address stays within memory on a hostile file.

The file looked up can be a container's own binary, so every size in it is the
container's choice. Its symbol and string tables are read within the
symbolizer's byte budget (64 MiB), but what the lookup then builds from them
must stay near that size too: it kept every place in the string table where the
probed name appears, and a string table of one name repeated (60 MiB of
"target\\0", 8.5 million times) took the agent to 614 MiB. Here a small such file
is looked up under tracemalloc, with no BPF and no compiler.
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.limits import Limits, pread_exact
from stellaops_runtime.native import symaddr, symscan
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address

SHSTR = b"\0.symtab\0.strtab\0.shstrtab\0.text\0"


def _elf(path: Path, strtab: bytes, names: list[int]) -> None:
    """An ET_DYN x86-64 file: .text at 0x1000 (executable segment), a .symtab of one global function
    per entry of ``names`` (string table offsets) at 0x1001, 0x1002, ..., and ``strtab``."""
    sym = bytes(24) + b"".join(
        struct.pack("<IBBHQQ", n, 0x12, 0, 4, 0x1001 + i, 1) for i, n in enumerate(names)
    )
    text = b"\xc3" * 16
    off_text = 0x1000
    off_sym = off_text + len(text)
    off_str = off_sym + len(sym)
    off_shstr = off_str + len(strtab)
    off_sh = (off_shstr + len(SHSTR) + 7) & ~7

    def sh(name: int, typ: int, flags: int, addr: int, off: int, size: int, link: int, ent: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, typ, flags, addr, off, size, link, 0, 1, ent)

    shs = sh(0, 0, 0, 0, 0, 0, 0, 0) + sh(1, 2, 0, 0, off_sym, len(sym), 2, 24)
    shs += sh(9, 3, 0, 0, off_str, len(strtab), 0, 0) + sh(17, 3, 0, 0, off_shstr, len(SHSTR), 0, 0)
    shs += sh(27, 1, 6, 0x1000, off_text, len(text), 0, 0)
    end = off_sh + len(shs)
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, end, end, 0x1000)
    eh = b"\x7fELF\x02\x01\x01" + bytes(9)
    eh += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0x1000, 64, off_sh, 0, 64, 56, 1, 64, 5, 3)
    buf = bytearray(end)
    for at, part in ((0, eh), (64, ph), (off_text, text), (off_sym, sym), (off_str, strtab)):
        buf[at : at + len(part)] = part
    buf[off_shstr : off_shstr + len(SHSTR)] = SHSTR
    buf[off_sh:] = shs
    path.write_bytes(bytes(buf))


def test_a_string_table_of_the_probed_name_repeated_costs_no_more_than_its_bytes(tmp_path: Path) -> None:
    reps = 600_000
    strtab = b"\0" + b"target\0" * reps + b"other\0"
    other = len(strtab) - 6
    last = len(strtab) - 13  # the last "target"
    path = tmp_path / "decoys"
    _elf(path, strtab, [other, last, 8])  # the first "target" symbol is the second entry
    tracemalloc.start()
    try:
        found = find_address(str(path), "target")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == 0x1002  # the first symbol of that name in table order, as BCC takes
    assert peak < 3 * len(strtab), (peak, len(strtab))
    assert find_address(str(path), "other") == 0x1001


# -- tables over the symbolizer's budget (500,000 functions, 64 MiB): streamed, not refused ----------

MANY = 600_000  # more functions than the symbolizer's 500,000 per table


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of MANY functions f0..f599999 (f<i> at 0x1001 + i), then "target" twice: built once."""
    names = [b"f%d" % i for i in range(MANY)] + [b"target", b"target"]
    offsets, at = [], 1
    for n in names:
        offsets.append(at)
        at += len(n) + 1
    path = tmp_path_factory.mktemp("many") / "many"
    _elf(path, b"\0" + b"\0".join(names) + b"\0", offsets)
    return path


def test_a_table_of_more_functions_than_the_symbolizer_keeps_is_searched(
    many: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was refused (".symtab: 600002 functions, more than 500000") where BCC by name attached; it
    is scanned a chunk at a time: no read of it is larger than a chunk, nothing of it is kept."""
    reads: list[tuple[str, int]] = []

    def recorded(fd: int, offset: int, size: int, **kw: Any) -> bytes:
        reads.append((kw["what"], size))
        return pread_exact(fd, offset, size, **kw)

    monkeypatch.setattr(symscan, "pread_exact", recorded)
    assert find_address(str(many), "target") == 0x1001 + MANY  # the first of the two
    table = [size for what, size in reads if what == ".symtab"]
    assert sum(table) == 24 * (MANY + 3) and max(table) <= 24 * symscan.CHUNK_RECORDS < sum(table) // 10
    assert find_address(str(many), "f0") == 0x1001
    assert find_address(str(many), "f599999") == 0x1001 + 599_999
    with pytest.raises(SymbolNotFound):
        find_address(str(many), "f600000")


def test_a_string_table_over_the_parse_budget_is_streamed_too(
    many: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A string table larger than the parse budget is not held: the places of the name are noted in
    one streamed pass (a name across two reads included), at most MAX_NAME_PLACES of them."""
    monkeypatch.setattr(symaddr, "_LIMITS", Limits(max_parse_bytes=1 << 20, parse_seconds=120.0))
    monkeypatch.setattr(symscan, "_STRTAB_CHUNK", 4099)  # names cut by every read boundary
    at, across = 1, list[int]()  # the names whose "f<i>\0" the reads cut in two
    for i in range(MANY):
        end = at + len(b"f%d" % i) + 1
        if at // 4099 != (end - 1) // 4099 and len(across) < 3:
            across.append(i)
        at = end
    for i in [0, 1, 599_999, *across]:
        assert find_address(str(many), f"f{i}") == 0x1001 + i
    assert find_address(str(many), "target") == 0x1001 + MANY
    monkeypatch.setattr(symscan, "MAX_NAME_PLACES", 1)  # "target" is there twice
    with pytest.raises(ElfError, match="holding the name more than 1 times") as e:
        find_address(str(many), "target")
    assert e.value.reason == "budget_exceeded"


def test_the_bytes_streamed_per_lookup_are_bounded(many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(symaddr, "_LIMITS", Limits(max_file_bytes=1 << 20, parse_seconds=120.0))
    with pytest.raises(ElfError, match="more than 1048576 bytes of symbol tables to read") as e:
        find_address(str(many), "target")
    assert e.value.reason == "budget_exceeded"
