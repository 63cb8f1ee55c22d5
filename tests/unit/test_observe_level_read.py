"""``stellaops.io/observe-level``: one reading, by the operator and the agent, that never observes by mistake.

A user who writes ``off``, ``false``, ``no``, ``0``, ``disabled`` or
``opt-out`` means "do not observe"; so, most likely, does one who writes a
typo. Observing such a pod at the policies' level would let its secrets reach
the store. contracts/posture.read_level is the one parser: the opt-out
spellings read as None, every other value that is not a level fails closed
to None and is invalid (the operator posts a Warning Event). These tests feed
the same values to the parser, the operator's posture (compute_posture: the
observe-off label, the operator's list) and the agent's three readings (the
annotation on an event, the sandbox annotation of the container registry, the
stage that drops), and require one answer.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.events import EventKind, PodInfo, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, Posture, opts_out
from stellaops_runtime.controller.posture import (
    PolicyView,
    PostureDecision,
    allowed_levels_message,
    compute_posture,
    node_capabilities,
)
from stellaops_runtime.privacy.optout import OptOut

# A policy selecting every pod at the highest level: an ignored annotation would observe at it.
EVERYTHING = PolicyView(
    kind="ClusterObservationPolicy",
    namespace=None,
    name="all",
    max_level=Posture.FULL_INSTRUMENTATION,
    pod_selector={},
    namespace_selector=None,
)
# A node whose agent delivers every level (Tetragon reachable, every probe kind).
CAPABLE = node_capabilities(
    {
        "status": {
            "source": "tetragon",
            "capabilities": {
                "btf": True, "bpfPermitted": True, "tracepoints": True, "uprobes": True, "kprobes": True,
                "usdt": True, "ringBuffer": True, "tetragon": {"reachable": True},
            },
        }
    }
)  # fmt: skip
MAX_LEVEL_CHARS = 64  # contracts/posture.MAX_LEVEL_CHARS (checked below)

# What a careful user writes to say "do not observe" (no Warning: these are accepted).
SPELLED_OFF = [
    "off", "OFF", "Off", " off ", "false", "False", "FALSE", "no", "No", "0", " 0\n",
    "disabled", "Disabled", "disable", "opt-out", "Opt-Out", "optout", "opted-out", "never",
    "None", "none", "\tNONE ",
]  # fmt: skip
# Not a level and not a spelling we know: fail closed (None, invalid, Warning).
UNKNOWN = [
    "", " ", "turbo", "bogus-level", "nothing", "n", "of", "offf", "None.", "'off'", "\"off\"",
    "off\x00", "\x00off", "N\x00one", "None\x00", "off\u200b", "\uff4f\uff46\uff46", "\ufffd\ufffd",
    "\udcff\udcfe", "x" * 10_240, " " * 10_240 + "off", "Passive" + " " * MAX_LEVEL_CHARS,
    "Passive\x00", "ebpf deep", "true", "yes", "on", "1",
]  # fmt: skip
# Not a string at all (a YAML bool or number that reached us unquoted, bytes, a list).
NOT_TEXT: list[object] = [False, True, 0, 1, 0.0, b"off", b"Passive", ["Passive"], {"level": "Passive"}]
LEVELS = {
    "Passive": Posture.PASSIVE,
    " passive ": Posture.PASSIVE,
    "ActiveTracing": Posture.ACTIVE_TRACING,
    "active-tracing": Posture.ACTIVE_TRACING,
    "EBPF-DEEP": Posture.EBPF_DEEP,
    "FullInstrumentation": Posture.FULL_INSTRUMENTATION,
}


def _decide(value: str) -> PostureDecision:
    return compute_posture(
        annotations={OBSERVE_LEVEL_ANNOTATION: value},
        pod_labels={},
        namespace="shop",
        namespace_labels={},
        policies=[EVERYTHING],
        node=CAPABLE,
    )


def _agent_drops(value: object) -> bool:
    ev = RuntimeCallEvent(kind=EventKind.EXEC, timestamp_ns=1, node_name="n", process=ProcessInfo(pid=1))
    ev.pod = PodInfo(namespace="shop", name="p", annotations={OBSERVE_LEVEL_ANNOTATION: value})  # type: ignore[dict-item]
    stage = OptOut()
    dropped = stage.drops(ev)
    assert stage.total == (1 if dropped else 0)
    return dropped


@pytest.mark.parametrize("value", SPELLED_OFF, ids=repr)
def test_the_obvious_opt_out_spellings_opt_the_pod_out_without_a_warning(value: str) -> None:
    d = _decide(value)
    assert d.posture is Posture.NONE and d.opted_out and d.invalid_level is None
    assert d.reason == f"annotation {OBSERVE_LEVEL_ANNOTATION} opts the pod out (None)"
    assert opts_out(value) and _agent_drops(value)


@pytest.mark.parametrize("value", UNKNOWN, ids=lambda v: repr(v)[:40])
def test_an_unknown_value_fails_closed_to_none_with_a_warning(value: str) -> None:
    d = _decide(value)
    assert d.posture is Posture.NONE and d.opted_out
    assert d.invalid_level == value  # the operator's Warning Event
    assert d.reason.startswith(f"invalid {OBSERVE_LEVEL_ANNOTATION} ")
    assert "opted out (None)" in d.reason and len(d.reason) < 400
    assert opts_out(value) and _agent_drops(value)


@pytest.mark.parametrize("value", NOT_TEXT, ids=repr)
def test_a_value_that_is_not_text_fails_closed_too(value: object) -> None:
    assert opts_out(value) and _agent_drops(value)


@pytest.mark.parametrize(("value", "level"), LEVELS.items(), ids=repr)
def test_a_level_is_still_that_level(value: str, level: Posture) -> None:
    d = _decide(value)
    assert d.posture is level and not d.opted_out and d.invalid_level is None
    assert not opts_out(value) and not _agent_drops(value)


def test_no_annotation_requests_nothing() -> None:
    assert not opts_out(None) and not _agent_drops(None)


# --- the parser itself (contracts/posture.read_level) ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *((v, (Posture.NONE, False)) for v in SPELLED_OFF),
        *((v, (Posture.NONE, True)) for v in UNKNOWN),
        *((v, (Posture.NONE, True)) for v in NOT_TEXT),
        *((v, (level, False)) for v, level in LEVELS.items()),
        (None, (None, False)),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_read_level(value: object, expected: tuple[Posture | None, bool]) -> None:
    from stellaops_runtime.contracts.posture import read_level

    assert read_level(value) == expected


def test_the_spellings_are_no_level_and_the_warning_names_them() -> None:
    from stellaops_runtime.contracts import posture

    assert posture.MAX_LEVEL_CHARS == MAX_LEVEL_CHARS
    read_level, OPT_OUT_SPELLINGS = posture.read_level, posture.OPT_OUT_SPELLINGS
    assert all(read_level(s).level is Posture.NONE for s in OPT_OUT_SPELLINGS)
    message = allowed_levels_message()
    assert all(s in message for s in OPT_OUT_SPELLINGS)
    assert "opted out" in message


# --- the agent's real pipeline (Tetragon events through the adapter and the fast path) -------------

WATCHED = "sha256:" + "c" * 64
# pod -> its annotation value (all but web opt out; none of them is labelled observe-off yet: the
# window between the pod's start and the operator's label write, with Tetragon exporting annotations)
PODS = {
    "off": "Off",
    "false": "false",
    "turbo": "turbo",
    "nul": "None\x00",
    "big": "x" * 10_240,
    "web": "Passive",
}


def _digest(pod: str) -> str:
    return WATCHED if pod == "web" else "sha256:" + f"{sorted(PODS).index(pod):x}" * 64


def _exec(pod: str, i: int) -> bytes:
    from tests.tetragon_exec import process_exec

    d = _digest(pod)
    return process_exec(
        pod, i, container_id=d[7:], digest=d, annotations={OBSERVE_LEVEL_ANNOTATION: PODS[pod]}
    )


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "no-fast-path"])
def test_the_pipeline_drops_the_events_of_every_pod_that_did_not_ask_for_a_level(fast_path: bool) -> None:
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config

    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}),
        node_name="node-1",
        fast_path=fast_path,
    )
    pipeline._process_proto([(_exec(pod, i % 3), 1) for i in range(12) for pod in PODS])  # repeats too
    deltas, windows = pipeline.drain()

    assert pipeline.optout.counts() == {"annotation": 12 * 5, "label": 0, "operator": 0}
    assert {d.key.image_digest for d in deltas} == {WATCHED}
    assert sum(d.invocation_count for d in deltas) == 12
    # every opted-out image's time is a gap (unknown), never a window a "not observed" could rest on
    opted = {_digest(pod) for pod in PODS if pod != "web"}
    for w in windows:
        if w.image_digest in opted:
            assert w.source == "opted_out" and w.gap_start_ns is not None
    assert {w.image_digest for w in windows if w.source == "opted_out"} == opted
