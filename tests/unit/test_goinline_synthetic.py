"""The inline-tree reader (canonical/goinline.py) on pclntabs built byte by byte, both layouts, hostile ones.

Go 1.20+ tables (magic fffffff1: 44-byte ``_func``, 16-byte tree entries) cannot
be built with this machine's Go 1.19, so they are built here from the published
layout, alongside Go 1.18/1.19 ones (tests/integration/test_go_inline_tree.py
reads real 1.19 binaries). The expected chains come from a separate model
(:func:`model_chain`) walking the same runs and tree as plain Python data.
Damaged tables (truncated pc-value table, a parentPc loop, name offsets out of
range, trees cut short) must give ``()`` with a counted reason, never raise.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import pytest

from stellaops_runtime.canonical.goinline import (
    FORMATS,
    MAX_CHAIN,
    GoInlines,
    ReadAt,
    decode_pcvalue,
)
from stellaops_runtime.canonical.gopclntab import MAGIC_GO118, MAGIC_GO120, parse_header

TEXT = 0x401000


@dataclass
class Func:
    name: str
    size: int
    runs: list[tuple[int, int]] = field(default_factory=list)  # (value, end offset from entry)
    tree: list[tuple[str, int]] = field(default_factory=list)  # (inlined name, parentPc)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pcvalue_table(runs: list[tuple[int, int]], min_lc: int) -> bytes:
    out, val, pc = bytearray(), -1, 0
    for value, end in runs:
        delta = value - val
        out += uvarint(((delta << 1) ^ (delta >> 31)) & 0xFFFFFFFF)  # zig-zag
        out += uvarint((end - pc) // min_lc)
        val, pc = value, end
    out.append(0)
    return bytes(out)


def build(funcs: list[Func], magic: int, *, min_lc: int = 1) -> tuple[bytes, bytes]:
    """(pclntab, gofunc region) for ``funcs`` laid out back to back from TEXT."""
    go120 = magic == MAGIC_GO120
    names: list[str] = []
    for fn in funcs:
        names += [fn.name] + [n for n, _ in fn.tree]
    nametab, name_off = bytearray(), {}
    for n in dict.fromkeys(names):
        name_off[n] = len(nametab)
        nametab += n.encode() + b"\0"
    header_size = 8 + 8 * 8
    fn_off = header_size
    cu_off = fn_off + len(nametab)
    file_off = cu_off + 4
    pc_off = file_off + 4
    pctab = bytearray(b"\0")  # offset 0 means "no table"
    table_offs = []
    for fn in funcs:
        table_offs.append(len(pctab))
        pctab += pcvalue_table(fn.runs, min_lc)
    pcln_off = pc_off + len(pctab)
    gofunc, tree_offs = bytearray(), []
    esize = 16 if go120 else 20
    for fn in funcs:
        tree_offs.append(len(gofunc))
        for n, parent_pc in fn.tree:
            if go120:
                gofunc += struct.pack("<B3xiii", 0, name_off[n], parent_pc, 1)
            else:
                gofunc += struct.pack("<hBxiiii", -1, 0, 0, 1, name_off[n], parent_pc)
        assert len(gofunc) == tree_offs[-1] + esize * len(fn.tree)
    functab_size = len(funcs) * 8 + 4
    pairs, structs, entry = bytearray(), bytearray(), 0
    for fn, toff, troff in zip(funcs, table_offs, tree_offs, strict=True):
        pairs += struct.pack("<II", entry, functab_size + len(structs))
        head = struct.pack("<IiiIIIIII", entry, name_off[fn.name], 0, 0, 0, 0, 0, 3, 0)
        head += (struct.pack("<i", 1) if go120 else b"") + struct.pack("<BBxB", 0, 0, 4)
        structs += head + struct.pack("<III", 0, 0, toff if fn.runs else 0)
        structs += struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, troff if fn.tree else 0xFFFFFFFF)
        entry += fn.size
    pairs += struct.pack("<I", entry)
    words = (len(funcs), 1, TEXT, fn_off, cu_off, file_off, pc_off, pcln_off)
    hdr = struct.pack("<IBBBB", magic, 0, 0, min_lc, 8) + struct.pack("<8Q", *words)
    data = hdr + nametab + b"\0" * 4 + b"\0" * 4 + pctab + pairs + structs
    return bytes(data), bytes(gofunc)


def reader(region: bytes) -> ReadAt:
    def read(offset: int, size: int) -> bytes:
        return region[offset : offset + size]

    return read


def inlines(data: bytes, region: bytes) -> GoInlines:
    h = parse_header(data, little=True)
    base, n = h.pcln_offset, h.nfunc
    pairs = list(struct.iter_unpack("<II", data[base : base + 8 * n]))
    entries = [TEXT + p[0] for p in pairs] + [TEXT + struct.unpack_from("<I", data, base + 8 * n)[0]]
    return GoInlines(data, h, FORMATS[h.version], entries, [p[1] for p in pairs], reader(region))


def model_chain(funcs: list[Func], addr: int) -> tuple[str, ...]:
    """The expansion rule written over the Python model, not the bytes."""
    entry = TEXT
    for fn in funcs:
        if entry <= addr < entry + fn.size:
            break
        entry += fn.size
    else:
        return ()

    def value(pc: int) -> int:
        return next((v for v, end in fn.runs if pc - entry < end), -1)

    out: list[str] = []
    ix = value(addr)
    while ix >= 0:
        name, parent = fn.tree[ix]
        out.append(name)
        ix = value(entry + parent)
    return tuple(out)


def program() -> list[Func]:
    # outer: [0,0x10) own code, [0x10,0x20) leaf-in-mid, [0x20,0x30) mid, [0x30,0x40) own
    outer = Func("main.outer", 0x40, [(-1, 0x10), (1, 0x20), (0, 0x30), (-1, 0x40)])
    outer.tree = [("main.mid", 0x08), ("main.leaf", 0x24)]
    plain = Func("main.plain", 0x20)
    deep = Func("pkg.(*T).Serve", 0x400, [(-1, 0x10)] + [(k, 0x10 + 0x10 * (k + 1)) for k in range(30)])
    deep.tree = [(f"pkg.f{k}", 0x10 * k + 4 if k else 0) for k in range(30)]  # k inlined into k-1
    return [outer, plain, deep]


@pytest.mark.parametrize("magic", [MAGIC_GO118, MAGIC_GO120], ids=["go1.18", "go1.20"])
def test_chains_equal_the_model_at_every_address(magic: int) -> None:
    funcs = program()
    data, region = build(funcs, magic)
    inl = inlines(data, region)
    total = sum(fn.size for fn in funcs)
    chains = {a: inl.inlined_at(a) for a in range(TEXT - 4, TEXT + total + 4)}
    for a, got in chains.items():
        assert got == model_chain(funcs, a), hex(a)
    assert max(len(c) for c in chains.values()) == 30
    assert inl.stats["malformed"] == 0 and inl.stats["outside"] == 8
    assert inl.stats["expanded"] == sum(1 for c in chains.values() if c)


def test_min_lc_scales_pc_deltas() -> None:
    funcs = program()[:1]
    data, region = build(funcs, MAGIC_GO120, min_lc=4)
    inl = inlines(data, region)
    for a in range(TEXT, TEXT + funcs[0].size):
        assert inl.inlined_at(a) == model_chain(funcs, a)


def test_decode_pcvalue_zigzag_and_end() -> None:
    runs = [(-1, 4), (5, 8), (2, 12), (-7, 16)]
    table = pcvalue_table(runs, 1)
    ends, vals = decode_pcvalue(table, 0, 100, 116, 1)
    assert vals == [v for v, _ in runs] and ends == [100 + e for _, e in runs]


# -- hostile tables ---------------------------------------------------------------------------------


def hostile(funcs: list[Func], magic: int = MAGIC_GO120) -> tuple[GoInlines, list[int]]:
    data, region = build(funcs, magic)
    return inlines(data, region), list(range(TEXT, TEXT + sum(fn.size for fn in funcs)))


@pytest.mark.parametrize("magic", [MAGIC_GO118, MAGIC_GO120], ids=["go1.18", "go1.20"])
def test_parent_pc_loop_is_bounded_and_counted(magic: int) -> None:
    loop = Func("main.loop", 0x20, [(-1, 0x10), (0, 0x20)], [("main.self", 0x14)])  # parent pc in its own run
    inl, addrs = hostile([loop], magic)
    # the names read before the loop closed are the pc's own: kept (Go 1.24 writes such trees)
    assert [inl.inlined_at(a) for a in addrs] == [()] * 16 + [("main.self",)] * 16
    assert inl.stats["chain_cycle"] == 16 and inl.stats.get("malformed", 0) == 0


def test_chain_longer_than_the_bound_is_refused() -> None:
    depth = MAX_CHAIN + 1  # distinct entries, each inlined into the previous one: no cycle, too deep
    fn = Func("main.deep", 0x10 * (depth + 1), [(-1, 0x10)] + [(k, 0x20 + 0x10 * k) for k in range(depth)])
    fn.tree = [(f"main.f{k}", 0x10 * k + 4 if k else 0) for k in range(depth)]
    inl, _ = hostile([fn])
    assert inl.inlined_at(TEXT + 0x10 * depth + 4) == ()
    assert inl.stats["chain_too_long"] == 1
    assert len(inl.inlined_at(TEXT + 0x10 * (depth - 1) + 4)) == MAX_CHAIN  # one shallower: answered


def test_name_offset_outside_funcnametab() -> None:
    fn = Func("main.f", 0x20, [(-1, 0x10), (0, 0x20)], [("main.g", 0)])
    data, region = build([fn], MAGIC_GO120)
    bad = bytearray(region)
    struct.pack_into("<i", bad, 4, 1 << 30)  # nameOff
    inl = inlines(data, bytes(bad))
    assert inl.inlined_at(TEXT + 0x18) == ()
    struct.pack_into("<i", bad, 4, -5)
    inl = inlines(data, bytes(bad))
    assert inl.inlined_at(TEXT + 0x18) == ()
    assert inl.stats["name_outside"] == 1 and inl.stats["malformed"] == 1
    assert inl.inlined_at(TEXT + 0x4) == ()  # outside inlined code: no answer needed, not malformed
    assert inl.stats["malformed"] == 1


def test_parent_pc_outside_the_function() -> None:
    fn = Func("main.f", 0x20, [(-1, 0x10), (0, 0x20)], [("main.g", 0x1000)])
    inl, _ = hostile([fn])
    assert inl.inlined_at(TEXT + 0x18) == ()
    assert inl.stats["parent_pc_outside"] == 1


def test_truncated_pctab_and_tree() -> None:
    fn = Func("main.f", 0x20, [(-1, 0x10), (0, 0x18), (1, 0x20)], [("main.g", 0), ("main.h", 0x10)])
    data, region = build([fn], MAGIC_GO120)
    h = parse_header(data, little=True)
    func_pos = h.pcln_offset + struct.unpack_from("<II", data, h.pcln_offset)[1]
    bad = bytearray(data)  # the inline-index table starts at the table's last byte: it runs past the end
    struct.pack_into("<I", bad, func_pos + 44 + 4 * 2, len(data) - 1 - h.pctab_offset)
    inl = inlines(bytes(bad), region)
    assert inl.inlined_at(TEXT + 0x19) == ()
    assert inl.stats["pctab_truncated"] == 1 and inl.stats["malformed"] == 1
    tree_cut = inlines(data, region[:20])  # the second 16-byte entry is cut short
    assert tree_cut.inlined_at(TEXT + 0x19) == ()
    assert tree_cut.stats["tree_truncated"] == 1
    assert inlines(data, region).inlined_at(TEXT + 0x19) == model_chain([fn], TEXT + 0x19) != ()


def test_pctab_running_past_the_table() -> None:
    fn = Func("main.f", 0x20, [(-1, 0x10), (0, 0x20)], [("main.g", 0)])
    data, region = build([fn], MAGIC_GO120)
    h = parse_header(data, little=True)
    pos = h.pctab_offset + 1  # the function's table: make every byte a varint continuation
    bad = bytearray(data)
    bad[pos : pos + 5] = b"\xff" * 5  # exactly the table's bytes
    inl = inlines(bytes(bad), region)
    assert inl.inlined_at(TEXT + 0x18) == ()
    assert inl.stats["pctab_varint"] == 1 and inl.stats["malformed"] == 1


def test_huge_tree_index_is_refused() -> None:
    fn = Func("main.f", 0x20, [(-1, 0x10), (1 << 20, 0x20)], [("main.g", 0)])
    inl, _ = hostile([fn])
    assert inl.inlined_at(TEXT + 0x18) == ()
    assert inl.stats["tree_too_big"] == 1


def test_reader_errors_are_counted() -> None:
    fn = Func("main.f", 0x20, [(-1, 0x10), (0, 0x20)], [("main.g", 0)])
    data, _ = build([fn], MAGIC_GO120)
    h = parse_header(data, little=True)

    def closed(offset: int, size: int) -> bytes:
        raise ValueError("I/O operation on closed file")

    inl = GoInlines(data, h, FORMATS["go1.20"], [TEXT, TEXT + 0x20], [12], closed)
    assert inl.inlined_at(TEXT + 0x18) == ()
    assert inl.stats["tree_unreadable"] == 1


@pytest.mark.parametrize("magic", [MAGIC_GO118, MAGIC_GO120], ids=["go1.18", "go1.20"])
def test_random_damage_never_raises(magic: int) -> None:
    funcs = program()
    data, region = build(funcs, magic)
    rng = random.Random(magic)
    h = parse_header(data, little=True)
    total = sum(fn.size for fn in funcs)
    for _ in range(300):
        bad = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            bad[rng.randrange(h.funcname_offset, len(bad))] = rng.randrange(256)
        badtree = bytearray(region)
        for _ in range(rng.randrange(0, 4)):
            badtree[rng.randrange(len(badtree))] = rng.randrange(256)
        inl = inlines(bytes(bad), bytes(badtree))
        for a in rng.sample(range(TEXT, TEXT + total), 40):
            chain = inl.inlined_at(a)
            assert isinstance(chain, tuple) and all(isinstance(n, str) and n for n in chain)
            assert len(chain) <= MAX_CHAIN
