"""The OOM watch's own limits lose kills; each loss is counted and said, never silent.

A container that the kernel OOM-kills within moments of its start is counted
only through an "early" watch opened when its cgroup appeared beside a watched
one (lifecycle/oom_watch.py, cgroup_births.py). Two limits ended such watches
with nothing said: the oldest early watch is dropped once ``MAX_EARLY`` are
held, and a parent directory is not watched once ``MAX_PARENTS`` are (or when
the kernel refuses an inotify watch or instance). Each is now a counter in
``OomWatch.counts`` (the agent's ``lifecycle_oom_early_evicted_total`` and
``lifecycle_oom_parents_unwatched_total``) with one warning per cause. Real
inotify on plain directories stands in for cgroupfs (its births are the same
``IN_CREATE`` records; the files are plain counters).
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from stellaops_runtime.lifecycle import cgroup_births, oom_watch
from stellaops_runtime.lifecycle.metrics import LifecycleCollector, LifecycleStats
from stellaops_runtime.lifecycle.oom_watch import OomWatch

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _cgroup(d: Path) -> str:
    d.mkdir(parents=True)
    (d / "memory.events").write_text("oom 0\noom_kill 0\n")
    return str(d / "memory.events")


async def _until(check: object, what: str) -> None:
    for _ in range(6000):  # 60 s
        if callable(check) and check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_early_watch_dropped_for_a_newer_one_is_counted_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(oom_watch, "MAX_EARLY", 1)
    parent = tmp_path / "docker"

    async def main() -> None:
        w = OomWatch(str(tmp_path))
        w.watch(("", A), 1, _cgroup(parent / A), False)
        assert w.counts().early_evicted == 0
        for i, name in enumerate((B, C, "d" * 64)):
            staged = tmp_path / "staging" / name
            _cgroup(staged)
            os.rename(staged, parent / name)  # whole, as cgroupfs makes it
            await _until(lambda name=name: w.seen((oom_watch._EARLY, name)) is not None, f"{name[:1]} opened")
            assert w.counts().early_evicted == i
        assert w.final(("", B)) is None  # dropped: its kill could only come from the runtime
        w.close()
        assert w.counts().early_evicted == 2  # a counter: never goes down

    with caplog.at_level("WARNING", logger="stellaops_runtime.lifecycle.oom_watch"):
        asyncio.run(main())
    said = [r for r in caplog.records if "the oldest is dropped" in r.getMessage()]
    assert len(said) == 1, caplog.text  # once, not per eviction


def test_a_parent_not_watched_for_the_limit_is_counted_per_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cgroup_births, "MAX_PARENTS", 1)

    async def main() -> None:
        w = OomWatch(str(tmp_path))
        w.watch(("", A), 1, _cgroup(tmp_path / "pod-1" / A), False)
        assert w.counts().parents_unwatched == 0
        w.watch(("", B), 2, _cgroup(tmp_path / "pod-2" / B), False)  # the one place taken
        w.watch(("", C), 3, _cgroup(tmp_path / "pod-2" / C), False)
        assert w.counts().parents_unwatched == 2
        w.watch(("", C), 3, str(tmp_path / "pod-2" / C / "memory.events"), False)  # the same cgroup: kept
        assert w.counts().parents_unwatched == 2
        w.close()
        assert w.counts().parents_unwatched == 2  # carried over a closed watcher

    with caplog.at_level("WARNING", logger="stellaops_runtime.lifecycle.cgroup_births"):
        asyncio.run(main())
    said = [r for r in caplog.records if "new cgroups are not watched" in r.getMessage()]
    assert len(said) == 1 and "1 parent directories are watched" in said[0].getMessage(), caplog.text


def test_a_parent_the_kernel_refuses_is_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``inotify_add_watch`` fails (here ENOTDIR, on a node ENOSPC at ``max_user_watches``); a
    parent already gone (ENOENT) took its containers with it and is not a loss."""
    births = cgroup_births.Births()
    try:
        (tmp_path / "file").write_text("")
        with caplog.at_level("WARNING", logger="stellaops_runtime.lifecycle.cgroup_births"):
            assert births.add(str(tmp_path / "file"), False) is False
            assert births.add(str(tmp_path / "gone"), False) is False
            assert births.add(str(tmp_path), False) is True
        assert births.refused == 1 and len(births) == 1
        assert "the kernel refused to watch" in caplog.text and "Not a directory" in caplog.text
    finally:
        births.close()


def test_no_inotify_instance_is_counted_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``inotify_init1`` refused (``fs.inotify.max_user_instances`` reached): every watched
    container's siblings go unwatched; counted per container, said once."""

    def refused() -> cgroup_births.Births:
        raise OSError(errno.EMFILE, "inotify_init1: Too many open files")

    monkeypatch.setattr(oom_watch, "Births", refused)

    async def main() -> None:
        w = OomWatch(str(tmp_path))
        w.watch(("", A), 1, _cgroup(tmp_path / "pod" / A), False)
        w.watch(("", B), 2, _cgroup(tmp_path / "pod" / B), False)
        assert w.counts().parents_unwatched == 2 and len(w) == 2  # the counters themselves are held
        w.close()

    with caplog.at_level("WARNING", logger="stellaops_runtime.lifecycle.oom_watch"):
        asyncio.run(main())
    assert caplog.text.count("new cgroups are not watched") == 1, caplog.text


def test_outside_an_event_loop_nothing_is_counted(tmp_path: Path) -> None:
    """No loop (a read at the exit only, as in tools and tests) is not a loss of the agent's."""
    w = OomWatch(str(tmp_path))
    w.watch(("", A), 1, _cgroup(tmp_path / "pod" / A), False)
    assert tuple(w.counts()) == (0, 0, 0, 0, 0, 0)
    w.close()


def test_the_collector_yields_the_loss_families() -> None:
    counts = oom_watch.OomCounts(7, 1, 2, 3, 4, 5)
    c = LifecycleCollector(LifecycleStats(), lambda: (0, 0), lambda: counts)
    samples = {s.name: s.value for m in c.collect() for s in m.samples}
    assert samples["stellaops_runtime_lifecycle_oom_early_evicted_total"] == 3
    assert samples["stellaops_runtime_lifecycle_oom_parents_unwatched_total"] == 4
    assert samples["stellaops_runtime_lifecycle_oom_unread_total"] == 5  # test_oom_watch_unread.py
