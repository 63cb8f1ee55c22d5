"""Under Tetragon, a probed node file replaced while the agent runs: the node is unwatched from then on.

Defect (s46 RNX "left alone" 1, s47/EX): Tetragon's uprobe of a ``binaryPath`` function stays on the
file its policy was loaded with (its inode; in place, at an old offset of the new build), so calls
into the new file are never seen. The agent's look at the node files (agent/tetragon_facts.py)
noticed the change and read the new build's facts, but nothing marked a gap: the node's windows
read watched, and ``query observed`` answered "not observed" (exit 1) about the function over calls
nobody saw. Now the change opens a node-wide gap (source ``none``) from the look before, handed to
the pipeline by the outage marker for the rest of the agent's life (agent/node_file_gaps.py).

Real parts: the agent's TetragonFacts on a node root in ``tmp_path``, its Pipeline and OutageMarker,
the drained window rows written to a SQLite store and the ``query observed`` CLI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.node_file_gaps import NodeFileGaps, replaced
from stellaops_runtime.agent.outages import OutageMarker
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_replaced_in_place import APP, HOST
from tests.integration.test_node_fact_builds import _ask
from tests.integration.test_node_file_reread import _watch
from tests.node_alive import alive_after

S = 1_000_000_000
MINUTE = 60 * S


async def _direct(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)  # the pipeline thread's call, in the test's thread


def _gaps(windows: list[ObservationWindow]) -> list[tuple[int, int]]:
    return [
        (w.gap_start_ns, w.gap_end_ns)
        for w in windows
        if w.image_digest == NODE_WIDE and w.gap_start_ns is not None and w.gap_end_ns is not None
    ]


def _replace(exe: Path) -> None:
    """A package manager's upgrade: the new file written beside the path and renamed over it."""
    new = exe.with_name(exe.name + ".dpkg-new")
    new.write_bytes(b"another build, not an ELF file either")
    new.replace(exe)


def test_a_node_file_replaced_under_tetragon_is_a_node_wide_gap_from_the_look_before(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Seen failing before the fix: the marker handed no span over and the answer was not_observed
    (exit 1); a poll with nothing replaced opens none, one after the replacement one from the look
    before it, and it stays open (a later mark hands the time since over too)."""
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"not an ELF file")  # no facts, but a file the read covered
    watch = _watch(tmp_path, host)
    pipeline = watch.pipeline
    marker = OutageMarker(object(), pipeline=pipeline, in_pipeline=_direct)
    marker.node_files = watch.gaps

    async def run() -> tuple[int, int, int]:
        await watch.poll(100.0)  # the read
        await watch.poll(102.0)  # a look: nothing replaced
        await marker.mark()
        looked = time.time_ns()
        await watch.poll(104.0)  # the look before the replacement
        _replace(exe)
        await watch.poll(106.0)  # sees it
        seen = time.time_ns()
        await marker.mark()
        await watch.poll(108.0)
        await marker.mark()  # open for life: the time since is handed over too
        return looked, seen, time.time_ns()

    looked, seen, end = asyncio.run(run())
    _, windows = pipeline.drain()
    spans = _gaps(windows)
    assert spans, "no gap after the node file was replaced"
    start, stop = min(a for a, _ in spans), max(b for _, b in spans)
    assert looked <= start <= seen, (looked, start, seen)  # from the look before the one that saw it
    assert seen <= stop <= end, (seen, stop, end)
    assert watch.gaps.open and watch.gaps.replaced == 1
    # What the store answers: the host image's windows around that time, each with events; the
    # node's gap rows make it unknown, not "not observed".
    url = sqlite_at_head(tmp_path / "hot.db")
    first = start - start % MINUTE - 2 * MINUTE
    watched = [
        ObservationWindow(HOST, "node-1", first + m * MINUTE, 9, Posture.EBPF_DEEP, 60, "tetragon")
        for m in range(6)
    ]
    with open_store(url) as s:
        s.write([], watched + alive_after("node-1", first + 6 * MINUTE) + windows)
    code, doc = _ask(url, HOST, "split_fn")
    assert (code, doc["answer"]) == (3, "unknown"), doc


def test_what_counts_as_replaced() -> None:
    """Another file (inode) or other contents (size, modification time) is replaced; a file gone,
    or one whose change time alone moved (a ``chmod``), is not; one that appeared where none was is."""
    a = (1, 10, 64, 5, 7)
    assert replaced(a, (1, 11, 64, 5, 7)) and replaced(a, (1, 10, 65, 5, 7))
    assert replaced(a, (1, 10, 64, 6, 7))
    assert not replaced(a, (1, 10, 64, 5, 8)) and not replaced(a, None) and replaced(None, a)


def test_while_the_switch_s_own_probes_watch_the_open_gap_s_time_is_theirs() -> None:
    """``take`` with ``counts`` False (the source switch's probes are the source) hands nothing over
    and moves on: the time back under Tetragon is handed over from there."""
    gaps = NodeFileGaps()
    gaps.compare(("/f",), ((1, 1, 1, 1, 1),), ((1, 2, 1, 1, 1),), 100)
    assert gaps.take(200) == [(100, 200)]
    gaps.marked()
    assert gaps.take(300, counts=False) == []
    assert gaps.take(400) == [(300, 400)]
    assert gaps.unstored_from() == 300  # taken, not marked yet
    gaps.give_back([(300, 400)])
    assert gaps.take(450) == [(300, 400), (400, 450)]


def _config(probes: Path, text: bytes | None) -> None:
    if text is None:
        probes.unlink()
    else:
        probes.write_bytes(text)


@pytest.mark.parametrize("how", ["unparsable", "removed"])
def test_a_file_replaced_while_the_config_map_could_not_be_read_is_still_a_gap(
    tmp_path: Path, how: str
) -> None:
    """The probe ConfigMap is the agent's copy of the policies, not Tetragon's: while the agent cannot
    read it (a render this agent cannot parse, the file gone for a while), Tetragon's probes stay on the
    files they were loaded with. Seen failing before s47/rex: the failed read dropped the node files
    from the looks, and a file replaced meanwhile was the baseline once the ConfigMap read again (no
    gap, ``replaced`` 0)."""
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"not an ELF file")
    watch = _watch(tmp_path, host)
    probes = Path(watch.path)
    config = probes.read_bytes()

    async def run() -> None:
        await watch.poll(100.0)  # the read
        _config(probes, b"{" if how == "unparsable" else None)
        await watch.poll(102.0)  # the ConfigMap cannot be read
        _replace(exe)
        await watch.poll(104.0)
        _config(probes, config)
        await watch.poll(106.0)  # read again: the file under the path is not the one Tetragon probes

    asyncio.run(run())
    assert watch.gaps.open and watch.gaps.replaced == 1


def test_the_agent_wires_its_facts_marker_and_record_to_one_record_of_replaced_files(tmp_path: Path) -> None:
    """The real agent's wiring (agent/runner.py, tetragon_facts.attach_node_file_gaps): the export file's
    agent (no switch) looks with its own TetragonFacts; a replacement it sees is marked by its outage
    marker and bounds its watch record's claim; the source switch's agent hands the same record to
    the TetragonFacts its switch makes."""
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.agent.watch_record_attach import _cap
    from stellaops_runtime.contracts.config import parse_config

    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"not an ELF file")
    probes = Path(_watch(tmp_path, host).path)
    doc: dict[str, Any] = {
        "symbols": {"enabled": False}, "attribution": {"enabled": False},
        "native": {"enabled": True, "probeConfigFile": str(probes)},
        "store": {"url": f"sqlite:///{tmp_path}/hs.db"}, "tetragon": {"exportFile": str(tmp_path / "t.log")},
    }  # fmt: skip
    agent = Agent(parse_config(doc), node_name="node-1")
    watch, gaps = agent.tetragon_facts, agent.outages.node_files
    assert watch is not None and gaps is not None and watch.gaps is gaps
    watch.host_root = str(host)

    async def run() -> int:
        await watch.poll(100.0)
        looked = time.time_ns()
        await watch.poll(102.0)
        _replace(exe)
        await watch.poll(104.0)
        assert _cap(agent.outages) is not None and _cap(agent.outages) <= time.time_ns()
        agent.outages.in_pipeline = _direct
        await agent.outages.mark()
        return looked

    looked = asyncio.run(run())
    _, windows = agent.pipeline.drain()
    assert any(a <= looked + S for a, _ in _gaps(windows)), (looked, _gaps(windows))
    del doc["tetragon"]
    switched = Agent(parse_config(doc), node_name="node-1")
    assert switched.tetragon_facts is None and switched.outages.node_files is not None
    assert switched.source.node_file_gaps is switched.outages.node_files
