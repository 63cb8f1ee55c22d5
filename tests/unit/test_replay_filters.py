"""Tetragon's GetEvents filter semantics as the replay server applies them."""

from __future__ import annotations

import pytest

from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.filters import (
    InvalidFilterError,
    UnsupportedFilterError,
    compile_filter,
    compile_request,
    parse_label_selector,
)
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2

EXEC = events_pb2.PROCESS_EXEC
KPROBE = events_pb2.PROCESS_KPROBE
UPROBE = events_pb2.PROCESS_UPROBE

POD_EVENT = ReplayEvent(
    payload=b"",
    event_type=UPROBE,
    namespace="shop",
    pod_name="billing-7f9c-abcde",
    binary="/usr/bin/billing",
    pid=1000,
    labels={"app": "billing", "tier": "backend"},
    container_id="containerd://0123456789abcdef",
    container_name="billing",
    arguments="--port 8080 --token s3cr3t",
    policy_name="stellaops-functions",
    has_process=True,
    in_pod=True,
)
HOST_EVENT = ReplayEvent(
    payload=b"",
    event_type=EXEC,
    binary="/usr/bin/containerd-shim-runc-v2",
    pid=1,
    arguments="-namespace k8s.io",
    has_process=True,
)
THROTTLE_EVENT = ReplayEvent(payload=b"", event_type=events_pb2.PROCESS_THROTTLE)

EVENTS = {"pod": POD_EVENT, "host": HOST_EVENT, "throttle": THROTTLE_EVENT}


def _matching(f: events_pb2.Filter) -> set[str]:
    compiled = compile_filter(f)
    return {name for name, e in EVENTS.items() if compiled.matches(e)}


F = events_pb2.Filter


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (F(), {"pod", "host", "throttle"}),  # an empty filter matches everything
        (F(binary_regex=["billing$"]), {"pod"}),
        (F(binary_regex=["containerd"]), {"host"}),  # search, not full match
        (F(binary_regex=["^/usr/bin/"]), {"pod", "host"}),
        (F(binary_regex=["nomatch", "shim"]), {"host"}),  # list values ORed
        (F(namespace=["shop"]), {"pod"}),
        (F(namespace=[""]), {"host"}),  # "" = host processes
        (F(namespace=["", "shop"]), {"pod", "host"}),
        (F(namespace=["other"]), set()),
        (F(pid=[1000]), {"pod"}),
        (F(pid=[1, 2]), {"host"}),
        (F(event_set=[UPROBE]), {"pod"}),
        (F(event_set=[EXEC, events_pb2.PROCESS_THROTTLE]), {"host", "throttle"}),
        (F(pod_regex=["^billing-"]), {"pod"}),
        (F(pod_regex=[".*"]), {"pod"}),  # host events have no pod
        (F(arguments_regex=["token"]), {"pod"}),
        (F(arguments_regex=["k8s\\.io"]), {"host"}),
        (F(labels=["app=billing"]), {"pod"}),
        (F(labels=["app!=other"]), {"pod"}),  # never host, even when the selector would match
        (F(labels=[""]), {"pod"}),  # empty selector: any pod, still never host
        (F(labels=["app=other", "tier=backend"]), {"pod"}),  # several selectors ORed
        (F(labels=["app=billing,tier=frontend"]), set()),  # requirements ANDed
        (F(policy_names=["stellaops-functions"]), {"pod"}),
        (F(policy_names=["other"]), set()),
        (F(container_id=["0123"]), {"pod"}),  # prefix of the bare id
        (F(container_id=["containerd://0123"]), {"pod"}),  # prefix of the reported id
        (F(container_id=["abcdef"]), set()),  # not a substring match
        (F(container_name_regex=["^bill"]), {"pod"}),
        (F(namespace_regex=["^sh"]), {"pod"}),
        (F(namespace_regex=["^$"]), {"host"}),  # host namespace is ""
        # AND across fields of one filter
        (F(namespace=["shop"], event_set=[UPROBE]), {"pod"}),
        (F(namespace=["shop"], event_set=[EXEC]), set()),
        (F(binary_regex=["shim"], pid=[1000]), set()),
    ],
)
def test_single_filter(flt: events_pb2.Filter, expected: set[str]) -> None:
    assert _matching(flt) == expected


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=billing", {"app": "billing"}, True),
        ("app==billing", {"app": "billing"}, True),
        ("app=billing", {"app": "auth"}, False),
        ("app!=billing", {"app": "auth"}, True),
        ("app!=billing", {}, True),  # k8s: != matches a missing key
        ("app", {"app": ""}, True),
        ("app", {}, False),
        ("!app", {}, True),
        ("!app", {"app": "x"}, False),
        ("app in (billing, auth)", {"app": "auth"}, True),
        ("app in (billing,auth)", {"app": "worker"}, False),
        ("app in (billing)", {}, False),
        ("app notin (billing,auth)", {"app": "worker"}, True),
        ("app notin (billing,auth)", {}, True),
        ("app notin (billing,auth)", {"app": "billing"}, False),
        ("app in (a,b),tier=backend", {"app": "a", "tier": "backend"}, True),
        ("app in (a,b), tier=backend", {"app": "a", "tier": "frontend"}, False),
        ("app.kubernetes.io/name=x", {"app.kubernetes.io/name": "x"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector)(labels) is expected


@pytest.mark.parametrize("selector", ["app=(", "=x", "a b=c", "app in (x", "app=ok,,tier=x"])
def test_bad_label_selector(selector: str) -> None:
    with pytest.raises(InvalidFilterError):
        compile_filter(F(labels=[selector]))


@pytest.mark.parametrize(
    "field", ["binary_regex", "pod_regex", "arguments_regex", "container_name_regex", "namespace_regex"]
)
def test_bad_regex(field: str) -> None:
    with pytest.raises(InvalidFilterError, match=field):
        compile_filter(F(**{field: ["("]}))


def _accepted(request: events_pb2.GetEventsRequest) -> set[str]:
    compiled = compile_request(request)
    return {name for name, e in EVENTS.items() if compiled.accepts(e)}


R = events_pb2.GetEventsRequest


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (R(), {"pod", "host", "throttle"}),  # no allow list: all allowed
        (R(allow_list=[F(namespace=["shop"])]), {"pod"}),
        (R(allow_list=[F(namespace=["shop"]), F(event_set=[EXEC])]), {"pod", "host"}),  # allow filters ORed
        (R(deny_list=[F(event_set=[UPROBE])]), {"host", "throttle"}),
        (R(deny_list=[F(namespace=[""])]), {"pod", "throttle"}),  # throttle has no process: never denied here
        (R(deny_list=[F(event_set=[UPROBE]), F(namespace=[""])]), {"throttle"}),
        # deny wins over allow
        (R(allow_list=[F(namespace=["shop"])], deny_list=[F(binary_regex=["billing"])]), set()),
        (R(allow_list=[F(event_set=[UPROBE, EXEC])], deny_list=[F(labels=["app=billing"])]), {"host"}),
        (
            R(aggregation_options=events_pb2.AggregationOptions(channel_buffer_size=10)),
            {"pod", "host", "throttle"},
        ),
    ],
)
def test_request_allow_deny(request_: events_pb2.GetEventsRequest, expected: set[str]) -> None:
    assert _accepted(request_) == expected


@pytest.mark.parametrize(
    ("flt", "field"),
    [
        (F(health_check={"value": True}), "health_check"),
        (F(health_check={"value": False}), "health_check"),  # set to false is still set
        (F(pid_set=[1]), "pid_set"),
        (F(capabilities=events_pb2.CapFilter(effective=events_pb2.CapFilterSet(any=[0]))), "capabilities"),
        (F(parent_binary_regex=["x"]), "parent_binary_regex"),
        (F(cel_expression=["true"]), "cel_expression"),
        (F(parent_arguments_regex=["x"]), "parent_arguments_regex"),
        (F(in_init_tree={"value": True}), "in_init_tree"),
        (F(ancestor_binary_regex=["x"]), "ancestor_binary_regex"),
        (F(namespace=["shop"], cel_expression=["true"]), "cel_expression"),
    ],
)
def test_unsupported_fields_are_rejected(flt: events_pb2.Filter, field: str) -> None:
    with pytest.raises(UnsupportedFilterError, match=field):
        compile_request(R(allow_list=[flt]))
    with pytest.raises(UnsupportedFilterError, match=field):
        compile_request(R(deny_list=[flt]))


def test_field_filters_are_rejected() -> None:
    with pytest.raises(UnsupportedFilterError, match="field_filters"):
        compile_request(R(field_filters=[events_pb2.FieldFilter(event_set=[EXEC])]))


def test_from_message_extracts_filter_attributes() -> None:
    proc = tetragon_pb2.Process(
        binary="/bin/sh",
        arguments="-c true",
        pid={"value": 7},
        pod=tetragon_pb2.Pod(
            namespace="ns1",
            name="p1",
            pod_labels={"a": "b"},
            container=tetragon_pb2.Container(id="containerd://abc", name="c1"),
        ),
    )
    msg = events_pb2.GetEventsResponse(
        process_kprobe=tetragon_pb2.ProcessKprobe(process=proc, policy_name="pol"), node_name="n"
    )
    event = ReplayEvent.from_message(msg)
    assert event.payload == msg.SerializeToString()
    assert (event.event_type, event.namespace, event.pod_name, event.binary, event.pid) == (
        KPROBE,
        "ns1",
        "p1",
        "/bin/sh",
        7,
    )
    assert event.labels == {"a": "b"}
    assert (event.container_id, event.container_name, event.arguments, event.policy_name) == (
        "containerd://abc",
        "c1",
        "-c true",
        "pol",
    )
    assert event.in_pod and event.has_process
    empty = ReplayEvent.from_message(events_pb2.GetEventsResponse(node_name="n"))
    assert empty.event_type == 0 and not empty.has_process
