"""The kernel symbol table's compressed names answer as the plain lists at full size (issue 13).

canonical/kallsyms.py keeps names raw-deflated in blocks of 32 records and filters a
bucket's records by 8 more hash bits before it decompresses one; the file is sorted
and its aliases ranked in place (canonical/kallsyms_rows.py). The crafted files of
tests/unit/test_kallsyms_compact.py fit in one or two blocks, and its test over
/proc/kallsyms needs visible addresses (root). Here, on any machine: a generated
file of 120,000 lines (aliases, names repeated across the kernel and 80 modules,
modules listed out of address order, names of 1 to 300 bytes and bad UTF-8), with
its addresses visible and hidden, against the reference of that test.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest

from stellaops_runtime.canonical.kallsyms import KernelSymbols
from tests.unit.test_kallsyms_compact import Plain, _same


@functools.cache
def _rows() -> tuple[tuple[int, bytes, bytes], ...]:
    """(address, type, name plus module column) of each line: drawn once, both files format them."""
    rng = random.Random(14)
    out = []
    a = 0xFFFFFFFF81000000
    for i in range(100_000):
        a += rng.choice((0, 0x10, 0x40, 0x100))  # 0: an alias of the symbol before
        name = rng.choice(
            (f"fn_{i}", f"__fn_{i}", f"_x{i % 500}", "do_syscall_64", "x" * rng.randrange(1, 300))
        )
        out.append((a, rng.choice(b"tTtTwWd").to_bytes(1, "big"), name.encode()))
    out.append((a + 0x10, b"t", b"caf\xc3\xa9_\xff\xfe"))
    modules = list(range(80))
    rng.shuffle(modules)
    for m in modules:
        a = 0xFFFFFFFFC0000000 + m * 0x100000
        for j in range(250):
            a += rng.choice((0, 0x10, 0x100))
            name = rng.choice((f"mod{m}_fn_{j}", f"fn_{j}", "init_module", "do_syscall_64"))
            out.append((a, b"t", b"%s\t[mod%d]" % (name.encode(), m)))
    return tuple(out)


def _text(*, hidden: bool) -> bytes:
    return b"".join(b"%016x %s %s\n" % (0 if hidden else a, t, rest) for a, t, rest in _rows())


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
def test_generated_file_same_answers_as_plain_lists(tmp_path: Path, hidden: bool) -> None:
    text = _text(hidden=hidden)
    (tmp_path / "kallsyms").write_bytes(text)
    ks, ref = KernelSymbols(kallsyms_path=str(tmp_path / "kallsyms")), Plain(text)
    rng = random.Random(15)
    addresses = [0, 2**64 - 1, *rng.sample(ref.addrs, 5_000), *(rng.randrange(2**64) for _ in range(1_000))]
    addresses += [a + 1 for a in rng.sample(ref.addrs, 1_000)]
    names = [*ref.by_name, *(f"fn_{i}x" for i in range(2_000)), "caf\u00e9_\ufffd\ufffd", "", "x" * 301]
    _same(ks, ref, addresses, names)
    assert [ks.names[i] for i in range(len(ks))] == ref.names
    assert [ks.modules[i] for i in range(len(ks))] == ref.modules
    assert ks.names[-1] == ref.names[-1] and ks.modules[-1] == ref.modules[-1]
