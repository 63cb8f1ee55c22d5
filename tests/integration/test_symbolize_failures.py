"""Failure outcomes of symbolization: each is a clear, counted result, never an exception.

Real processes and real files: a pid that does not exist, a process that has
exited (a zombie, and one reaped between its events and their
canonicalization), a deleted executable, a truncated ELF, a non-ELF file,
and the CLI's exit codes for them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame
from tests.native.build import Programs, build_programs, running

LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Programs:
    return build_programs(tmp_path_factory.mktemp("native"))


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "symbolize", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def unused_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


def test_pid_that_does_not_exist() -> None:
    sym = Symbolizer()
    pid = unused_pid()
    r = sym.resolve_pid(pid, 0x401000)
    assert (r.error, r.source, r.symbol) == ("no_such_process", "none", "")
    assert sym.stats()["no_such_process"] == 1
    p = cli("--pid", str(pid), "0x401000")
    assert p.returncode == 2 and "no_such_process" in p.stderr
    assert '"error": "no_such_process"' in p.stdout


def test_exited_process_zombie(programs: Programs) -> None:
    """Exited but not yet reaped: /proc/<pid> is there, its maps are empty."""
    path = programs.get("c_nodbg")
    proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    break
            time.sleep(0.01)
        sym = Symbolizer()
        r = sym.resolve_pid(proc.pid, 0x1000)
        assert r.error == "process_exited" and r.source == "none"
        assert sym.stats()["process_exited"] == 1
    finally:
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()


def test_process_gone_before_its_frames_are_canonicalized(programs: Programs) -> None:
    """Loader build-id known, process reaped before the kprobe event is processed: counted, hint kept."""
    path = programs.get("c_nodbg")
    with running(path) as p:
        pid = p.pid
        add = p.address("stella_add")
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    # The file offset of stella_add, as Tetragon would have computed it while the process lived.
    for line in maps:
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= add < hi:
            file_offset = add - lo + int(parts[2], 16)
            break
    bid = Symbolizer().binary(str(path)).build_id
    fc = FrameCanonicalizer(host_root=None)
    proc = ProcessInfo(exec_id="gone-1", pid=pid, binary=str(path))
    fc.canonicalize(RuntimeCallEvent(EventKind.LOADER, 0, "n", proc, module=str(path), build_id=bid))
    frame = StackFrame(module=str(path), offset=file_offset, symbol="stella_add")
    fc.canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "n", proc, user_stack=[frame]))
    assert (frame.source, frame.symbol, frame.build_id) == ("hint", "stella_add", bid)
    assert frame.function_id == f"{bid}:+{file_offset:#x}"
    assert fc.stats["process_exited"] == 1
    # With the host root allowed, the same file (same build-id) resolves it.
    fc2 = FrameCanonicalizer(host_root="/")
    fc2.canonicalize(RuntimeCallEvent(EventKind.LOADER, 0, "n", proc, module=str(path), build_id=bid))
    frame2 = StackFrame(module=str(path), offset=file_offset, symbol="wrong_hint")
    fc2.canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "n", proc, user_stack=[frame2]))
    assert (frame2.source, frame2.symbol, frame2.symbol_offset) == ("symtab", "stella_add", 0)
    assert frame2.function_id == f"{bid}:stella_add+0x0"
    assert fc2.stats["hint_disagreements"] == 1


def test_deleted_executable(programs: Programs, tmp_path: Path) -> None:
    """maps says "(deleted)": read through /proc/<pid>/map_files while the process lives."""
    copy = tmp_path / "doomed"
    shutil.copy(programs.get("c_nodbg"), copy)
    with running(copy) as p:
        copy.unlink()
        maps = Path(f"/proc/{p.pid}/maps").read_text()
        assert f"{copy} (deleted)" in maps
        sym = Symbolizer()
        r = sym.resolve_pid(p.pid, p.address("stella_add"))
        assert (r.symbol, r.offset, r.source, r.module) == ("stella_add", 0, "symtab", str(copy))
        assert sym.stats()["deleted_file_read_via_map_files"] == 1
        gone = sym.resolve_file(str(copy), 0x1000)
        assert gone.error == "unreadable_file" and "no such file" in gone.detail
        # A Tetragon frame naming the deleted path, canonicalized while the process lives.
        fc = FrameCanonicalizer()
        frame = StackFrame(module=f"{copy} (deleted)", offset=r.file_offset or 0)
        proc = ProcessInfo(exec_id="del-1", pid=p.pid)
        fc.canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "", proc, user_stack=[frame]))
        assert (frame.symbol, frame.source) == ("stella_add", "symtab")
    # After exit, the same frame can no longer be read: counted, not raised.
    fc2 = FrameCanonicalizer()
    frame = StackFrame(module=f"{copy} (deleted)", offset=r.file_offset or 0)
    fc2.canonicalize(
        RuntimeCallEvent(
            EventKind.SYSCALL, 0, "", ProcessInfo(exec_id="del-2", pid=p.pid), user_stack=[frame]
        )
    )
    assert frame.source == "none" and frame.function_id == ""
    assert fc2.stats["process_exited"] == 1


def test_truncated_elf(tmp_path: Path) -> None:
    cut = tmp_path / "libc-cut.so"
    data = LIBC.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    sym = Symbolizer()
    r = sym.resolve_file(str(cut), 0x1000)
    assert r.error == "truncated_elf" and r.source == "none"
    assert sym.stats()["truncated_elf"] == 1
    tiny = tmp_path / "tiny"
    tiny.write_bytes(data[:10])
    assert sym.resolve_file(str(tiny), 0).error == "truncated_elf"
    p = cli("--file", str(cut), "0x1000")
    assert p.returncode == 2 and "truncated_elf" in p.stderr


def test_not_elf(tmp_path: Path) -> None:
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho hi\n")
    sym = Symbolizer()
    r = sym.resolve_file(str(text), 0)
    assert r.error == "not_elf" and r.build_id == ""
    assert sym.stats()["not_elf"] == 1
    p = cli("--file", str(text), "0")
    assert p.returncode == 2 and "not_elf" in p.stderr
    p = cli("--file", str(tmp_path / "missing"), "0")
    assert p.returncode == 2 and "unreadable_file" in p.stderr


def test_frame_canonicalizer_counts_bad_files(tmp_path: Path) -> None:
    """Frames of a live process whose module is not a usable ELF: hint kept, outcome counted."""
    not_elf = tmp_path / "lib.so"
    not_elf.write_text("not an ELF")
    fc = FrameCanonicalizer()
    proc = ProcessInfo(exec_id="self", pid=os.getpid())
    frames = [
        StackFrame(module=str(not_elf), offset=0x10, symbol="hinted"),
        StackFrame(module=str(tmp_path / "absent.so"), offset=0x20),
        StackFrame(module="", offset=0x30),
    ]
    fc.canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "", proc, user_stack=frames))
    assert [f.source for f in frames] == ["hint", "none", "none"]
    assert frames[0].symbol == "hinted" and frames[0].function_id == ""
    stats = fc.stats
    assert stats["not_elf"] == 1 and stats["unreadable_file"] == 1 and stats["not_file_backed"] == 1


@pytest.mark.parametrize("many", [False, True])
def test_a_negative_file_offset_is_outside_the_file_not_an_exception(many: bool) -> None:
    """A file offset below 0 (a hand-typed or damaged one) is in no segment: ``offset_outside_file``
    with no function ID (IDs carry no negative offset), never the ValueError it used to raise."""
    path = sys.executable if os.path.realpath(sys.executable).startswith("/usr") else "/usr/bin/python3.11"
    s = Symbolizer()
    try:
        out = s.resolve_file_many(path, [-5, -1]) if many else [s.resolve_file(path, -5)]
    finally:
        s.close()
    for r in out:
        assert (r.error, r.function_id, r.symbol) == ("offset_outside_file", "", "")
        assert r.offset < 0 and r.build_id
