"""The ObservationNode names the agent's own BCC probes when they are the working source.

``status.source`` is ``native`` (the CRD's value for the agent's own probes)
and ``maxPosture`` is what the native capability report gives; a node with
neither Tetragon nor BCC says ``none`` / ``None`` and why BCC is no fallback.
The status objects are checked against the shipped CRD schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.node_status import NativeState, build_status, native_state, working_source
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import BCC, SourceSwitch
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.sources.queue import EventQueue
from tests.crd_schema import errors, load_crd, validator_for

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "unix:///var/run/tetragon/tetragon.sock"
DOWN = TetragonInfo(address=ADDRESS, error="UNAVAILABLE: connection refused")
UP = TetragonInfo(address=ADDRESS, reachable=True, version="v1.7.0")
CAPS = Capabilities(
    kernel_version="6.1.0", btf=True, bpf_permitted=True, tracepoints=True, uprobes=True, kprobes=True,
    usdt=True, ring_buffer=True, tetragon=TetragonInfo(address=ADDRESS),
)  # fmt: skip
VALIDATOR = validator_for(load_crd(ROOT / "manifests" / "crds" / "observationnodes.yaml"))


@pytest.mark.parametrize(
    ("tetragon", "stream", "native", "source", "level", "says"),
    [
        (DOWN, False, NativeState(True, True, Posture.EBPF_DEEP, "FullInstrumentation needs usdt: no PMU"),
         "native", Posture.EBPF_DEEP, "BCC probes deliver"),
        (DOWN, False, NativeState(True, True, Posture.FULL_INSTRUMENTATION), "native",
         Posture.FULL_INSTRUMENTATION, "BCC probes deliver"),
        (DOWN, False, NativeState(False, False, Posture.NONE, "bcc: BCC's Python binding is not in /x"),
         "none", Posture.NONE, "the BCC probes cannot run here: bcc: BCC's Python binding"),
        (DOWN, False, NativeState(True, False, Posture.PASSIVE, "ActiveTracing needs x"), "none",
         Posture.NONE, "not attached (yet)"),
        (UP, True, NativeState(False, False, None), "tetragon", Posture.FULL_INSTRUMENTATION, "every probe"),
        (UP, True, None, "tetragon", Posture.FULL_INSTRUMENTATION, "every probe kind"),
    ],
)  # fmt: skip
def test_the_status_names_the_source_that_works(
    tetragon: TetragonInfo,
    stream: bool,
    native: NativeState | None,
    source: str,
    level: Posture,
    says: str,
) -> None:
    got = working_source(capabilities=CAPS, tetragon=tetragon, stream_connected=stream, native=native)
    assert got[:2] == (source, level) and says in got[2], got
    status = build_status(capabilities=CAPS, tetragon=tetragon, policies=[], existing_conditions=None,
                          now="2026-12-03T10:00:00Z", stream_connected=stream, native=native)  # fmt: skip
    assert (status["source"], status["maxPosture"]) == (source, level.value)
    beat = {**status, "heartbeatTime": "2026-12-03T10:00:00Z"}
    obj = {"apiVersion": "stellaops.io/v1alpha1", "kind": "ObservationNode", "metadata": {"name": "n"},
           "spec": {"nodeName": "n"}, "status": beat}  # fmt: skip
    assert errors(VALIDATOR, obj) == []


def test_the_switch_stats_are_what_the_writer_reads() -> None:
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    q = EventQueue(100)
    sw = SourceSwitch(cfg, queue=q, pipeline=Pipeline(cfg, node_name="n"), in_pipeline=None)  # type: ignore[arg-type]
    assert native_state(sw.stats) == NativeState(False, False, None, "")
    sw.mode = BCC  # switched, the probes not built yet
    sw.stats.native_posture = Posture.EBPF_DEEP
    assert native_state(sw.stats) == NativeState(True, False, Posture.EBPF_DEEP, "")
    assert native_state(sw.tetragon.stats) is None  # a plain Tetragon source has no native side
