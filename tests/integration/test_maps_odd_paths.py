"""Mapped files with odd names in ``/proc/<pid>/maps``: a frame is read from the file mapped, or not at all.

A live child process maps crafted ELF files (tests/integration/test_hostile_elf_builder.py)
and the test resolves addresses in them the two ways the agent does: the
Symbolizer's ``resolve_pid`` (pid + address) and the native probes' path
(native/procinfo.py turns maps into (file, file offset) frames, the
FrameCanonicalizer resolves them as it does Tetragon's).

Found 2026-12-04 (both gave another file's function, under that file's build-id):

- maps writes a newline in a name as ``\\012`` and a backslash as it is, so a
  process mapping ``lib<newline>x.so`` next to a file literally named
  ``lib\\012x.so`` had its frames read from the latter;
- the native probes dropped maps' `` (deleted)``: a library replaced on disk
  while mapped (a package upgrade) had its frames read from the new file.

Both now go through ``/proc/<pid>/map_files``, the mapped file itself (root
only; without it such frames stay unresolved).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame
from stellaops_runtime.native.procinfo import ProcCache
from tests.integration import test_hostile_elf_builder as eb

ROOT_USER = os.geteuid() == 0  # /proc/<pid>/map_files needs CAP_SYS_ADMIN

CHILD = """
import mmap, os, sys
maps = []
for arg in sys.argv[1:]:
    if arg.startswith("memfd:"):
        fd = os.memfd_create(arg[6:])
        os.write(fd, open(arg[6:], "rb").read())
    else:
        fd = os.open(arg, os.O_RDONLY)
    maps.append(mmap.mmap(fd, 0, prot=mmap.PROT_READ))
    os.close(fd)
print("mapped", flush=True)
sys.stdin.read()
"""


@contextmanager
def mapping(*files: str) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *files], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "mapped\n"
        yield child
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def start_of(pid: int, shown: str) -> int:
    """Start address of the mapping maps shows with path ``shown`` (as written there)."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if line.rstrip("\n").split(maxsplit=5)[5:] == [shown]:
                return int(line.split("-", 1)[0], 16)
    raise AssertionError(f"{shown!r} is not mapped by {pid}")


def native_frame(pid: int, address: int) -> StackFrame:
    """The frame the native probes give for ``address``, canonicalized as the agent does."""
    [(_, offset, module)] = ProcCache().frames(pid, [address])
    frame = StackFrame(module=module, offset=offset)
    event = RuntimeCallEvent(
        EventKind.SYSCALL, 0, "", ProcessInfo(exec_id=f"odd-{pid}", pid=pid), user_stack=[frame]
    )
    FrameCanonicalizer().canonicalize(event)
    return frame


def real_and_decoy(real: Path, decoy: Path) -> int:
    """Write two ELFs, ``real_function`` and ``decoy_function`` at one offset; that offset."""
    offsets = eb.write(real, eb.Elf(build_id=b"\x21" * 20, functions=["real_function"]))
    assert eb.write(decoy, eb.Elf(build_id=b"\x22" * 20, functions=["decoy_function"])) == {
        "decoy_function": offsets["real_function"]
    }
    return offsets["real_function"]


def check(symbol: str, build_id: str) -> None:
    assert symbol != "decoy_function" and build_id != "22" * 20
    if ROOT_USER:
        assert (symbol, build_id) == ("real_function", "21" * 20)
    else:
        assert symbol == ""


def test_a_newline_in_a_mapped_name_never_reads_the_file_named_like_maps_shows_it(tmp_path: Path) -> None:
    real, decoy = tmp_path / "lib\nx.so", tmp_path / "lib\\012x.so"
    offset = real_and_decoy(real, decoy)
    with mapping(str(real)) as child:
        address = start_of(child.pid, str(decoy)) + offset + 1  # maps shows the decoy's name
        sym = Symbolizer()
        r = sym.resolve_pid(child.pid, address)
        check(r.symbol, r.build_id)
        if ROOT_USER:
            assert sym.stats()["ambiguous_path_read_via_map_files"] == 1
        else:
            assert r.error == "unreadable_file" and "newline" in r.detail, r
        frame = native_frame(child.pid, address)
        check(frame.symbol, frame.build_id)
    # A backslash without a newline escape is a plain name: read by path as before.
    plain = tmp_path / "lib\\x.so"
    eb.write(plain, eb.Elf(build_id=b"\x23" * 20, functions=["plain_function"]))
    with mapping(str(plain)) as child:
        r = Symbolizer().resolve_pid(child.pid, start_of(child.pid, str(plain)) + offset)
        assert (r.symbol, r.build_id) == ("plain_function", "23" * 20)


def test_a_library_replaced_on_disk_is_read_as_it_was_mapped(tmp_path: Path) -> None:
    real, decoy = tmp_path / "libssl.so.3", tmp_path / "libssl.so.3.new"
    offset = real_and_decoy(real, decoy)
    with mapping(str(real)) as child:
        os.rename(decoy, real)  # an upgrade: the mapped file is unlinked, a new build at its path
        address = start_of(child.pid, f"{real} (deleted)") + offset + 1
        frame = native_frame(child.pid, address)
        assert frame.module == f"{real} (deleted)"
        check(frame.symbol, frame.build_id)
        r = Symbolizer().resolve_pid(child.pid, address)
        check(r.symbol, r.build_id)


@pytest.mark.skipif(not ROOT_USER, reason="reading /proc/<pid>/map_files needs root")
def test_spaces_memfd_and_a_name_ending_in_deleted(tmp_path: Path) -> None:
    spaced = tmp_path / "lib with  spaces .so "
    named_deleted = tmp_path / "libnot.so (deleted)"
    offset = real_and_decoy(spaced, tmp_path / "unused.so")
    eb.write(named_deleted, eb.Elf(build_id=b"\x21" * 20, functions=["real_function"]))
    memfd = tmp_path / "jit.so"
    eb.write(memfd, eb.Elf(build_id=b"\x21" * 20, functions=["real_function"]))
    with mapping(str(spaced), str(named_deleted), f"memfd:{memfd}") as child:
        shown = [str(spaced), f"{named_deleted}", f"/memfd:{memfd} (deleted)"]
        for name in shown:
            address = start_of(child.pid, name) + offset + 1
            r = Symbolizer().resolve_pid(child.pid, address)
            assert (r.symbol, r.build_id, r.error) == ("real_function", "21" * 20, ""), (name, r)
            frame = native_frame(child.pid, address)
            assert (frame.symbol, frame.build_id) == ("real_function", "21" * 20), (name, frame)
