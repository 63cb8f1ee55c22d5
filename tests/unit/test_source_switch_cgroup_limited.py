"""Probes limited to cgroups watch no other container: their span is a gap, never "not observed" (RSW4, s43).

With ``native.cgroupAllow`` set, the BCC probes the switch runs while Tetragon
is away count only the calls of those cgroups (native/probes/prelude.py: the
kernel drops the rest before any counter). Every other container of the node,
and its host processes, ran unprobed meanwhile, yet nothing marked that time:
an image with one container in an allowed cgroup and another outside had
EbpfDeep windows of the first one's calls, no gap, and ``query observed``
answered "not observed" about a function only the unprobed container ran; an
image with no allowed container at all met no gap on a day Tetragon watched it
before the outage. Which images ran outside those cgroups the agent cannot
tell from the probes (they saw nothing of them), so the span of such a load is
a node-wide gap (source ``none``), marked on the switch's tick as the probes'
drops are (a killed agent's watch record never claims past what is marked),
and up to the switch's own gap at a switch back or a reload. The calls the
probes counted stay counted: "observed" still holds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent import source_switch_loads as sl
from stellaops_runtime.agent.source_switch import BCC, TETRAGON
from stellaops_runtime.native import cgroup_ids
from stellaops_runtime.native.config import NativeConfig
from tests.unit.test_source_switch_cgroup_lookup import CID, _back, call, limited
from tests.unit.test_source_switch_overlap import CRC32, S, fake_probes
from tests.unit.test_source_switch_overlap_attach import switch


def _covered(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether the union of ``spans`` covers [start, end)."""
    at = start
    for a, b in sorted(spans):
        if a > at:
            break
        at = max(at, b)
    return at >= end


def test_probes_limited_to_cgroups_leave_their_span_a_node_wide_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The allowed container's cgroup is found (the filter is exact, SW4's undecided case is not this);
    the probes attached at now - 30 s, read their counters last at now - 20 s (a tick), and the switch
    goes back to Tetragon. Seen failing before the fix: no gap over the probes' span at all."""
    tree = tmp_path / "cgroup"
    (tree / f"cri-containerd-{CID}.scope").mkdir(parents=True)
    (tree / "cgroup.controllers").write_text("")  # cgroup v2
    ino = (tree / f"cri-containerd-{CID}.scope").stat().st_ino
    monkeypatch.setattr(cgroup_ids, "ROOTS", (str(tree),))
    now = time.time_ns()
    sw = switch()
    handed = limited(sw, now, (ino,))
    b = sw.bcc
    assert b is not None
    b.stats.connected, b.stats.detached_ns = True, 0  # running
    b.queued_ns = b.noted_ns = b.in_flight_ns = now - 20 * S
    asyncio.run(sw._tick_bcc(time.monotonic()))
    gaps = [(a[1], a[2]) for name, a in handed if name == "source_gap" and a[0] == "n"]
    assert _covered(gaps, now - 30 * S, now - 20 * S), gaps  # live, before any switch back
    alive = sw.watching_ns()
    assert alive is not None and alive <= now - 20 * S  # a killed agent's record: inside what is marked

    b.stats.connected, b.stats.detached_ns = False, now - 10 * S
    sw._reload_check_at = sw._next_check = float("inf")

    async def back() -> None:
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(back())
    assert sw.mode == TETRAGON
    gaps = [(a[1], a[2]) for name, a in handed if name == "source_gap" and a[0] == "n"]
    assert _covered(gaps, now - 30 * S, now - 10 * S), gaps  # up to the switch's own gap
    o = sw._segments[-1].overlap
    assert o is not None and not o.undecided  # the filter stays exact: only the allowed container's calls

    # Tetragon watches until a later outage; the next limited probes mark their own span, not the time
    # Tetragon watched in between
    asyncio.run(sw._close_gap(now + S))  # Tetragon delivers: the switch's own gap ends
    later = fake_probes(0, [f"uprobe {CRC32.label()}"])
    later.stats.connected, later.stats.attached_ns = True, now + 70 * S
    later.queued_ns = later.noted_ns = later.in_flight_ns = now + 80 * S
    sw.bcc, sw.mode, sw._bcc_since_ns = later, BCC, now + 60 * S
    sw._boundary(BCC, NativeConfig(uprobes=(CRC32,), cgroup_allow=(ino,)))
    handed.clear()
    asyncio.run(sw._tick_bcc(time.monotonic()))
    gaps = [(a[1], a[2]) for name, a in handed if name == "source_gap" and a[0] == "n"]
    assert (now + 70 * S, now + 80 * S) in gaps
    assert not [g for g in gaps if g[0] < now + 60 * S], gaps  # Tetragon's time stays watched


def test_probes_not_limited_mark_no_such_gap(tmp_path: Path) -> None:
    """Guard: probes on every cgroup (no ``cgroupAllow``) watched the whole node: no gap of theirs."""
    now = time.time_ns()
    sw = switch()
    handed = limited(sw, now, ())
    b = sw.bcc
    assert b is not None
    b.stats.connected, b.stats.detached_ns = True, 0
    b.queued_ns = b.noted_ns = b.in_flight_ns = now - 20 * S
    asyncio.run(sw._tick_bcc(time.monotonic()))
    assert not [a for name, a in handed if name == "source_gap"]


def test_a_host_cgroup_allowed_skips_the_host_processes_cached_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host service's cgroup allowed (``system.slice/ssh.service``: found, naming no container). The
    probes counted its processes' calls, stored under the node's host image; Tetragon's cached copies
    carry no container, nor can a host process's be told from another's: each is skipped (the span is
    a gap, above), never counted twice. A container's cached call is still counted (the probes never
    counted it). Seen failing before the fix: the host call was counted again."""
    tree = tmp_path / "cgroup"
    (tree / "system.slice" / "ssh.service").mkdir(parents=True)
    (tree / "cgroup.controllers").write_text("")
    host = (tree / "system.slice" / "ssh.service").stat().st_ino
    monkeypatch.setattr(cgroup_ids, "ROOTS", (str(tree),))
    now = time.time_ns()
    spool = str(tmp_path / "spool")
    sw = switch(spool)
    limited(sw, now, (host,))
    asyncio.run(_back(sw))
    o = sw._segments[-1].overlap
    assert o is not None and not o.undecided
    assert o.counted_by_probes(call("", now - 20 * S)), "a host process's cached call: counted twice"
    assert not o.counted_by_probes(call(CID, now - 20 * S))  # a container's: the probes never counted it
    assert not o.counted_by_probes(call("", now - 35 * S))  # before the attach: Tetragon's alone
    raw = (tmp_path / "spool.probe-loads").read_bytes()  # an agent restarted meanwhile skips it too
    r = sl.decode(raw, boot=sl.this_boot(), cut_ns=now)
    assert r is not None and r.counted_by_probes(call("", now - 20 * S))
    assert not r.counted_by_probes(call(CID, now - 20 * S))


def test_a_lookup_that_fails_leaves_the_load_undecided_not_the_switch_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walk raised (a read of the cgroup tree failing mid-directory, the thread pool gone): the
    switch back must still happen, the load undecided (skipped, its span a gap). Seen failing before
    the fix: the error left the switch on the probes, every tick failing before their drops were
    marked."""

    def broken(*_: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cgroup_ids, "look_up", broken)
    now = time.time_ns()
    sw = switch()
    handed = limited(sw, now, (12345,))
    asyncio.run(_back(sw))
    assert sw.mode == TETRAGON
    o = sw._segments[-1].overlap
    assert o is not None and o.undecided == [(now - 30 * S, now - 10 * S)]
    assert o.counted_by_probes(call(CID, now - 20 * S))
    assert ("n", now - 30 * S, now - 10 * S) in [a for name, a in handed if name == "source_gap"]
