"""A former file's first process exits (or execs) between the scan and the open: its siblings count.

The scan (native/former.py) reports each former file once, with the first
process found mapping it; the others mapping the same file are passed over.
When that process had exited (a worker recycled) or exec'd another program by
the time its ``map_files`` entry was opened, the file was dropped: the
processes still running it (the server's master, the other workers) ran it
unprobed, with no gap and nothing in ``failed``. Now the other processes seen
mapping it are tried in turn, and when none is left the file is forgotten so
a later read of a process mapping it reports it again. Real processes running
a deleted copy of sleep; a stand-in for BCC.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stellaops_runtime.native import follow_former, former
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.follow import TargetWatch
from tests.unit.test_native_follow import (
    ScriptedBPF,
    run_deleted,
    scripted_symbols,  # noqa: F401 (autouse: the address lookup)
)


@contextmanager
def former_probed_once(app: Path) -> Iterator[tuple[TargetWatch, ScriptedBPF]]:
    """A watch of ``app:f`` attached, whose former-file read probed one deleted file, with no gap;
    closed at the end of the block."""
    w = TargetWatch.before_attach((UprobeTarget(str(app), "f"),))
    bpf = ScriptedBPF("attach")
    try:
        w.attached({f"{app}:f"})
        res = w.former(bpf)
        assert (res.former, res.failed, res.unwatched) == (1, [], False), res
        yield w, bpf
    finally:
        w.close()


@pytest.mark.parametrize("siblings", [2, 3])
def test_the_file_is_probed_through_a_sibling_when_the_first_process_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, siblings: int
) -> None:
    app, procs = run_deleted(tmp_path, copies=siblings)
    real = follow_former.open_regular
    gone: list[int] = []

    def exits_first(path: str):  # type: ignore[no-untyped-def]
        if not gone:  # the first process found exits just before its entry is opened
            p = next(p for p in procs if f"/proc/{p.pid}/" in path)
            p.kill()
            p.wait()
            gone.append(p.pid)
        return real(path)

    monkeypatch.setattr(follow_former, "open_regular", exits_first)
    try:
        with former_probed_once(app) as (w, bpf):
            assert [c[0] for c in bpf.calls] == ["enter", "return"] and bpf.calls[0][1] == f"{app} (deleted)"
            assert gone and w.former(bpf).former == 0 and len(bpf.calls) == 2  # once
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_file_given_up_is_reported_again_by_a_later_read(tmp_path: Path) -> None:
    """With nobody left to open it through, the scan forgets the file: a later process found mapping
    it (read in a later step) reports it again."""
    app, procs = run_deleted(tmp_path, copies=2)
    try:
        s = former.Scan([str(app)])
        found = s.step(set())
        assert len(found) == 1
        (f,) = found
        others = s.others(f)
        assert [o.pid for o in others] == [p.pid for p in procs if p.pid != f.pid]
        s.forget(f)
        assert s.others(f) == []
        again = former.Scan([str(app)])
        again._seen.add((f.want, f.ident))  # as if reported before: only forget() brings it back
        again.forget(f)
        assert [x.pid for x in again.step(set())] == [f.pid]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_the_file_is_probed_through_a_sibling_when_the_first_process_execd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first process found execs another program before its entry is opened: its maps no longer
    name the file (the entry is gone, or the range names the new program now); a sibling's is used."""
    import subprocess
    import time

    script = "read line; exec sleep 600"  # both run a deleted file
    app, procs = run_deleted(tmp_path, program="bash", args=("-c", script), stdin=subprocess.PIPE)
    try:
        real = follow_former.open_regular
        execd: list[int] = []

        def execs_first(path: str):  # type: ignore[no-untyped-def]
            if not execd:
                p = next(p for p in procs if f"/proc/{p.pid}/" in path)
                assert p.stdin is not None
                p.stdin.write(b"go\n")
                p.stdin.flush()
                deadline = time.monotonic() + 60
                while f"{app} (deleted)" in Path(f"/proc/{p.pid}/maps").read_text():
                    assert time.monotonic() < deadline, "the process never exec'd"
                    time.sleep(0.01)
                execd.append(p.pid)
            return real(path)

        monkeypatch.setattr(follow_former, "open_regular", execs_first)
        with former_probed_once(app) as (_, bpf):
            assert execd and bpf.calls[0][1] == f"{app} (deleted)"
    finally:
        for p in procs:
            p.kill()
            p.wait()
