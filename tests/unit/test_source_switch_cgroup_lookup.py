"""The ``cgroupAllow`` lookup at the BCC-to-Tetragon switch back, when it cannot see the node (SW4, s43).

Probes limited to cgroups (``native.cgroupAllow``) counted only those cgroups'
calls; Tetragon's cached copies carry a container id, not a cgroup id, so the
overlap filter matches the containers those cgroups are (native/cgroup_ids.py).
An agent that cannot read the node's cgroup tree (no ``/proc/1/root`` access, a
private cgroup namespace whose own ``/sys/fs/cgroup`` shows only itself, cgroup
v1, a permission error, a vanished mount) finds no allowed cgroup at all: the
filter matched nothing and skipped nothing, so every call the probes counted
was counted again from Tetragon's cache. Which cached call is whose cannot be
decided then: the filter now skips each cached call of the load's functions in
its span, and the span is a node-wide gap (unknown, never "not observed").

The walk (up to 50,000 directories) ran on the event loop once per load; it runs
on a thread now, and the loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent import source_switch_loads as sl
from stellaops_runtime.agent.source_switch import BCC, SourceSwitch
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.native import cgroup_ids
from stellaops_runtime.native.config import NativeConfig
from tests.unit.test_source_switch_overlap import CRC32, S, fake_probes
from tests.unit.test_source_switch_overlap_attach import switch

CID, OTHER = "ab" * 32, "cd" * 32


def call(container: str, ts: int) -> RuntimeCallEvent:
    c = ContainerInfo(id=container) if container else None
    return RuntimeCallEvent(EventKind.UPROBE, ts, "n", ProcessInfo(pid=1, binary="/bin/a"), c,
                            function_name="crc32", module=CRC32.binary)  # fmt: skip


def limited(sw: SourceSwitch, now: int, allow: tuple[int, ...]) -> list[tuple[str, tuple[Any, ...]]]:
    """``sw`` ran crc32's probes limited to ``allow`` from now - 30 s to now - 10 s; what it handed
    the pipeline thread is returned (function name, arguments), filled as it runs."""
    handed: list[tuple[str, tuple[Any, ...]]] = []

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        handed.append((getattr(fn, "__name__", ""), args))
        return fn(*args)

    sw.in_pipeline = in_pipeline
    probes = fake_probes(now - 10 * S, [f"uprobe {CRC32.label()}"])
    probes.stats.attached_ns = now - 30 * S
    sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 40 * S
    sw._boundary(BCC, NativeConfig(uprobes=(CRC32,), cgroup_allow=allow))
    return handed


async def _back(sw: SourceSwitch) -> None:
    await sw._to_tetragon()
    await sw._stop_active()


def test_a_node_tree_it_cannot_read_skips_the_loads_calls_and_marks_its_span_a_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent sees only its own cgroup namespace (/proc/1/root unreadable): the allowed
    container's cgroup is in no tree it can read. Seen failing before the fix: the container's
    cached call was kept (counted twice), and no gap was marked."""
    node = tmp_path / "node"  # the node's tree, which this agent cannot see
    (node / f"cri-containerd-{CID}.scope").mkdir(parents=True)
    ino = (node / f"cri-containerd-{CID}.scope").stat().st_ino
    own = tmp_path / "own"  # its own namespace's /sys/fs/cgroup: itself alone
    (own / "init.scope").mkdir(parents=True)
    (own / "cgroup.controllers").write_text("")  # cgroup v2, as the node's
    monkeypatch.setattr(cgroup_ids, "ROOTS", (str(tmp_path / "proc-1-root-unreadable"), str(own)))
    now = time.time_ns()
    spool = str(tmp_path / "spool")
    sw = switch(spool)
    handed = limited(sw, now, (ino,))
    asyncio.run(_back(sw))
    o = sw._segments[-1].overlap
    assert o is not None
    assert o.counted_by_probes(call(CID, now - 20 * S)), "the allowed container's call: counted twice"
    assert o.counted_by_probes(call(OTHER, now - 20 * S))  # undecidable: skipped, inside the gap below
    assert o.counted_by_probes(call("", now - 20 * S))
    assert not o.counted_by_probes(call(CID, now - 35 * S))  # before the attach: Tetragon's alone
    gaps = [a for name, a in handed if name == "source_gap"]
    assert ("n", now - 30 * S, now - 10 * S) in gaps, gaps  # the load's span: unknown, not "not observed"

    # an agent restarted meanwhile reads the kept file: the same skips, and it marks the span too
    raw = (tmp_path / "spool.probe-loads").read_bytes()
    r = sl.decode(raw, boot=sl.this_boot(), cut_ns=now)
    assert r is not None and r.counted_by_probes(call(OTHER, now - 20 * S))
    with pytest.raises(sl.LoadsError):  # a hostile flag is refused (the file ignored), not taken as true
        sl.decode(raw.replace(b'"cgroups_unseen": true', b'"cgroups_unseen": 1'), boot=sl.this_boot(),
                  cut_ns=now)  # fmt: skip
    b = switch(spool)
    handed_b = limited(b, now, (ino,))
    b.mode = "tetragon"
    b.bcc = None
    b._bcc_since_ns = 0
    b.resume_outage(now - 5 * S)
    asyncio.run(b._tick())
    assert ("n", now - 30 * S, now - 10 * S) in [a for name, a in handed_b if name == "source_gap"]


def test_a_cgroup_found_naming_a_container_is_matched_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guard: every allowed cgroup found and named: only its container's calls are skipped, the load
    is not undecided (its span is still a gap: probes limited to cgroups watched no other container,
    test_source_switch_cgroup_limited.py)."""
    tree = tmp_path / "cgroup"
    (tree / f"cri-containerd-{CID}.scope").mkdir(parents=True)
    (tree / "cgroup.controllers").write_text("")  # a cgroup v2 tree (native/cgroup_ids.py)
    ino = (tree / f"cri-containerd-{CID}.scope").stat().st_ino
    monkeypatch.setattr(cgroup_ids, "ROOTS", (str(tree),))
    now = time.time_ns()
    sw = switch()
    limited(sw, now, (ino,))
    asyncio.run(_back(sw))
    o = sw._segments[-1].overlap
    assert o is not None and o.counted_by_probes(call(CID, now - 20 * S))
    assert not o.counted_by_probes(call(OTHER, now - 20 * S))
    assert not o.undecided


def test_the_walk_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk is blocked until the event loop releases it: the loop must keep serving while it
    runs. Seen failing before the fix: the walk held the loop, nothing released it."""
    tree = tmp_path / "cgroup"
    (tree / f"cri-containerd-{CID}.scope").mkdir(parents=True)
    (tree / "cgroup.controllers").write_text("")  # a cgroup v2 tree (native/cgroup_ids.py)
    ino = (tree / f"cri-containerd-{CID}.scope").stat().st_ino
    monkeypatch.setattr(cgroup_ids, "ROOTS", (str(tree),))
    released = threading.Event()
    by_loop: list[bool] = []
    real = os.scandir
    loop: Any = None
    entered: Any = None

    def scandir(path: Any) -> Any:
        if str(path) == str(tree) and not by_loop:
            loop.call_soon_threadsafe(entered.set)
            by_loop.append(released.wait(1.0))  # False: nobody on the loop released it
        return real(path)

    monkeypatch.setattr(cgroup_ids.os, "scandir", scandir)
    now = time.time_ns()
    sw = switch()
    limited(sw, now, (ino,))

    async def main() -> None:
        nonlocal loop, entered
        loop, entered = asyncio.get_running_loop(), asyncio.Event()
        task = asyncio.create_task(_back(sw))
        await asyncio.wait({task, asyncio.create_task(entered.wait())}, return_when=asyncio.FIRST_COMPLETED)
        released.set()  # the loop serves this while the walk waits
        await task

    asyncio.run(main())
    assert by_loop == [True], "the walk held the event loop"
    o = sw._segments[-1].overlap
    assert o is not None and o.counted_by_probes(call(CID, now - 20 * S))  # the same result


def test_a_cgroup_gone_from_a_tree_read_whole_is_no_reason_for_a_gap(tmp_path: Path) -> None:
    """A cgroup removed before the look (its container ended: a cgroup is removed only once empty,
    and its id is not used again) counted nothing, when the walk read the node's tree whole and found
    the others: no gap for it. A tree read in part (a permission error) leaves it undecided.
    Seen failing before the refinement: the gone cgroup made the load undecided."""
    tree = tmp_path / "cgroup"
    (tree / f"cri-containerd-{CID}.scope").mkdir(parents=True)
    (tree / "cgroup.controllers").write_text("")  # a cgroup v2 tree (native/cgroup_ids.py)
    ino = (tree / f"cri-containerd-{CID}.scope").stat().st_ino
    locked = tree / "kubepods.slice"  # made first: a directory made later may take the gone one's inode
    locked.mkdir()
    gone = tree / "gone.scope"
    gone.mkdir()
    gone_ino = gone.stat().st_ino
    gone.rmdir()
    assert cgroup_ids.look_up([ino, gone_ino], (str(tree),)) == ({ino: CID}, frozenset())
    # nothing found at all: another tree (a private namespace's view, cgroup v1), undecided
    assert cgroup_ids.look_up([gone_ino], (str(tree),)) == ({}, frozenset({gone_ino}))
    real = os.scandir

    def scandir(path: Any) -> Any:
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(cgroup_ids.os, "scandir", scandir)
        assert cgroup_ids.look_up([ino, gone_ino], (str(tree),)) == ({ino: CID}, frozenset({gone_ino}))
