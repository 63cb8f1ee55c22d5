"""A damaged Go pc-line table in a real stripped Go PIE: its functions are refused, never misnamed.

``go build -buildmode=pie -ldflags=-s -w`` of tests/native/stella_go.go (Go's
build cache under .cache/go-build keeps it ~1 s): no ``.symtab``, the table
lives in ``.data.rel.ro`` and names every function (canonical/gopclntab.py).
Each copy damages the table's header or its function table (seeded, deterministic),
and every frame resolved in it must name a function the undamaged table has:
an unresolved frame is fine, a wrong name is not.

Found 2026-12-04: a ``funcnameOffset`` off by a few bytes read every name from
the middle of another (``untime.checkTimers``, ``noctxt``), and a damaged
function-table entry pointed a function at another's ``_func`` record. A name
must now start after a NUL inside funcnametab, and a ``_func`` must begin with
the entry the function table gives it, else the table is ``malformed``.

A ``textStart`` moved by a multiple of the functions' alignment gave real names, of the
neighbouring functions (``runtime.panicIndex`` for ``runtime.panicIndexU``): nothing in the
table itself says where code starts, the runtime's ``moduledata.text`` does, and a table
whose textStart is not it is now ``malformed`` too.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.resolution import Resolution
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.native.build import GO_CACHE, HERE, find_go

SEED = 20261204
HEADER_WORDS = {0: "nfunc", 1: "nfiles", 2: "textStart", 3: "funcnameOffset", 4: "cuOffset"}
HEADER_WORDS |= {5: "filetabOffset", 6: "pctabOffset", 7: "pclnOffset"}


class GoPie:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        b = Binary.open(str(path))
        try:
            tables = b.load_all()
            [table] = [t for t in tables if t.source == "gopclntab"]
            self.names = {table.canonical_name(i) for i in range(len(table))}
            rng = random.Random(SEED)
            picks = sorted(rng.sample(range(len(table) - 1), 60))
            self.offsets = []
            for i in picks:
                start, end = table.starts[i], table.starts[i + 1]
                offset = b.layout.offset_of(start + rng.randrange(max(1, end - start)))
                assert offset is not None
                self.offsets.append(offset)
        finally:
            b.close()
        self.results = Symbolizer().resolve_file_many(str(path), self.offsets)
        assert all(r.source == "gopclntab" for r in self.results), self.results[0]
        self.table = self._find_table()

    def _find_table(self) -> int:
        """File offset of the pcHeader (Go 1.18+ magic, pad 0 0, minLC, ptrSize 8)."""
        for magic in (b"\xf1\xff\xff\xff\0\0", b"\xf0\xff\xff\xff\0\0"):
            at = self.data.find(magic)
            while at >= 0:
                if self.data[at + 6] in (1, 2, 4) and self.data[at + 7] == 8:
                    return at
                at = self.data.find(magic, at + 1)
        raise AssertionError("no Go 1.18+ pcHeader")

    def word(self, i: int) -> int:
        at = self.table + 8 + 8 * i
        return int.from_bytes(self.data[at : at + 8], "little")

    def copy_resolved(self, dst: Path, edits: list[tuple[int, bytes]]) -> list[Resolution]:
        data = bytearray(self.data)
        for at, raw in edits:
            data[at : at + len(raw)] = raw
        dst.write_bytes(bytes(data))
        return Symbolizer().resolve_file_many(str(dst), self.offsets)

    def misnamed(self, dst: Path, edits: list[tuple[int, bytes]]) -> list[str]:
        """Frames named after a function the table lacks, or after another function than the
        original's at that offset (a real neighbour's name)."""
        got = self.copy_resolved(dst, edits)
        wrong = [
            r
            for r, was in zip(got, self.results, strict=True)
            if r.resolved and (r.symbol not in self.names or r.function_id != was.function_id)
        ]
        return [f"{r.file_offset:#x}: {r.symbol[:80]!r}" for r in wrong]


@pytest.fixture(scope="module")
def gopie(tmp_path_factory: pytest.TempPathFactory) -> GoPie:
    go = find_go()
    if go is None:
        pytest.skip("go toolchain not installed")
    out = tmp_path_factory.mktemp("gopcln") / "go_pie_stripped"
    GO_CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOCACHE": str(GO_CACHE), "CGO_ENABLED": "0", "GOFLAGS": "", "GOTOOLCHAIN": "local"}
    env["GOPATH"] = str(out.parent / "gopath")
    cmd = [go, "build", "-buildmode=pie", "-ldflags=-s -w", "-o", str(out), str(HERE / "stella_go.go")]
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=out.parent, timeout=300)
    return GoPie(out)


@pytest.mark.parametrize("delta", [1, 2, 7, 0x61, -1])
def test_a_moved_funcname_table_is_refused(gopie: GoPie, tmp_path: Path, delta: int) -> None:
    at = gopie.table + 8 + 8 * 3
    value = (gopie.word(3) + delta).to_bytes(8, "little")
    assert gopie.misnamed(tmp_path / "m", [(at, value)]) == []
    r = Symbolizer().resolve_file(str(tmp_path / "m"), gopie.offsets[0])
    assert r.error == "malformed" and "funcnametab" in r.detail, r


@pytest.mark.parametrize("delta", [16, -16, 0x20, 0x1000])
def test_a_moved_text_start_is_refused(gopie: GoPie, tmp_path: Path, delta: int) -> None:
    at = gopie.table + 8 + 8 * 2
    value = (gopie.word(2) + delta).to_bytes(8, "little")
    assert gopie.misnamed(tmp_path / "m", [(at, value)]) == [], delta
    moved = gopie.copy_resolved(tmp_path / "m", [(at, value)])
    assert {r.error for r in moved} == {"malformed"} and "moduledata.text" in moved[0].detail, moved[0]


def test_seeded_damage_to_the_table_never_misnames_a_frame(gopie: GoPie, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    functab = gopie.table + gopie.word(7)
    nfunc = gopie.word(0)
    misnamed: dict[str, list[str]] = {}
    for i in range(160):
        if i % 2:  # a header word set to an odd value
            w = rng.choice(sorted(HEADER_WORDS))
            old = gopie.word(w)
            value = rng.choice([0, 1, old + 1, old - 1, old + 8, old * 2, 0xFFFFFFFF, rng.randrange(1 << 32)])
            label = f"{HEADER_WORDS[w]}={value:#x}"
            edits = [(gopie.table + 8 + 8 * w, (value % (1 << 64)).to_bytes(8, "little"))]
        else:  # a byte of the function table (entry offsets and _func offsets)
            at = functab + rng.randrange(min(nfunc * 8, 1 << 16))
            label = f"functab+{at - functab:#x}"
            edits = [(at, bytes([rng.randrange(256)]))]
        bad = gopie.misnamed(tmp_path / f"m{i}", edits)
        if bad:
            misnamed[label] = bad[:2]
        (tmp_path / f"m{i}").unlink()
    assert misnamed == {}
