"""Pure parts of the symbolizer: address tables, the LRU, notes, maps text, Go pclntab layouts, CLI numbers.

The Go tables here are built byte by byte from the published layout (Go's
runtime/symtab.go: pcHeader, functab, _func) for the two layouts this
machine's toolchains cannot produce a binary of (Go 1.16/1.17), next to the
1.18+ layout that the integration tests also read from real binaries.
"""

from __future__ import annotations

import struct

import pytest

from stellaops_runtime.canonical.addrindex import LRU, STB_GLOBAL, STB_LOCAL, STB_WEAK, AddressTable
from stellaops_runtime.canonical.elflayout import (
    build_id_from_notes,
    go_build_id_text,
    parse_notes,
)
from stellaops_runtime.canonical.gopclntab import MAGIC_GO116, MAGIC_GO118, MAGIC_GO120, parse_functions
from stellaops_runtime.canonical.procmaps import find_mapping, parse_maps
from stellaops_runtime.canonical.sdtprobe import sdt_probes
from stellaops_runtime.cli.symbolize import parse_kernel_input, parse_number

# -- address tables ---------------------------------------------------------------------


def test_aliases_keep_one_deterministic_name() -> None:
    t = AddressTable(
        "dynsym",
        [
            (0x1000, 0x40, "__libc_read", STB_GLOBAL, 0),
            (0x1000, 0x40, "read", STB_WEAK, 0),
            (0x1000, 0x40, "__read", STB_GLOBAL, 0),
            (0x2000, 0x10, "cfree", STB_WEAK, 0),
            (0x2000, 0x10, "free", STB_GLOBAL, 0),
        ],
    )
    assert len(t) == 2
    assert t.names[t.find(0x1010)] == "read"  # fewest leading underscores wins
    assert t.names[t.find(0x2000)] == "free"  # then GLOBAL over WEAK
    assert t.find_name("__libc_read") == -1 or t.find_name("read") == t.find(0x1000)


def test_sizes_gaps_zero_size_and_nesting() -> None:
    t = AddressTable(
        "symtab",
        [
            (0x100, 0x10, "sized", STB_GLOBAL, 0x1000),
            (0x200, 0, "asm_entry", STB_LOCAL, 0x1000),  # no size: up to the next symbol
            (0x300, 0x100, "outer", STB_GLOBAL, 0x1000),
            (0x320, 0x10, "inner", STB_LOCAL, 0x1000),
            (0x800, 0, "last_asm", STB_GLOBAL, 0x900),  # no size, last: up to its section's end
        ],
    )
    assert t.find(0x0FF) == -1
    assert t.names[t.find(0x100)] == "sized" and t.names[t.find(0x10F)] == "sized"
    assert t.find(0x110) == -1  # padding after a sized function
    assert t.names[t.find(0x2FF)] == "asm_entry"
    assert t.names[t.find(0x325)] == "inner"
    assert t.names[t.find(0x340)] == "outer"  # past "inner", still inside "outer"
    assert t.names[t.find(0x8FF)] == "last_asm" and t.find(0x900) == -1


def test_names_are_demangled_lazily_and_found_both_ways() -> None:
    t = AddressTable("symtab", [(0x10, 4, "_ZN6stella4plusEii", STB_GLOBAL, 0)])
    assert t.canonical == [None]
    i = t.find(0x12)
    assert t.canonical_name(i) == "stella::plus(int, int)"
    assert t.find_name("_ZN6stella4plusEii") == i
    assert t.find_name("stella::plus(int, int)") == i
    assert t.find_name("nope") == -1


def test_lru_evicts_least_recently_used() -> None:
    closed: list[str] = []
    lru: LRU[str, str] = LRU(2, on_evict=closed.append)
    lru.put("a", "A")
    lru.put("b", "B")
    assert lru.get("a") == "A"  # a is now the most recent
    lru.put("c", "C")
    assert closed == ["B"] and "b" not in lru and lru.evictions == 1
    lru.clear()
    assert sorted(closed) == ["A", "B", "C"] and len(lru) == 0
    with pytest.raises(ValueError):
        LRU(0)


# -- notes ----------------------------------------------------------------------------------


def note(name: bytes, ntype: int, desc: bytes, align: int = 4) -> bytes:
    """One note record: header + name, padded to ``align``; desc, padded to ``align``."""
    head = struct.pack("<III", len(name), len(desc), ntype) + name
    head += b"\0" * (-len(head) % align)
    return head + desc + b"\0" * (-len(desc) % align)


def test_build_id_checks_the_note_name_not_only_the_type() -> None:
    stapsdt = note(b"stapsdt\0", 3, struct.pack("<QQQ", 0x1234, 0x2000, 0) + b"prov\0probe\0\0")
    gnu = note(b"GNU\0", 3, bytes.fromhex("93ac61ec5a8eb1396f9fbd350e3169a558528a40"))
    notes = parse_notes(stapsdt + gnu, little=True)
    assert build_id_from_notes(notes) == ("93ac61ec5a8eb1396f9fbd350e3169a558528a40", "gnu")
    assert build_id_from_notes(parse_notes(stapsdt, little=True)) == ("", "")
    (probe,) = sdt_probes(notes, little=True, is64=True)
    assert (probe.provider, probe.name, probe.pc, probe.base) == ("prov", "probe", 0x1234, 0x2000)


def test_go_build_id_and_eight_byte_aligned_notes() -> None:
    go = note(b"Go\0\0", 4, b"abc_DEF-1/xyz")
    prop = note(b"GNU\0", 5, b"\x01" * 12, align=8)
    notes = parse_notes(prop + note(b"GNU\0", 3, b"\xaa\xbb", align=8), little=True, align=8)
    assert build_id_from_notes(notes) == ("aabb", "gnu")
    assert build_id_from_notes(parse_notes(go, little=True)) == ("abc_DEF-1/xyz", "go")
    assert go_build_id_text(b"has:colon") == b"has:colon".hex()
    assert parse_notes(b"\x05\0\0\0", little=True) == []  # cut short: nothing, no exception


# -- /proc/<pid>/maps ---------------------------------------------------------------------

MAPS = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/app
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 1234 /usr/bin/app
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
7f0000100000-7f0000200000 r-xp 00028000 08:01 99 /tmp/my lib.so (deleted)
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0 [vdso]
garbage line
"""


def test_parse_maps() -> None:
    maps = parse_maps(MAPS)
    assert len(maps) == 5
    m = find_mapping(maps, 0x55D0C0A01234)
    assert m is not None and m.path == "/usr/bin/app" and m.file_offset(0x55D0C0A01234) == 0x1234
    d = find_mapping(maps, 0x7F0000100010)
    assert (
        d is not None
        and d.deleted
        and d.path == "/tmp/my lib.so"
        and d.file_offset(0x7F0000100010) == 0x28010
    )
    anon = find_mapping(maps, 0x7F0000000010)
    assert anon is not None and not anon.file_backed
    vdso = find_mapping(maps, 0x7FFC00000010)
    assert vdso is not None and vdso.path == "[vdso]" and not vdso.file_backed
    assert find_mapping(maps, 0x10) is None


# -- Go pclntab layouts -------------------------------------------------------------------


def build_pclntab(magic: int, funcs: list[tuple[int, str]], end: int, *, text_start: int = 0) -> bytes:
    """A pclntab with the header, funcnametab, functab and _func records of the given layout."""
    ptr = 8
    go116 = magic == MAGIC_GO116
    nwords = 7 if go116 else 8
    header_size = 8 + nwords * ptr
    names = b""
    name_offs = []
    for _, name in funcs:
        name_offs.append(len(names))
        names += name.encode() + b"\0"
    funcname_off = header_size
    cu_off = funcname_off + len(names)
    filetab_off = cu_off + 4
    pctab_off = filetab_off + 4
    pcln_off = pctab_off + 4
    n = len(funcs)
    functab_size = n * 2 * ptr + ptr if go116 else n * 8 + 4
    funcs_at = functab_size
    functab = b""
    func_records = b""
    for i, (entry, _) in enumerate(funcs):
        funcoff = funcs_at + len(func_records)
        if go116:
            functab += struct.pack("<QQ", entry, funcoff)
            func_records += struct.pack("<Qi", entry, name_offs[i]) + b"\0" * 4
        else:
            functab += struct.pack("<II", entry - text_start, funcoff)
            func_records += struct.pack("<Ii", entry - text_start, name_offs[i])
    functab += struct.pack("<Q", end) if go116 else struct.pack("<I", end - text_start)
    words = (
        [n, 1] + ([] if go116 else [text_start]) + [funcname_off, cu_off, filetab_off, pctab_off, pcln_off]
    )
    header = struct.pack("<IBBBB", magic, 0, 0, 1, ptr) + b"".join(struct.pack("<Q", w) for w in words)
    return header + names + b"\0" * 12 + functab + func_records


@pytest.mark.parametrize("magic", [MAGIC_GO116, MAGIC_GO118, MAGIC_GO120])
def test_pclntab_layouts(magic: int) -> None:
    funcs = [(0x401000, "runtime.main"), (0x401100, "main.(*T).M"), (0x401180, "main.main.func1")]
    data = build_pclntab(magic, funcs, 0x401200, text_start=0x401000)
    h, out = parse_functions(data, little=True)
    assert h.nfunc == 3 and h.ptr_size == 8
    assert out == [
        (0x401000, 0x401100, "runtime.main"),
        (0x401100, 0x401180, "main.(*T).M"),
        (0x401180, 0x401200, "main.main.func1"),
    ]


def test_pclntab_errors() -> None:
    good = build_pclntab(MAGIC_GO118, [(0x1000, "a"), (0x1010, "b")], 0x1020, text_start=0x1000)
    with pytest.raises(ValueError, match="not a gopclntab"):
        parse_functions(b"\x00" * 64, little=True)
    with pytest.raises(ValueError, match=r"1\.2-1\.15"):
        parse_functions(struct.pack("<I", 0xFFFFFFFB) + good[4:], little=True)
    with pytest.raises(ValueError):
        parse_functions(good[:70], little=True)
    unsorted = build_pclntab(MAGIC_GO118, [(0x1010, "a"), (0x1000, "b")], 0x1020, text_start=0x1000)
    with pytest.raises(ValueError, match="not sorted"):
        parse_functions(unsorted, little=True)
    relocated = build_pclntab(MAGIC_GO120, [(0x10, "a")], 0x20, text_start=0)
    with pytest.raises(ValueError, match="textStart"):
        parse_functions(relocated, little=True)
    _, out = parse_functions(relocated, little=True, text_start=0x400000)
    assert out == [(0x400010, 0x400020, "a")]


# -- CLI number parsing -------------------------------------------------------------------


def test_cli_numbers() -> None:
    assert parse_number("0x1F") == 31 and parse_number("42") == 42 and parse_number(" 0X10 ") == 16
    for bad in ("-1", "zz", "0xg", ""):
        with pytest.raises(ValueError):
            parse_number(bad)
    assert parse_kernel_input("tcp_connect+0x10") == ("tcp_connect", 16)
    assert parse_kernel_input("tcp_connect") == ("tcp_connect", 0)
    assert parse_kernel_input("0xffffffff81000000") == 0xFFFFFFFF81000000
    with pytest.raises(ValueError):
        parse_kernel_input("bad symbol+0x1")
