"""The agent's claim about its node (issue 16): the source that works now, and what it delivers.

``working_source`` decides ``status.source`` and ``status.maxPosture`` of
the ObservationNode from Tetragon's answer and, when the agent wires it, its
event stream; kernel capabilities alone never make a source. Also the
finalizer patch the operator sends when a policy is deleted.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.node_status import build_status, working_source
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.controller.finalizer import rejected_message, removal_ops
from stellaops_runtime.controller.posture import node_capabilities

ADDRESS = "unix:///var/run/tetragon/tetragon.sock"
UP = TetragonInfo(address=ADDRESS, reachable=True, version="v1.7.0")
DOWN = TetragonInfo(address=ADDRESS, error="UNAVAILABLE: connection refused")


def caps(*, uprobes: bool = True, usdt: bool = True) -> Capabilities:
    return Capabilities(
        kernel_version="6.1.0",
        btf=True,
        bpf_permitted=True,
        tracepoints=True,
        uprobes=uprobes,
        kprobes=True,
        usdt=usdt,
        ring_buffer=True,
        tetragon=TetragonInfo(address=ADDRESS),
    )


@pytest.mark.parametrize(
    ("tetragon", "stream", "kernel", "source", "level"),
    [
        (UP, None, caps(), "tetragon", Posture.FULL_INSTRUMENTATION),
        (UP, True, caps(usdt=False), "tetragon", Posture.EBPF_DEEP),
        (UP, None, caps(uprobes=False, usdt=False), "tetragon", Posture.ACTIVE_TRACING),
        (UP, False, caps(), "none", Posture.NONE),  # answers, but nothing reaches the agent
        (DOWN, True, caps(), "tetragon", Posture.PASSIVE),  # events arrive, API down
        (DOWN, None, caps(), "none", Posture.NONE),  # issue 16: was "tetragon" with FullInstrumentation
        (DOWN, False, caps(), "none", Posture.NONE),
    ],
)
def test_working_source_and_its_ceiling(
    tetragon: TetragonInfo, stream: bool | None, kernel: Capabilities, source: str, level: Posture
) -> None:
    got_source, got_level, why = working_source(
        capabilities=kernel, tetragon=tetragon, stream_connected=stream
    )
    assert (got_source, got_level) == (source, level) and why
    status = build_status(
        capabilities=kernel,
        tetragon=tetragon,
        policies=[],
        existing_conditions=None,
        now="t",
        stream_connected=stream,
    )
    assert (status["source"], status["maxPosture"], status["maxPostureReason"]) == (source, level.value, why)
    # the operator reads back exactly that ceiling, never more
    node = node_capabilities({"status": status})
    assert node is not None and node.ceiling()[0] == level
    if tetragon is DOWN and not stream:
        assert "UNAVAILABLE: connection refused" in why


def test_a_caller_cannot_claim_a_source_that_does_not_work() -> None:
    status = build_status(capabilities=caps(), tetragon=DOWN, source="tetragon", policies=[],
                          existing_conditions=None, now="t")  # fmt: skip
    assert (status["source"], status["maxPosture"]) == ("none", "None")
    assert status["maxPostureReason"].startswith(
        f"no event source works: Tetragon at {ADDRESS} does not answer"
    )
    native = build_status(capabilities=caps(), tetragon=UP, source="native", policies=[],
                          existing_conditions=None, now="t")  # fmt: skip
    assert (native["source"], native["maxPosture"]) == ("none", "None")
    assert native["maxPostureReason"] == "source 'native' is not working"


def test_credentials_in_the_address_never_reach_the_reason() -> None:
    tetragon = TetragonInfo(address="http://u:s3cret@127.0.0.1:54321", error="refused")
    _, _, why = working_source(capabilities=caps(), tetragon=tetragon, stream_connected=None)
    assert "s3cret" not in why


def test_finalizer_removal_patch_tests_the_index_it_removes() -> None:
    assert removal_ops(["a/b", "stellaops.io/finalizer"], "stellaops.io/finalizer") == [
        {"op": "test", "path": "/metadata/finalizers/1", "value": "stellaops.io/finalizer"},
        {"op": "remove", "path": "/metadata/finalizers/1"},
    ]
    assert removal_ops(["a/b"], "stellaops.io/finalizer") is None
    assert removal_ops([], "stellaops.io/finalizer") is None
    text = rejected_message(kind="ObservationPolicy", ref="shop/web", status=422, message="spec.x: too long")
    assert text.startswith(
        "ObservationPolicy shop/web: the API server refused to remove the finalizer (HTTP 422)"
    )
    assert "spec.x: too long" in text and "docs/operator-operations.md" in text
