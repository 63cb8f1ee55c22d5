"""The witness bridge on a real store: claims marked by drained counts, witnesses signed on flush.

Marking is a lookup per row (no I/O) and bounded by the number of claims; a
flush signs one witness per marked claim from the store, keeps it there, and
writes it to the output directory; a claim whose signing fails stays marked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.bridge import Claim, ClaimsError, WitnessBridge, load_claims
from stellaops_runtime.witness.statement import check_statement
from tests.native.rust_names import crate_names

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def delta(fn: str, count: int = 3, image: str = IMG, purl: str = PURL) -> HotSymbolDelta:
    return HotSymbolDelta(
        HotSymbolKey(image, ZLIB, fn, EvidenceKind.INVOKED), T0, count, T0 + S, T0 + 2 * S, purl=purl
    )


@pytest.fixture
def world(tmp_path: Path, sqlite_at_head: Callable[[Path], str]) -> tuple[WitnessBridge, object, Path, Path]:
    url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): the bridge is tested here
    store = open_store(url)
    store.write([delta("crc32", 12)], [ObservationWindow(IMG, "n", T0, 5, Posture.EBPF_DEEP, 60, "tetragon")])
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "claims:\n"
        f"  - {{image: 'registry/app@{IMG}', purl: 'pkg:deb/debian/zlib1g', function: crc32,"
        " vulnerability: CVE-1}\n"
        f"  - {{image: '{IMG}', purl: 'pkg:deb/debian/zlib1g', function: inflate}}\n"
    )
    bridge = WitnessBridge(
        load_claims(claims), key_file=str(tmp_path / "k"), output_dir=str(tmp_path / "out")
    )
    return bridge, store, tmp_path, claims


async def test_marked_claims_get_one_signed_witness_each(world) -> None:  # type: ignore[no-untyped-def]
    bridge, store, tmp, _ = world
    bridge.observe(
        [delta("crc32"), delta("crc32"), delta("adler32"), delta("crc32", image="sha256:" + "e" * 64)]
    )
    bridge.observe([delta("crc32", purl="pkg:deb/debian/other@1")])  # another package's crc32: not the claim
    assert bridge.marked == 0  # not before the store has the counts
    assert await bridge.flush(store.engine) == 0
    bridge.stored()
    assert bridge.marked == 1
    assert await bridge.flush(store.engine) == 1 and bridge.generated == 1 and bridge.marked == 0
    with store.engine.connect() as conn:
        [w] = wstore.find(conn, image=IMG)
        data = wstore.envelope(conn, ref=w.envelope_sha256)
    assert (w.function, w.vulnerability, w.state) == ("crc32", "CVE-1", "DynamicReachable")
    stmt = check_statement(dsse.verify(json.loads(data or b""), keys.load_public(tmp / "k.pub")), image=IMG)
    assert stmt["predicate"]["observation"]["invocation_count"] == 12
    [f] = (tmp / "out").iterdir()
    assert f.read_bytes() == data
    assert await bridge.flush(store.engine) == 0  # nothing marked since


async def test_a_failed_signing_keeps_the_claim_marked(world) -> None:  # type: ignore[no-untyped-def]
    bridge, store, _, _ = world
    bridge.observe([delta("inflate")])
    bridge.stored()
    store.engine.dispose()
    broken = open_store(f"sqlite:///{world[2]}/other.db", migrate=False)  # no tables: signing fails
    assert await bridge.flush(broken.engine) == 0
    assert bridge.marked == 1 and bridge.failures == 1 and "OperationalError" in bridge.last_error
    assert await bridge.flush(store.engine) == 1


async def test_marking_never_waits_for_a_slow_signer(world) -> None:  # type: ignore[no-untyped-def]
    bridge, store, _, _ = world
    bridge.observe([delta("crc32")])
    bridge.stored()
    flushing = asyncio.create_task(bridge.flush(store.engine))
    await asyncio.sleep(0)  # the flush has taken its claims and is signing in a thread
    assert not flushing.done()
    for _ in range(1000):  # counts keep arriving while the signer works
        bridge.observe([delta("inflate")])
        bridge.stored()
    await flushing
    assert bridge.marked == 1  # bounded by the number of claims


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("claims: 7", "expected a list"),
        ("- {image: nope, purl: 'pkg:deb/debian/z', function: f}", "claim 0"),
        ("- {image: 'sha256:" + "d" * 64 + "', purl: 'not a purl', function: f}", "claim 0"),
        ("- [1, 2]", "expected a mapping"),
        ("{{{", "not YAML"),
        (
            "- {image: 'sha256:"
            + "d" * 64
            + "', purl: 'pkg:deb/debian/z', function: '"
            + "A" * 40
            + ":f+0xZZ'}",
            "claim 0: malformed function ID",
        ),
    ],
)
def test_bad_claims_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ClaimsError, match=message):
        load_claims(p)
    assert Claim(IMG, "pkg:deb/debian/z", "f").id == wstore.claim_id(IMG, "pkg:deb/debian/z", "f", None)


async def test_a_claim_naming_a_function_id_in_another_spelling_is_witnessed_as_observed(
    tmp_path: Path,
) -> None:
    bid = "1f95d5498d283b79505861523e20b3db2afdf518"
    store = open_store(f"sqlite:///{tmp_path}/hot.db")
    ran = dataclasses.replace(delta("crc32", 12), function_id=f"{bid}:crc32+0x0", build_id=bid)
    store.write([ran], [ObservationWindow(IMG, "n", T0, 5, Posture.EBPF_DEEP, 60, "tetragon")])
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        f"- {{image: '{IMG}', purl: 'pkg:deb/debian/zlib1g', function: '{bid.upper()}:crc32+0X0'}}\n"
    )
    bridge = WitnessBridge(load_claims(claims), key_file=str(tmp_path / "k"))
    bridge.observe([ran])
    bridge.stored()
    assert await bridge.flush(store.engine) == 1
    with store.engine.connect() as conn:
        [w] = wstore.find(conn, image=IMG)
    assert w.state == "DynamicReachable"  # read as a name, the ID matched nothing: PotentiallyReachable


def test_a_claim_without_a_parameter_list_is_marked_by_each_overload(tmp_path: Path) -> None:
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = [
        Claim(IMG, "pkg:deb/debian/zlib1g", "foo::bar"),
        Claim(IMG, "pkg:deb/debian/zlib1g", "foo::baz(int)"),
    ]
    bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))
    bridge.observe([delta("foo::barista(int)"), delta("foo::baz(long)"), delta("FOO::bar(int)")])
    bridge.stored()
    assert bridge.marked == 0  # another name, another overload of an exact claim, another case
    bridge.observe([delta("foo::bar(char const*) const")])
    bridge.stored()
    assert bridge.marked == 1


def test_a_claim_naming_a_c_function_with_its_parameter_list_is_marked_by_the_bare_symbol(
    tmp_path: Path,
) -> None:
    """``crc32(uLong crc, const Bytef *buf, uInt len)`` and ``adler32()`` (how advisories write C
    functions) answer for the bare ``crc32`` the agent stores (store/function_refs.py c_names); a claim in
    that form was never marked, so no witness was ever made of calls ``query observed`` reports."""
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = [
        Claim(IMG, "pkg:deb/debian/zlib1g", "crc32(uLong crc, const Bytef *buf, uInt len)"),
        Claim(IMG, "pkg:deb/debian/zlib1g", "ns::adler32()"),  # qualified: C++, not the C symbol
    ]
    bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))
    bridge.observe([delta("crc32x"), delta("adler32"), delta("crc32", image="sha256:" + "e" * 64)])
    bridge.stored()
    assert bridge.marked == 0
    bridge.observe([delta("crc32")])
    bridge.stored()
    assert bridge.marked == 1


# C sources gcc -O2 compiles into clones of ``crc32`` (gcc 12: partial inlining, IPA-SRA, constant
# propagation; each a translation unit of its own, since one holds a function of that name once).
CLONED = {
    "part": (
        "#include <stdio.h>\n#include <string.h>\n"
        "unsigned crc32(unsigned crc, const char *p) { if (!p) return crc;\n"
        "  for (size_t i = 0; i < strlen(p); ++i) { crc = crc * 31 + p[i];\n"
        '    if (crc > 100000) { fprintf(stderr, "big %u\\n", crc); crc = 0; } }\n'
        '  printf("%u\\n", crc); return crc; }\n'
        "int main(int argc, char **argv) {\n"
        "  return (int)(crc32(1, argv[0]) + crc32(2, argc > 5 ? argv[1] : 0)); }\n"
    ),
    "isra": (
        "#include <stdio.h>\n#include <stdlib.h>\nstruct big { int a, b, c, d[40]; };\n"
        "static int __attribute__((noinline)) crc32(struct big s, int n) {\n"
        '  if (__builtin_expect(n < 0, 0)) { fprintf(stderr, "neg %d\\n", n); abort(); }\n'
        "  int r = 0; for (int i = 0; i < n; i++) r = r * 31 + s.a + i; return r; }\n"
        "int use(struct big *p, int n) { return crc32(*p, n) + crc32(*p, n + 1); }\n"
    ),
    "constprop": (
        "struct ctx { unsigned tab[256]; };\n"
        "static unsigned __attribute__((noinline)) crc32(const struct ctx *c, unsigned crc,\n"
        "    const unsigned char *buf, unsigned len, int flag) { if (!buf) return 0; crc = ~crc;\n"
        "  for (unsigned i = 0; i < len; i++) crc = c->tab[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);\n"
        "  if (flag) crc ^= 1; return ~crc; }\n"
        "unsigned ra(const struct ctx *c, const unsigned char *b, unsigned n) {\n"
        "  return crc32(c, 0, b, n, 0); }\n"
        "unsigned rb(const struct ctx *c, const unsigned char *b, unsigned n) {\n"
        "  return crc32(c, 7, b, n, 0); }\n"
    ),
}


def _gcc_clones_of_crc32(tmp_path: Path) -> set[str]:
    """The canonical names (as the agent stores them) of the function symbols gcc -O2 makes of
    ``crc32`` in CLONED's sources, other than ``crc32`` itself."""
    names: set[str] = set()
    for kind, source in CLONED.items():
        src, obj = tmp_path / f"{kind}.c", tmp_path / f"{kind}.o"
        src.write_text(source)
        subprocess.run(
            ["gcc", "-O2", "-c", str(src), "-o", str(obj)], check=True, capture_output=True, timeout=60
        )
        with obj.open("rb") as f:
            symtab = ELFFile(f).get_section_by_name(".symtab")
            assert isinstance(symtab, SymbolTableSection)
            names |= {demangle(s.name) for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}
    return {n for n in names if n.startswith("crc32")} - {"crc32"}


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_claim_is_marked_by_the_gcc_clones_its_function_runs_as(tmp_path: Path) -> None:
    """``crc32`` whose body runs as ``crc32.part.0``, ``crc32.isra.0``, ``crc32.constprop.0`` (read
    from real gcc -O2 builds) or ``crc32.cold``: ``query observed``/``evidence``/``witness sign``
    count these calls as crc32's (store/name_spellings.py clone_of), but the bridge looked up the
    exact name only, so the claim was never marked and no witness was made while crc32's body ran.
    Asked as ``crc32()`` (a C prototype), the same. Seen failing before the fix (marked 0)."""
    clones = _gcc_clones_of_crc32(tmp_path)
    assert {"crc32.part.0", "crc32.isra.0", "crc32.constprop.0"} <= clones, clones
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = [
        Claim(IMG, "pkg:deb/debian/zlib1g", "crc32"),
        Claim(IMG, "pkg:deb/debian/zlib1g", "crc32(void)"),
    ]
    for name in sorted(clones | {"crc32.cold", "crc32.isra.0.cold", "crc32.lto_priv.1"}):
        bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))
        bridge.observe([delta(name)])
        bridge.stored()
        assert bridge.marked == 2, name
    bridge = WitnessBridge(
        [*claims, Claim(IMG, "pkg:deb/debian/zlib1g", "f(int)")], key_file=str(tmp_path / "k")
    )
    bridge.observe([delta("f(int) (.isra.0)")])  # a C++ clone, as the canonicalizer writes it
    bridge.stored()
    assert bridge.marked == 1
    # not clones of crc32 (as a question reads them): another name, a word no clone has, another
    # image or package
    bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))
    others = [delta(n) for n in ("crc32x.part.0", "crc32.", "crc32.resolver", "crc32_z.isra.0", "crc32.0x")]
    bridge.observe([*others, delta("crc32.part.0", image="sha256:" + "e" * 64)])
    bridge.observe([delta("crc32.part.0", purl="pkg:deb/debian/libfoo@1")])
    bridge.stored()
    assert bridge.marked == 0


@pytest.mark.parametrize("mangling", ["legacy", "v0"])
def test_a_claim_naming_a_rust_path_is_marked_by_the_names_rustc_demangle_prints(
    tmp_path: Path, mangling: str
) -> None:
    """A claim ``smallvec::SmallVec::insert_many`` (RustSec's form) is marked by a real build's
    ``smallvec::SmallVec<A>::insert_many`` / ``<smallvec::SmallVec<u8>>::insert_many::<…>``; before,
    by nothing. ``insert``, ``Other::insert_many`` and std's functions instantiated with it never
    mark it."""
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    names = crate_names(mangling)
    heads = ("smallvec::SmallVec<A>::insert_many", "<smallvec::SmallVec<u8>>::insert_many")
    others = [n for n in names if not n.startswith(heads)]
    assert others and len(others) < len(names)
    bridge = WitnessBridge(
        [Claim(IMG, "pkg:deb/debian/zlib1g", "smallvec::SmallVec::insert_many")], key_file=str(tmp_path / "k")
    )
    bridge.observe([delta(n) for n in others])
    bridge.observe([delta(n, image="sha256:" + "e" * 64) for n in names])  # another image
    bridge.stored()
    assert bridge.marked == 0
    bridge.observe([delta(next(n for n in names if n.startswith(heads)))])
    bridge.stored()
    assert bridge.marked == 1


def test_a_claim_with_a_parameter_list_spaced_otherwise_is_marked_by_the_stored_name(tmp_path: Path) -> None:
    """``Poco::Net::HTTPRequest::read(std::istream &)`` (as an advisory spaces it) answers for the
    demangler's ``read(std::istream&)`` and its clone ``read(std::istream&) (.isra.0)`` in
    ``query observed`` (name_spellings.spaceless), but the bridge looked the claim up as written:
    never marked, no witness. Seen failing before the fix (marked 0)."""
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = [Claim(IMG, "pkg:deb/debian/zlib1g", "Poco::Net::HTTPRequest::read( std::istream & )")]
    bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))
    others = ("Poco::Net::HTTPRequest::read(std::ostream&)", "Poco::Net::HTTPRequest::read(std::istream&)x")
    bridge.observe([delta(n) for n in others])
    bridge.stored()
    assert bridge.marked == 0
    for stored in (
        "Poco::Net::HTTPRequest::read(std::istream&)",
        "Poco::Net::HTTPRequest::read(std::istream&) (.isra.0)",
    ):
        bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))
        bridge.observe([delta(stored)])
        bridge.stored()
        assert bridge.marked == 1, stored


class _CountingIndex(dict[tuple[str, str], list[str]]):
    """A claim index that counts its lookups."""

    lookups = 0

    def get(self, key, default=None):  # type: ignore[no-untyped-def,override]
        self.lookups += 1
        return super().get(key, default)


def test_a_stored_name_full_of_dots_and_parentheses_is_looked_up_a_bounded_number_of_times(
    tmp_path: Path,
) -> None:
    """A workload's binary may name a function anything: ``crc32`` then 100,000 dots, or 100,000
    ``(``. The bridge looked such a name up once per ``.`` (clones) and once per ``(``
    (overloads), each lookup slicing and hashing the name up to that point: quadratic, 3 s of the
    agent's loop for one 100,000-dot row at every drain (observe promises never to block). A
    prefix can only be a claim's name when its length is one a claim has, so a name is looked up
    at most once per such length. Seen failing before the fix (100,000 lookups and more). The clone and
    the overload are still found."""
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = [Claim(IMG, "pkg:deb/debian/zlib1g", "crc32"), Claim(IMG, "pkg:deb/debian/zlib1g", "foo::bar")]
    bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"))
    clones = bridge._by_image_clone = _CountingIndex(bridge._by_image_clone)
    overloads = bridge._by_image_overload = _CountingIndex(bridge._by_image_overload)
    n = 100_000
    bridge.observe([delta("crc32" + "." * n), delta("foo::baz" + "(" * n), delta("crc32" + " (." * n)])
    bridge.stored()
    assert bridge.marked == 0  # an empty word is no clone suffix; foo::baz is another function
    assert clones.lookups <= 3 * 2, clones.lookups  # 3 rows, claim names of 2 lengths
    assert overloads.lookups <= 3 * 2, overloads.lookups
    bridge.observe([delta("crc32.part.0" + "." * n)])
    bridge.stored()
    assert bridge.marked == 0
    bridge.observe(
        [delta("crc32.isra.0.cold"), delta("foo::bar(int)" + "(" * n)]
    )  # as matches_name reads them
    bridge.stored()
    assert bridge.marked == 2
