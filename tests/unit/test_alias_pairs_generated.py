"""Generated hostile symbol tables: the pair branch of the alias rule and a batch's one loop answer as before.

Two speed changes of issue 12 (498967a, a4d40d6) must give identical answers on
every input, not only on the real binaries of test_alias_groups_real and
test_symbolize_warm:

- ``AddressTable._pick_aliases`` takes a scalar branch for an alias group of two
  members of one size. Checked two ways over generated tables (pairs of equal
  and unequal size, zero-size members, every binding including STB_GNU_UNIQUE
  and unknown ones, equal names, nested and overlapping symbols, groups past 32
  members, a table longer than one sort run): against the rule written out in
  test_alias_groups_lazy (``_expected``), read in several orders; and against
  the general branch itself, by giving every such pair a third, size-less
  member (which never wins and changes no end, so the general branch must
  leave the same pending group and the same answers).
- ``QuickLookup.answer_many`` inlines ``QuickLookup.find``'s body: over the
  same tables and hostile offsets (negative, past every segment, in gaps,
  inside nested functions) its Resolutions and counter keys equal ``find``'s
  answer per offset, each path on its own copy of the tables (so alias groups
  settle in a different order).
"""

from __future__ import annotations

import random

import pytest

from stellaops_runtime.canonical.addrindex import STB_GLOBAL, STB_LOCAL, STB_WEAK, AddressTable
from stellaops_runtime.canonical.quicklookup import QuickLookup
from stellaops_runtime.canonical.resolution import Resolution
from tests.unit.test_alias_groups_lazy import _columns, _expected, _table_as_read

Sym = tuple[int, int, str, int, int]  # (start, size, name, binding, section index)

STB_GNU_UNIQUE = 10
_BINDS = [STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE, 3]
_STEMS = ["read", "x", "abc", "abd", "C1", "D2", "a_b", "Ä", "longer_name_here", "read"]


def _name(rng: random.Random) -> str:
    return "_" * rng.choice([0, 0, 1, 2, 3]) + rng.choice(_STEMS) + rng.choice(["", "", "1", "_"])


def _member(rng: random.Random, start: int, size: int) -> Sym:
    return (start, size, _name(rng), rng.choice(_BINDS), rng.choice([0, 1, 1, 2]))


def _generate(rng: random.Random, n_starts: int) -> list[Sym]:
    """Symbols at ``n_starts`` addresses, mostly pairs of one size (as in real C++ libraries)."""
    out: list[Sym] = []
    start = 0x1000
    for _ in range(n_starts):
        start += rng.choice([0x10, 0x10, 0x18, 0x30, 0x7])
        size = rng.choice([0x8, 0x10, 0x20])
        kind = rng.random()
        if kind < 0.45:  # a pair of one size: the scalar branch
            out += [_member(rng, start, size), _member(rng, start, size)]
        elif kind < 0.55:  # a pair of unequal sizes
            out += [_member(rng, start, size), _member(rng, start, size + rng.choice([1, 0x40]))]
        elif kind < 0.62:  # a pair with one member without a size
            pair = [_member(rng, start, size), _member(rng, start, 0)]
            rng.shuffle(pair)
            out += pair
        elif kind < 0.67:  # a pair with no size at all
            out += [_member(rng, start, 0), _member(rng, start, 0)]
        elif kind < 0.72:  # a pair of one name and size, different bindings
            name = _name(rng)
            out += [(start, size, name, STB_WEAK, 1), (start, size, name, STB_GLOBAL, 1)]
        elif kind < 0.78:  # a function holding the next ones (nested, overlapping)
            out.append(_member(rng, start, size + 0x60))
        elif kind < 0.80:  # a larger group, one size or mixed, up to past 32 members
            sizes = [size] if rng.random() < 0.6 else [size, 0, size * 2]
            out += [_member(rng, start, rng.choice(sizes)) for _ in range(rng.choice([3, 5, 32, 33, 40]))]
        elif kind < 0.90:
            out.append(_member(rng, start, size))
        else:
            out.append(_member(rng, start, 0))
    rng.shuffle(out)  # the table's record order decides which member comes first
    return out


def _sized_pairs(symbols: list[Sym]) -> list[int]:
    """Starts of the groups the scalar branch takes: exactly two members, one nonzero size."""
    by_start: dict[int, list[int]] = {}
    for s in symbols:
        by_start.setdefault(s[0], []).append(s[1])
    return [a for a, sizes in by_start.items() if len(sizes) == 2 and sizes[0] and sizes[0] == sizes[1]]


def _pending_groups(t: AddressTable) -> list[list[tuple[str, int]]]:
    """The groups left to their first read, as (name, binding) of their members in order."""
    a = t._aliases
    if a is None:
        return []
    return [
        [(a.name_of(a.members[k]), a.binds[k]) for k in range(a.bounds[g], a.bounds[g + 1])]
        for g in range(len(a))
    ]


@pytest.mark.parametrize("seed", range(6))
def test_generated_tables_name_and_end_every_entry_by_the_rule(seed: int) -> None:
    rng = random.Random(seed)
    symbols = _generate(rng, 300)
    expected = _expected(symbols)
    assert len(_sized_pairs(symbols)) > 50
    for order in ("names", "canonical", "saved"):
        t = AddressTable("symtab", _columns(symbols))
        assert _table_as_read(t, order, seed) == expected, order


@pytest.mark.parametrize("seed", range(6))
def test_a_pair_of_one_size_reads_as_the_general_branch_leaves_it(seed: int) -> None:
    """A third member without a size sends a pair through the general branch: same pending groups
    (names and bindings, in order), same starts, ends and names."""
    symbols = _generate(random.Random(seed), 300)
    pairs = _sized_pairs(symbols)
    widened = symbols + [(a, 0, "a", STB_GLOBAL, 1) for a in pairs]  # would win, were it sized
    scalar, general = AddressTable("symtab", _columns(symbols)), AddressTable("symtab", _columns(widened))
    assert _pending_groups(scalar) == _pending_groups(general)
    assert len(_pending_groups(scalar)) >= len(pairs)
    assert (scalar.starts, scalar.ends) == (general.starts, general.ends)
    assert list(scalar.names) == list(general.names) == [_expected(symbols)[a][0] for a in scalar.starts]


def test_a_table_of_pairs_longer_than_one_sort_run() -> None:
    """Pairs across the boundaries of the runs that are sorted apart and merged (65,536 entries)."""
    rng = random.Random(7)
    symbols: list[Sym] = []
    for k in range(33_000):
        start = 0x10_0000 + 0x20 * k
        symbols += [
            (start, 0x10, f"f{k}", STB_GLOBAL, 1),
            (start, 0x10, f"_{'f' * (k % 2)}{k}", rng.choice(_BINDS), 1),
        ]
    rng.shuffle(symbols)
    t = AddressTable("symtab", _columns(symbols))
    assert t._aliases is not None and len(t._aliases) == 33_000
    assert _table_as_read(t, "saved", 7) == _expected(symbols)


def _quick(tables: list[AddressTable]) -> QuickLookup:
    """A QuickLookup over ``tables`` and two PT_LOADs (executable first), without an ELF file."""
    q = QuickLookup.__new__(QuickLookup)
    q.binary = None  # type: ignore[assignment]
    q.build_id = "0123456789abcdef0123456789abcdef01234567"
    q.ranges = [(0x0, 0x1800, 0x1000), (0x2000, 0x4000, 0x800)]  # a hole between them
    q.tables = [(t, f"resolved_{t.source}", t.source) for t in tables]
    return q


@pytest.mark.parametrize("seed", range(4))
def test_a_batch_answers_as_find_per_offset(seed: int) -> None:
    rng = random.Random(seed)
    symtab, dynsym = _generate(rng, 400), _generate(rng, 200)

    def tables() -> list[AddressTable]:
        return [AddressTable("symtab", _columns(symtab)), AddressTable("dynsym", _columns(dynsym))]

    offsets = [rng.randrange(-0x100, 0x4200) for _ in range(3000)] + [
        -1,
        0,
        0x17FF,
        0x1800,
        0x3FFF,
        0x4000,
        2**70,
    ]
    labels = [f"frame{k}" for k in range(len(offsets))]
    hits: list[str] = []
    batch = _quick(tables()).answer_many("/lib/x.so", offsets, labels, hits.append)
    one = _quick(tables())
    found = [one.find(o) for o in offsets]
    assert sum(f is not None for f in found) > 1000 and any(f is None for f in found)
    assert batch == [
        None if f is None else Resolution(label, "/lib/x.so", one.build_id, f[0], f[1], f[2], f[3], o)
        for f, label, o in zip(found, labels, offsets, strict=True)
    ]
    # one counter key per answer; their order is not kept (the native batch, canonical/_symindex.c,
    # answers the first table's offsets before the loop answers the rest; recentfiles counts them)
    assert sorted(hits) == sorted(f[4] for f in found if f is not None)
    with pytest.raises(ValueError):  # offsets and labels of unequal length: refused, as before
        _quick(tables()).answer_many("/lib/x.so", [1, 2], ["a"], hits.append)
