"""Package attribution of drained hot-symbol deltas (agent/purls.py), through real process roots."""

from __future__ import annotations

import os
import subprocess

from stellaops_runtime.agent.purls import HotSymbolAttribution
from stellaops_runtime.contracts.config import AttributionConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey

LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1"


def event(pid: int, node: str = "n1") -> RuntimeCallEvent:
    return RuntimeCallEvent(kind=EventKind.EXEC, timestamp_ns=1, node_name=node, process=ProcessInfo(pid=pid))


def delta(module: str, evidence: EvidenceKind = EvidenceKind.LOADED, fn: str = "") -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey("host:n1", module, fn, evidence), window_start_ns=0, invocation_count=1,
        first_seen_ns=1, last_seen_ns=1,
    )  # fmt: skip


def zlib_purl() -> str:
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "zlib1g"], capture_output=True, text=True, check=True
    ).stdout
    return f"pkg:deb/debian/zlib1g@{version}?arch=amd64&distro=debian-12"


def test_live_process_root_attributes_files_and_skips_the_kernel() -> None:
    att = HotSymbolAttribution(AttributionConfig(), proc_root="/proc", node_name="n1")
    att.note(event(os.getpid()))  # this test process: its root is the machine's /
    ds = [delta(LIBZ), delta("[kernel]", EvidenceKind.KERNEL_CALL, "tcp_connect"), delta("/no/such/file")]
    att.fill(ds)
    assert ds[0].purl == zlib_purl()
    assert ds[1].purl == ds[2].purl == ""
    assert att.outcomes == {"attributed": 1, "skipped": 1, "unattributed": 1}


def test_events_of_other_nodes_and_exited_processes_give_no_root() -> None:
    att = HotSymbolAttribution(AttributionConfig(), proc_root="/proc", node_name="n1")
    att.note(event(os.getpid(), node="elsewhere"))  # not this node's /proc
    d = delta(LIBZ)
    att.fill([d])
    assert (d.purl, att.outcomes["no_root"]) == ("", 1)

    gone = subprocess.Popen(["true"])
    gone.wait()
    att.note(event(gone.pid))
    d = delta(LIBZ)
    att.fill([d])
    assert d.purl == ""
    assert att.outcomes["no_root"] == 2  # the dead process's root was dropped, not guessed around


def test_the_attributor_is_made_with_the_first_event_not_among_a_windows_keys() -> None:
    """Its modules and objects live as long as the agent: made at the first drain, among a window's
    keys, they kept those keys' arenas resident after every flush (docs/benchmarks.md)."""
    att = HotSymbolAttribution(AttributionConfig(), proc_root="/proc", node_name="n1")
    assert att._attributor is None  # an agent that sees no event never loads the package readers
    att.note(event(os.getpid()))
    made = att._attributor
    assert made is not None
    att.note(event(os.getpid()))
    att.fill([delta(LIBZ)])
    assert att._attributor is made
