"""Event adapter: Tetragon events (protobuf and JSON export) -> RuntimeCallEvent."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import orjson
import pytest
from google.protobuf import json_format

from stellaops_runtime.adapter import common, from_json, from_proto
from stellaops_runtime.contracts.drops import DropKind, DropSignal
from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.wire.tetragon import events_pb2

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon"


def _lines() -> list[bytes]:
    real = [ln for ln in (FIX / "events.jsonl").read_bytes().splitlines() if ln.strip()]
    with gzip.open(FIX / "synthetic" / "stream-a.jsonl.gz") as f:
        synthetic = [ln for ln in f.read().splitlines() if ln.strip()]
    return real + synthetic


LINES = _lines()


def test_both_adapters_agree_on_every_fixture_line() -> None:
    """The gRPC path and the JSON export path give the same event for the same input."""
    js, ps = common.AdapterStats(), common.AdapterStats()
    adapted = 0
    for line in LINES:
        msg = json_format.Parse(line, events_pb2.GetEventsResponse())
        via_proto = from_proto.adapt(from_proto.decode(msg.SerializeToString(), ps), stats=ps)
        via_json = from_json.adapt(from_json.decode_line(line), stats=js)
        if via_proto is not None and via_json is not None:
            assert (via_proto.source, via_json.source) == ("tetragon-grpc", "tetragon-export")
            via_proto.source = via_json.source
        assert via_proto == via_json, line[:200]
        adapted += via_json is not None
    assert js == ps  # drop signals included: both adapters read throttles alike
    # process_throttle (2 lines of events.jsonl) is the only kind that is no event: a drop signal.
    assert adapted == len(LINES) - 2
    assert not js.unhandled
    assert [(d.kind, d.cgroup, d.node_name) for d in js.drop_signals] == [
        (DropKind.THROTTLE_START, "session-429.scope", "ubuntu-22"),
        (DropKind.THROTTLE_STOP, "session-429.scope", "ubuntu-22"),
    ]
    assert [d.timestamp_ns for d in js.drop_signals] == [1721999263178407128, 1721999275501718877]
    assert not js.malformed


def _first(kind: str) -> dict:
    for line in LINES:
        obj = orjson.loads(line)
        if kind in obj:
            return obj
    raise AssertionError(kind)


def test_uprobe_event_fields() -> None:
    obj = _first("process_uprobe")
    ev = from_json.adapt(obj, stats=common.AdapterStats())
    assert ev is not None and ev.kind is EventKind.UPROBE
    up = obj["process_uprobe"]
    assert ev.function_name == up["symbol"]
    assert ev.module == up["path"]
    p = up["process"]
    assert ev.process.pid == p["pid"] and ev.process.binary == p["binary"]
    assert ev.pod is not None and ev.pod.namespace == p["pod"]["namespace"]
    assert ev.pod.labels == p["pod"]["pod_labels"]
    c = p["pod"]["container"]
    assert ev.container is not None
    assert ev.container.runtime == "containerd" and "containerd://" + ev.container.id == c["id"]
    assert ev.container.image_digest == c["image"]["id"].split("@")[1]
    assert ev.image_key == ev.container.image_digest
    assert ev.timestamp_ns == common.rfc3339_to_ns(obj["time"])


def test_kprobe_with_stacks() -> None:
    obj = next(orjson.loads(ln) for ln in LINES if b'"user_stack_trace"' in ln and b"process_kprobe" in ln)
    ev = from_json.adapt(obj, stats=common.AdapterStats())
    assert ev is not None and ev.kind is EventKind.SYSCALL
    k = obj["process_kprobe"]
    assert [f.symbol for f in ev.kernel_stack] == [f["symbol"] for f in k["kernel_stack_trace"]]
    assert [(f.module, f.offset) for f in ev.user_stack] == [
        (f.get("module", ""), int(f["offset"])) for f in k["user_stack_trace"]
    ]


def test_loader_build_id_is_hex_of_the_bytes() -> None:
    obj = _first("process_loader")
    ev = from_json.adapt(obj, stats=common.AdapterStats())
    assert ev is not None and ev.kind is EventKind.LOADER
    assert ev.build_id == base64.b64decode(obj["process_loader"]["buildid"]).hex()
    assert len(ev.build_id) == 40


def test_kprobe_arguments_render_as_text() -> None:
    obj = next(orjson.loads(ln) for ln in LINES if b"security_file_permission" in ln)
    ev = from_json.adapt(obj, stats=common.AdapterStats())
    assert ev is not None and ev.kind is EventKind.KPROBE  # not a syscall
    kinds = [a.type for a in ev.arguments]
    assert "file_arg" in kinds and ev.arguments[-1].label == "return"
    file_arg = next(a for a in ev.arguments if a.type == "file_arg")
    assert file_arg.value.startswith("/")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
    ],
)
def test_malformed_lines_raise_a_counted_reason(line: bytes, reason: str) -> None:
    with pytest.raises(from_json.MalformedEvent) as e:
        from_json.decode_line(line)
    assert e.value.reason == reason


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    line = b'{"process_exec":{"process":{"binary":"/bin/\xff\xfesh","pid":1}},"node_name":"n"}'
    ev = from_json.adapt(from_json.decode_line(line), stats=common.AdapterStats())
    assert ev is not None and ev.process.binary == "/bin/\ufffd\ufffdsh"


def test_unknown_kinds_and_missing_process_are_counted() -> None:
    st = common.AdapterStats()
    assert from_json.adapt({"process_something_new": {}, "node_name": "n"}, stats=st) is None
    assert from_json.adapt({"node_name": "n"}, stats=st) is None
    assert from_json.adapt({"process_exec": {}}, stats=st) is None
    assert from_json.adapt({"rate_limit_info": {"number_of_dropped_process_events": "7"}}, stats=st) is None
    assert st.unhandled == {"process_something_new": 1, "none": 1}
    assert st.malformed == {"no_process": 1}
    assert st.tetragon_export_dropped == 7
    assert st.drop_signals == [DropSignal(DropKind.RATE_LIMIT, 0, "", dropped=7)]


def test_drop_signals_through_both_adapters() -> None:
    """rate_limit_info and process_throttle become DropSignals, the same from protobuf and JSON."""
    objs = [
        {"rate_limit_info": {"number_of_dropped_process_events": "41"}, "node_name": "n1",
         "time": "2026-11-24T09:00:30Z"},
        {"process_throttle": {"type": "THROTTLE_START", "cgroup": "cri-containerd-" + "ab" * 32 + ".scope"},
         "node_name": "n1", "time": "2026-11-24T09:00:31Z"},
        {"process_throttle": {"type": "THROTTLE_STOP", "cgroup": "x"}, "node_name": "n1"},
    ]  # fmt: skip
    js, ps = common.AdapterStats(), common.AdapterStats()
    for o in objs:
        assert from_json.adapt(o, stats=js) is None
        msg = json_format.ParseDict(o, events_pb2.GetEventsResponse())
        assert from_proto.adapt(from_proto.decode(msg.SerializeToString(), ps), stats=ps) is None
    assert js == ps
    t = 1_795_510_830_000_000_000
    assert js.drop_signals == [
        DropSignal(DropKind.RATE_LIMIT, t, "n1", dropped=41),
        DropSignal(
            DropKind.THROTTLE_START, t + 1_000_000_000, "n1", cgroup="cri-containerd-" + "ab" * 32 + ".scope"
        ),
        DropSignal(DropKind.THROTTLE_STOP, 0, "n1", cgroup="x"),  # no time: the pipeline stamps it
    ]
    assert js.tetragon_export_dropped == 41 and not js.unhandled and not js.malformed


def test_useless_or_wrong_typed_drop_signals_are_counted_not_kept() -> None:
    st = common.AdapterStats()
    assert (
        from_json.adapt({"process_throttle": {"type": "THROTTLE_UNKNOWN", "cgroup": "c"}}, stats=st) is None
    )
    assert from_json.adapt({"rate_limit_info": {}}, stats=st) is None  # 0 events dropped
    assert (
        from_json.adapt({"process_throttle": {"type": "THROTTLE_START", "cgroup": ["c"]}}, stats=st) is None
    )
    assert (
        from_json.adapt({"rate_limit_info": {"number_of_dropped_process_events": "many"}}, stats=st) is None
    )
    assert st.drop_signals == []
    assert st.unhandled == {"process_throttle": 2, "rate_limit_info": 1}
    assert st.malformed == {"bad_type": 1}


def test_proto_unknown_oneof_and_garbage_bytes() -> None:
    st = common.AdapterStats()
    # Field 26 (a removed event kind, length-delimited, empty) + node_name.
    payload = bytes([0xD2, 0x01, 0x00]) + events_pb2.GetEventsResponse(node_name="n").SerializeToString()
    msg = from_proto.decode(payload, st)
    assert msg is not None and from_proto.adapt(msg, stats=st) is None
    assert from_proto.decode(b"\xff\xff\xff", st) is None
    assert st.unhandled == {"none": 1} and st.malformed == {"invalid_protobuf": 1}


def test_host_process_without_pod() -> None:
    line = b'{"process_exec":{"process":{"binary":"/usr/sbin/sshd","pid":7}},"node_name":"node-1"}'
    ev = from_json.adapt(from_json.decode_line(line), stats=common.AdapterStats())
    assert ev is not None and ev.container is None and ev.pod is None
    assert ev.image_key == "host:node-1"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-11-24T09:00:00Z", 1_795_510_800_000_000_000),
        ("2026-11-24T09:00:00.004000Z", 1_795_510_800_004_000_000),
        ("2026-11-24T09:00:00.123456789Z", 1_795_510_800_123_456_789),
        ("2026-11-24T10:00:00.5+01:00", 1_795_510_800_500_000_000),
        ("", 0),
    ],
)
def test_rfc3339(text: str, ns: int) -> None:
    assert common.rfc3339_to_ns(text) == ns


@pytest.mark.parametrize(
    ("image_id", "digest"),
    [
        ("docker.io/cilium/starwars@sha256:f92c", "sha256:f92c"),
        ("sha256:abcd", "sha256:abcd"),
        ("docker.io/library/nginx:1.25", ""),
        ("", ""),
    ],
)
def test_image_digest(image_id: str, digest: str) -> None:
    assert common.image_digest(image_id) == digest


# --- pod annotations (Tetragon v1.5+ with --enable-pod-annotations: Pod field 8) -----------------

OPT_OUT = "stellaops.io/observe-level"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _with_annotations(annotations: object) -> bytes:
    """The fixture's first process_exec (a real Tetragon line) with ``pod_annotations`` added."""
    obj = _first("process_exec")
    obj["process_exec"]["process"]["pod"]["pod_annotations"] = annotations
    return orjson.dumps(obj)


def test_pod_annotations_field_is_number_8_on_the_wire() -> None:
    """Bytes encoded by hand as Tetragon writes them (map entry: 1 key, 2 value) reach pod_annotations."""
    from stellaops_runtime.wire.tetragon import tetragon_pb2

    key, value = OPT_OUT.encode(), b"None"
    entry = bytes([0x0A, len(key)]) + key + bytes([0x12, len(value)]) + value
    pod = tetragon_pb2.Pod.FromString(bytes([0x42, len(entry)]) + entry + b"\x12\x03web")  # 8: map, 2: name
    assert dict(pod.pod_annotations) == {OPT_OUT: "None"} and pod.name == "web"


def test_pod_annotations_reach_the_event_through_both_adapters() -> None:
    annotations = {
        OPT_OUT: "None",
        # kubectl's copy of the whole pod: environment values and all. Never copied into the event.
        LAST_APPLIED: '{"spec":{"containers":[{"env":[{"name":"DB_PASSWORD","value":"hunter2"}]}]}}',
        "prometheus.io/scrape": "true",
    }
    line = _with_annotations(annotations)
    js, ps = common.AdapterStats(), common.AdapterStats()
    msg = json_format.Parse(line, events_pb2.GetEventsResponse())
    assert dict(msg.process_exec.process.pod.pod_annotations) == annotations  # our proto reads it
    via_proto = from_proto.adapt(from_proto.decode(msg.SerializeToString(), ps), stats=ps)
    via_json = from_json.adapt(from_json.decode_line(line), stats=js)
    assert via_proto is not None and via_json is not None
    for ev in (via_proto, via_json):
        assert ev.pod is not None
        assert ev.pod.annotations == {OPT_OUT: "None"}  # only the annotation the agent acts on
        assert ev.pod.labels["class"] == "tiefighter"
    via_proto.source = via_json.source
    assert via_proto == via_json
    assert "hunter2" not in repr(via_json)


def test_no_pod_annotations_gives_an_empty_map() -> None:
    """Tetragon without --enable-pod-annotations sends none; a pod without annotations neither."""
    for line in (orjson.dumps(_first("process_exec")), _with_annotations({}), _with_annotations(None)):
        st = common.AdapterStats()
        msg = json_format.Parse(line, events_pb2.GetEventsResponse())
        for ev in (
            from_json.adapt(from_json.decode_line(line), stats=st),
            from_proto.adapt(from_proto.decode(msg.SerializeToString(), st), stats=st),
        ):
            assert ev is not None and ev.pod is not None and ev.pod.annotations == {}


@pytest.mark.parametrize(
    "annotations",
    [["stellaops.io/observe-level", "None"], "None", {OPT_OUT: 0}, {OPT_OUT: ["None"]}, {OPT_OUT: {"v": 1}}],
    ids=["a list", "a string", "a number value", "a list value", "an object value"],
)
def test_wrong_typed_pod_annotations_reject_the_event(annotations: object) -> None:
    st = common.AdapterStats()
    assert from_json.adapt(from_json.decode_line(_with_annotations(annotations)), stats=st) is None
    assert st.malformed == {"bad_type": 1} and not st.events


def test_wrong_typed_annotations_we_do_not_read_are_left_alone() -> None:
    st = common.AdapterStats()
    ev = from_json.adapt(from_json.decode_line(_with_annotations({"other": 7})), stats=st)
    assert ev is not None and ev.pod is not None and ev.pod.annotations == {}


def test_kept_annotation_is_the_operators_observe_level_annotation() -> None:
    from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION
    from stellaops_runtime.contracts.events import KEPT_POD_ANNOTATIONS

    assert KEPT_POD_ANNOTATIONS == (OBSERVE_LEVEL_ANNOTATION,)
