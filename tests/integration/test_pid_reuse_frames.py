"""Nothing of an event's process is read through a pid that now names a younger process.

An event names its process by pid; by the time the canonicalizer or the package attribution reads
its files through ``/proc/<pid>``, the process may be gone and its pid held by another program (of
another container, or of the host). A CI run of tests/e2e/test_agent_restart_gap.py showed it:
the stream's pids happened to be held by live processes of the machine, and the agent resolved the
stream's libcrypto frames in those processes' libcrypto: ``RC2_cbc_encrypt`` and ``0x1f66e0``
stored where the events said ``SSL_CTX_new``. The event's exec_id says when its process started;
``/proc/<pid>/stat`` says when the pid's holder did (canonical/proc_identity.py).

Real processes: a live ``sleep`` holds a pid while events claim an older process of that pid;
tests/pid_reuse.py makes the kernel hand a dead process's pid to a new one.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.metric_families import canonicalizer_metrics
from stellaops_runtime.agent.purls import HotSymbolAttribution
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.proc_identity import exec_start_ns, pid_reused, started_mono_ns
from stellaops_runtime.contracts.config import AttributionConfig
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from tests import pid_reuse
from tests.elf_files import file_offset
from tests.integration.test_agent_purls_containers import DIGEST, procfs
from tests.integration.test_attribution_per_root import LIBZ, image_root


def exec_id(node: str, ktime: int | str, pid: int | str) -> str:
    return base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode()


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[bytes]]:
    """A live process (``sleep``), exec'd: its libc is mapped."""
    p = subprocess.Popen(["sleep", "120"])
    try:
        deadline = time.monotonic() + 30
        while not os.readlink(f"/proc/{p.pid}/exe").endswith("sleep") or not _maps_libc(p.pid):
            assert time.monotonic() < deadline, "sleep never exec'd and mapped its libc"
            time.sleep(0.01)
        yield p
    finally:
        p.kill()
        p.wait()


def _maps_libc(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return next((line.split()[-1] for line in f if "/libc.so" in line or "/libc-" in line), "")


def libc_of(pid: int) -> str:
    path = _maps_libc(pid)
    assert path
    return path


def function_offset(path: str, name: str) -> int:
    """A file offset inside function ``name`` of ``path`` (its dynamic symbol, by nm)."""
    out = subprocess.run(["nm", "-D", "--defined-only", path], check=True, capture_output=True, text=True)
    rows = [ln.split() for ln in out.stdout.splitlines()]
    addr = next(int(r[0], 16) for r in rows if len(r) == 3 and r[2].split("@")[0] == name)
    return file_offset(Path(path), addr + 4)


def canonicalized(pid: int, exec_id_: str, libc: str, offset: int) -> tuple[StackFrame, FrameCanonicalizer]:
    fc = FrameCanonicalizer(node_name="n")
    frame = StackFrame(module=libc, offset=offset, symbol="SSL_CTX_new")  # the old process's name for it
    ev = RuntimeCallEvent(
        EventKind.SYSCALL, 1, "n", ProcessInfo(exec_id=exec_id_, pid=pid), user_stack=[frame]
    )
    fc.canonicalize(ev)
    return frame, fc


def test_a_frame_of_an_older_process_of_the_pid_is_not_read_in_the_holders_files(holder) -> None:
    libc = libc_of(holder.pid)
    off = function_offset(libc, "getaddrinfo")
    # The event's process exec'd 1 µs after boot: the pid's holder (started now) is another process.
    frame, fc = canonicalized(holder.pid, exec_id("n", 1_000, holder.pid), libc, off)
    assert (frame.symbol, frame.source) == ("SSL_CTX_new", "hint"), frame
    assert frame.build_id == ""  # not the holder's libc's either
    stats = fc.stats
    assert stats["process_exited"] == 1 and stats["pid_reused"] >= 1, stats
    ops = next(m for m in canonicalizer_metrics(stats) if m.name.endswith("symbolizer_operations"))
    assert {s.labels["op"]: s.value for s in ops.samples}["pid_reused"] >= 1


def test_the_pids_own_process_is_read(holder) -> None:
    """The control: the same frame from the holder itself resolves in its libc (fork before exec)."""
    libc = libc_of(holder.pid)
    off = function_offset(libc, "getaddrinfo")
    now = time.monotonic_ns()  # after the holder's exec (the fixture saw it)
    frame, fc = canonicalized(holder.pid, exec_id("n", now, holder.pid), libc, off)
    assert frame.symbol == "getaddrinfo" and frame.source in ("dynsym", "symtab"), frame
    assert fc.stats["pid_reused"] == 0
    # An exec_id of another form says nothing: read as before.
    frame, fc = canonicalized(holder.pid, "exec-1", libc, off)
    assert frame.symbol == "getaddrinfo"


def test_exec_ids_that_say_nothing() -> None:
    assert exec_start_ns(exec_id("node:with:colons", 42, 7), 7) == 42
    assert exec_start_ns(exec_id("n", 42, 8), 7) is None  # another process's exec_id
    odd = [base64.b64encode(b"n:x:7").decode(), base64.b64encode(b"\xff:1:7").decode(), exec_id("n", 0, 7)]
    odd += [exec_id("n", "\u00b2", 7), exec_id("n", 1, "\u00b2"), exec_id("n", 1, "\u0667")]  # not ASCII
    for bad in ["", "exec-1", "!!!", "A" * 5000, *odd]:
        assert exec_start_ns(bad, 7) is None, bad
    assert started_mono_ns(2**22 + 12345) is None  # no such pid
    assert not pid_reused(os.getpid(), "exec-1")


def test_a_pid_the_kernel_handed_to_another_process_is_reused(holder) -> None:
    """Real reuse: the event's process dies and the kernel gives its pid to a new process."""
    if not pid_reuse.can_pick_pids():
        pytest.skip("needs root and a writable /proc/sys/kernel/ns_last_pid")
    pid = holder.pid
    old = exec_id("n", time.monotonic_ns(), pid)  # the holder's exec time is before this
    assert not pid_reused(pid, old)
    holder.kill()
    holder.wait()
    time.sleep(0.02)  # a tick: the newcomer's start (in ticks) must be after the old exec_id's time
    helper = pid_reuse.fork_into(pid)
    if helper is None:
        pytest.skip(f"another process of the machine took pid {pid} first")
    try:
        assert pid_reused(pid, old)
        assert not pid_reused(pid, exec_id("n", time.monotonic_ns(), pid))  # the newcomer's own
    finally:
        pid_reuse.release(helper, pid)


def test_attribution_never_reads_the_root_of_a_younger_holder_of_the_pid(tmp_path: Path) -> None:
    """The image's process (pid 100) is gone; pid 100 now roots another container: no purl, not its."""
    proc = procfs(tmp_path, {100: image_root(tmp_path / "other", "1:1.3.1-1", "2.99.0")})
    # /proc/100/stat of the newcomer: started 10^6 s after boot (field 22, in ticks)
    _stat(proc / "100" / "stat", NEW_TICKS, pid=100)
    att = _exec_noted(proc)
    d = _libz_delta()
    att.fill([d])
    assert d.purl == ""
    assert att.outcomes["pid_reused"] == 1 and att.outcomes["no_root"] == 1, att.outcomes


# -- the pid handed on between the check and the read (a seam: the read itself swaps the holder) --

FAKE_PID = 4242
OLD_TICKS = 1  # the event's process: started a tick after boot, before its exec_id's 5 s
NEW_TICKS = 10**6 * os.sysconf("SC_CLK_TCK")  # the newcomer: 10^6 s after boot


def _stat(path: Path, ticks: int, *, pid: int = FAKE_PID, comm: str = "x") -> None:
    """A /proc/<pid>/stat whose process started ``ticks`` after boot (field 22)."""
    path.write_text(f"{pid} ({comm}) S " + " ".join(["0"] * 18 + [str(ticks)] + ["0"] * 30) + "\n")


def _exec_noted(proc: Path, exec_pid: int = 100) -> HotSymbolAttribution:
    """Attribution over ``proc`` that saw pid 100 exec in the image's container c100; its exec_id
    (5 s after boot) names ``exec_pid``."""
    att = HotSymbolAttribution(AttributionConfig(), proc_root=str(proc), node_name="n1")
    att.note(
        RuntimeCallEvent(
            kind=EventKind.EXEC, timestamp_ns=1, node_name="n1",
            process=ProcessInfo(pid=100, exec_id=exec_id("n1", 5_000_000_000, exec_pid)),
            container=ContainerInfo(id="c100", image_digest=DIGEST),
        )
    )  # fmt: skip
    return att


def _libz_delta() -> HotSymbolDelta:
    """One load of libz in the image, to attribute."""
    return HotSymbolDelta(
        key=HotSymbolKey(DIGEST, LIBZ, "", EvidenceKind.LOADED), window_start_ns=0,
        invocation_count=1, first_seen_ns=1, last_seen_ns=1,
    )  # fmt: skip


def _fake_proc(tmp_path: Path) -> Path:
    """A procfs of one process, FAKE_PID: its root is this machine's (so its libc is ours), its
    stat says it started at OLD_TICKS."""
    proc = tmp_path / "proc"
    (proc / str(FAKE_PID)).mkdir(parents=True)
    (proc / str(FAKE_PID) / "root").symlink_to("/")
    _stat(proc / str(FAKE_PID) / "stat", OLD_TICKS)
    return proc


def _frame_through(
    proc: Path, hand_on: Any, exec_id_: str = exec_id("n", 5_000_000_000, FAKE_PID)
) -> tuple[StackFrame, FrameCanonicalizer]:
    libc = libc_of(os.getpid())
    off = function_offset(libc, "getaddrinfo")
    fc = FrameCanonicalizer(node_name="n", proc_root=str(proc))
    sym = fc.symbolizer
    for name in ("identify", "binary"):  # every read of a file through /proc/<pid>/root
        real = getattr(sym, name)

        def read(path: str, *, root: str = "/", _real: Any = real) -> Any:
            hand_on()  # the check has passed: now the pid changes hands, then the read runs
            return _real(path, root=root)

        setattr(sym, name, read)
    frame = StackFrame(module=libc, offset=off, symbol="SSL_CTX_new")
    ev = RuntimeCallEvent(
        EventKind.SYSCALL, 1, "n", ProcessInfo(exec_id=exec_id_, pid=FAKE_PID),
        user_stack=[frame],
    )  # fmt: skip
    fc.canonicalize(ev)
    return frame, fc


def test_a_pid_handed_on_between_the_check_and_the_read_is_not_read(tmp_path: Path) -> None:
    """The exec_id's process holds the pid at the check; during the read it exits and a newcomer
    takes the pid (its stat says so). Before, the frame resolved in the newcomer's libc
    (``getaddrinfo`` stored where the event said ``SSL_CTX_new``): the check only came first."""
    proc = _fake_proc(tmp_path)
    frame, fc = _frame_through(proc, lambda: None)  # the control: nobody takes the pid
    assert frame.symbol == "getaddrinfo" and frame.source in ("dynsym", "symtab"), frame
    assert fc.stats["pid_reused"] == 0

    frame, fc = _frame_through(proc, lambda: _stat(proc / str(FAKE_PID) / "stat", NEW_TICKS))
    assert (frame.symbol, frame.source, frame.build_id) == ("SSL_CTX_new", "hint", ""), frame
    stats = fc.stats
    assert stats["process_exited"] == 1 and stats["pid_reused"] >= 1, stats


def test_the_bracket_needs_no_exec_id_of_a_known_form(tmp_path: Path) -> None:
    """An exec_id of no known form gives no verdict before a read, but a pid changing hands during
    each read is still seen: the start times before and after it differ."""
    proc = _fake_proc(tmp_path)
    ticks = iter(range(NEW_TICKS, NEW_TICKS + 100))
    frame, fc = _frame_through(proc, lambda: _stat(proc / str(FAKE_PID) / "stat", next(ticks)), "exec-1")
    assert (frame.symbol, frame.source) == ("SSL_CTX_new", "hint"), frame
    assert fc.stats["pid_reused"] >= 1 and fc.stats["process_exited"] == 1, fc.stats


def test_an_exec_id_naming_another_pid_reads_nothing_through_the_pid(tmp_path: Path) -> None:
    """Tetragon and the native probes write the event's own pid in its exec_id. One naming another
    pid contradicts its event: whether the pid's live holder is its process cannot be told (a
    newcomer would look the same), so its files are not read: ``bad_input``, counted
    ``pid_unverified``. Before, the frame resolved in whatever process held the pid."""
    proc = _fake_proc(tmp_path)
    frame, fc = _frame_through(proc, lambda: None, exec_id("n", 5_000_000_000, FAKE_PID + 1))
    assert (frame.symbol, frame.source, frame.build_id) == ("SSL_CTX_new", "hint", ""), frame
    stats = fc.stats
    assert stats["pid_unverified"] >= 1 and stats["bad_input"] == 1 and stats["pid_reused"] == 0, stats
    ops = next(m for m in canonicalizer_metrics(stats) if m.name.endswith("symbolizer_operations"))
    assert {s.labels["op"]: s.value for s in ops.samples}["pid_unverified"] >= 1


def test_attribution_read_while_the_pid_changed_hands_is_taken_back(tmp_path: Path) -> None:
    """The image's process holds pid 100 at the drain's check; while its root is read, a newcomer
    takes the pid. Before, the purl read there stayed (maybe another container's package)."""
    proc = procfs(tmp_path, {100: image_root(tmp_path / "img", "1:1.3.1-1", "2.99.0")})
    stat = proc / "100" / "stat"
    _stat(stat, OLD_TICKS, pid=100)  # the old one
    att = _exec_noted(proc)
    control = _libz_delta()
    att.fill([control])  # nobody takes the pid: the image's package
    assert control.purl.startswith("pkg:deb/"), (control, att.outcomes)
    real = att._ask

    def ask(*a: Any, **kw: Any) -> Any:
        _stat(stat, NEW_TICKS, pid=100, comm="y")
        return real(*a, **kw)

    att._ask = ask  # type: ignore[method-assign]
    d = _libz_delta()
    att.fill([d])
    assert d.purl == "", d
    assert att.outcomes["pid_reused"] == 1 and att.outcomes["attributed"] == 1, att.outcomes
    assert DIGEST not in att._pids  # the pid is forgotten: the newcomer's root is never read again


def test_attribution_never_reads_a_root_whose_exec_id_names_another_pid(tmp_path: Path) -> None:
    proc = procfs(tmp_path, {100: image_root(tmp_path / "img", "1:1.3.1-1", "2.99.0")})
    _stat(proc / "100" / "stat", OLD_TICKS, pid=100)
    att = _exec_noted(proc, exec_pid=101)
    d = _libz_delta()
    att.fill([d])
    assert d.purl == ""
    assert att.outcomes["pid_unverified"] == 1 and att.outcomes["no_root"] == 1, att.outcomes
