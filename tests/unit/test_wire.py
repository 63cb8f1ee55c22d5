"""The wire contract: our .proto subset decodes real Tetragon output losslessly.

Every fixture line must parse strictly (an unknown field name fails), round-trip
through the binary encoding, and render back to the same JSON object (so no
field was silently dropped). Hand-encoded bytes pin field numbers and wire
types, and the committed generated code must match a fresh generation.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, timestamp_pb2

from stellaops_runtime.wire import generate
from stellaops_runtime.wire.tetragon import events_pb2, sensors_pb2, sensors_pb2_grpc, tetragon_pb2
from tests.wire_bytes import varint as _varint

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "tetragon"
EVENTS_JSONL = FIXTURES / "events.jsonl"
STREAM_A = FIXTURES / "synthetic" / "stream-a.jsonl.gz"

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _fixture_lines() -> list[tuple[str, int, str]]:
    lines = []
    with EVENTS_JSONL.open(encoding="utf-8") as fh:
        lines += [("events.jsonl", i, line) for i, line in enumerate(fh, 1) if line.strip()]
    with gzip.open(STREAM_A, "rt", encoding="utf-8") as gz:
        lines += [("stream-a", i, line) for i, line in enumerate(gz, 1) if line.strip()]
    return lines


def _normalize(value: Any) -> Any:
    """Only what protojson may legitimately render differently: RFC 3339 timestamp precision."""
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, str) and _RFC3339.match(value):
        ts = timestamp_pb2.Timestamp()
        ts.FromJsonString(value)
        return ("timestamp", ts.seconds, ts.nanos)
    return value


def _drop_explicit_defaults(obj: dict[str, Any], descriptor: Any) -> dict[str, Any]:
    """protojson omits a no-presence scalar at its default (``"status": 0``); drop only those."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        field = descriptor.fields_by_name[key]  # KeyError = a field our schema lacks
        message_type = field.message_type
        is_repeated = field.is_repeated
        if message_type is not None and not message_type.full_name.startswith("google.protobuf."):
            if message_type.GetOptions().map_entry:
                out[key] = value
            elif is_repeated:
                out[key] = [_drop_explicit_defaults(v, message_type) for v in value]
            else:
                out[key] = _drop_explicit_defaults(value, message_type)
            continue
        if not is_repeated and not field.has_presence and message_type is None:
            if field.enum_type is not None:
                defaults: tuple[Any, ...] = (0, field.enum_type.values_by_number[0].name)
            elif field.type in (field.TYPE_STRING, field.TYPE_BYTES):
                defaults = ("",)
            elif field.type == field.TYPE_BOOL:
                defaults = (False,)
            else:  # numbers; 64-bit ones may be JSON strings
                defaults = (0, "0")
            if any(value == d and type(value) is type(d) for d in defaults):
                continue
        out[key] = value
    return out


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    stale = [
        name
        for name in generate.GENERATED_NAMES
        if (tmp_path / name).read_bytes() != (generate.OUTPUT_DIR / name).read_bytes()
    ]
    assert not stale, f"regenerate with `python -m stellaops_runtime.wire.generate`: {stale}"
    assert generate.stale_files() == []


def test_check_mode_lists_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in generate.GENERATED_NAMES:
        (tmp_path / name).write_bytes((generate.OUTPUT_DIR / name).read_bytes())
    assert generate.stale_files(committed_dir=tmp_path) == []
    with (tmp_path / "events_pb2.py").open("a", encoding="utf-8") as fh:
        fh.write("# hand edit\n")
    (tmp_path / "sensors_pb2_grpc.py").unlink()
    assert generate.stale_files(committed_dir=tmp_path) == ["events_pb2.py", "sensors_pb2_grpc.py"]
    assert generate.main(["--check"]) == 0


def test_generated_imports_point_into_our_package() -> None:
    for name in generate.GENERATED_NAMES:
        text = (generate.OUTPUT_DIR / name).read_text(encoding="utf-8")
        assert "from tetragon import" not in text, name


def test_every_fixture_line_parses_strictly_and_round_trips() -> None:
    lines = _fixture_lines()
    assert len(lines) == 54 + 3144
    kinds: dict[str, int] = {}
    for source, line_no, line in lines:
        where = f"{source}:{line_no}"
        msg = json_format.Parse(line, events_pb2.GetEventsResponse())  # strict: unknown fields fail
        kind = msg.WhichOneof("event")
        assert kind is not None, where
        kinds[kind] = kinds.get(kind, 0) + 1

        # deterministic=True: map entries (pod_labels) otherwise have no fixed order.
        wire = msg.SerializeToString(deterministic=True)
        again = events_pb2.GetEventsResponse.FromString(wire)
        assert again == msg, where
        assert again.SerializeToString(deterministic=True) == wire, where

        rendered = json_format.MessageToDict(msg, preserving_proto_field_name=True)
        original = _drop_explicit_defaults(json.loads(line), events_pb2.GetEventsResponse.DESCRIPTOR)
        assert _normalize(rendered) == _normalize(original), where
    assert set(kinds) >= {
        "process_exec",
        "process_exit",
        "process_kprobe",
        "process_uprobe",
        "process_loader",
        "process_throttle",
    }


def test_field_numbers_match_tetragon() -> None:
    resp = events_pb2.GetEventsResponse.DESCRIPTOR.fields_by_name
    expected = {
        "process_exec": 1,
        "process_exit": 5,
        "process_kprobe": 9,
        "process_tracepoint": 10,
        "process_loader": 11,
        "process_uprobe": 12,
        "process_throttle": 27,
        "process_lsm": 28,
        "process_usdt": 29,
        "test": 40000,
        "rate_limit_info": 40001,
        "node_name": 1000,
        "time": 1001,
        "aggregation_info": 1002,
        "cluster_name": 1003,
        "node_labels": 1004,
    }
    assert {name: resp[name].number for name in expected} == expected
    # EventType numbers equal the oneof numbers.
    for field in events_pb2.GetEventsResponse.DESCRIPTOR.oneofs_by_name["event"].fields:
        assert events_pb2.EventType.Value(field.name.upper()) == field.number
    filter_fields = events_pb2.Filter.DESCRIPTOR.fields
    assert [f.number for f in filter_fields] == list(range(1, 20))
    wrappers = {
        (tetragon_pb2.Process, "pid"): "google.protobuf.UInt32Value",
        (tetragon_pb2.Process, "uid"): "google.protobuf.UInt32Value",
        (tetragon_pb2.Process, "auid"): "google.protobuf.UInt32Value",
        (tetragon_pb2.Process, "tid"): "google.protobuf.UInt32Value",
        (tetragon_pb2.Container, "pid"): "google.protobuf.UInt32Value",
        (events_pb2.Filter, "health_check"): "google.protobuf.BoolValue",
        (events_pb2.Filter, "in_init_tree"): "google.protobuf.BoolValue",
    }
    for (message, name), full_name in wrappers.items():
        assert message.DESCRIPTOR.fields_by_name[name].message_type.full_name == full_name


def test_service_method_paths() -> None:
    service = sensors_pb2.DESCRIPTOR.services_by_name["FineGuidanceSensors"]
    assert service.full_name == "tetragon.FineGuidanceSensors"
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"GetEvents", "GetHealth", "GetVersion", "ListTracingPolicies"}
    assert methods["GetEvents"].output_type.full_name == "tetragon.GetEventsResponse"
    assert hasattr(sensors_pb2_grpc, "FineGuidanceSensorsStub")


def test_hand_encoded_wrapper_pid() -> None:
    # Process.pid: field 2, wire type 2 (length-delimited) -> UInt32Value{value (1, varint) = 42}.
    wire = bytes([0x12, 0x02, 0x08, 42])
    proc = tetragon_pb2.Process.FromString(wire)
    assert proc.HasField("pid")
    assert proc.pid.value == 42
    assert proc.SerializeToString() == wire
    # A plain uint32 (wire type 0) under number 2 is not our field: it stays unknown.
    proc = tetragon_pb2.Process.FromString(bytes([0x10, 42]))
    assert not proc.HasField("pid")


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_unknown_event_kind_decodes_with_no_oneof() -> None:
    # Field 26 (a removed/unknown kind) carrying a message, plus node_name (1000).
    wire = _field(26, _field(1, b"x")) + _field(1000, b"node-a")
    msg = events_pb2.GetEventsResponse.FromString(wire)
    assert msg.WhichOneof("event") is None
    assert msg.node_name == "node-a"
    # Unknown fields survive re-encoding (a proxy would not lose them).
    assert _field(26, _field(1, b"x")) in msg.SerializeToString()


def test_known_kind_by_number() -> None:
    uprobe = tetragon_pb2.ProcessUprobe(path="/lib/libz.so.1", symbol="crc32")
    wire = _field(12, uprobe.SerializeToString())
    msg = events_pb2.GetEventsResponse.FromString(wire)
    assert msg.WhichOneof("event") == "process_uprobe"
    assert msg.process_uprobe.symbol == "crc32"


@pytest.mark.parametrize(
    ("message", "json_name"),
    [
        (tetragon_pb2.KprobeBpfAttr, "ProgType"),
        (tetragon_pb2.EnvVar, "Key"),
        (tetragon_pb2.EnvVar, "Value"),
        (tetragon_pb2.KprobeError, "Message"),
        (tetragon_pb2.KprobePerfEvent, "KprobeFunc"),
        (tetragon_pb2.KprobeBpfMap, "MaxEntries"),
    ],
)
def test_camelcase_field_names_kept(message: Any, json_name: str) -> None:
    assert json_name in message.DESCRIPTOR.fields_by_name
