"""Pod opt-out (privacy/optout.py): which events the agent drops, and that it agrees with the operator.

The agent and the operator read ``stellaops.io/observe-level`` with the same
parser; these tests feed both the same values, hostile ones included, and
require the same answer. The last test runs real-shaped Tetragon events
through the real adapter, the stage and the real pipeline's later stages (the
stage first, as agent/pipeline.py wires it): an opted-out pod leaves no
hot-symbol row and no observation window naming its image, even when
Tetragon throttles it, and its neighbours count exactly as before.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.adapter import from_proto
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL
from stellaops_runtime.contracts.events import EventKind, PodInfo, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.controller.posture import compute_posture
from stellaops_runtime.privacy.optout import REASONS, OptOut, opt_out_reason
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2
from tests.tetragon_exec import process_exec

MIB = 1 << 20

# Values the operator reads as None: the name (any case, surrounding whitespace), the opt-out
# spellings, and every other value that is not a level, hostile text included (fail closed).
OPTS_OUT = [
    "None", "none", "NONE", "nOnE", " None", "None ", "\tnone\n", " " * MIB + "None",
    "", " ", "nothing", "off", "false", "no", "0", "null", "Non", "None.", "No ne", "'None'",
    "None\x00", "\x00None", "N\x00one", "None" * (MIB // 4), "x" * MIB,
    "None\u200b", "\uff2e\uff4f\uff4e\uff45", "Passive\x00", "passive" + " " * MIB,
]  # fmt: skip
# Values that do not opt out: the levels above None.
STAYS = ["Passive", "passive", " PASSIVE\t", "ActiveTracing", "ebpf-deep", "full-instrumentation"]


def _event(*, annotations: object = None, labels: object = None, pod: bool = True) -> RuntimeCallEvent:
    ev = RuntimeCallEvent(kind=EventKind.EXEC, timestamp_ns=1, node_name="n", process=ProcessInfo(pid=1))
    if pod:
        ev.pod = PodInfo(namespace="ns", name="p")
        if annotations is not None:
            ev.pod.annotations = annotations  # type: ignore[assignment]  # hostile types on purpose
        if labels is not None:
            ev.pod.labels = labels  # type: ignore[assignment]
    return ev


def _operator_opts_out(value: str) -> bool:
    d = compute_posture(
        annotations={OBSERVE_LEVEL_ANNOTATION: value},
        pod_labels={},
        namespace="ns",
        namespace_labels={},
        policies=[],
        node=None,
    )
    return d.opted_out


@pytest.mark.parametrize("value", OPTS_OUT, ids=lambda v: repr(v)[:40])
def test_annotation_none_in_any_spelling_the_operator_accepts_drops_the_event(value: str) -> None:
    stage = OptOut()
    assert stage.drops(_event(annotations={OBSERVE_LEVEL_ANNOTATION: value}))
    assert stage.counts() == {"annotation": 1, "label": 0, "operator": 0}
    assert _operator_opts_out(value)  # the operator reads it as an opt-out too


@pytest.mark.parametrize("value", STAYS, ids=lambda v: repr(v)[:40])
def test_other_annotation_values_keep_the_event_as_the_operator_does(value: str) -> None:
    stage = OptOut()
    assert not stage.drops(_event(annotations={OBSERVE_LEVEL_ANNOTATION: value}))
    assert stage.total == 0
    assert not _operator_opts_out(value)


def test_the_operators_label_drops_the_event() -> None:
    stage = OptOut()
    assert stage.drops(_event(labels={OBSERVE_OFF_LABEL: "true", "app": "web"}))
    assert stage.counts() == {"annotation": 0, "label": 1, "operator": 0}


@pytest.mark.parametrize("value", ["True", "TRUE", "false", "", "1", "yes", "true\x00", " true"])
def test_only_the_exact_label_value_the_operator_writes_counts(value: str) -> None:
    assert opt_out_reason(_event(labels={OBSERVE_OFF_LABEL: value}).pod) is None


def test_annotation_and_label_together_count_once_as_annotation() -> None:
    stage = OptOut()
    ev = _event(annotations={OBSERVE_LEVEL_ANNOTATION: "None"}, labels={OBSERVE_OFF_LABEL: "true"})
    assert stage.drops(ev) and stage.drops(ev)
    assert stage.counts() == {"annotation": 2, "label": 0, "operator": 0} and stage.total == 2


def test_label_opts_out_even_when_the_annotation_says_otherwise() -> None:
    """Tetragon's pod cache can lag a change: either signal is enough to drop (never to keep)."""
    ev = _event(annotations={OBSERVE_LEVEL_ANNOTATION: "Passive"}, labels={OBSERVE_OFF_LABEL: "true"})
    assert opt_out_reason(ev.pod) == "label"


def test_nothing_said_keeps_the_event() -> None:
    stage = OptOut()
    for ev in (
        _event(),
        _event(annotations={}, labels={}),
        _event(annotations={"other": "None"}, labels={"stellaops.io/observe": "true"}),
        _event(pod=False),  # a host process
    ):
        assert not stage.drops(ev)
    assert stage.counts() == dict.fromkeys(REASONS, 0)


@pytest.mark.parametrize(
    ("annotations", "labels"),
    [
        ({OBSERVE_LEVEL_ANNOTATION: None}, None),
        ([(OBSERVE_LEVEL_ANNOTATION, "None")], None),
        ("stellaops.io/observe-level=None", None),
        (None, {OBSERVE_OFF_LABEL: True}),
        (None, {OBSERVE_OFF_LABEL: ["true"]}),
        (None, [(OBSERVE_OFF_LABEL, "true")]),
        (None, "stellaops.io/observe-off=true"),
        ({1: "None", None: "None"}, {1: "true"}),
    ],
    ids=repr,
)
def test_wrong_types_say_nothing_and_never_raise(annotations: object, labels: object) -> None:
    stage = OptOut()
    assert not stage.drops(_event(annotations=annotations, labels=labels))
    assert stage.total == 0


@pytest.mark.parametrize("value", [0, False, b"None", b"Passive", ["Passive"]], ids=repr)
def test_an_annotation_value_that_is_not_text_fails_closed(value: object) -> None:
    """A present value the agent cannot read as a level opts out, as the operator reads it."""
    stage = OptOut()
    assert stage.drops(_event(annotations={OBSERVE_LEVEL_ANNOTATION: value}))
    assert stage.counts() == {"annotation": 1, "label": 0, "operator": 0}


# --- through the real adapter and the real pipeline's later stages -------------------------------

OPTED_OUT_DIGEST = "sha256:" + "a" * 64
LABELLED_DIGEST = "sha256:" + "b" * 64
WATCHED_DIGEST = "sha256:" + "c" * 64


def _exec(pod: str, digest: str, *, annotations: dict[str, str], labels: dict[str, str], i: int) -> bytes:
    """A process_exec as Tetragon sends it for a pod (Pod: 5 pod_labels, 8 pod_annotations)."""
    return process_exec(
        pod, i, container_id=digest[7:], digest=digest, labels=labels, annotations=annotations
    )


def test_opted_out_pods_leave_nothing_in_the_hot_symbol_index() -> None:
    payloads = []
    for i in range(30):
        payloads.append(_exec("off", OPTED_OUT_DIGEST, annotations={OBSERVE_LEVEL_ANNOTATION: " none "},
                              labels={"app": "off"}, i=i))  # fmt: skip
        payloads.append(_exec("labelled", LABELLED_DIGEST, annotations={},
                              labels={OBSERVE_OFF_LABEL: "true"}, i=i))  # fmt: skip
        payloads.append(_exec("web", WATCHED_DIGEST, annotations={OBSERVE_LEVEL_ANNOTATION: "Passive"},
                              labels={"app": "web"}, i=i))  # fmt: skip
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="node-1"
    )
    stage = OptOut()
    stats = pipeline.adapter_stats
    for payload in payloads:  # what Pipeline._process_proto does, with the stage first after the adapter
        ev = from_proto.adapt(from_proto.decode(payload, stats), received_ns=1, stats=stats)
        assert ev is not None
        if not stage.drops(ev):
            pipeline._finish(ev)
    # Tetragon throttles the opted-out pod's cgroup: its container was never noted, so the gap is
    # node-wide (unknown for every image on the node), never a row naming the opted-out image.
    for kind, second in (("THROTTLE_START", 5), ("THROTTLE_STOP", 9)):
        m = events_pb2.GetEventsResponse(node_name="node-1")
        m.time.seconds = 1_795_510_800 + second
        m.process_throttle.type = tetragon_pb2.ThrottleType.Value(kind)
        m.process_throttle.cgroup = f"/kubepods/pod1/cri-containerd-{OPTED_OUT_DIGEST[7:]}.scope"
        assert from_proto.adapt(from_proto.decode(m.SerializeToString(), stats), stats=stats) is None
    pipeline._take_drop_signals()
    deltas, windows = pipeline.drain()

    assert stage.counts() == {"annotation": 30, "label": 30, "operator": 0}
    assert pipeline.processed == 30 and stats.events == {EventKind.EXEC: 90}
    assert {d.key.image_digest for d in deltas} == {WATCHED_DIGEST}
    assert {w.image_digest for w in windows} == {WATCHED_DIGEST, NODE_WIDE}
    [gap] = [w for w in windows if w.image_digest == NODE_WIDE]
    assert gap.gap_start_ns == (1_795_510_800 + 5) * 10**9 and gap.gap_end_ns == (1_795_510_800 + 9) * 10**9
    assert sum(d.invocation_count for d in deltas) == 30
    assert not stats.malformed
