"""A replaced probed node file's gap ends when Tetragon is seen loading its policies anew.

agent/policy_reloads.py (when each object of ours was loaded, from ListTracingPolicies),
agent/node_file_policies.py (which objects probe each file, from the probe ConfigMap) and
agent/node_file_gaps.py ``reloaded`` (the gap's end, and the identity the baseline moves to).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent import node_file_gaps, policy_load_gaps, policy_reloads
from stellaops_runtime.agent.capabilities import policy_entry, without_ids
from stellaops_runtime.agent.node_file_baseline import Baseline
from stellaops_runtime.agent.node_file_gaps import NodeFileGaps
from stellaops_runtime.agent.node_file_policies import PREFIX, probing_policies
from stellaops_runtime.agent.policy_load_gaps import PolicyLoadWatch
from stellaops_runtime.agent.policy_reloads import TETRAGON_ID, PolicyReloads, server_identity, tetragon_id
from stellaops_runtime.controller.render_policy import tetragon_policy_names
from stellaops_runtime.wire.tetragon import sensors_pb2

S = 1_000_000_000
UP = ("shop", "stellaops-web-uprobes")
SYS = ("shop", "stellaops-web")


def ours(*entries: tuple[tuple[str, str], str, int]) -> dict:
    return {
        k: {"name": k[1], "state": st, "objectUid": "u-" + k[1], "objectGeneration": g}
        for k, st, g in entries
    }


def test_a_load_counts_only_when_the_poll_before_it_asked_after_the_moment() -> None:
    """The first poll's objects were loaded at a moment unknown; a new generation was loaded after the
    poll before it asked (not after its answer came back); it counts from the poll listing it tracing."""
    r = PolicyReloads()
    r.listed(ours((UP, "ENABLED", 1)), asked_ns=10 * S, now_ns=11 * S)
    assert r.settled_after([UP], 0) == 11 * S and r.settled_after([UP], 1) is None  # loaded at 0
    r.listed(ours((UP, "ENABLED", 1)), asked_ns=20 * S, now_ns=21 * S)
    r.listed(ours((UP, "LOADING", 2)), asked_ns=30 * S, now_ns=31 * S)  # loaded after 20 s
    assert r.settled_after([UP], 20 * S) is None  # not tracing yet
    r.listed(ours((UP, "ENABLED", 2)), asked_ns=40 * S, now_ns=41 * S)
    assert r.settled_after([UP], 20 * S) == 41 * S
    assert r.settled_after([UP], 20 * S + 1) is None  # a replacement seen after the poll asked
    assert r.settled_after([UP, SYS], 20 * S) is None  # one not listed: never
    assert r.settled_after(None, 20 * S) == 41 * S  # every object of ours listed
    r.listed({}, asked_ns=50 * S, now_ns=51 * S)  # Tetragon restarted: nothing listed
    assert r.settled_after(None, 0) is None
    r.listed(ours((UP, "ENABLED", 2)), asked_ns=60 * S, now_ns=61 * S)  # listed again: loaded after 50 s
    assert r.settled_after([UP], 50 * S) == 61 * S
    reborn = ours((UP, "ENABLED", 2))
    reborn[UP]["objectUid"] = "u-recreated"  # deleted and created again: generation 1 or not, anew
    r.listed(reborn, asked_ns=70 * S, now_ns=71 * S)
    assert r.settled_after([UP], 60 * S) == 71 * S
    assert policy_reloads.TRACING == policy_load_gaps.TRACING_STATES


def test_the_policy_watch_feeds_its_reloads_with_the_time_the_poll_asked() -> None:
    w = PolicyLoadWatch(start_ns=0, relabel_seconds=0)
    e = ours((UP, "ENABLED", 1))[UP] | {"namespace": "shop"}
    w.observe([e], now_ns=11 * S, connected=True, connects=1, asked_mono_ns=10 * S)
    w.observe([e | {"objectGeneration": 2}], now_ns=21 * S, connected=True, connects=1, asked_mono_ns=20 * S)
    assert w.reloads.settled_after([UP], 10 * S) == 21 * S
    assert w.reloads.settled_after([UP], 10 * S + 1) is None


def _entry(name: str, paths: list[str], objects: list[str] | None, namespace: str = "shop") -> dict:
    e: dict = {
        "name": name,
        "namespace": namespace,
        "functions": [{"binaryPath": p, "symbols": ["f"]} for p in paths],
    }
    if objects is not None:
        e["tetragonPolicies"] = objects
    return e


def test_the_objects_probing_each_file_are_the_entries_uprobes_objects() -> None:
    """The uprobes object of each entry naming the file (the operator's own name for it); all the
    entry's objects when it cannot be told; None (every object of ours) when the entry names none."""
    assert tetragon_policy_names(name="web")[1] == f"{PREFIX}-web-uprobes"
    long = "x" * 250
    policies = {
        "a": _entry("web", ["/usr/lib/libssl.so.3"], ["stellaops-web", "stellaops-web-uprobes"]),
        "b": _entry("api", ["/usr/lib/libssl.so.3", "/usr/bin/app"], ["stellaops-api-uprobes"], ""),
        "c": _entry(long, ["/usr/bin/app"], [tetragon_policy_names(name=long)[1], "stellaops-y"]),
        "d": _entry("old", ["/usr/bin/other"], None),
    }
    got = probing_policies(policies, "")
    assert got["/usr/lib/libssl.so.3"] == {UP, ("", "stellaops-api-uprobes")}
    assert got["/usr/bin/app"] == {
        ("", "stellaops-api-uprobes"), ("shop", tetragon_policy_names(name=long)[1]), ("shop", "stellaops-y")
    }  # fmt: skip
    assert got["/usr/bin/other"] is None


def _replaced(gaps: NodeFileGaps, f: str = "/f") -> None:
    gaps.compare((f,), ((1, 1, 8, 5, 5),), ((1, 2, 9, 6, 6),), 100)


def test_the_gap_ends_at_the_poll_that_saw_every_probing_object_reloaded_and_tracing(tmp_path: Path) -> None:
    """Seen failing before the change: nothing ended the gap. A reload seen before the replacement,
    or of another object, does not end it; the reload after it does, at the poll seeing it tracing,
    and the baseline moves to the file now at the path."""
    gaps = NodeFileGaps(str(tmp_path / "spool.tetragon-files"))
    gaps.baseline.check(["/f"], [(1, 1, 8, 5, 5)])
    r = gaps.reloads = PolicyReloads()
    gaps.probing = {"/f": frozenset({UP})}
    r.listed(ours((UP, "ENABLED", 1), (SYS, "ENABLED", 1)), asked_ns=1, now_ns=2)
    _replaced(gaps)
    assert gaps.open and gaps.reloaded() == {}
    handed = gaps.take(1000)[0][1]  # wall
    gaps.marked()
    asked = time.monotonic_ns()  # a moment after the replacement was seen (monotonic)
    r.listed(ours((UP, "ENABLED", 1), (SYS, "ENABLED", 2)), asked_ns=asked, now_ns=1001)
    assert gaps.reloaded() == {} and gaps.open  # another object reloaded
    r.listed(ours((UP, "LOADING", 2), (SYS, "ENABLED", 2)), asked_ns=asked + 2, now_ns=1003)
    assert gaps.reloaded() == {} and gaps.open  # loading: not tracing yet
    r.listed(ours((UP, "ENABLED", 2), (SYS, "ENABLED", 2)), asked_ns=asked + 4, now_ns=1005)
    assert gaps.reloaded() == {"/f": (1, 2, 9, 6)}
    assert not gaps.open and gaps.ended == 1
    assert gaps.take(2000) == [(handed, 1005)]  # up to the poll that saw it tracing
    gaps.marked()
    assert gaps.take(3000) == [] and gaps.unstored_from() is None
    gaps.baseline.move({"/f": (1, 2, 9, 6)})
    assert Baseline(gaps.baseline.path).files == {"/f": (1, 2, 9, 6)}  # the next agent's baseline


def test_every_replaced_file_must_be_reloaded_and_an_untold_file_needs_every_object_of_ours() -> None:
    gaps = NodeFileGaps()
    r = gaps.reloads = PolicyReloads()
    gaps.probing = {"/f": frozenset({UP})}  # "/g": not told
    r.listed(ours((UP, "ENABLED", 1), (SYS, "ENABLED", 1)), asked_ns=1, now_ns=2)
    _replaced(gaps, "/f")
    _replaced(gaps, "/g")
    later = time.monotonic_ns()
    r.listed(ours((UP, "ENABLED", 1), (SYS, "ENABLED", 1)), asked_ns=later, now_ns=later + 1)
    r.listed(ours((UP, "ENABLED", 2), (SYS, "ENABLED", 1)), asked_ns=later + 2, now_ns=later + 3)
    assert set(gaps.reloaded()) == {"/f"} and gaps.open  # "/g" waits for every object of ours
    r.listed(ours((UP, "ENABLED", 2), (SYS, "ENABLED", 2)), asked_ns=later + 4, now_ns=later + 5)
    assert set(gaps.reloaded()) == {"/g"} and not gaps.open


def test_without_the_policy_watch_the_gap_stays_open() -> None:
    gaps = NodeFileGaps()
    _replaced(gaps)
    assert gaps.reloaded() == {} and gaps.open


def _partial(generation: int, *failed: dict, unnamed: int = 0) -> dict:
    """The uprobes object listed PARTIALLY_ENABLED with ``failed`` the hooks that did not load it names
    (and ``unnamed`` more that did not load: past the 20 the agent names)."""
    entry = ours((UP, "PARTIALLY_ENABLED", generation))
    loaded = 3 - len(failed) - unnamed
    entry[UP] |= {"hooksTotal": 3, "hooksLoaded": loaded, "failedHooks": list(failed)}
    return entry


def test_a_partial_load_that_may_have_missed_the_file_s_uprobe_does_not_end_the_gap() -> None:
    """Defect (s48 RNF): PARTIALLY_ENABLED counted as tracing, so a reload whose uprobe on the new
    build did not load (its symbol gone: CALL_NOT_FOUND) ended the gap while the calls into the file
    went unseen. A partial load ends it only when every hook that did not load is told and none is a
    uprobe (a syscall kprobe missing on this architecture)."""
    uprobe = {"section": "uprobes", "index": 0, "hook": "/usr/lib/libssl.so.3", "state": "CALL_NOT_FOUND"}
    kprobe = {"section": "kprobes", "index": 1, "hook": "do_sys_missing", "state": "CALL_NOT_FOUND"}
    for listed in (
        _partial(2, uprobe),
        _partial(2, kprobe, uprobe),
        _partial(2, kprobe | {"section": ""}),  # a section not told: it may be a uprobe
        _partial(2, kprobe, unnamed=1),  # a failed hook not told
        ours((UP, "PARTIALLY_ENABLED", 2)),  # no hook statuses at all
    ):
        r = PolicyReloads()
        r.listed(ours((UP, "ENABLED", 1)), asked_ns=10 * S, now_ns=11 * S)
        r.listed(listed, asked_ns=20 * S, now_ns=21 * S)
        assert r.settled_after([UP], 10 * S) is None, listed
        assert r.settled_after(None, 10 * S) is None, listed
        r.listed(ours((UP, "ENABLED", 2)), asked_ns=30 * S, now_ns=31 * S)  # the same load, all hooks now
        assert r.settled_after([UP], 10 * S) == 31 * S, listed
    r = PolicyReloads()
    r.listed(ours((UP, "ENABLED", 1)), asked_ns=10 * S, now_ns=11 * S)
    r.listed(_partial(2, kprobe), asked_ns=20 * S, now_ns=21 * S)  # its uprobes all loaded
    assert r.settled_after([UP], 10 * S) == 21 * S


def test_a_wall_clock_stepped_back_cannot_put_a_load_before_the_replacement_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """520582be's defect, its test (s48 RNF; seen failing at 3e7e513c: the gap ended): a poll asked,
    Tetragon loaded generation 2, then the wall clock stepped back an hour and the look saw the file
    replaced. On the wall clock the load's lower bound (the poll's ask) came after the replacement,
    so the reload, made on the old file, ended the gap; on the monotonic clock it does not."""
    w = PolicyLoadWatch(start_ns=0, relabel_seconds=0)
    gaps = NodeFileGaps()
    gaps.reloads, gaps.probing = w.reloads, {"/f": frozenset({UP})}
    e = ours((UP, "ENABLED", 1))[UP] | {"namespace": "shop"}
    wall = time.time_ns()
    w.observe([e], now_ns=wall, connected=True, connects=1)  # asked now; generation 2 loads after it
    monkeypatch.setattr(node_file_gaps.time, "time_ns", lambda: wall - 3600 * S)  # stepped back
    _replaced(gaps)
    w.observe([e | {"objectGeneration": 2}], now_ns=wall - 3599 * S, connected=True, connects=1)
    assert gaps.reloaded() == {} and gaps.open


def _numbered(number: int | None, generation: int = 1, state: str = "ENABLED") -> dict:
    """Our uprobes object listed under ``generation``, its load numbered ``number`` (None: not told)."""
    entry = ours((UP, state, generation))
    if number is not None:
        entry[UP][TETRAGON_ID] = number
    return entry


def test_a_new_load_number_under_the_same_version_is_a_reload() -> None:
    """Defect (s48 RNF, left alone 2): a reload that keeps the version (a Tetragon restart, a Node
    relabel, a metadata-only reload) was never seen, so the gap stayed open. Tetragon numbers each
    load (TracingPolicyStatus.id): another number under the same uid/generation counts, from the poll
    before it asked, with the same rules (tracing since, after the replacement)."""
    r = PolicyReloads()
    r.listed(_numbered(3), asked_ns=10 * S, now_ns=11 * S)
    r.listed(_numbered(3), asked_ns=20 * S, now_ns=21 * S)
    assert r.settled_after([UP], 10 * S) is None  # the same load
    r.listed(_numbered(7, state="LOADING"), asked_ns=30 * S, now_ns=31 * S)
    assert r.settled_after([UP], 20 * S) is None  # not tracing yet
    r.listed(_numbered(7), asked_ns=40 * S, now_ns=41 * S)
    assert r.settled_after([UP], 20 * S) == 41 * S and r.settled_after([UP], 20 * S + 1) is None
    r.listed(_numbered(1), asked_ns=50 * S, now_ns=51 * S)  # a restart numbering from 1 again
    assert r.settled_after([UP], 40 * S) == 51 * S
    assert r.settled_after(None, 40 * S) == 51 * S  # every object of ours listed


def test_a_load_number_absent_or_zero_tells_nothing() -> None:
    """An older Tetragon, or one that tells no number (0, left out by the agent): no reload is seen
    from a number appearing, going, or coming back after a gap in the telling; nor from a 0 told."""
    for numbers in ((None, None), (None, 4), (4, None), (4, None, 4), (4, 0), (0, 4)):
        r = PolicyReloads()
        for i, n in enumerate(numbers):
            listed = _numbered(n)
            if n == 0:
                listed[UP][TETRAGON_ID] = 0
            r.listed(listed, asked_ns=(10 + 10 * i) * S, now_ns=(11 + 10 * i) * S)
        assert r.settled_after([UP], 10 * S) is None, numbers
    r = PolicyReloads()  # a number not told in between: the last told is kept
    for i, n in enumerate((4, None, 5)):
        r.listed(_numbered(n), asked_ns=(10 + 10 * i) * S, now_ns=(11 + 10 * i) * S)
    assert r.settled_after([UP], 20 * S) == 31 * S


def test_the_agent_reads_each_load_number_for_the_watch_and_keeps_it_out_of_the_status() -> None:
    """capabilities.list_tracing_policies(with_ids=True) tells the number (not a 0), and without_ids
    gives the entries the ObservationNode status carries, as before."""
    numbered = sensors_pb2.TracingPolicyStatus(id=9, name="stellaops-web-uprobes", namespace="shop")
    unnumbered = sensors_pb2.TracingPolicyStatus(name="stellaops-web", namespace="shop")
    entries = [policy_entry(p) for p in (numbered, unnumbered)]
    told = [dict(e) for e in entries]
    told[0][TETRAGON_ID] = 9
    assert without_ids(told) == entries and without_ids(None) is None
    assert tetragon_id(told[0]) == 9 and tetragon_id(told[1]) is None


def test_an_object_listed_twice_tells_no_load_number() -> None:
    """Tetragon lists its policies in no set order (a Go map), and our name may be listed twice (in
    another domain, or a policy of our name loaded from a file). The entry kept, and so its number,
    moved between polls: a reload nobody made ended the gap (and marked a policy load gap). Seen
    failing before (settled at the poll that swapped them). A name listed twice tells no number."""
    w = PolicyLoadWatch(start_ns=0, relabel_seconds=0)
    a = ours((UP, "ENABLED", 1))[UP] | {"namespace": "shop", TETRAGON_ID: 3}
    b = a | {TETRAGON_ID: 9}
    w.observe([a, b], now_ns=11 * S, connected=True, connects=1, asked_mono_ns=10 * S)
    w.take(now_ns=11 * S)
    for i, listing in enumerate(([b, a], [a, b], [b, a])):
        at = (20 + 10 * i) * S
        w.observe(listing, now_ns=at + S, connected=True, connects=1, asked_mono_ns=at)
    assert w.reloads.settled_after([UP], 10 * S) is None
    assert w.take(now_ns=60 * S) == []


def test_an_object_listed_twice_under_two_versions_is_no_reload_until_it_is_listed_once() -> None:
    """The same with two versions (another object's uid and generation under our name): the entry
    kept flipped between them, each flip a reload seen, and one listed ENABLED ended the gap. Seen
    failing before (settled). Now no reload is seen while it is listed twice nor at the poll after;
    a reload once it is listed alone again still counts."""
    w = PolicyLoadWatch(start_ns=0, relabel_seconds=0)
    a = ours((UP, "ENABLED", 1))[UP] | {"namespace": "shop"}
    b = a | {"objectUid": "u-other", "objectGeneration": 5}
    w.observe([a], now_ns=11 * S, connected=True, connects=1, asked_mono_ns=10 * S)
    for i, listing in enumerate(([a, b], [b, a], [a, b], [a], [a])):
        at = (20 + 10 * i) * S
        w.observe(listing, now_ns=at + S, connected=True, connects=1, asked_mono_ns=at)
    assert w.reloads.settled_after([UP], 10 * S) is None
    w.observe([a | {"objectGeneration": 2}], now_ns=71 * S, connected=True, connects=1, asked_mono_ns=70 * S)
    assert w.reloads.settled_after([UP], 60 * S) == 71 * S


def test_a_new_tetragon_socket_is_a_restart_that_loaded_every_object_anew(tmp_path: Path) -> None:
    """Tetragon makes its unix socket anew at each start, before it loads its policies: a socket of
    another (device, inode) than at the last answered poll is a reload of every object of ours
    listed (a restart numbering its loads as before is seen too); none told (TCP, no socket), or the
    same, is none."""
    sock = tmp_path / "t.sock"
    assert server_identity(f"unix://{sock}") is None  # no socket there
    (tmp_path / "file").write_text("")
    assert server_identity(f"unix:{tmp_path / 'file'}") is None  # not a socket
    assert server_identity("localhost:54321") is None
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        first = server_identity(f"unix://{sock}")
        assert first is not None and first == server_identity(f"unix:{sock}")
    r = PolicyReloads()
    r.listed(_numbered(1), asked_ns=10 * S, now_ns=11 * S, server=first)
    r.listed(_numbered(1), asked_ns=20 * S, now_ns=21 * S, server=None)  # not told: nothing
    r.listed(_numbered(1), asked_ns=30 * S, now_ns=31 * S, server=first)
    assert r.settled_after([UP], 10 * S) is None
    assert first is not None
    r.listed(_numbered(1), asked_ns=40 * S, now_ns=41 * S, server=(first[0], first[1] + 1))
    assert r.settled_after([UP], 30 * S) == 41 * S and r.settled_after([UP], 30 * S + 1) is None


def test_a_restart_seen_after_a_socket_not_told_loaded_after_the_last_poll_that_saw_the_old_one() -> None:
    """Defect (s48 RNF2): a poll whose look at Tetragon's socket told nothing (the stat failed or
    timed out) while its ListTracingPolicies answered moved the restart's lower bound to that poll,
    though the socket may already have been the new one then, its loads before that poll asked: a
    replacement seen between the loads and that poll ended the gap with the uprobe on the old file.
    The bound is the poll that last saw the old socket."""
    r = PolicyReloads()
    r.listed(_numbered(1), asked_ns=10 * S, now_ns=11 * S, server=(1, 5))
    r.listed(_numbered(1), asked_ns=20 * S, now_ns=21 * S, server=None)  # not told: maybe the new one
    r.listed(_numbered(1), asked_ns=30 * S, now_ns=31 * S, server=(1, 6))
    assert r.settled_after([UP], 10 * S) == 31 * S
    assert r.settled_after([UP], 10 * S + 1) is None  # a replacement seen after 10 s: maybe loaded before
    r.listed(_numbered(1), asked_ns=40 * S, now_ns=41 * S, server=(1, 6))
    r.listed(_numbered(1), asked_ns=50 * S, now_ns=51 * S, server=(1, 7))  # seen at 40 s: from there
    assert r.settled_after([UP], 40 * S) == 51 * S and r.settled_after([UP], 40 * S + 1) is None


async def test_a_hung_look_at_tetragon_s_socket_stalls_neither_the_poll_nor_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect (s48 RNF2): the ObservationNode writer looked at Tetragon's socket (os.stat) on the
    event loop: a hung file system under it (a stuck mount at the socket's directory) froze the whole
    agent, its event stream, flushes and health endpoints with it. Now the look runs on a thread of
    its own, bounded by Tetragon's timeout (not told: no restart seen), and a look still hung is not
    joined by another at each poll."""
    import asyncio
    import os
    import threading

    from stellaops_runtime.agent.node_status import ObservationNodeWriter
    from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig

    sock = str(tmp_path / "t.sock")
    release, real_stat, looks = threading.Event(), os.stat, []

    def hung_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if path == sock:
            looks.append(path)
            release.wait(3)  # a stat that does not come back (until the test ends)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", hung_stat)
    w = ObservationNodeWriter(
        node_name="node-a",
        config=ObservationNodeConfig(enabled=True, heartbeatSeconds=3600),
        tetragon=TetragonConfig(address=f"unix://{sock}", timeoutSeconds=0.2),
        try_bpf=False,
    )
    w.policy_watch = PolicyLoadWatch(start_ns=time.time_ns(), relabel_seconds=0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        for _ in range(2):
            await asyncio.wait_for(w._read_tetragon(), 2)
        took = time.monotonic() - started
    finally:
        release.set()
        t.cancel()
    assert took < 1.5 and ticks >= 3, (took, ticks)  # the loop ran while the look hung
    assert looks == [sock]  # the second poll did not start a second look behind the hung one
