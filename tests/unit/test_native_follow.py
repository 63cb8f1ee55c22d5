"""native/follow.py with a stand-in for BCC: which replaced files are probed, and how.

The real kernel is in tests/integration/test_native_replaced_binary.py; here
the decisions: a FIFO or device put at a target's path is never opened (a
read of a FIFO would wait, a device's open can have effects), a file is
probed through the descriptor held, under the target's own programs, once,
and at most MAX_FOLLOWED new files are kept open per load. A deleted former file
of a target that live processes still run (real processes running a deleted
copy of sleep) is probed once, or reported, and a gap while they run when it
cannot be probed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.native import follow, follow_former, lookup
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.follow import TargetWatch
from stellaops_runtime.native.probes import uprobes
from stellaops_runtime.native.symaddr import SymbolNotFound

ADDRESS = 0x1000
_finds = ["content"]  # what the stand-in for native/symaddr.py says: set by the last BPF stand-in made


@pytest.fixture(autouse=True)
def scripted_symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    """The address lookup (native/symaddr.py) as the stand-ins script it: a file says "has-symbol", or
    ScriptedBPF says. Autouse here and in the modules that import it with the stand-ins."""

    def find_address(path: str, symbol: str, *, where: tuple[str, str] | None = None, **_: object) -> int:
        with open(path, "rb") as f:
            found = b"has-symbol" in f.read() if _finds[0] == "content" else _finds[0] != "no-symbol"
        if not found:
            raise SymbolNotFound(f"symbol {symbol} not found")
        return ADDRESS

    monkeypatch.setattr(lookup, "find_address", find_address)  # follow_attach's lookup (native/lookup.py)
    monkeypatch.setattr(uprobes, "find_address", find_address)


class FakeBPF:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, str]] = []  # (kind, path's file content, address, program)
        _finds[0] = "content"

    def attach_uprobe(self, name: bytes, addr: int, fn_name: bytes) -> None:
        self.calls.append(("enter", name.decode(), addr, fn_name.decode()))

    def attach_uretprobe(self, name: bytes, addr: int, fn_name: bytes) -> None:
        self.calls.append(("return", name.decode(), addr, fn_name.decode()))


def put(path: Path, content: bytes) -> None:
    """A new file renamed over the path, as an upgrade does."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(content)
    os.rename(tmp, path)


def test_a_replaced_file_is_probed_through_its_descriptor_with_the_targets_programs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"v1 has-symbol")
    b.write_bytes(b"v1 has-symbol")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"), UprobeTarget(str(b), "g")))
    bpf = FakeBPF()
    assert w.follow(bpf).attached == [] and bpf.calls == []  # nothing changed
    put(b, b"v2 has-symbol")
    res = w.follow(bpf)
    assert res.attached == [f"{b}:g"] and res.failed == []
    (fd,) = w.fds
    assert bpf.calls == [
        ("enter", f"/proc/self/fd/{fd}", ADDRESS, "stella_up_enter_1"),
        ("return", f"/proc/self/fd/{fd}", ADDRESS, "stella_up_return_1"),
    ]
    assert os.readlink(f"/proc/self/fd/{fd}") == str(b)  # the file looked at, held open
    assert w.follow(bpf).attached == []  # once
    w.close()
    assert w.fds == []


def test_a_fifo_or_a_file_without_the_symbol_is_not_probed(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"has-symbol")
    b.write_bytes(b"has-symbol")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"), UprobeTarget(str(b), "g")))
    a.unlink()
    os.mkfifo(a)  # never opened: a read would wait for a writer for ever
    put(b, b"renamed")
    bpf = FakeBPF()
    res = w.follow(bpf)
    assert res.attached == [] and bpf.calls == []
    assert res.failed == [(f"{b}:g", f"symbol g not found in the new file at {b}")]
    assert w.follow(bpf).failed == []  # reported once per file
    assert w.fds == []


def test_at_most_max_followed_new_files_per_load(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(follow, "MAX_FOLLOWED", 2)
    a = tmp_path / "a"
    a.write_bytes(b"has-symbol")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"),))
    bpf = FakeBPF()
    outcomes = []
    for n in range(3):
        put(a, b"has-symbol %d" % n)
        res = w.follow(bpf)
        outcomes.append((len(res.attached), [why for _, why in res.failed]))
    assert outcomes[:2] == [(1, []), (1, [])]
    assert outcomes[2] == (0, [f"{a} was replaced, more than 2 new files since the load: not probed"])
    assert len(w.fds) == 2
    w.close()


def test_a_file_appearing_where_none_was_is_probed_and_fd_targets_are_not_watched(tmp_path: Path) -> None:
    later = tmp_path / "later"
    held = UprobeTarget("/proc/self/fd/99", "h", module="/in/container")  # native/purl_wiring.py's
    w = TargetWatch.before_attach((UprobeTarget(str(later), "f"), held))
    assert set(w.idents) == {("uprobe", 0)}
    later.write_bytes(b"has-symbol")
    assert w.follow(FakeBPF()).attached == [f"{later}:f"]
    w.close()


class ScriptedBPF(FakeBPF):
    """Attaches, finds no symbol, or fails to attach, as told; records the files attached to."""

    def __init__(self, outcome: str) -> None:
        super().__init__()
        self.outcome = outcome
        _finds[0] = outcome

    def attach_uprobe(self, name: bytes, addr: int, fn_name: bytes) -> None:
        if self.outcome == "refused":
            raise Exception("Failed to attach BPF to uprobe")  # as BCC raises it
        self.calls.append(("enter", os.readlink(name.decode()), addr, fn_name.decode()))


def wait_mapped(proc: subprocess.Popen[bytes], path: Path) -> None:
    """Until the process maps ``path`` (its exec is done)."""
    deadline = time.monotonic() + 60
    while str(path) not in Path(f"/proc/{proc.pid}/maps").read_text():
        assert time.monotonic() < deadline, f"{path} never mapped"
        time.sleep(0.01)


def run_copy(
    tmp_path: Path,
    copies: int = 1,
    program: str = "sleep",
    args: tuple[str, ...] = ("600",),
    stdin: Any = None,
) -> tuple[Path, list[subprocess.Popen[bytes]]]:
    """Processes running a copy of ``program`` at ``<tmp_path>/bin/app``, each once it maps the file."""
    app = tmp_path / "bin" / "app"
    app.parent.mkdir()
    shutil.copy2(shutil.which(program) or f"/bin/{program}", app)
    procs = [subprocess.Popen([str(app), *args], stdin=stdin) for _ in range(copies)]
    for p in procs:
        wait_mapped(p, app)
    return app, procs


def run_deleted(
    tmp_path: Path,
    copies: int = 2,
    program: str = "sleep",
    args: tuple[str, ...] = ("600",),
    stdin: Any = None,
) -> tuple[Path, list[subprocess.Popen[bytes]]]:
    """Processes running a copy of ``program`` whose path an upgrade then renamed a new file over."""
    app, procs = run_copy(tmp_path, copies, program, args, stdin)
    shutil.copy2(app, app.with_name("app.new"))
    os.rename(app.with_name("app.new"), app)
    return app, procs


@pytest.mark.parametrize("named", ["as run", "under another root"])
def test_a_deleted_former_file_still_run_is_probed_once(tmp_path: Path, named: str) -> None:
    app, procs = run_deleted(tmp_path)
    target = str(app) if named == "as run" else f"/proc/{os.getpid()}/root{app}"  # /host/... alike
    try:
        w = TargetWatch.before_attach((UprobeTarget(target, "f"),))
        w.attached({f"{target}:f"})
        bpf = ScriptedBPF("attach")
        res = w.former(bpf)
        assert (res.former, res.failed, res.unwatched) == (1, [], False)  # two processes, one file
        assert [c[0] for c in bpf.calls] == ["enter", "return"] and bpf.calls[0][1] == f"{app} (deleted)"
        assert w.former(bpf).former == 0 and len(bpf.calls) == 2  # once
        assert w.follow(bpf).attached == [] and not w.follow(bpf).unwatched
    finally:
        for p in procs:
            p.kill()
            p.wait()
        w.close()


def test_a_former_file_that_cannot_be_probed_is_unwatched_while_its_processes_live(tmp_path: Path) -> None:
    app, procs = run_deleted(tmp_path, copies=1)
    w = TargetWatch.before_attach((UprobeTarget(str(app), "f"),))
    try:
        res = w.former(ScriptedBPF("refused"))
        assert res.former == 0 and res.unwatched
        ((label, why),) = res.failed
        assert label == f"{app}:f (deleted former file, pid {procs[0].pid})"
        assert why.startswith(f"attach to the deleted former file of {app} run by pid {procs[0].pid} failed")
        assert w.follow(ScriptedBPF("attach")).unwatched  # every look while it runs
        procs[0].kill()
        procs[0].wait()
        assert not w.follow(ScriptedBPF("attach")).unwatched  # gone: nothing runs unseen
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        w.close()


def test_a_former_file_without_the_symbol_is_reported_and_no_gap(tmp_path: Path) -> None:
    app, procs = run_deleted(tmp_path, copies=1)
    w = TargetWatch.before_attach((UprobeTarget(str(app), "f"),))
    try:
        res = w.former(ScriptedBPF("no-symbol"))
        assert res.failed == [(f"{app}:f", f"symbol f not found in the deleted former file of {app} run by "
                               f"pid {procs[0].pid}")]  # fmt: skip
        assert not res.unwatched and not w.follow(ScriptedBPF("attach")).unwatched
    finally:
        for p in procs:
            p.kill()
            p.wait()
        w.close()


def test_former_matches_the_path_as_the_process_sees_it_inside_its_root(tmp_path: Path) -> None:
    """The agent names a file under another root (/host/<path>, /proc/<n>/root/<path>) than the
    process running it, whose maps line says <path>: every directory on the way is a root."""
    from stellaops_runtime.native import former

    me, slash = os.getpid(), os.stat("/")
    host = tmp_path / "host"
    (host / "usr" / "bin").mkdir(parents=True)
    hst = os.stat(host)
    found = former.where(f"{host}/usr/bin/app")
    assert ((slash.st_dev, slash.st_ino), f"{host}/usr/bin/app") in found
    assert ((hst.st_dev, hst.st_ino), "/usr/bin/app") in found
    assert ((slash.st_dev, slash.st_ino), f"{tmp_path}/x") in former.where(f"/proc/{me}/root{tmp_path}/x")
    assert former.where("/nonexistent-h7/x") == [((slash.st_dev, slash.st_ino), "/nonexistent-h7/x")]
    text = (
        "55d0-55d1 r-xp 00001000 fd:01 1234 /usr/bin/app (deleted)\n"
        "55d1-55d2 r--p 00000000 00:00 0 /memfd:x (deleted)\n"
        "55d2-55d3 r--p 00000000 fd:01 99 /usr/bin/app\n"
        "garbage (deleted)\n"
    )
    found = list(former._deleted_mappings(text))
    assert found == [("55d0-55d1", "/usr/bin/app", (os.makedev(0xFD, 1), 1234))]


def test_a_file_rewritten_in_place_is_a_gap_until_a_new_file_is_probed(tmp_path: Path) -> None:
    """Same inode, new contents (cp over a binary nobody runs; on overlayfs a copy-up keeps the
    number while new processes map another file): never said watched."""
    a = tmp_path / "a"
    a.write_bytes(b"v1 has-symbol")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"),))
    w.attached({f"{a}:f"})
    bpf = FakeBPF()
    assert not w.follow(bpf).unwatched
    with open(a, "r+b") as f:  # in place: the same inode
        f.write(b"v2 has-symbol, longer")
    res = w.follow(bpf)
    ((label, why),) = res.failed
    assert label == f"{a}:f" and why.startswith(f"{a} was rewritten in place") and res.unwatched
    assert bpf.calls == []  # never attached again to the file its programs are on (twice counted)
    again = w.follow(bpf)
    assert again.failed == [] and again.unwatched  # reported once, a gap every look
    put(a, b"v3 has-symbol")  # a new file: probed, watched again
    res = w.follow(bpf)
    assert res.attached == [f"{a}:f"] and not res.unwatched
    w.close()


def test_a_linked_file_named_like_a_deleted_one_is_not_taken_for_the_target(tmp_path: Path) -> None:
    """A process running a file literally named 'app (deleted)' maps a line that reads like the
    deleted former file of 'app': the descriptor's link count tells them apart."""
    d = tmp_path / "bin"
    d.mkdir()
    decoy = d / "app (deleted)"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", decoy)
    proc = subprocess.Popen([str(decoy), "600"])
    try:
        wait_mapped(proc, decoy)
        w = TargetWatch.before_attach((UprobeTarget(str(d / "app"), "f"),))
        bpf = ScriptedBPF("attach")
        res = w.former(bpf)
        assert (res.former, res.failed, bpf.calls) == (0, [], [])
    finally:
        proc.kill()
        proc.wait()
        w.close()


def test_a_process_gone_between_the_scan_and_the_open_is_neither_failed_nor_a_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, procs = run_deleted(tmp_path, copies=1)
    real = follow_former.open_regular

    def exits_first(path: str):  # type: ignore[no-untyped-def]
        procs[0].kill()
        procs[0].wait()
        return real(path)

    monkeypatch.setattr(follow_former, "open_regular", exits_first)
    w = TargetWatch.before_attach((UprobeTarget(str(app), "f"),))
    try:
        res = w.former(ScriptedBPF("attach"))
        assert (res.former, res.failed, res.unwatched) == (0, [], False)
    finally:
        w.close()


def test_a_new_file_that_cannot_be_attached_is_a_gap_until_a_later_one_is_probed(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.write_bytes(b"v1")
    w = TargetWatch.before_attach((UprobeTarget(str(a), "f"),))
    w.attached({f"{a}:f"})
    put(a, b"v2")
    res = w.follow(ScriptedBPF("refused"))
    ((label, why),) = res.failed
    assert label == f"{a}:f" and why.startswith(f"attach to the new file at {a} failed") and res.unwatched
    again = w.follow(ScriptedBPF("refused"))
    assert again.failed == [] and again.unwatched  # reported once, a gap at every look
    put(a, b"v3")
    res = w.follow(ScriptedBPF("attach"))
    assert res.attached == [f"{a}:f"] and not res.unwatched
    w.close()
