"""A container whose OOM kill the watch could not read is "not known", never "not OOM-killed".

Two ways the kernel's count of a container that dies at its start escaped the
OOM watch (lifecycle/oom_watch.py), and the exit then said ``oom_killed:
false`` for a container the kernel had OOM-killed (seen against a real Docker
Engine on a loaded machine, tests/integration/test_docker_missed_oom.py):

- on cgroup v1 the kernel notifies as the OOM begins and counts the kill only
  after printing its report; the runtime removed the cgroup in between. A
  notification that finds the cgroup there now counts as an OOM kill
  (containerd's own rule for ``/tasks/oom`` on v1);
- the new cgroup was created and removed before the observer's loop handled
  its birth. The exit now handles pending births first, and a cgroup gone
  before it was opened leaves the answer unknown (``missed``), counted in
  ``unread`` (``lifecycle_oom_unread_total``).

Real inotify and a real eventfd on plain directories stand in for cgroupfs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from stellaops_runtime.cli.containers import _event_line
from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent
from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle import oom_watch
from stellaops_runtime.lifecycle.oom_watch import OomWatch

A, B = "a" * 64, "b" * 64


def _cgroup(d: Path, name: str = "memory.events") -> str:
    d.mkdir(parents=True)
    (d / name).write_text("oom 0\noom_kill 0\n" if name == "memory.events" else "under_oom 0\noom_kill 0\n")
    return str(d / name)


async def _until(check: object, what: str) -> None:
    for _ in range(6000):  # 60 s
        if callable(check) and check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_cgroup_gone_before_the_loop_handled_its_birth_is_not_known(tmp_path: Path) -> None:
    parent = tmp_path / "docker"

    async def main() -> None:
        w = OomWatch(str(tmp_path))
        w.watch(("", A), 1, _cgroup(parent / A), False)
        staged = tmp_path / "staging" / B
        _cgroup(staged)
        os.rename(staged, parent / B)  # born ...
        shutil.rmtree(parent / B)  # ... and gone, the loop never ran in between
        assert w.final(("", B)) is None  # never watched
        assert w.missed(("", B)) and w.counts().unread == 1
        assert w.final(("", B)) is None and w.missed(("", B))  # a second exit event: the same
        assert not w.missed(("", A)) and w.final(("", A)) == 0
        # Born again (a restart, same id), opened in time: known again.
        staged = tmp_path / "staging2" / B
        _cgroup(staged)
        os.rename(staged, parent / B)
        await _until(lambda: w.seen((oom_watch._EARLY, B)) is not None, "the new cgroup opened")
        assert not w.missed(("", B)) and w.final(("", B)) == 0 and w.counts().unread == 1
        w.forget(("", B))
        w.close()

    asyncio.run(main())


def test_a_v1_notification_while_the_cgroup_lives_is_an_oom_kill(tmp_path: Path) -> None:
    """The count still says 0 when the cgroup goes (the kernel had not counted the kill yet)."""

    async def main() -> None:
        w = OomWatch(str(tmp_path))
        counter = _cgroup(tmp_path / "memory" / "docker" / A, "memory.oom_control")
        key = ("", A)
        w.watch(key, 1, counter, True)
        watch = w._watches[key]
        assert watch.event_fd >= 0 and w.seen(key) == 0
        os.eventfd_write(watch.event_fd, 1)  # as the kernel signals when an OOM begins
        await _until(lambda: w.notifications == 1, "the notification handled")
        assert w.seen(key) == 0  # the kill not counted yet
        assert w.final(key) == 1
        plain = ("", B)  # no notification while it lived: no kill
        w.watch(plain, 2, _cgroup(tmp_path / "memory" / "docker" / B, "memory.oom_control"), True)
        assert w.final(plain) == 0
        w.close()

    asyncio.run(main())


def test_v1_signals_found_after_the_cgroup_went_count_an_oom_past_the_removal(tmp_path: Path) -> None:
    """The loop handled the eventfd only after the cgroup was removed: the removal signals once, so
    a count above one means an OOM began too, whether both came together or one after the other."""

    async def main() -> None:
        w = OomWatch(str(tmp_path))

        def gone_cgroup(cid: str) -> tuple[tuple[str, str], int]:
            key = ("", cid)
            w.watch(key, 1, _cgroup(tmp_path / "memory" / cid, "memory.oom_control"), True)
            watch = w._watches[key]
            d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
            os.dup2(d, watch.fd)  # its reads fail now, as a removed cgroup's do (ENODEV)
            os.close(d)
            return key, watch.event_fd

        for cid, signals, kills in (("1" * 64, (2,), 1), ("2" * 64, (1,), 0), ("3" * 64, (1, 1), 1)):
            key, efd = gone_cgroup(cid)
            for n in signals:
                seen = w.notifications
                os.eventfd_write(efd, n)
                await _until(lambda seen=seen: w.notifications > seen, "the signal handled")
            assert w.final(key) == kills, (signals, kills)
        w.close()

    asyncio.run(main())


def test_unknown_is_said_in_the_event_and_the_command() -> None:
    ev = ContainerLifecycleEvent(
        event_type=T.DIE, runtime="docker", namespace="", container_id=B, exit_code=137,
        oom_killed=None, timestamp=datetime(2026, 12, 5, tzinfo=UTC),
    )  # fmt: skip
    assert ev.to_json()["oom_killed"] is None
    assert "oom_killed=unknown" in _event_line(ev)
    assert "oom_killed" not in _event_line(ContainerLifecycleEvent(T.DIE, "docker", "", B, exit_code=137))


def test_v1_an_ancestors_oom_counts_only_by_the_victims_count(tmp_path: Path) -> None:
    """v1 notifies every cgroup below the one out of memory. A notification with no failed charge
    at the cgroup's own limits is an ancestor's (a pod's limit): not an OOM kill here unless the
    victim is counted here; its cgroup gone before the count could say is not known (``unsure``),
    and the removal's own signal after it is not taken for a second one."""

    async def main() -> None:
        w = OomWatch(str(tmp_path))

        def cgroup(cid: str) -> tuple[tuple[str, str], Path]:
            d = tmp_path / "memory" / "pod" / cid
            counter = _cgroup(d, "memory.oom_control")
            (d / "memory.failcnt").write_text("0\n")
            w.watch(("", cid), 1, counter, True)
            return ("", cid), d

        async def notify(key: tuple[str, str], n: int = 1) -> None:
            seen = w.notifications
            os.eventfd_write(w._watches[key].event_fd, n)
            await _until(lambda: w.notifications > seen, "the notification handled")

        def remove(key: tuple[str, str]) -> None:
            watch = w._watches[key]
            d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
            os.dup2(d, watch.fd)  # its reads fail now, as a removed cgroup's do (ENODEV)
            os.close(d)

        sibling, _ = cgroup(A)
        await notify(sibling)
        assert w.unsure(sibling) and w.seen(sibling) == 0
        remove(sibling)
        await notify(sibling)  # the removal's signal
        unread = w.counts().unread
        assert w.final(sibling) == 0 and w.unsure(sibling)  # the exit says unknown (base.py)
        assert w.counts().unread == unread + 1  # counted once, a second exit event adds nothing
        assert w.final(sibling) == 0 and w.counts().unread == unread + 1

        own, d = cgroup(B)
        (d / "memory.failcnt").write_text("3\n")  # its own limit failed a charge: its own OOM
        await notify(own)
        assert not w.unsure(own) and w.final(own) == 1

        victim, d = cgroup("c" * 64)
        await notify(victim)
        (d / "memory.oom_control").write_text("under_oom 0\noom_kill 1\n")  # the victim was here
        await _until(lambda: w.seen(victim) == 1, "the reread")
        assert not w.unsure(victim) and w.final(victim) == 1

        alive, _ = cgroup("d" * 64)
        await notify(alive)
        await _until(lambda: not w.unsure(alive), "the last reread")  # alive, no kill: ruled out
        assert w.final(alive) == 0
        w.close()

    asyncio.run(main())
