"""Alias groups whose name is chosen at first use (canonical/aliasgroups.py) name entries as the rule says.

The rule (canonical/addrindex.py): one name per start, a symbol with a size over
one without, then fewest leading underscores, then GLOBAL > WEAK > LOCAL, then
the shortest, then the first by name. A group whose sized members share one size
is left pending and decided when its name is first read; the others are decided
while indexing. The expected names and ends here are computed by the test's own
``min()`` over each group, never read from the table, and the table is read in
several orders (every name, names of random entries first, a lookup by name, the
index cache's saved form), which must all agree.
"""

from __future__ import annotations

import random

import pytest

from stellaops_runtime.canonical.addrindex import (
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    AddressTable,
    StrtabNames,
    SymbolColumns,
)
from stellaops_runtime.canonical.symcolumns import Gathered

# (start, size, name, binding, section index); sections end at SECTION_ENDS[index]
SECTION_ENDS = [0, 0x4000, 0x5000]
SYMBOLS = [
    # underscores decide (one size: pending)
    (0x1000, 0x10, "__x", STB_GLOBAL, 1),
    (0x1000, 0x10, "_x", STB_GLOBAL, 1),
    (0x1000, 0x10, "x", STB_LOCAL, 1),
    # binding decides, the WEAK one first in the table (pending)
    (0x1100, 0x10, "cfree", STB_WEAK, 1),
    (0x1100, 0x10, "fre_", STB_GLOBAL, 1),
    # length, then name (pending)
    (0x1200, 0x10, "abcd", STB_GLOBAL, 1),
    (0x1200, 0x10, "abd", STB_GLOBAL, 1),
    (0x1200, 0x10, "abc", STB_GLOBAL, 1),
    # a size beats a better name; the size-less member does not count (pending)
    (0x1300, 0, "a", STB_GLOBAL, 1),
    (0x1300, 0x20, "__zz", STB_LOCAL, 1),
    (0x1300, 0x20, "__zy", STB_LOCAL, 1),
    # members of different sizes: the winner's size (decided while indexing)
    (0x1400, 0x40, "_long", STB_GLOBAL, 1),
    (0x1400, 0x10, "short", STB_GLOBAL, 1),
    (0x1500, 0x40, "long2", STB_GLOBAL, 1),
    (0x1500, 0x10, "_short2", STB_GLOBAL, 1),
    # no size at all, in two sections: the winner's section bounds the end (decided while indexing)
    (0x3F00, 0, "__asm", STB_GLOBAL, 2),
    (0x3F00, 0, "asm", STB_GLOBAL, 1),
    # no alias
    (0x2000, 0x10, "alone", STB_GLOBAL, 1),
    # a group of 20 (one size), as identical-code folding makes in Rust libraries: pending too
    *((0x2100, 0x10, f"{'_' * (k % 3)}icf{k:02d}", STB_WEAK if k % 2 else STB_LOCAL, 1) for k in range(20)),
    # a larger group (one size, 33 members): decided while indexing, never on a lookup's thread
    *((0x2200, 0x10, f"{'_' * (k % 3)}big{k:02d}", STB_WEAK if k % 2 else STB_LOCAL, 1) for k in range(33)),
]
PENDING = 5  # the groups at 0x1000, 0x1100, 0x1200, 0x1300 and 0x2100


_BIND = {STB_GLOBAL: 0, STB_WEAK: 1, STB_LOCAL: 2}  # any other binding (STB_GNU_UNIQUE, unknown): 3, last


def _expected(symbols: list[tuple[int, int, str, int, int]]) -> dict[int, tuple[str, int]]:
    """start -> (name, end), by the rule written out here."""
    by_start: dict[int, list[tuple[int, int, str, int, int]]] = {}
    for s in symbols:
        by_start.setdefault(s[0], []).append(s)
    starts = sorted(by_start)
    out: dict[int, tuple[str, int]] = {}
    for k, start in enumerate(starts):
        win = min(
            by_start[start],
            key=lambda s: (
                0 if s[1] else 1,
                len(s[2]) - len(s[2].lstrip("_")),
                _BIND.get(s[3], 3),
                len(s[2]),
                s[2],
            ),
        )
        size = win[1] or max(s[1] for s in by_start[start])
        if size:
            end = start + size
        else:
            nxt = starts[k + 1] if k + 1 < len(starts) else 0
            limit = SECTION_ENDS[win[4]]
            end = min(nxt, limit) if nxt and limit else nxt or limit or start + 1
        out[start] = (win[2], end)
    return out


def _columns(symbols: list[tuple[int, int, str, int, int]]) -> SymbolColumns:
    """The symbols as the ELF reader hands them over: names as string-table offsets, binding and
    section gathered from whole-section columns through record numbers."""
    strtab = bytearray(b"\0")
    offsets = []
    for s in symbols:
        offsets.append(len(strtab))
        strtab += s[2].encode() + b"\0"
    records = list(range(1, len(symbols) + 1))  # record 0: the null symbol, not kept
    binds = bytes([0] + [s[3] for s in symbols])
    sections = [0] + [s[4] for s in symbols]
    return SymbolColumns(
        [s[0] for s in symbols],
        [s[1] for s in symbols],
        StrtabNames(bytes(strtab), offsets, 16_384),
        Gathered(binds, records),
        Gathered(sections, records),
        SECTION_ENDS,
    )


def _table_as_read(t: AddressTable, order: str, seed: int) -> dict[int, tuple[str, int]]:
    n = len(t)
    if order == "names":
        names = list(t.names)
    elif order == "canonical":  # first reads through the lookup path, in a random order
        idx = list(range(n))
        random.Random(seed).shuffle(idx)
        for i in idx:
            t.canonical_name(i)
        names = [t.names[i] for i in range(n)]
    elif order == "single":
        names = [t.names[i] for i in reversed(range(n))][::-1]
    else:  # the index cache's form (canonical/indexcache.py)
        saved = t.saved()
        assert saved is not None
        strtab, offsets, max_bytes = saved
        restored = AddressTable.restored(
            t.source, list(t.starts), list(t.ends), StrtabNames(strtab, offsets, max_bytes)
        )
        names = list(restored.names)
    return {t.starts[i]: (names[i], t.ends[i]) for i in range(n)}


@pytest.mark.parametrize("order", ["names", "canonical", "single", "saved"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pending_groups_name_entries_by_the_rule(order: str, seed: int) -> None:
    symbols = list(SYMBOLS)
    random.Random(seed).shuffle(symbols)  # the table's record order changes which member comes first
    t = AddressTable("symtab", _columns(symbols))
    pending = t._aliases  # the groups left to their first read
    assert pending is not None and len(pending) == PENDING
    assert _table_as_read(t, order, seed) == _expected(symbols)
    # canonical names are the demangled raw names (plain C names here: the same text)
    assert [t.canonical_name(i) for i in range(len(t))] == list(t.names)


def test_per_symbol_tuples_give_the_same_table() -> None:
    """DWARF and Go hand over tuples (names a list): the same groups, the same answers."""
    ends = SECTION_ENDS
    raw = [(s, z, name, b, ends[sec]) for s, z, name, b, sec in SYMBOLS]
    t = AddressTable("symtab", raw)
    assert t._aliases is not None and len(t._aliases) == PENDING
    expected = _expected(SYMBOLS)
    assert {t.starts[i]: (t.names[i], t.ends[i]) for i in range(len(t))} == expected
    assert t.find_name("x") == t.find(0x1000)
    assert t.find_name("_x") == -1  # a member that lost names nothing


def test_settling_twice_is_idempotent() -> None:
    t = AddressTable("symtab", _columns(SYMBOLS))
    i = t.find(0x1100)
    first = t.canonical_name(i)
    assert t.names[i] == first == "fre_"
    assert t._aliases is not None
    picks = t.names.picks  # type: ignore[attr-defined]
    assert 0 <= picks[i] < t._aliases.base and t._aliases.settle(picks, i) == picks[i]


def test_an_index_past_the_table_still_raises() -> None:
    """Undecided picks are past the last record and settled on IndexError; a wrong index still fails."""
    t = AddressTable("symtab", _columns(SYMBOLS))
    with pytest.raises(IndexError):
        t.names[len(t)]
    with pytest.raises(IndexError):
        t.canonical_name(len(t))
    last = t.find(0x3F00)  # a group decided while indexing; entries counted from the end read alike
    assert t.names[last - len(t)] == t.names[last] == "asm"
    pending = t.find(0x1300)
    assert t.names[pending - len(t)] == "__zy"


def test_groups_of_up_to_32_members_wait_for_their_first_read() -> None:
    """Groups of up to 32 same-size members are left to their first read (librustc_driver has 356
    of 9-32 members, which cost its cold batch ~3 % when decided while indexing); a group of 33 is
    decided while indexing, so one first lookup ranks at most 32 names."""
    t = AddressTable("symtab", _columns(SYMBOLS))
    assert t._aliases is not None
    base = t._aliases.base
    picks = t.names.picks  # type: ignore[attr-defined]
    assert picks[t.find(0x2100)] >= base  # pending: settled when its name is first read
    assert picks[t.find(0x2200)] < base  # decided while indexing
    assert max(t._aliases.bounds[g + 1] - t._aliases.bounds[g] for g in range(len(t._aliases))) == 20
    assert t.canonical_name(t.find(0x2100)) == _expected(SYMBOLS)[0x2100][0] == "icf03"
