"""A stripped library's split tails are read from its separate debug file, as the symbolizer finds it.

Distributions ship libraries stripped (``strip --strip-debug --strip-unneeded``): a ``.part.N`` tail
is a local symbol, never in ``.dynsym``, so the resolution saw no tail in the library itself and
stored no fact, and an answer about a function whose calls ran through its tail said "not
observed". The tails are now read from the library's debug file, found by the canonicalizer's
search (a GNU build-id path, a ``.gnu_debuglink`` name with its CRC-32; canonical/debugfiles.py)
under the node's roots and the container's (native/purl_debug.py). A candidate that is not
the library's (another build-id, a wrong CRC) is never read, and ``symbols.debugFiles: false``
reads none. The answer's side is tests/integration/test_probed_in_part.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.agent.unprobed import UnprobedTails
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native import symdebug
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.policy_config import PurlFunction
from stellaops_runtime.native.purl_wiring import wire
from stellaops_runtime.native.symaddr import find_address, where_of
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_json
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import DAY, IMG, T0, S, watched

PURL = "pkg:deb/debian/zlib1g@1.2.13"
LIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
# split_fn is exported; with -fno-semantic-interposition gcc -O2 inlines its head into user() and
# calls split_fn.part.0 from there. only_fn is static: its head is inlined into every caller and only
# only_fn.part.0 is left. After strip neither tail is in the file.
PROGRAM = r"""
#include <stdio.h>
#include <string.h>
unsigned split_fn(unsigned crc, const char *p) { if (!p) return crc;
  for (size_t i = 0; i < strlen(p); ++i) { crc = crc * 31 + p[i];
    if (crc > 100000) { fprintf(stderr, "big %u\n", crc); crc = 0; } }
  printf("%u\n", crc); return crc; }
static unsigned only_fn(unsigned crc, const char *p) { if (!p) return crc;
  for (size_t i = 0; i < strlen(p); ++i) { crc = crc * 31 + p[i];
    if (crc == 0xdeadbeefu) { fprintf(stderr, "big %u\n", crc); crc = 0; } }
  if (crc == 7u) fprintf(stderr, "seven\n"); return crc; }
static unsigned __attribute__((noinline)) static_fn(unsigned x) { return x * 2654435761u + (x >> 7); }
unsigned user(int argc, char **argv) { return split_fn(1, argv[0]) + split_fn(2, argc > 5 ? argv[1] : 0)
  + only_fn(1, argv[0]) + only_fn(2, argc > 3 ? argv[1] : 0) + static_fn((unsigned)argc); }
"""
needs_binutils = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("gcc", "objcopy", "strip")), reason="needs gcc and binutils"
)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _stripped_root(tmp_path: Path, debug: str, extra: str = "") -> tuple[str, str]:
    """A proc root whose pid 1 root holds zlib1g's library built from PROGRAM and stripped, its debug
    file placed as ``debug`` says ("build_id", "debuglink", "" for none), ``extra`` code added (another
    build); (proc root, build-id)."""
    root = tmp_path / "proc/1/root"
    lib = root / LIB.lstrip("/")
    lib.parent.mkdir(parents=True)
    src = tmp_path / "z.c"
    src.write_text(PROGRAM + extra)
    cc = ("gcc", "-O2", "-shared", "-fPIC", "-fno-semantic-interposition", "-Wl,--build-id=sha1")
    _run(*cc, "-o", str(lib), str(src))
    with lib.open("rb") as f:
        elf = ELFFile(f)
        names = {s.name for s in elf.get_section_by_name(".symtab").iter_symbols()}  # type: ignore[union-attr]
        note = elf.get_section_by_name(".note.gnu.build-id")
        bid = str(next(iter(note.iter_notes()))["n_desc"])  # type: ignore[union-attr]
    assert {"split_fn", "split_fn.part.0", "only_fn.part.0", "static_fn"} <= names and "only_fn" not in names
    dbg = tmp_path / "libz.so.1.debug"
    _run("objcopy", "--only-keep-debug", str(lib), str(dbg))
    _run("strip", "--strip-debug", "--strip-unneeded", str(lib))
    if debug == "debuglink":  # the name and CRC-32 of the debug file, looked for under /usr/lib/debug/<dir>
        _run("objcopy", f"--add-gnu-debuglink={dbg}", str(lib))
        to = root / "usr/lib/debug" / LIB.lstrip("/")
        to = to.with_name(dbg.name)
    else:
        to = root / "usr/lib/debug/.build-id" / bid[:2] / f"{bid[2:]}.debug"
    if debug:
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dbg, to)
    with lib.open("rb") as f:  # the premise: stripped, the tails are nowhere in the library
        assert ELFFile(f).get_section_by_name(".symtab") is None
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: zlib1g\nStatus: install ok installed\nVersion: 1.2.13\nArchitecture: amd64\n"
    )
    (root / "var/lib/dpkg/info/zlib1g:amd64.list").write_text(f"/.\n{LIB}\n")
    return str(tmp_path / "proc"), bid


def _facts(
    proc: str, **kw: bool
) -> tuple[dict[str, pt.FunctionReport], dict[tuple[str, str, str], tuple[str, str]]]:
    """The reports of split_fn, only_fn and static_fn in pid 1's root, and the facts the agent would
    store."""
    fn = PurlFunction("p", PURL, ("split_fn", "only_fn", "static_fn"))
    wiring = wire([fn], [("c1", 1)], NativeConfig(), proc_root=proc, **kw)
    try:
        return {r.symbol: r for r in wiring.plan.reports}, wiring.unprobed({"c1": IMG})
    finally:
        wiring.close()


@needs_binutils
@pytest.mark.parametrize("debug", ["build_id", "debuglink"])
def test_a_stripped_library_s_tails_come_from_its_debug_file(
    tmp_path: Path, debug: str, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Seen failing before the fix: no tail, no fact; the CLI answered not_observed (exit 1)."""
    proc, bid = _stripped_root(tmp_path, debug)
    reports, facts = _facts(proc)
    assert reports["split_fn"].status == pt.RESOLVED  # probed at its .dynsym entry, as before
    assert reports["only_fn"].status == pt.NOT_IN_PACKAGE  # nothing to probe: its head is inlined
    assert reports["static_fn"].status == pt.RESOLVED and not reports["static_fn"].unprobed  # below
    assert reports["split_fn"].unprobed == [pt.UnprobedTail(LIB, "split_fn.part.0", bid)]
    assert reports["only_fn"].unprobed == [pt.UnprobedTail(LIB, "only_fn.part.0", bid)]
    installed = reports["split_fn"].packages[0]
    assert facts == {(IMG, LIB, t): (bid, installed) for t in ("split_fn.part.0", "only_fn.part.0")}
    # the facts as the agent hands them over, written as it writes them; the answer through the CLI
    tails = UnprobedTails()
    tails.current = facts
    rows = tails.deltas(node_name="node-1", now_ns=T0 + 3 * DAY, window_seconds=60)
    url = sqlite_at_head(tmp_path / "hot.db")
    start = T0 + 3 * DAY  # user() probed beside them and called: the package is seen in the image
    key = HotSymbolKey(IMG, LIB, "user", EvidenceKind.INVOKED)
    call = HotSymbolDelta(
        key, start, 5, start + S, start + S, build_id=bid, purl=installed, node_name="node-1"
    )
    with open_store(url) as s:
        s.write([call], watched())  # 40 days at EbpfDeep, gap-free
        assert not s.write_batch(Batch("node-1/agent", 1, rows)).errors
    assert {r.key.evidence for r in rows} == {EvidenceKind.UNPROBED}
    ask = ("query", "observed", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--store", url, "--json")
    if debug == "build_id":  # the real CLI, once
        code, doc = cli_json(*ask, "--function", "split_fn")
        assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc
    for fn in ("only_fn", f"{bid}:split_fn+0x0"):
        code, doc = cli(url, *ask[:-3], "--function", fn)
        assert (code, doc["answer"]) == (3, "unknown"), (fn, doc)


@needs_binutils
def test_no_debug_file_a_wrong_one_or_debug_files_off_give_no_tail(tmp_path: Path) -> None:
    """What is not the library's debug file is never read for its tails (a candidate of another
    build-id, a debuglink whose CRC-32 differs), and ``symbols.debugFiles: false`` reads none."""
    proc, bid = _stripped_root(tmp_path / "a", "build_id")
    assert _facts(proc)[1]  # the premise: found
    assert _facts(proc, debug_files=False)[1] == {}
    # another build's debug file at this build-id's path: refused (its build-id differs)
    other, other_bid = _stripped_root(tmp_path / "b", "build_id", "int other_build;\n")
    mine = Path(proc, "1/root/usr/lib/debug/.build-id", bid[:2], f"{bid[2:]}.debug")
    theirs = Path(other, "1/root/usr/lib/debug/.build-id", other_bid[:2], f"{other_bid[2:]}.debug")
    assert bid != other_bid
    mine.write_bytes(theirs.read_bytes())
    assert _facts(proc)[1] == {}
    # a debuglink whose file was changed after the link was made: its CRC-32 differs
    proc, _ = _stripped_root(tmp_path / "c", "debuglink")
    linked = Path(proc, "1/root/usr/lib/debug/usr/lib/x86_64-linux-gnu/libz.so.1.debug")
    linked.write_bytes(linked.read_bytes() + b"\0")
    assert _facts(proc)[1] == {}
    # no debug file at all: nothing is known of its tails (docs/native-probes.md, Known limits)
    proc, bid = _stripped_root(tmp_path / "d", "")
    reports, facts = _facts(proc)
    assert facts == {} and reports["split_fn"].status == pt.RESOLVED
    # hostile places: a FIFO (never opened to block the load) and a symlink out of the container's
    # root (followed inside it) at the build-id path
    at = Path(proc, "1/root/usr/lib/debug/.build-id", bid[:2], f"{bid[2:]}.debug")
    at.parent.mkdir(parents=True)
    os.mkfifo(at)
    assert _facts(proc)[1] == {}
    at.unlink()
    outside = tmp_path / "d" / "libz.so.1.debug"  # this very build's debug file, outside the root
    at.symlink_to(outside)  # an absolute path: looked up inside the root, where it is not
    assert outside.is_file()
    assert _facts(proc)[1] == {}


@needs_binutils
def test_a_debug_file_s_table_is_read_once_for_every_container_and_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the debug file's stat identity vouches for its content (canonical/buildidclaims.py),
    what it holds is remembered by its SHA-256: the next resolution (another container of the
    image, the next load of the probes) reads the library's own tables only."""
    proc, _ = _stripped_root(tmp_path, "build_id")
    finder = symdebug._finder(symdebug.DEBUG_ROOTS, DEFAULT_LIMITS)  # the one purl_debug searches with
    monkeypatch.setattr(finder, "clock", lambda: time.time_ns() + 3600 * S)  # an old file
    read: list[int] = []
    real = pt.function_offsets

    def counted(fd: int, *a: Any, **k: Any) -> Any:
        read.append(fd)
        return real(fd, *a, **k)

    monkeypatch.setattr(pt, "function_offsets", counted)
    first = _facts(proc)[1]
    assert first and len(read) == 2  # the library, then its debug file
    assert _facts(proc)[1] == first and len(read) == 3  # the library only


def test_the_switch_hands_symbols_debug_files_to_the_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's ``symbols.debugFiles`` reaches the PURL resolution through the source switch
    (a configure of the probes, wire as it runs; BCC's detection stood in for)."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch import SourceSwitch
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.contracts.posture import Posture
    from stellaops_runtime.native import detect
    from stellaops_runtime.native import purl_wiring as pw
    from stellaops_runtime.sources.queue import EventQueue

    rep = detect.Report(kernel="6.1", machine="x86_64", posture=Posture.PASSIVE)
    monkeypatch.setattr(detect, "detect", lambda **kw: rep)
    seen: list[object] = []
    real = pw.wire
    monkeypatch.setattr(pw, "wire", lambda *a, **k: seen.append(k.get("debug_files", True)) or real(*a, **k))
    for value in (False, True):
        cfg = parse_config(
            {"symbols": {"enabled": False, "debugFiles": value}, "attribution": {"enabled": False}}
        )

        async def configure(cfg: Any = cfg) -> None:
            async def in_thread(fn: Any, *args: Any) -> Any:
                return fn(*args)

            sw = SourceSwitch(
                cfg, queue=EventQueue(10), pipeline=Pipeline(cfg, node_name="n"), in_pipeline=in_thread
            )
            assert await sw._make_bcc()
            sw._probe_config = lambda: NativeConfig()  # type: ignore[method-assign]
            sw._purl_functions = [PurlFunction("p", PURL, ("split_fn",))]
            await sw._configure()

        asyncio.run(configure())
    assert seen == [False, True]


@needs_binutils
@pytest.mark.parametrize("debug", ["build_id", "debuglink"])
def test_a_function_only_the_debug_file_names_is_probed(tmp_path: Path, debug: str) -> None:
    """A static function of a stripped library (``static_fn``, in no ``.dynsym``) is probed by name,
    and the loader's own lookup finds its address in the debug file (native/symaddr.py: one under
    the container's root only where the library's own .eh_frame_hdr shows a function start). Seen
    failing before the fix: not_in_package, nothing probed."""
    proc, _bid = _stripped_root(tmp_path, debug)
    with (tmp_path / "libz.so.1.debug").open("rb") as f:  # where the unstripped build has it
        symtab = ELFFile(f).get_section_by_name(".symtab")
        (addr,) = [s["st_value"] for s in symtab.iter_symbols() if s.name == "static_fn"]  # type: ignore[union-attr]
    plan = pt.PurlProbePlan(proc_root=proc)
    try:
        (r,) = plan.add("c1", 1, PURL, ["static_fn"])
        assert r.status == pt.RESOLVED, r
        (t,) = plan.targets()
        assert (t.symbol, t.module) == ("static_fn", LIB)
        assert find_address(t.binary, t.symbol, where=where_of(t.binary, t.root, t.module)) == addr
        assert r.to_dict()["files"] == [{"path": LIB, "offset": addr}]  # text mapped at its file offset
    finally:
        plan.close()
    off = pt.PurlProbePlan(proc_root=proc, debug_files=False)  # symbols.debugFiles: false
    try:
        (r,) = off.add("c1", 1, PURL, ["static_fn"])
        assert r.status == pt.NOT_IN_PACKAGE and not off.targets()
    finally:
        off.close()


def _symbol_value(path: Path, name: str, value: int | None = None) -> int:
    """The address of function ``name`` in the ELF file's ``.symtab`` (set to ``value`` if given)."""
    with path.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        base, size = symtab["sh_offset"], symtab["sh_entsize"]  # type: ignore[index]
        ((i, old),) = [(i, s["st_value"]) for i, s in enumerate(symtab.iter_symbols()) if s.name == name]  # type: ignore[union-attr]
    if value is not None:
        data = bytearray(path.read_bytes())
        data[base + i * size + 8 : base + i * size + 16] = value.to_bytes(8, "little")  # st_value, ELF64
        path.write_bytes(bytes(data))
    return int(old)


@needs_binutils
def test_a_debug_file_naming_a_clone_at_the_function_s_own_start_adds_no_second_probe(tmp_path: Path) -> None:
    """A debug file under the container's root is that image's word: one that names an entry clone
    (``split_fn.isra.0``) at the very start of the exported ``split_fn`` (and ``split_fn`` itself
    elsewhere) put two uprobes on one instruction, and every call was counted twice (as split_fn and
    as its clone, which the answers add up). A clone at an offset already probed for its function is
    not probed again, as in the file's own tables (``function_offsets``). Seen failing before the
    fix: two targets at one address."""
    proc, bid = _stripped_root(tmp_path, "build_id")
    dbg = Path(proc, "1/root/usr/lib/debug/.build-id", bid[:2], f"{bid[2:]}.debug")
    real = _symbol_value(dbg, "split_fn")
    _symbol_value(dbg, "split_fn.part.0", real)  # renamed below: an entry clone at split_fn's start
    _symbol_value(dbg, "split_fn", _symbol_value(dbg, "user"))
    dbg.write_bytes(dbg.read_bytes().replace(b"split_fn.part.0\0", b"split_fn.isra.0\0"))
    plan = pt.PurlProbePlan(proc_root=proc)
    try:
        (r,) = plan.add("c1", 1, PURL, ["split_fn"])
        addresses = {
            t.symbol: find_address(t.binary, t.symbol, where=where_of(t.binary, t.root, t.module))
            for t in plan.targets()
        }
        assert addresses == {"split_fn": real}, addresses  # one probe: each call counted once
        assert r.to_dict()["files"] == [{"path": LIB, "offset": real}]
    finally:
        plan.close()


@needs_binutils
def test_a_refused_or_unreadable_debug_file_is_named_in_the_report(tmp_path: Path) -> None:
    """A function only a debug file names (``static_fn``) whose debug file was refused (a FIFO,
    another build's file) or cannot be read (a damaged symbol table) is ``not_in_package``, and the
    report says why, as a probe's failed reason does (native/symdebug.py): before, it said only that
    no file of the package defines it, as if no debug file were there. Seen failing before the fix."""
    proc, bid = _stripped_root(tmp_path / "a", "build_id")
    at = Path(proc, "1/root/usr/lib/debug/.build-id", bid[:2], f"{bid[2:]}.debug")
    good = at.read_bytes()

    def detail() -> str:
        plan = pt.PurlProbePlan(proc_root=proc)
        try:
            (r,) = plan.add("c1", 1, PURL, ["static_fn"])
            assert r.status == pt.NOT_IN_PACKAGE and not plan.targets(), r
            return r.detail
        finally:
            plan.close()

    at.unlink()
    os.mkfifo(at)
    assert re.search(r"libz.so.1: a debug file of it was refused \([^)]*not_regular", detail())
    at.unlink()
    at.write_bytes(good.replace(bytes.fromhex(bid), bytes(len(bid) // 2)))  # another build-id
    assert re.search(r"refused \([^)]*build_id_mismatch", detail())
    with at.open("r+b") as f:  # the right file whose .symtab's link points at no section
        f.write(good)
        f.seek(0)
        elf = ELFFile(f)
        (i,) = [i for i, s in enumerate(elf.iter_sections()) if s.name == ".symtab"]
        f.seek(elf["e_shoff"] + i * elf["e_shentsize"] + 40)
        f.write((9999).to_bytes(4, "little"))  # sh_link
    assert f"its debug file {at} (build_id) cannot be read: .symtab" in detail()
