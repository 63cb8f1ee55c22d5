"""A USDT target's new file has its notes read off the probes' thread, which keeps reading the buffer.

When a USDT target's file is replaced while the probes run (native/follow.py), the
new file's ``.note.stapsdt`` is read (up to 16 MiB: 182,361 sites of one probe
parse in about 4.6 s here) to attach the loaded programs to its sites. That
read ran on the probes' ``bcc`` thread, so for that long nobody read the output
buffer (records refused in the kernel: counted lost, a gap, events gone), as a
uprobe's address lookup did before native/lookup.py. Now it runs as that lookup
does: on a thread of its own, on a duplicate of the descriptor, while the
caller calls ``idle`` (the source's: a read of the buffer); a stop abandons it
(the target is reported, its time unwatched) and the read ends at its next step.

Stand-ins: the notes' reader is held (the real one reads the real file), and
BCC's program load and the perf event's open are stand-ins; no BPF.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.native import usdt
from stellaops_runtime.native.config import UsdtTarget
from stellaops_runtime.native.follow import TargetWatch

WAIT = 10.0
SITE = usdt.UsdtProbe("app", "tick", 0x40, 0, ())


class _Bpf:
    KPROBE = 2

    def load_func(self, name: bytes, kind: int) -> Any:
        return type("Fn", (), {"fd": -1})()


def _watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, TargetWatch]:
    app = tmp_path / "app"
    app.write_bytes(b"old")
    target = UsdtTarget(str(app), "app", "tick")
    watch = TargetWatch.before_attach((), (target,))
    watch.attached({target.label()})
    watch.usdt_loaded = {0: (SITE,)}
    spare = tmp_path / "perf"
    spare.write_bytes(b"")
    monkeypatch.setattr(usdt, "attach", lambda prog_fd, path, probe: os.open(spare, os.O_RDONLY))
    new = tmp_path / "app.new"
    new.write_bytes(b"new")
    os.replace(new, app)
    return app, watch


def _refused(watch: TargetWatch, why: str) -> None:
    """The follow attaches nothing to the new file, and lists the target failed for ``why``."""
    res = watch.follow(_Bpf())
    assert not res.attached
    assert any(why in text for _, text in res.failed), res.failed


def test_the_notes_of_a_new_file_are_read_while_the_buffer_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, watch = _watch(tmp_path, monkeypatch)
    threads: list[str] = []
    entered, idled = threading.Event(), threading.Event()

    def held(path: str) -> list[usdt.UsdtProbe]:
        threads.append(threading.current_thread().name)
        entered.set()
        idled.wait(2.0)  # the caller's idle runs meanwhile (never, when the read is on its thread)
        return [SITE]

    monkeypatch.setattr(usdt, "read_probes", held)
    calls = [0]

    def idle() -> bool:
        calls[0] += 1
        if entered.is_set():
            idled.set()
        return True

    watch.idle = idle
    try:
        res = watch.follow(_Bpf())
    finally:
        watch.close()
    assert res.attached and not res.failed, (res.attached, res.failed)
    assert threads and threads[0] != threading.current_thread().name, threads  # off the caller's thread
    assert idled.is_set() and calls[0] > 0  # the buffer was read while the notes were


def test_a_stop_during_the_read_abandons_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, watch = _watch(tmp_path, monkeypatch)
    entered, release = threading.Event(), threading.Event()

    def held(path: str) -> list[usdt.UsdtProbe]:
        entered.set()
        release.wait(WAIT)
        return [SITE]

    monkeypatch.setattr(usdt, "read_probes", held)

    def idle() -> bool:  # the probes stop while the notes are read
        return not entered.wait(2.0)

    watch.idle = idle
    try:
        _refused(watch, "abandoned: the probes stopped")
    finally:
        release.set()
        watch.close()


def _stapsdt_elf(path: Path, sites: int) -> None:
    """An ET_DYN x86-64 file of one PT_LOAD and a .note.stapsdt of ``sites`` sites of app:tick."""
    desc = struct.pack("<QQQ", 0x40, 0, 0) + b"app\0tick\0\0"
    one = struct.pack("<III", 8, len(desc), usdt.NT_STAPSDT) + b"stapsdt\0" + desc + bytes(-len(desc) % 4)
    notes = one * sites
    shstr = b"\0.note.stapsdt\0.shstrtab\0"
    off_notes = 0x100
    off_shstr = off_notes + len(notes)
    off_sh = (off_shstr + len(shstr) + 7) & ~7

    def sh(name: int, typ: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, typ, 0, 0, off, size, 0, 0, 4, 0)

    shs = sh(0, 0, 0, 0) + sh(1, 7, off_notes, len(notes)) + sh(15, 3, off_shstr, len(shstr))
    end = off_sh + len(shs)
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, end, end, 0x1000)
    eh = b"\x7fELF\x02\x01\x01" + bytes(9)
    eh += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, off_sh, 0, 64, 56, 1, 64, 3, 2)
    buf = bytearray(end)
    for at, part in ((0, eh), (64, ph), (off_notes, notes), (off_shstr, shstr), (off_sh, shs)):
        buf[at : at + len(part)] = part
    path.write_bytes(bytes(buf))


def test_a_read_of_the_notes_given_up_ends_at_its_next_step(tmp_path: Path) -> None:
    """The notes' read (thousands of sites) checks between sites whether its caller gave up."""
    from stellaops_runtime.native import symcancel

    app = tmp_path / "app"
    _stapsdt_elf(app, 5_000)
    assert len(usdt.read_probes(str(app))) == 5_000  # read whole when nobody gave up
    given_up = threading.Event()
    given_up.set()
    with symcancel.cancellable(given_up), pytest.raises(symcancel.Cancelled):
        usdt.read_probes(str(app))


def test_the_new_files_descriptor_is_closed_when_the_reader_fails_during_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``idle`` reads the probes' buffer while the notes are read; its own error (the reader's: the
    probes are then closed and loaded again) ends the follow. The new file's descriptor, opened for
    the attach, stayed open: one leaked per such error, holding a replaced file's inode."""
    app, watch = _watch(tmp_path, monkeypatch)
    ident = os.stat(app)
    failed = threading.Event()

    def held(path: str) -> list[usdt.UsdtProbe]:  # still reading when the reader fails
        failed.wait(WAIT)
        return [SITE]

    monkeypatch.setattr(usdt, "read_probes", held)

    def idle() -> bool:
        failed.set()
        raise RuntimeError("a bug in the reader")

    def holding() -> list[str]:  # this process's descriptors of the new file
        out = []
        for n in os.listdir("/proc/self/fd"):
            try:
                st = os.stat(f"/proc/self/fd/{n}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (ident.st_dev, ident.st_ino):
                out.append(n)
        return out

    watch.idle = idle
    try:
        with pytest.raises(RuntimeError, match="a bug in the reader"):
            watch.follow(_Bpf())
        for t in threading.enumerate():  # the read's own duplicate is closed as its thread ends
            if t.name == "symlookup":
                t.join(WAIT)
        assert holding() == [], "the new file's descriptor was left open"
    finally:
        watch.close()


def test_a_new_file_whose_read_cannot_start_is_a_failed_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The off-thread read starts on a duplicate of the descriptor. No descriptor left (EMFILE) was a
    failed target before the read moved off the thread (the notes' reader wraps OSError); the dup's
    OSError escaped the follow instead, as a reader's error: every probe of the node closed and loaded
    again (a node-wide gap, and a load that may fail the same way) for one file that could not be read."""
    _, watch = _watch(tmp_path, monkeypatch)
    monkeypatch.setattr(usdt, "read_probes", lambda path: [SITE])

    def no_fd(fd: int) -> int:
        raise OSError(24, "Too many open files")

    watch.idle = lambda: True
    monkeypatch.setattr(os, "dup", no_fd)
    try:
        _refused(watch, "Too many open files")
    finally:
        monkeypatch.undo()
        watch.close()


def test_a_target_with_more_sites_than_a_load_compiles_is_refused(tmp_path: Path) -> None:
    """The load compiles one BPF function per site of a USDT target (1,000 sites: 8 s of CPU here,
    3,000: 35 s and 420 MB, superlinear), on the probes' thread, before any probe attaches, and a
    compile cannot be given up. A hostile file at a target's path (a container's own binary) with
    tens of thousands of sites of the probe held every probe of the node off for hours. Such a target
    is now refused (listed in failed, its time a gap) and the rest of the load goes on."""
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.probes import usdtprobes

    app = tmp_path / "app"
    cfg = NativeConfig(usdt=(UsdtTarget(str(app), "app", "tick"),))
    _stapsdt_elf(app, usdtprobes.MAX_SITES)
    ((sites, why),) = usdtprobes.probe_sites(cfg)
    assert (len(sites), why) == (usdtprobes.MAX_SITES, "")  # at the cap: compiled
    _stapsdt_elf(app, usdtprobes.MAX_SITES + 1)
    ((sites, why),) = usdtprobes.probe_sites(cfg)
    assert sites == [], len(sites)
    assert f"more than {usdtprobes.MAX_SITES}" in why and str(app) in why, why
