"""Hostile container files (issue 11): root escapes, hangs, memory bombs, cache poisoning.

Each case is a file crafted in the test inside a container root built in
tmp_path, read through the library (Symbolizer, FrameCanonicalizer,
Attributor, RootFS, rootopen) and through the CLI as a subprocess
(``symbolize --file PATH --root DIR``, ``attribute --root DIR PATH``).
Root-confinement cases run twice: with the kernel's openat2 and with the
user-space walk forced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.canonical import rootopen
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame
from tests.integration import test_hostile_elf_builder as eb

ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = 5.0


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env,
    )
    assert time.monotonic() - t0 < CASE_SECONDS + 2, argv  # + interpreter start-up
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture(params=["openat2", "userspace"])
def walk(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "openat2" and not rootopen.kernel_resolves_in_root():
        pytest.skip("this kernel has no openat2(RESOLVE_IN_ROOT)")
    rootopen.FORCE_USERSPACE = request.param == "userspace"
    try:
        yield request.param
    finally:
        rootopen.FORCE_USERSPACE = False


def escape_root(tmp_path: Path) -> tuple[Path, Path]:
    """(container root, an ELF outside it). Links inside the root all aim at the outside ELF."""
    outside = tmp_path / "host" / "evil.so"
    eb.write(outside, eb.Elf(build_id=b"\xee" * 20, functions=["outside_function"]))
    root = tmp_path / "rootfs"
    lib = root / "usr/lib"
    lib.mkdir(parents=True)
    (lib / "shadow.so").symlink_to("/etc/shadow")
    (lib / "abs.so").symlink_to(str(outside))
    (lib / "rel.so").symlink_to("../../" * 12 + str(outside).lstrip("/"))
    (lib / "dirlink").symlink_to(str(outside.parent))
    (lib / "zero.so").symlink_to("/dev/zero")
    (lib / "urandom.so").symlink_to("/dev/urandom")
    (lib / "fd.so").symlink_to("/proc/self/root" + str(outside))
    return root, outside


ESCAPES = [
    "/usr/lib/shadow.so",
    "/usr/lib/abs.so",
    "/usr/lib/rel.so",
    "/usr/lib/dirlink/evil.so",
    "/usr/lib/zero.so",
    "/usr/lib/urandom.so",
    "/usr/lib/fd.so",
]


def test_symlinks_never_leave_the_root(tmp_path: Path, walk: str) -> None:
    root, outside = escape_root(tmp_path)
    sym = Symbolizer()
    plain = "/.." * 8 + str(outside)
    for path in [*ESCAPES, plain]:
        t0 = time.monotonic()
        r = sym.resolve_file(path, 0x100, root=str(root))
        assert time.monotonic() - t0 < CASE_SECONDS
        assert r.error == "unreadable_file", (path, r)
        assert "outside_function" not in r.symbol and not r.build_id, path
    # The same links, with the files they name *inside* the root: those are what is read.
    inside = root / str(outside).lstrip("/")
    offsets = eb.write(inside, eb.Elf(build_id=b"\x22" * 20, functions=["inside_function"]))
    for path in ["/usr/lib/abs.so", "/usr/lib/rel.so", "/usr/lib/dirlink/evil.so", plain]:
        r = Symbolizer().resolve_file(path, offsets["inside_function"], root=str(root))
        assert (r.symbol, r.build_id) == ("inside_function", "22" * 20), path


def test_symbolize_cli_root_escape(tmp_path: Path) -> None:
    root, outside = escape_root(tmp_path)
    for path in ["/usr/lib/shadow.so", "/usr/lib/rel.so", "/.." * 8 + str(outside)]:
        p = cli("symbolize", "--file", path, "--root", str(root), "0x100")
        assert p.returncode == 2, (path, p.stdout, p.stderr)
        out = json.loads(p.stdout)
        assert out["error"] == "unreadable_file" and out["build_id"] == "", (path, out)


def test_rootopen_refuses_non_regular_files(tmp_path: Path, walk: str) -> None:
    root = tmp_path / "r"
    (root / "dev").mkdir(parents=True)
    os.mkfifo(root / "pipe.so")
    (root / "link-to-pipe.so").symlink_to("/pipe.so")
    if not eb.make_char_device(root / "dev/zero"):
        pytest.skip("mknod needs root")
    (root / "zero.so").symlink_to("/dev/zero")
    for path in ["/pipe.so", "/link-to-pipe.so", "/dev/zero", "/zero.so", "/dev"]:
        t0 = time.monotonic()
        with pytest.raises(rootopen.NotRegularFile):
            rootopen.open_in_root(str(root), path)
        assert time.monotonic() - t0 < 10, path  # a FIFO opened for reading would block for good
    with pytest.raises(rootopen.NotRegularFile):
        rootopen.open_regular(str(root / "pipe.so"))  # /proc/<pid>/map_files paths are checked the same way


def test_fifo_and_devices_do_not_hang_symbolize_or_attribute(tmp_path: Path) -> None:
    root = tmp_path / "r"
    lib = root / "usr/lib"
    lib.mkdir(parents=True)
    os.mkfifo(lib / "libfifo.so")
    has_dev = eb.make_char_device(lib / "libchar.so")
    sym = Symbolizer()
    r = sym.resolve_file("/usr/lib/libfifo.so", 0, root=str(root))
    assert r.error == "not_regular"
    paths = ["/usr/lib/libfifo.so"] + (["/usr/lib/libchar.so"] if has_dev else [])
    for path in paths:
        p = cli("symbolize", "--file", path, "--root", str(root), "0")
        assert p.returncode == 2 and json.loads(p.stdout)["error"] == "not_regular", p.stdout
    p = cli("attribute", "--root", str(root), "--json", *paths)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert [json.loads(line)["purl"] for line in p.stdout.splitlines()] == [None] * len(paths)
    att = Attributor()
    a = att.attribute_file(image_digest="sha256:fifo", root=str(root), path="/usr/lib/libfifo.so")
    assert a.purl is None and att.stats.errors.get("not_regular") == 1
    fs = RootFS(str(root))
    with pytest.raises(OSError):
        fs.open("/usr/lib/libfifo.so")


def test_sparse_file_without_build_id_is_refused_by_size(tmp_path: Path) -> None:
    path = tmp_path / "r/usr/lib/sparse.so"
    try:
        eb.write(path, eb.Elf(build_id=None, functions=["f"], pad_to=1 << 40))
    except OSError:
        pytest.skip("this filesystem cannot hold a sparse 1 TB file")
    sym = Symbolizer()
    t0 = time.monotonic()
    r = sym.resolve_file("/usr/lib/sparse.so", 0x100, root=str(tmp_path / "r"))
    assert r.error == "budget_exceeded" and time.monotonic() - t0 < CASE_SECONDS
    # Remembered by (device, inode, size, mtime): the next event does not read it again.
    assert sym.resolve_file("/usr/lib/sparse.so", 0x100, root=str(tmp_path / "r")).error == "budget_exceeded"
    assert sym.stats()["files_refused_remembered"] == 1
    p = cli("symbolize", "--file", "/usr/lib/sparse.so", "--root", str(tmp_path / "r"), "0x100")
    assert p.returncode == 2 and "budget_exceeded" in p.stderr


def _bomb_cases(tmp_path: Path) -> dict[str, tuple[Path, int, set[str]]]:
    """name -> (file, file offset to resolve, acceptable outcomes)."""
    out: dict[str, tuple[Path, int, set[str]]] = {}
    d = tmp_path / "bombs"
    p = d / "pclntab.so"
    eb.write(p, eb.Elf(functions=[], extra=[eb.pclntab_bomb()]))
    out["gopclntab_counts"] = (p, 0x200, {"budget_exceeded"})
    p = d / "pclntab-offsets.so"
    eb.write(p, eb.Elf(functions=[], extra=[eb.pclntab_bomb(nfunc=1000, size=4096)]))
    out["gopclntab_offsets"] = (p, 0x200, {"malformed"})
    p = d / "zdebug-claim.so"
    eb.write(p, eb.Elf(functions=[], extra=[eb.zdebug_bomb(claimed=2 << 30, real=4096)]))
    out["dwarf_claimed_size"] = (p, 0x200, {"budget_exceeded"})
    p = d / "zdebug-lie.so"
    eb.write(p, eb.Elf(functions=[], extra=[eb.zdebug_bomb(claimed=4096, real=96 << 20)]))
    out["dwarf_inflates_past_claim"] = (p, 0x200, {"budget_exceeded"})
    p = d / "zdebug-assert.so"
    eb.write(p, eb.Elf(functions=[], extra=[eb.zdebug_bomb(claimed=100, real=10)]))
    out["dwarf_wrong_size_assertion"] = (p, 0x200, {"malformed"})
    p = d / "chdr.so"
    eb.write(p, eb.Elf(functions=[], extra=[eb.compressed_debug_bomb(2 << 30)]))
    out["dwarf_compressed_header"] = (p, 0x200, {"budget_exceeded"})
    p = d / "garbage-dwarf.so"
    eb.write(p, eb.Elf(functions=[], extra=eb.garbage_dwarf()))
    out["dwarf_garbage"] = (p, 0x200, {"malformed", "no_symbol"})
    p = d / "noshdr.so"
    eb.write(p, eb.Elf(functions=[], section_headers=False, pad_to=96 << 20))
    out["huge_segment_no_section_headers"] = (p, 0x200, {"budget_exceeded"})
    p = d / "hugefile.so"
    eb.write(p, eb.Elf(functions=[], section_headers=False, pad_to=2 << 30))
    out["file_over_hash_budget"] = (p, 0x200, {"budget_exceeded"})
    return out


def test_memory_bombs_are_refused_within_budget(tmp_path: Path) -> None:
    cases = _bomb_cases(tmp_path)
    sym = Symbolizer()
    for name, (path, off, outcomes) in cases.items():
        t0 = time.monotonic()
        r = sym.resolve_file(str(path), off)
        took = time.monotonic() - t0
        assert r.error in outcomes, (name, r)
        assert took < CASE_SECONDS, (name, took)
    stats = sym.stats()
    assert stats["budget_exceeded"] >= 5 and stats["malformed"] >= 2
    # A small parse budget refuses what the default one allows (the budgets are configurable).
    ok = tmp_path / "ok.so"
    offsets = eb.write(ok, eb.Elf(functions=["f"]))
    tiny = Symbolizer(limits=Limits(max_parse_bytes=16))
    assert tiny.resolve_file(str(ok), offsets["f"]).error == "budget_exceeded"
    assert (
        Symbolizer(limits=Limits(max_symbols=0)).resolve_file(str(ok), offsets["f"]).error
        == "budget_exceeded"
    )


def test_memory_bombs_through_the_cli(tmp_path: Path) -> None:
    cases = _bomb_cases(tmp_path)
    for name in ("gopclntab_counts", "dwarf_wrong_size_assertion", "huge_segment_no_section_headers"):
        path, off, outcomes = cases[name]
        p = cli("symbolize", "--file", path.name, "--root", str(path.parent), hex(off))
        out = json.loads(p.stdout)
        assert out.get("error") in outcomes, (name, out, p.stderr)
        assert p.returncode in (1, 2), name


def test_pyelftools_exceptions_stop_at_the_boundary(tmp_path: Path) -> None:
    """The AssertionError pyelftools raises on a .zdebug section of the wrong size: counted, no traceback."""
    path = tmp_path / "lines.so"
    eb.write(path, eb.Elf(functions=["f"], extra=[eb.zdebug_bomb(claimed=100, real=10)]))
    sym = Symbolizer(file_lines=True)
    r = sym.resolve_file(str(path), eb.build(eb.Elf(functions=["f"]))[1]["f"])
    assert r.symbol == "f" and r.file_line == ""
    p = cli("symbolize", "--file", str(path), "0x200")
    assert "Traceback" not in p.stderr


def _fake_proc(tmp_path: Path, roots: dict[int, Path]) -> Path:
    proc = tmp_path / "proc"
    for pid, root in roots.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "root").symlink_to(root)
        (proc / str(pid) / "maps").write_text("")
    return proc


def test_a_claimed_build_id_never_names_another_containers_functions(tmp_path: Path) -> None:
    bid = b"\x77" * 20
    victim, attacker = tmp_path / "victim", tmp_path / "attacker"
    voff = eb.write(victim / "usr/lib/libv.so", eb.Elf(build_id=bid, functions=["victim_function"]))
    aoff = eb.write(attacker / "usr/lib/libv.so", eb.Elf(build_id=bid, functions=["attacker_function"]))
    assert list(voff.values()) == list(aoff.values())
    proc = _fake_proc(tmp_path, {100: attacker, 200: victim})
    fc = FrameCanonicalizer(proc_root=str(proc))
    hexbid = bid.hex()

    def frame(pid: int, exec_id: str) -> StackFrame:
        f = StackFrame(module="/usr/lib/libv.so", offset=voff["victim_function"])
        info = ProcessInfo(exec_id=exec_id, pid=pid)
        fc.canonicalize(RuntimeCallEvent(EventKind.LOADER, 0, "", info, module=f.module, build_id=hexbid))
        fc.canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "", info, user_stack=[f]))
        return f

    assert frame(100, "a1").symbol == "attacker_function"  # the attacker's own file, first
    v = frame(200, "v1")
    assert (v.symbol, v.build_id) == ("victim_function", hexbid)
    assert frame(100, "a2").symbol == "attacker_function"
    assert frame(200, "v2").symbol == "victim_function"
    # Same content in another container: shared, parsed once.
    eb.write(tmp_path / "twin/usr/lib/libv.so", eb.Elf(build_id=bid, functions=["victim_function"]))
    proc2 = _fake_proc(tmp_path / "p2", {300: tmp_path / "twin"})
    sym = fc.symbolizer
    b1 = sym.binary("/usr/lib/libv.so", root=str(victim))
    b2 = sym.binary("/usr/lib/libv.so", root=str(proc2 / "300" / "root"))
    assert b1 is b2 and b1.identity != sym.binary("/usr/lib/libv.so", root=str(attacker)).identity
    assert sym.stats()["binaries_loaded"] == 2


def test_canonicalizer_remembers_refused_files(tmp_path: Path) -> None:
    root = tmp_path / "r"
    eb.write(root / "usr/lib/bomb.so", eb.Elf(functions=[], extra=[eb.pclntab_bomb()]))
    os.mkfifo(root / "usr/lib/fifo.so")
    proc = _fake_proc(tmp_path, {100: root})
    fc = FrameCanonicalizer(proc_root=str(proc))
    info = ProcessInfo(exec_id="x", pid=100)
    t0 = time.monotonic()
    for _ in range(50):
        frames = [StackFrame(module="/usr/lib/bomb.so", offset=0x200), StackFrame(module="/usr/lib/fifo.so")]
        fc.canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "", info, user_stack=frames))
        assert [f.source for f in frames] == ["none", "none"]
    assert time.monotonic() - t0 < CASE_SECONDS
    stats = fc.stats
    assert stats["budget_exceeded"] == 50 and stats["not_regular"] == 50
    assert stats["symbolizer_binaries_loaded"] <= 1


def test_attribute_root_escape_and_bombs(tmp_path: Path, walk: str) -> None:
    root, _ = escape_root(tmp_path)
    eb.write(root / "usr/bin/bomb", eb.Elf(functions=[], extra=[eb.pclntab_bomb()]))
    eb.write(root / "usr/bin/huge", eb.Elf(functions=[], section_headers=False, pad_to=2 << 30))
    att = Attributor()
    for path in ["/usr/bin/bomb", "/usr/bin/huge"]:
        t0 = time.monotonic()
        a = att.attribute_file(image_digest="sha256:esc", root=str(root), path=path)
        assert a.purl is None and time.monotonic() - t0 < CASE_SECONDS, path
    for path in ESCAPES:
        a = att.attribute_file(image_digest="sha256:esc", root=str(root), path=path)
        assert a.purl is None, path
    fs = RootFS(str(root))
    with pytest.raises(OSError):
        fs.read_bytes("/usr/lib/abs.so", limit=1 << 20, resolved=True)  # raw, unresolved: still confined
    p = cli("attribute", "--root", str(root), "--json", "/usr/lib/abs.so", "/usr/lib/dirlink/evil.so")
    assert p.returncode in (1, 2)
    for line in p.stdout.splitlines():
        assert json.loads(line)["purl"] is None
