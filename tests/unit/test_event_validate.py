"""adapter/validate.py: poison text, absurd times and wrong types, repaired or rejected."""

from __future__ import annotations

import base64
import time
from collections import Counter

import pytest

from stellaops_runtime.adapter import common, from_json, from_proto
from stellaops_runtime.adapter.validate import MAX_TEXT_CHARS, MIN_EVENT_NS, BadEvent, normalize
from stellaops_runtime.contracts.events import (
    Argument,
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.wire.tetragon import events_pb2

NOW_NS = 1_795_510_800 * 1_000_000_000


def _event(**kw) -> RuntimeCallEvent:
    ev = RuntimeCallEvent(
        kind=EventKind.KPROBE,
        timestamp_ns=NOW_NS,
        node_name="n",
        process=ProcessInfo(exec_id="e", pid=1, binary="/bin/x", arguments="-v"),
        container=ContainerInfo(id="c", image_digest="sha256:" + "a" * 64),
        pod=PodInfo(namespace="ns", name="p", labels={"app": "web"}),
        arguments=[Argument("l", "string_arg", "/etc/hosts")],
        user_stack=[StackFrame(module="/lib/libc.so.6", symbol="read", offset=16)],
    )
    for k, v in kw.items():
        setattr(ev, k, v)
    return ev


def test_a_clean_event_is_left_exactly_as_it_was() -> None:
    ev, issues = _event(), Counter()
    before = repr(ev)
    normalize(ev, issues)
    assert repr(ev) == before and not issues


@pytest.mark.parametrize(
    "where",
    ["binary", "arguments", "label", "argument", "frame", "pod", "node"],
)
def test_nul_is_replaced_everywhere_and_counted_once_per_field(where) -> None:
    ev, issues = _event(), Counter()
    bad = "a\x00b"
    if where == "binary":
        ev.process.binary = bad
    elif where == "arguments":
        ev.process.arguments = bad
    elif where == "label":
        ev.pod.labels = {"k\x00": bad}
    elif where == "argument":
        ev.arguments[0].value = bad
    elif where == "frame":
        ev.user_stack[0].symbol = bad
    elif where == "pod":
        ev.pod.name = bad
    else:
        ev.node_name = bad
    normalize(ev, issues)
    assert "\x00" not in repr(ev)
    assert ("a b" if where == "arguments" else "a\ufffdb") in repr(ev)  # NUL separates argv entries
    assert issues["nul_replaced"] == 1  # once per event, however many fields held one


@pytest.mark.parametrize(
    ("field", "value"),
    [("binary", ["/bin/sh"]), ("arguments", ["-c"]), ("cwd", {"a": 1}), ("exec_id", 7), ("pid", "7")],
)
def test_a_wrong_type_rejects_the_event(field, value) -> None:
    ev = _event()
    setattr(ev.process, field, value)
    with pytest.raises(BadEvent) as e:
        normalize(ev, Counter())
    assert e.value.reason == "bad_type"


def test_wrong_typed_labels_and_offsets_reject_the_event() -> None:
    ev = _event()
    ev.pod.labels = ["a"]  # type: ignore[assignment]
    with pytest.raises(BadEvent):
        normalize(ev, Counter())
    ev = _event()
    ev.user_stack[0].offset = "0x10"  # type: ignore[assignment]
    with pytest.raises(BadEvent):
        normalize(ev, Counter())


@pytest.mark.parametrize(
    "ts",
    [
        -1,
        -5_000_000_000,
        1,  # 1 ns: a day in 1970
        30 * 86_400 * 10**9 + 17,  # a boot-relative time read as wall time
        MIN_EVENT_NS - 1,
        (33000 - 1970) * 31_556_952 * 10**9,
        (int(time.time()) + 2 * 86_400) * 10**9,
    ],
    # stable IDs: the last value depends on the clock, and parallel workers must collect the same tests
    ids=[
        "minus-1",
        "minus-5s",
        "one-ns",
        "boot-relative",
        "just-before-2020",
        "year-33000",
        "two-days-ahead",
    ],
)
def test_absurd_times_are_cleared_for_the_arrival_time(ts) -> None:
    ev, issues = _event(timestamp_ns=ts), Counter()
    normalize(ev, issues)
    assert ev.timestamp_ns == 0 and issues["time_clamped"] == 1


def test_a_time_a_few_hours_ahead_is_kept() -> None:
    ts = (int(time.time()) + 3600) * 10**9
    ev, issues = _event(timestamp_ns=ts), Counter()
    normalize(ev, issues)
    assert ev.timestamp_ns == ts and not issues


@pytest.mark.parametrize("size", [MAX_TEXT_CHARS + 1, MAX_TEXT_CHARS * 2, MAX_TEXT_CHARS * 4 - 10])
@pytest.mark.parametrize("where", ["cwd", "argument"])
def test_one_field_a_little_over_the_limit_is_cut_and_counted(size: int, where: str) -> None:
    """Not only text four times the limit: a single field one character over is cut and counted."""
    ev, issues = _event(), Counter()
    if where == "cwd":
        ev.process.cwd = "c" * size
    else:
        ev.arguments = [Argument(label="a", type="string", value="v" * size)]
    normalize(ev, issues)
    got = ev.process.cwd if where == "cwd" else ev.arguments[0].value
    assert len(got) == MAX_TEXT_CHARS and issues == Counter({"text_truncated": 1})


def test_huge_text_is_cut() -> None:
    ev, issues = _event(), Counter()
    ev.process.cwd = "x" * (MAX_TEXT_CHARS * 5)
    normalize(ev, issues)
    assert len(ev.process.cwd) == MAX_TEXT_CHARS and issues["text_truncated"] == 1


def test_json_adapter_rejects_wrong_types_without_raising() -> None:
    stats = common.AdapterStats()
    lines = [
        {"process_exec": {"process": {"binary": ["/bin/sh"]}}},
        {"process_exec": {"process": {"binary": "/bin/sh", "pod": "web"}}},
        {"process_exec": {"process": {"binary": "/bin/sh"}}, "node_name": {"x": 1}},
        {"process_kprobe": {"process": {"binary": "/b"}, "user_stack_trace": {"module": "m"}}},
        {"process_kprobe": {"process": {"binary": "/b"}, "user_stack_trace": [{"offset": "0x1f"}]}},
    ]
    assert [from_json.adapt(o, stats=stats) for o in lines] == [None] * 5
    assert stats.malformed == Counter({"bad_type": 5})
    assert not stats.events


def test_json_adapter_keeps_an_event_with_a_bad_time_and_counts_it() -> None:
    stats = common.AdapterStats()
    for t in (12345, "yesterday", "33000-01-01T00:00:00Z"):
        ev = from_json.adapt({"process_exec": {"process": {"binary": "/b"}}, "time": t}, stats=stats)
        assert ev is not None and ev.timestamp_ns == 0
    assert stats.repaired["time_invalid"] == 3


def test_both_adapters_cut_deep_stacks_alike() -> None:
    m = events_pb2.GetEventsResponse(node_name="n")
    k = m.process_kprobe
    k.process.binary = "/b"
    k.function_name = "__x64_sys_read"
    for i in range(500):
        k.user_stack_trace.add(module="/lib/x.so", symbol=f"f{i}", offset=i)
    ps, js = common.AdapterStats(), common.AdapterStats()
    a = from_proto.adapt(m, stats=ps, max_stack_depth=127)
    obj = {
        "process_kprobe": {
            "process": {"binary": "/b"},
            "function_name": "__x64_sys_read",
            "user_stack_trace": [
                {"module": "/lib/x.so", "symbol": f"f{i}", "offset": str(i)} for i in range(500)
            ],
        },
        "node_name": "n",
    }
    b = from_json.adapt(obj, stats=js, max_stack_depth=127)
    assert a is not None and b is not None
    assert (
        [f.symbol for f in a.user_stack] == [f.symbol for f in b.user_stack] == [f"f{i}" for i in range(127)]
    )
    assert ps.repaired["stack_truncated"] == js.repaired["stack_truncated"] == 1


def test_grpc_adapter_cuts_huge_arguments_on_arrival_like_the_json_adapter() -> None:
    """A 4 MiB argument is cut as it is read (issue 10's memory), counted once like any long field."""
    big = "--token=abc " + "A" * (4 << 20)
    m = events_pb2.GetEventsResponse(node_name="n")
    u = m.process_uprobe
    u.process.binary = "/b"
    u.process.arguments = big
    u.symbol = "crc32"
    u.args.add().string_arg = "s" * (4 << 20)
    accented, invalid = "é".encode() * (2 << 20), b"\xff" * (MAX_TEXT_CHARS * 4 + 9)
    u.args.add().bytes_arg = accented
    u.args.add().truncated_bytes_arg.bytes_arg = invalid
    u.args.add().string_arg = "x" * (MAX_TEXT_CHARS + 1)
    u.args.add().string_arg = "y" * MAX_TEXT_CHARS
    ps, js = common.AdapterStats(), common.AdapterStats()
    a = from_proto.adapt(from_proto.decode(m.SerializeToString(), ps), stats=ps)
    obj = {
        "process_uprobe": {
            "process": {"binary": "/b", "arguments": big},
            "symbol": "crc32",
            "args": [
                {"string_arg": "s" * (4 << 20)},
                {"bytes_arg": base64.b64encode(accented).decode()},
                {"truncated_bytes_arg": {"bytes_arg": base64.b64encode(invalid).decode()}},
                {"string_arg": "x" * (MAX_TEXT_CHARS + 1)},
                {"string_arg": "y" * MAX_TEXT_CHARS},
            ],
        },
        "node_name": "n",
    }
    b = from_json.adapt(obj, stats=js)
    assert a is not None and b is not None
    assert a.process.arguments == b.process.arguments == big[:MAX_TEXT_CHARS]
    assert [x.value for x in a.arguments] == [x.value for x in b.arguments]
    assert [len(x.value) for x in a.arguments] == [MAX_TEXT_CHARS] * 5
    assert a.arguments[1].value == "é" * MAX_TEXT_CHARS and a.arguments[2].value == "\ufffd" * MAX_TEXT_CHARS
    assert ps.repaired["text_truncated"] == js.repaired["text_truncated"] == 1


def test_the_floor_itself_a_2021_time_and_no_time_are_kept() -> None:
    for ts in (MIN_EVENT_NS, 1_634_587_735 * 10**9, 0):  # 2020-01-01, Tetragon's 2021 test data, none
        ev, issues = _event(timestamp_ns=ts), Counter()
        normalize(ev, issues)
        assert ev.timestamp_ns == ts and issues["time_clamped"] == 0
