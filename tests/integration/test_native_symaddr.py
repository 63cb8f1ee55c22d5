"""A uprobe's address is found by native/symaddr.py, so BCC never reads a symbol table we probe.

libbcc divides a symbol table's size by its entry size: a ``.symtab`` with
``sh_entsize`` 0 is SIGFPE, the whole agent dead. A check before BCC's read
(native/elfguard.py, session 35) could be raced by a container rewriting its
binary in place between the check and the read. Now the address is found in
Python and BCC is given it (``attach_uprobe(addr=...)``): libbcc then reads
only the ELF and program headers. Checked here: the address equals what BCC
finds by name on real binaries (libc IFUNCs and versioned symbols, a symbol
only in libc's debug file, python3, PIE, non-PIE, stripped); libbcc's
address path survives hostile program headers (in a subprocess); and
``probes run`` survives a file rewritten in place at exactly the moment
after the address was found (a hook, not timing luck).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import lookup, symaddr
from stellaops_runtime.native.bccimport import load_bcc
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address
from tests.integration.test_native_replaced_binary import SYMBOL, build, probes_of, report  # noqa: F401
from tests.native_app import ask, installed, replace, serve

pytestmark = pytest.mark.bpf
CACHE = str(Path(".cache/native").resolve())
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
PROGRAM = r"""
int h6_data = 7;
__attribute__((noinline)) int h6_fn(int x) { return x + h6_data; }
static __attribute__((noinline)) int h6_static(int x) { return x * 3; }
__attribute__((noinline, section(".data"))) int h6_in_data(int x) { return x - 1; }
int main(int c, char **v) {
    long s = 0;
    for (int i = 0; i < 3; i++) s += h6_fn(i) + h6_static(c) + (v == 0 ? h6_in_data(i) : 0);
    return s == -1;
}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not shutil.which("gcc") or not shutil.which("strip"):
        pytest.skip("gcc or strip is not installed")
    d = tmp_path_factory.mktemp("symaddr")
    (d / "p.c").write_text(PROGRAM)
    out = {"pie": d / "pie", "nopie": d / "nopie", "dyn": d / "dyn"}
    subprocess.run(["gcc", "-O1", "-o", str(out["pie"]), str(d / "p.c")], check=True)
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", str(out["nopie"]), str(d / "p.c")], check=True)
    subprocess.run(["gcc", "-O1", "-rdynamic", "-o", str(out["dyn"]), str(d / "p.c")], check=True)
    out["stripped"] = d / "stripped"  # .dynsym only
    subprocess.run(["strip", "-o", str(out["stripped"]), str(out["dyn"])], check=True)
    return out


@pytest.fixture(scope="module")
def bpf_class() -> object:
    bcc, why = load_bcc()
    if bcc is None:
        pytest.skip(why)
    return bcc.BPF


def _bcc_offset(bpf: object, path: str, sym: str = "", addr: int | None = None) -> int | None:
    try:
        return bpf._check_path_symbol(path.encode(), sym.encode(), addr, -1)[1]  # type: ignore[attr-defined]
    except Exception:  # BCC: "could not determine address of symbol"
        return None


def test_the_address_is_the_one_bcc_finds_by_name(bpf_class: object, built: dict[str, Path]) -> None:
    python = os.path.realpath(sys.executable if "python3" in sys.executable else "/usr/bin/python3")
    cases = [(LIBC, s) for s in ("memcpy", "strlen", "malloc", "getpid", "_int_malloc", "nosuch_h6")]
    cases += [(python, s) for s in ("PyEval_EvalCode", "_PyEval_EvalFrameDefault", "main")]
    cases += [(str(built[k]), s) for k in ("pie", "nopie", "stripped") for s in ("h6_fn", "h6_static")]
    checked = 0
    for path, sym in cases:
        if not os.path.isfile(path):
            continue
        by_name = _bcc_offset(bpf_class, path, sym)
        try:
            mine = find_address(path, sym)
        except SymbolNotFound:
            assert by_name is None, (path, sym, hex(by_name))
            continue
        assert by_name is not None, (path, sym, hex(mine))
        assert _bcc_offset(bpf_class, path, addr=mine) == by_name, (path, sym)
        listed = bpf_class.get_user_addresses(path.encode(), f"^{sym}$".encode())  # type: ignore[attr-defined]
        assert mine in listed, (path, sym)
        checked += 1
    assert checked >= 8
    with pytest.raises(SymbolNotFound):  # only in .symtab, which strip removed
        find_address(str(built["stripped"]), "h6_static")
    # A function in a writable, non-executable section: BCC refuses it ("could not determine
    # address"), here with the reason.
    assert _bcc_offset(bpf_class, str(built["pie"]), "h6_in_data") is None
    with pytest.raises(ElfError, match=r"its symbol h6_in_data is at 0x[0-9a-f]+, in no executable segment"):
        find_address(str(built["pie"]), "h6_in_data")
    # A data object: BCC by name finds it, then refuses it (not in an executable segment); only
    # functions count here.
    assert _bcc_offset(bpf_class, str(built["pie"]), "h6_data") is None
    with pytest.raises(SymbolNotFound):
        find_address(str(built["pie"]), "h6_data")


def test_symbol_tables_over_the_budget_are_a_reason(
    built: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert symaddr._LIMITS.parse_seconds >= 60  # not the symbolizer's 2 s: a busy node is slow, not hostile
    assert (symaddr._LIMITS.max_parse_bytes, symaddr._LIMITS.max_symbols) == (64 << 20, 500_000)
    monkeypatch.setattr(symaddr, "_LIMITS", Limits(max_parse_bytes=64))
    with pytest.raises(ElfError) as e:
        find_address(str(built["pie"]), "h6_fn")
    assert e.value.reason == "budget_exceeded", e.value


def test_a_symbol_only_in_a_debuglink_file_is_found_where_bcc_finds_it(
    bpf_class: object, built: dict[str, Path], tmp_path: Path
) -> None:
    """BCC by name follows ``.gnu_debuglink`` (next to the file); so does this lookup now, with the
    canonicalizer's checks (tests/integration/test_native_symaddr_debug.py): the same address.
    Without the debug file the reason says where the agent would read it (its GNU build-id path)."""
    if not shutil.which("objcopy"):
        pytest.skip("objcopy is not installed")
    (tmp_path / "p.c").write_text(PROGRAM)
    full, stripped = tmp_path / "full", tmp_path / "stripped"
    subprocess.run(["gcc", "-O1", "-g", "-o", str(full), str(tmp_path / "p.c")], check=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(full), str(tmp_path / "p.debug")], check=True)
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(full)], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={tmp_path / 'p.debug'}", str(stripped)], check=True)
    by_name = _bcc_offset(bpf_class, str(stripped), "h6_fn")
    assert by_name is not None  # BCC found it through the debuglink
    mine = find_address(str(stripped), "h6_fn", debug_roots=())
    assert _bcc_offset(bpf_class, str(stripped), addr=mine) == by_name
    (tmp_path / "p.debug").unlink()
    with pytest.raises(SymbolNotFound) as e:
        find_address(str(stripped), "h6_fn", debug_roots=())
    m = re.search(
        r"no debug file of it was found \(install it for the agent as "
        r"(/usr/lib/debug/\.build-id/[0-9a-f]{2}/[0-9a-f]+\.debug)\)",
        e.value.hint,
    )
    assert m is not None, e.value.hint
    debug_root = tmp_path / "root"
    (debug_root / m.group(1).lstrip("/")).parent.mkdir(parents=True)
    shutil.copy(full, debug_root / m.group(1).lstrip("/"))  # the unstripped file serves as its debug file
    assert find_address(str(stripped), "h6_fn", debug_roots=(str(debug_root),)) == mine
    with pytest.raises(SymbolNotFound) as e:  # its debug file read, the name not there: no advice
        find_address(str(stripped), "nosuch_h6", debug_roots=(str(debug_root),))
    assert e.value.hint == "", e.value.hint
    with pytest.raises(SymbolNotFound) as e:  # a file with its own .symtab: no hint
        find_address(str(built["pie"]), "nosuch_h6")
    assert e.value.hint == ""


def test_a_damaged_or_odd_file_is_an_error_never_a_hang(built: dict[str, Path], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # opened without blocking, then refused
    with pytest.raises(ElfError, match="not a regular file"):
        find_address(str(tmp_path / "fifo"), "h6_fn")
    with pytest.raises(FileNotFoundError):
        find_address(str(tmp_path / "missing"), "h6_fn")
    bad = bytearray(built["pie"].read_bytes())  # .symtab entry size 0: libbcc's division by zero
    with open(built["pie"], "rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".symtab")
        struct.pack_into("<Q", bad, elf["e_shoff"] + index * elf["e_shentsize"] + 56, 0)
    (tmp_path / "zero").write_bytes(bad)
    with pytest.raises(ElfError, match="symbol entry size 0, expected 24"):
        find_address(str(tmp_path / "zero"), "h6_fn")
    for name in ("h6_fn\x00", "h6_fn\x00x", "", "h6_fn\ud800", "h6_fn\udcff"):  # never the address of h6_fn
        with pytest.raises(SymbolNotFound):
            find_address(str(built["pie"]), name)
    (tmp_path / "text").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(Exception, match="not an ELF"):
        find_address(str(tmp_path / "text"), "h6_fn")


def _variants(src: bytes) -> dict[str, bytes]:
    """Copies of a 64-bit ELF with hostile ELF or program headers (what libbcc reads given an address)."""
    phoff, = struct.unpack_from("<Q", src, 0x20)  # fmt: skip
    out: dict[str, bytes] = {}

    def put(name: str, at: int, fmt: str, value: int, data: bytes = src) -> None:
        b = bytearray(data)
        struct.pack_into(fmt, b, at, value)
        out[name] = bytes(b)

    put("phentsize 0", 0x36, "<H", 0)
    put("phentsize 1", 0x36, "<H", 1)
    put("phnum huge", 0x38, "<H", 0xFFFE)
    put("phnum extended", 0x38, "<H", 0xFFFF)
    put("phoff past the end", 0x20, "<Q", len(src) + 4096)
    put("phoff huge", 0x20, "<Q", 2**63 - 8)
    put("shoff huge", 0x28, "<Q", 2**63 - 8)
    put("shnum 0 shoff garbage", 0x3C, "<H", 0, out["shoff huge"])
    put("segment offset huge", phoff + 8, "<Q", 2**63)
    put("segment memsz huge", phoff + 40, "<Q", 2**64 - 1)
    out["cut in the program headers"] = src[: phoff + 20]
    out["cut after the ELF header"] = src[:64]
    out["cut in the ELF header"] = src[:30]
    return out


def test_libbcc_given_an_address_survives_hostile_headers(
    bpf_class: object, built: dict[str, Path], tmp_path: Path
) -> None:
    """Through ctypes, in a subprocess (a crash is its exit status, not ours)."""
    src = built["pie"].read_bytes()
    paths = [("intact", str(built["pie"]))]
    for i, (name, data) in enumerate(_variants(src).items()):
        p = tmp_path / f"v{i}"
        p.write_bytes(data)
        paths.append((name, str(p)))
    script = textwrap.dedent(
        """
        import ctypes as ct, json, sys
        from stellaops_runtime.native.bccimport import load_bcc
        bcc, _ = load_bcc()
        lib = bcc.lib
        out = {}
        for name, path in json.loads(sys.argv[1]):
            for addr in (0x1129, 0x1, 0xFFFFFFFFFFFFFFF0):
                sym = bcc.bcc_symbol()
                rc = lib.bcc_resolve_symname(path.encode(), b"", addr, 0,
                    ct.cast(None, ct.POINTER(bcc.bcc_symbol_option)), ct.byref(sym))
                out.setdefault(name, []).append(rc)
        print(json.dumps(out))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script, orjson.dumps(paths).decode()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    got = orjson.loads(r.stdout)
    assert set(got) == {n for n, _ in paths}
    assert got["intact"][0] == 0  # the control: an address in the text segment resolves
    # A file libelf cannot read as ELF gets no translation: the address is passed on as the offset,
    # for the kernel to refuse or probe (a file changed since the lookup is native/follow.py's gap).
    assert got["phoff past the end"] == [-1, -1, -1]


HOOK = textwrap.dedent(
    """
    import os, struct, sys
    from stellaops_runtime.cli.main import main
    from stellaops_runtime.native.probes import uprobes
    victim = sys.argv[1]

    def damage():  # in place: the same inode, its .symtab entry size 0 (libbcc divides by it)
        from elftools.elf.elffile import ELFFile
        with open(victim, "rb") as f:
            elf = ELFFile(f)
            index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".symtab")
            at = elf["e_shoff"] + index * elf["e_shentsize"] + 56
        with open(victim, "r+b") as f:
            f.seek(at)
            f.write(struct.pack("<Q", 0))

    # The last look at the file before BCC: the address lookup now, the guard before it.
    name = "find_address" if hasattr(uprobes, "find_address") else "bcc_hazard"
    looked = getattr(uprobes, name)

    def look_then_rewrite(path, *a, **k):
        r = looked(path, *a, **k)
        if os.path.samefile(path, victim):  # the path given is a descriptor held: /proc/self/fd/N
            damage()
        return r

    setattr(uprobes, name, look_then_rewrite)
    sys.exit(main(sys.argv[2:]))
    """
)


def test_a_file_rewritten_right_after_the_look_does_not_kill_probes_run(
    built: dict[str, Path], tmp_path: Path
) -> None:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=CACHE)
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native uprobes cannot run here: {rep.missing}")
    bad, good = tmp_path / "app", tmp_path / "good"
    shutil.copy2(built["pie"], bad)
    shutil.copy2(built["pie"], good)
    args = ["probes", "run", "--json", "--no-exec", "--seconds", "1"]
    args += ["--uprobe", f"{bad}:h6_fn", "--uprobe", f"{good}:h6_fn"]
    r = subprocess.run(
        [sys.executable, "-c", HOOK, str(bad), *args],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, STELLA_CACHE_DIR=CACHE),
    )  # fmt: skip
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    s = orjson.loads(r.stdout.strip().splitlines()[-1])["summary"]
    assert f"uprobe {good}:h6_fn" in s["attached"], s
    failed = [f["probe"] for f in s["failed"]]
    assert f"uprobe {bad}:h6_fn" in s["attached"] or f"{bad}:h6_fn" in failed, s


async def test_a_followed_file_rewritten_right_after_the_look_leaves_the_source_running(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    probes_of: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """The same race for a file put at a target's path while the probes run (native/follow_attach.py):
    the real source in this process, the new file's symbol table zeroed right after its lookup."""
    built, path = installed(tmp_path, build)
    new = build(built, "v2")
    hooked: list[str] = []
    looked = lookup.find_address  # follow_attach's lookup (native/lookup.py)

    def look_then_rewrite(p: str, *a: Any, **k: Any) -> Any:
        r = looked(p, *a, **k)
        _zero_symtab(p)  # in place, through the descriptor the source holds: the file it attaches to
        hooked.append(p)
        return r

    monkeypatch.setattr(lookup, "find_address", look_then_rewrite)
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
    p = await probes_of(cfg)
    old = await asyncio.to_thread(serve, path)
    try:
        replace(path, new)
        await p.until(
            lambda: bool(hooked) and (p.src.stats.followed or p.src.stats.failed), "the new file looked at"
        )
        await asyncio.to_thread(ask, old, 3)  # the old file's probe keeps counting
        await p.until(lambda: p.calls[(old.pid, str(path))] == 3, "the old file's calls", timeout=60)
    finally:
        if old.stdin is not None:
            old.stdin.close()
        old.wait(10)
    assert p.src.stats.connected, p.src.stats.last_error


def _zero_symtab(path: str) -> None:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".symtab")
        at = elf["e_shoff"] + index * elf["e_shentsize"] + 56
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(struct.pack("<Q", 0))
