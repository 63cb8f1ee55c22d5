"""A probed node file replaced under Tetragon: unwatched until Tetragon is seen loading its policy anew.

Defect (s48 NF brief): the gap a replaced probed file opened (agent/node_file_gaps.py) stayed open for
the rest of the agent's life and, through ``<spoolPath>.tetragon-files``, the rest of the boot: after
any unattended upgrade of a probed library every answer about every image on the node read unknown
until reboot. Tetragon resolves the path anew when it loads the policy, and ListTracingPolicies says
which version it loaded (agent/policy_reloads.py): the gap now ends at the poll that sees the policy
probing the file (agent/node_file_policies.py) loaded after the replacement and tracing, and the
next agent of the boot takes the file now at the path as its baseline.

Real parts: the agent (its TetragonFacts looking at a node root in ``tmp_path``, its ObservationNode
writer polling ListTracingPolicies of the project's Tetragon replay server, the emulated API server,
its outage marker and pipeline), the ``query observed`` CLI on the gap rows it drained.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent import node_file_gaps, tetragon_facts
from stellaops_runtime.agent.node_file_baseline import baseline_path
from stellaops_runtime.agent.node_file_gaps import NodeFileGaps
from stellaops_runtime.agent.policy_load_gaps import PolicyLoadWatch
from stellaops_runtime.agent.policy_reloads import TETRAGON_ID
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import HookReport, PolicyStatus, ReplayServer
from stellaops_runtime.store.engine import open_store
from tests.integration.kubeharness import wait_for
from tests.integration.test_answer_replaced_in_place import APP
from tests.integration.test_node_fact_builds import _ask
from tests.integration.test_node_file_reread import _watch
from tests.integration.test_policy_loading_gap import NODE, polled, running_agent
from tests.node_alive import alive_after

STREAM = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon" / "events.jsonl"
MINUTE = 60_000_000_000
UPROBES = "stellaops-web-uprobes"


def _policy(generation: int, state: str, hooks: tuple[HookReport, ...] = ()) -> PolicyStatus:
    """Our uprobes object as Tetragon lists it, with the generation it loaded (its ``info``)."""
    info = f"{UPROBES} (object:{generation}/uid-web) (type:TracingPolicyNamespaced/cilium.io/v1alpha1)"
    return PolicyStatus(name=UPROBES, namespace="shop", state=state, message=info, hooks=hooks)


def _probes(path: Path) -> None:
    entry = {
        "kind": "ObservationPolicy", "namespace": "shop", "name": "web", "maxLevel": "EbpfDeep",
        "functions": [{"binaryPath": APP, "symbols": ["split_fn"]}],
        "tetragonPolicies": ["stellaops-web", UPROBES],
    }  # fmt: skip
    doc = {
        "apiVersion": "stellaops.io/v1alpha1",
        "kind": "ProbeConfig",
        "policies": {"ObservationPolicy/shop/web": entry},
    }
    path.write_text(json.dumps(doc))


def _replace(exe: Path, text: bytes) -> None:
    new = exe.with_name(exe.name + ".dpkg-new")
    new.write_bytes(text)
    new.replace(exe)


def _node(
    tmp_path: Path, *, check_wiring: bool = False
) -> tuple[Path, dict[str, Any], Callable[[Any], None]]:
    """A node root holding the probed build, and the agent's config and set-up for it: the probe
    config file naming our uprobes object, a SQLite store, no relabel hold."""
    host = tmp_path / "host"
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_bytes(b"the build Tetragon's policy was loaded with")
    probes = tmp_path / "agent-probes.json"
    _probes(probes)
    extra: dict[str, Any] = {
        "symbols": {"enabled": False}, "attribution": {"enabled": False},
        "native": {"enabled": False, "probeConfigFile": str(probes)},
        "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}", "spoolPath": str(tmp_path / "spool.jsonl")},
    }  # fmt: skip

    def setup(agent: Any) -> None:
        if check_wiring:  # the agent's own wiring (attach_node_file_gaps): its policy watch's reloads
            assert agent.outages.node_files.reloads is agent.outages.policies.reloads is not None
        agent.tetragon_facts.host_root = str(host)
        # no hold for the pods' relabel after the start (15 minutes of policy_load_gaps' own gap)
        watch = PolicyLoadWatch(start_ns=time.time_ns(), relabel_seconds=0)
        agent.node_status.policy_watch = agent.outages.policies = watch
        agent.outages.node_files.reloads = watch.reloads

    return exe, extra, setup


@pytest.mark.asyncio
async def test_the_gap_of_a_replaced_file_ends_when_tetragon_is_seen_loading_its_policy_anew(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_at_head: Callable[[Path], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Seen failing before the change: the gap stayed open after Tetragon listed the new generation
    ENABLED (``wait_for`` the gap's end timed out). Now it ends at that poll, no node-wide gap is
    handed over after it, the CLI reads the day of the replacement unknown, and the next agent of
    the boot does not open it again (it does for a file replaced while it was down)."""
    monkeypatch.setattr(tetragon_facts, "CHECK_SECONDS", 0.1)  # the looks at the node files
    exe, extra, setup = _node(tmp_path, check_wiring=True)
    host, spool = tmp_path / "host", extra["store"]["spoolPath"]

    events = load_events(STREAM).events[:3]  # a stream that delivered: no outage (silent after)
    tetragon = ReplayServer(events, policies=[_policy(1, "ENABLED")], version="v1.7.0")
    address = await tetragon.start("127.0.0.1:0")
    try:
        async with running_agent(tmp_path, address, extra=extra, setup=setup) as (agent, ticks):
            gaps: NodeFileGaps = agent.outages.node_files
            await wait_for(lambda: bool(gaps.probing), what="the node files read")
            assert gaps.probing == {str(host) + APP: frozenset({("shop", UPROBES)})}
            await polled(ticks, "a poll listing generation 1")
            replaced_at = time.time_ns()
            _replace(exe, b"the upgrade's build")
            caplog.set_level(logging.WARNING, logger=node_file_gaps.__name__)
            await wait_for(lambda: gaps.open, what="the replaced file's gap")
            await polled(ticks, "polls after the replacement")
            assert gaps.open  # generation 1 still listed: the probe is on the old file
            tetragon.policies = [_policy(2, "LOADING")]
            await polled(ticks, "a poll listing generation 2 loading")
            assert gaps.open
            # s48 RNF: loaded without the new build's uprobe (its symbol gone): the calls go unseen
            missed = HookReport("uprobes", 0, APP, "CALL_NOT_FOUND")
            tetragon.policies = [_policy(2, "PARTIALLY_ENABLED", (missed, HookReport("uprobes", 1, APP)))]
            await polled(ticks, "polls listing generation 2 partially enabled")
            assert gaps.reloaded() == {} and gaps.open
            tetragon.policies = [_policy(3, "LOADING")]
            await polled(ticks, "a poll listing generation 3 loading")
            tetragon.policies = [_policy(3, "ENABLED")]
            await wait_for(lambda: not gaps.open, what="the gap's end at the reload")
            closed_at = time.time_ns()
            said = [r.getMessage() for r in caplog.records if r.name == node_file_gaps.__name__]
            assert [m for m in said if "was replaced while Tetragon probes it" in m], said  # the docs' words
            assert len([m for m in said if m.endswith("the node is watched again")]) == 1, said
            await polled(ticks, "polls after the reload")
            await agent.outages.mark()
            _, windows = await agent.in_pipeline(agent.pipeline.drain)
            assert gaps.ended == 1 and gaps.replaced == 1
    finally:
        await tetragon.stop(grace=0)
    spans = [
        (w.gap_start_ns, w.gap_end_ns)
        for w in windows
        if w.image_digest == NODE_WIDE and w.gap_start_ns is not None and w.gap_end_ns is not None
    ]
    assert any(a <= replaced_at <= b for a, b in spans), (replaced_at, spans)
    assert all(b <= closed_at for _, b in spans), (closed_at, spans)  # nothing after the reload
    # The CLI: the node's gap rows make the host image's answer for that day unknown.
    url = sqlite_at_head(tmp_path / "asked.db")
    first = replaced_at - replaced_at % MINUTE - 2 * MINUTE
    host_image = f"host:{NODE}"
    watched = [
        ObservationWindow(host_image, NODE, first + m * MINUTE, 9, Posture.EBPF_DEEP, 60, "tetragon")
        for m in range(4)
    ]
    with open_store(url) as s:
        s.write([], watched + alive_after(NODE, first + 4 * MINUTE) + windows)
    code, doc = _ask(url, host_image, "split_fn")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    # The next agent of the boot: the file Tetragon now probes is its baseline (no gap) ...
    again = _watch(tmp_path, host)
    again.gaps = NodeFileGaps(baseline_path(spool))
    await again.poll(100.0)
    assert not again.gaps.open and again.gaps.replaced == 0
    # ... and a file replaced while no agent ran is still one.
    _replace(exe, b"a third build")
    later = _watch(tmp_path, host)
    later.gaps = NodeFileGaps(baseline_path(spool))
    await later.poll(100.0)
    assert later.gaps.open and later.gaps.replaced == 1


@pytest.mark.asyncio
async def test_a_tetragon_restart_that_numbers_the_loads_anew_ends_the_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect (s48 RNF, left alone 2): Tetragon restarting reloads every policy under the same
    version, which the agent did not see: the gap stayed open until a generation bump. Now a load
    listed under another number (``TracingPolicyStatus.id``) is a reload. Restarted twice on its
    TCP address: first giving each load the number it had (not seen over TCP, where there is no
    socket file to look at: open, the safe side), then another
    (the gap ends at the poll that lists it). Seen failing before the change (the second wait
    timed out). The number stays out of the ObservationNode status."""
    monkeypatch.setattr(tetragon_facts, "CHECK_SECONDS", 0.1)
    exe, extra, setup = _node(tmp_path)

    def numbered(number: int) -> PolicyStatus:
        return dataclasses.replace(_policy(1, "ENABLED"), policy_id=number)

    servers = [ReplayServer([], policies=[numbered(4)], version="v1.7.0")]
    address = await servers[0].start("127.0.0.1:0")

    async def restart(number: int) -> None:
        await servers[-1].stop(grace=0)
        servers.append(ReplayServer([], policies=[numbered(number)], version="v1.7.0"))
        await servers[-1].start(address)
        await wait_for(lambda: servers[-1].streams_active, what="the stream reconnected")

    try:
        async with running_agent(tmp_path, address, extra=extra, setup=setup) as (agent, ticks):
            gaps: NodeFileGaps = agent.outages.node_files
            await wait_for(lambda: bool(gaps.probing), what="the node files read")
            await polled(ticks, "a poll listing load 4")
            _replace(exe, b"the upgrade's build")
            await wait_for(lambda: gaps.open, what="the replaced file's gap")
            await polled(ticks, "a poll after the replacement")
            await restart(4)  # the same number: a reload not seen
            await polled(ticks, "polls listing load 4 again")
            assert gaps.open and gaps.ended == 0
            await restart(1)
            await wait_for(lambda: not gaps.open, what="the gap's end at the restart's load")
            assert gaps.ended == 1
            written = agent.node_status._written
            assert written is not None and written["policies"], written
            assert all(TETRAGON_ID not in e for e in written["policies"]), written["policies"]
    finally:
        for server in servers:
            await server.stop(grace=0)


@pytest.mark.asyncio
async def test_a_tetragon_restart_on_its_unix_socket_ends_the_gap_though_it_numbers_loads_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted Tetragon that loaded nothing else since its start numbers its loads as the one
    before it did: not seen by the number. Tetragon makes its unix socket anew at each start, before
    it loads its policies, so a socket of another (device, inode) than at the poll before tells a
    restart: every object of ours it lists was loaded after that poll asked. Seen failing before
    (the wait for the gap's end timed out). The old socket's inode is held by a hard link, so the
    new one cannot reuse it."""
    monkeypatch.setattr(tetragon_facts, "CHECK_SECONDS", 0.1)
    exe, extra, setup = _node(tmp_path)

    sockets = Path(tempfile.mkdtemp(prefix="nf2-", dir="/tmp"))  # a unix socket path's 108 bytes
    sock = sockets / "tetragon.sock"
    servers = [ReplayServer([], policies=[_policy(1, "ENABLED")], version="v1.7.0")]
    address = await servers[0].start(f"unix://{sock}")
    try:
        async with running_agent(tmp_path, address, extra=extra, setup=setup) as (agent, ticks):
            gaps: NodeFileGaps = agent.outages.node_files
            await wait_for(lambda: bool(gaps.probing), what="the node files read")
            await polled(ticks, "a poll listing the policy")
            _replace(exe, b"the upgrade's build")
            await wait_for(lambda: gaps.open, what="the replaced file's gap")
            await polled(ticks, "a poll after the replacement")
            os.link(sock, sockets / "old.sock")  # the old socket's inode stays taken
            await servers[-1].stop(grace=0)
            servers.append(ReplayServer([], policies=[_policy(1, "ENABLED")], version="v1.7.0"))
            await servers[-1].start(address)  # the same version, the same number (1)
            await wait_for(lambda: not gaps.open, what="the gap's end at the restart's load")
            assert gaps.ended == 1
    finally:
        for server in servers:
            await server.stop(grace=0)
        shutil.rmtree(sockets, ignore_errors=True)
