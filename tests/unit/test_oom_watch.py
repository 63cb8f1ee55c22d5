"""The OOM watch's parts that need no kernel: where the counter is, and what it keeps.

The notifications themselves are tested against the real kernel
(tests/integration/test_oom_watch_kernel.py) and real runtimes
(test_docker_missed_oom.py, test_cri_missed_oom.py). Here plain files stand in
for the counters: a count read while the file was there outlasts the file;
a shared cgroup (not named after the container) is never watched; a new
cgroup id starts a new count; rebuilds and deletes close what they drop; and
no more than ``MAX_WATCHED`` (or an eighth of the file descriptor limit) are held open.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stellaops_runtime.lifecycle import oom_watch
from stellaops_runtime.lifecycle.oom_counters import v1_memory_mounts, v1_memory_path
from stellaops_runtime.lifecycle.oom_watch import OomWatch

CID = "c" * 64
MOUNTINFO = (
    "30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
    "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)


def test_the_v1_memory_mount_and_path_are_found() -> None:
    [m] = v1_memory_mounts(MOUNTINFO)
    assert (m.mount_point, m.root) == ("/sys/fs/cgroup/memory", "/")
    text = f"5:cpu,cpuacct:/docker/{CID}\n4:memory:/docker/{CID}\n0::/docker/{CID}\n"
    assert v1_memory_path(text) == f"/docker/{CID}"
    assert v1_memory_path(f"0::/docker/{CID}\n") is None  # v2 only


def _proc(tmp_path: Path, cgroup_text: str) -> tuple[Path, Path]:
    proc, mem = tmp_path / "proc", tmp_path / "memory"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(MOUNTINFO.replace("/sys/fs/cgroup/memory", str(mem)))
    (proc / "42").mkdir()
    (proc / "42" / "cgroup").write_text(cgroup_text)
    return proc, mem


def test_only_a_cgroup_named_after_the_container_is_watched(tmp_path: Path) -> None:
    proc, mem = _proc(tmp_path, "4:memory:/kubepods/pod-1\n0::/kubepods/pod-1\n")
    (mem / "kubepods" / "pod-1").mkdir(parents=True)
    (mem / "kubepods" / "pod-1" / "memory.oom_control").write_text("oom_kill 3\n")
    assert OomWatch(str(proc)).counter_file(42, None, CID) is None


def test_a_count_read_while_the_cgroup_lived_outlasts_it(tmp_path: Path) -> None:
    proc, mem = _proc(tmp_path, f"4:memory:/docker/{CID}\n0::/docker/{CID}\n")
    d = mem / "docker" / CID
    d.mkdir(parents=True)
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    w = OomWatch(str(proc))
    found = w.counter_file(42, None, CID)
    assert found == (str(d / "memory.oom_control"), True)
    w.watch(("", CID), 7, *found)
    assert w.seen(("", CID)) == 1 and len(w) == 1
    shutil.rmtree(d)
    assert w.final(("", CID)) == 1 and len(w) == 0
    assert w.final(("", CID)) == 1  # a second exit event
    assert w.final(("", "other")) is None  # never watched


def test_a_new_cgroup_starts_over_and_drops_close(tmp_path: Path) -> None:
    counter = tmp_path / "memory.events"
    counter.write_text("oom 1\noom_kill 1\n")
    w = OomWatch(str(tmp_path))
    w.watch(("", "a"), 1, str(counter), False)
    counter.write_text("oom 0\noom_kill 0\n")
    w.watch(("", "a"), 1, str(counter), False)  # the same cgroup: kept as it is
    assert w.seen(("", "a")) == 1
    w.watch(("", "a"), 2, str(counter), False)  # the container restarted: a new cgroup
    assert w.seen(("", "a")) == 0
    w.watch(("", "b"), 3, str(counter), False)
    w.retain({("", "b")})
    assert w.seen(("", "a")) is None and len(w) == 1
    w.forget(("", "b"))
    assert len(w) == 0


def test_at_most_max_watched_are_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oom_watch, "MAX_WATCHED", 2)
    assert oom_watch.watch_limit() <= 2
    counter = tmp_path / "memory.events"
    counter.write_text("oom_kill 0\n")
    w = OomWatch(str(tmp_path))
    for name in "abc":
        w.watch(("", name), 1, str(counter), False)
    assert len(w) == 2 and w.full == 1 and w.seen(("", "c")) is None
    w.close()
    assert len(w) == 0


def test_a_sibling_cgroup_is_watched_from_its_creation(tmp_path: Path) -> None:
    """A container that died before the observer resolved it has the count of its cgroup, opened
    when the cgroup appeared beside a watched one (cgroup_births.py); a name without a container
    id is not opened; a restarted container's new cgroup answers its next exit."""
    import asyncio
    import os

    parent, staging = tmp_path / "docker", tmp_path / "staging"
    a, b = "a" * 64, "b" * 64

    def cgroup(where: Path, name: str, kills: int) -> Path:
        d = where / name
        d.mkdir(parents=True)
        (d / "memory.events").write_text(f"oom {kills}\noom_kill {kills}\n")
        return d

    async def born(w: OomWatch, name: str, kills: int, opened: int) -> None:
        os.rename(cgroup(staging, name, kills), parent / name)  # whole, as cgroupfs makes it
        for _ in range(500):
            if len(w) == opened:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{name} not opened")

    async def main() -> None:
        w = OomWatch(str(tmp_path))
        first = cgroup(parent, a, 0)
        w.watch(("", a), 1, str(first / "memory.events"), False)
        await born(w, "not-a-container", 1, 1)
        await born(w, f"docker-{b}.scope", 1, 2)
        shutil.rmtree(parent / f"docker-{b}.scope")
        assert w.final(("", b)) == 1  # never resolved, died OOM-killed
        assert w.final(("", a)) == 0
        shutil.rmtree(first)
        await born(w, a, 1, 1)  # restarted, OOM-killed before its start was handled
        assert w.final(("", a)) == 1
        w.close()

    asyncio.run(main())


def test_a_removed_parent_frees_its_place(tmp_path: Path) -> None:
    from stellaops_runtime.lifecycle.cgroup_births import Births

    births = Births()
    pods = [tmp_path / f"pod-{i}" for i in range(3)]
    for p in pods:
        p.mkdir()
        births.add(str(p), False)
    assert len(births) == 3
    pods[0].rmdir()
    (pods[1] / "c").mkdir()
    assert births.read() == [(str(pods[1] / "c"), False)] and len(births) == 2
    births.close()


def test_at_most_max_early_cgroups_are_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The oldest early watch goes first (a cgroup whose container the runtime never named)."""
    import asyncio
    import os

    monkeypatch.setattr(oom_watch, "MAX_EARLY", 1)
    parent = tmp_path / "docker"
    known = parent / ("a" * 64)
    known.mkdir(parents=True)
    (known / "memory.events").write_text("oom_kill 0\n")
    b, c = "b" * 64, "c" * 64

    async def main() -> None:
        w = OomWatch(str(tmp_path))
        w.watch(("", "a" * 64), 1, str(known / "memory.events"), False)
        for name in (b, c):
            staged = tmp_path / "staging" / name
            staged.mkdir(parents=True)
            (staged / "memory.events").write_text("oom_kill 1\n")
            os.rename(staged, parent / name)
        for _ in range(500):
            if w.seen((oom_watch._EARLY, c)) is not None:
                break
            await asyncio.sleep(0.01)
        assert len(w) == 2  # the known one and the latest early one
        assert w.final(("", b)) is None and w.final(("", c)) == 1
        w.close()

    asyncio.run(main())


def test_a_full_inotify_queue_is_counted_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The kernel's queue overflowed between two reads (more cgroups created than
    fs.inotify.max_queued_events): births were dropped with nothing said (the overflow counted in
    a field nobody reads); now a warning names the cost. The kernel's records are written here
    (filling the real queue takes 16,384 directories), the births around them still reported."""
    import struct

    from stellaops_runtime.lifecycle import cgroup_births as cb

    births = cb.Births()
    births.add(str(tmp_path), False)
    (wd,) = births._dirs
    os.close(births.fd)
    r, w = os.pipe()
    births.fd = r
    os.set_blocking(r, False)
    name = b"c1\0\0"
    records = [
        struct.pack("iIII", wd, cb.IN_CREATE | 0x40000000, 0, len(name)) + name,
        struct.pack("iIII", -1, cb.IN_Q_OVERFLOW, 0, 0),
    ]
    os.write(w, b"".join(records))
    try:
        with caplog.at_level("WARNING", logger="stellaops_runtime.lifecycle.cgroup_births"):
            got = births.read()
        assert got == [(str(tmp_path / "c1"), False)] and births.overflows == 1
        assert "dropped new-cgroup notifications" in caplog.text
    finally:
        os.close(w)
        births.close()
