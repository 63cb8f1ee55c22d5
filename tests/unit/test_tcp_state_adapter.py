"""A Tetragon TCP state event and the native probes' record of the same change become the same event.

The Tetragon event is built in the shape Tetragon v1.7.0 gives for the
tracepoint the operator renders (controller/render_tcp.py): the process,
parent, node and time of a real upstream event (tests/fixtures/tetragon/
events.jsonl line 7, a process_kprobe from Tetragon's docs), and arguments as
Tetragon's ``MsgGenericTracepointUnix.HandleMessage`` (pkg/grpc/tracing/
tracing.go at v1.7.0) writes them: no labels, ``int32`` fields as
``int_arg``, ``uint16`` fields as ``uint_arg``, the socket as ``sock_arg``
(api/v1/tetragon/tetragon.proto ``KprobeSock``; protojson writes the 64-bit
cookie as a string). Both the JSON export and the gRPC protobuf path are
checked.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format

from stellaops_runtime.adapter import from_json, from_proto, tcp_state_args
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, RuntimeCallEvent
from stellaops_runtime.native import records
from stellaops_runtime.native.events import Decoder, encode_trailer
from stellaops_runtime.wire.tetragon import events_pb2

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tetragon" / "events.jsonl"
FAMILY_NAME = {2: "AF_INET", 10: "AF_INET6"}


def upstream_kprobe() -> dict[str, Any]:
    line = orjson.loads(FIXTURE.read_bytes().splitlines()[6])  # line 7
    assert "process_kprobe" in line
    return line


def tetragon_event(
    old: int, new: int, *, sport: int, dport: int, family: int, saddr: str, daddr: str
) -> dict:
    line = upstream_kprobe()
    kp = line["process_kprobe"]
    sock = {
        "family": FAMILY_NAME[family],
        "type": "SOCK_STREAM",
        "protocol": "IPPROTO_TCP",
        "saddr": saddr,
        "daddr": daddr,
        "sport": sport,
        "dport": dport,
        "cookie": "18446623355046870528",
        "state": f"TCP_{tcp_state.TCP_STATES[old]}",  # the socket's state before the change
    }
    args = [{"int_arg": old}, {"int_arg": new}, {"uint_arg": sport}, {"uint_arg": dport}, {"sock_arg": sock}]
    return {
        "process_tracepoint": {
            "process": kp["process"],
            "parent": kp["parent"],
            "subsys": "sock",
            "event": "inet_sock_set_state",
            "args": args,
            "policy_name": "stellaops-web-tcp",
            "action": "KPROBE_ACTION_POST",
        },
        "node_name": line["node_name"],
        "time": line["time"],
    }


def native_event(
    old: int, new: int, *, sport: int, dport: int, family: int, saddr: str, daddr: str
) -> RuntimeCallEvent:
    proc = upstream_kprobe()["process_kprobe"]["process"]
    s = ipaddress.ip_address(saddr).packed.ljust(16, b"\0")
    d = ipaddress.ip_address(daddr).packed.ljust(16, b"\0")
    pid = proc["pid"]
    head = (records.KIND_TCP, records.FLAG_TCP_ATTRIBUTED, 0, pid, pid, 0, 9_000, 77, b"vi")
    rec = records.STRUCTS[records.KIND_TCP].pack(*head, old, new, sport, dport, family, 6, s, d)
    digest = proc["pod"]["container"]["image"]["id"].rpartition("@")[2]
    known = ContainerInfo(id="6b742e38ee3a", image_digest=digest, cgroup_id=77)
    decoder = Decoder(
        node_name="n",
        targets=[],
        wall_minus_monotonic_ns=0,
        containers=lambda cg: known if cg == 77 else None,
    )
    ev = decoder.decode(rec + encode_trailer(proc["binary"], 5, []))
    assert ev is not None
    return ev


def via_json(obj: dict) -> RuntimeCallEvent:
    ev = from_json.adapt(orjson.loads(orjson.dumps(obj)), stats=AdapterStats())
    assert ev is not None
    return ev


def via_proto(obj: dict) -> RuntimeCallEvent:
    stats = AdapterStats()
    msg = json_format.ParseDict(obj, events_pb2.GetEventsResponse())
    ev = from_proto.adapt(from_proto.decode(msg.SerializeToString(), stats), stats=stats)
    assert ev is not None
    return ev


CHANGES = [
    # connect() over IPv4: no source port yet
    dict(old=7, new=2, sport=0, dport=443, family=2, saddr="10.0.0.1", daddr="10.0.0.2"),
    # listen() on IPv6 any
    dict(old=7, new=10, sport=8080, dport=0, family=10, saddr="::", daddr="::"),
    # close() of an established IPv6 connection
    dict(old=1, new=4, sport=40000, dport=443, family=10, saddr="fe80::1", daddr="2001:db8::5"),
]


@pytest.mark.parametrize("change", CHANGES, ids=["connect-v4", "listen-v6", "close-v6"])
@pytest.mark.parametrize("path", [via_json, via_proto], ids=["json", "proto"])
def test_tetragon_and_native_give_the_same_event(change: dict, path: Any) -> None:
    native = native_event(**change)
    tet = path(tetragon_event(**change))
    assert tcp_state_args.normalize(tet) is True
    assert tet.kind is native.kind is EventKind.TRACEPOINT
    assert tet.function_name == native.function_name == tcp_state.FUNCTION_NAME
    assert tet.arguments == native.arguments
    assert [a.label for a in tet.arguments] == list(tcp_state_args.SHAPE)
    assert (
        (tet.process.pid, tet.process.binary)
        == (native.process.pid, native.process.binary)
        == (64746, "/bin/vi")
    )
    assert tet.container is not None and native.container is not None
    assert tet.container.image_digest == native.container.image_digest
    # the adapters keep doing it: a second pass (or the hook in the adapter) changes nothing
    before = copy.deepcopy(tet.arguments)
    assert tcp_state_args.normalize(tet) is True and tet.arguments == before


def test_an_ipv4_mapped_address_is_written_as_python_does() -> None:
    """Go prints ::ffff:10.0.0.1 as 10.0.0.1; the native decoder writes the IPv6 address (ipaddress)."""
    change = dict(
        old=7, new=2, sport=0, dport=80, family=10, saddr="::ffff:10.0.0.1", daddr="::ffff:10.0.0.9"
    )
    tet_json = tetragon_event(**change)
    sock = tet_json["process_tracepoint"]["args"][4]["sock_arg"]
    sock["saddr"], sock["daddr"] = "10.0.0.1", "10.0.0.9"
    tet = via_json(tet_json)
    assert tcp_state_args.normalize(tet) is True
    assert tet.arguments == native_event(**change).arguments
    got = {a.label: a.value for a in tet.arguments}
    mapped = (ipaddress.IPv6Address("::ffff:10.0.0.1"), ipaddress.IPv6Address("::ffff:10.0.0.9"))
    assert (got["saddr"], got["daddr"]) == tuple(map(str, mapped))  # Python's writing (3.13: dotted)


def _args(obj: dict) -> list[dict]:
    return obj["process_tracepoint"]["args"]


HOSTILE = {
    "missing the socket": lambda o: _args(o).pop(),
    "an extra argument": lambda o: _args(o).append({"int_arg": 1}),
    "a port as int_arg": lambda o: _args(o).__setitem__(2, {"int_arg": 1}),
    "a label of another field": lambda o: _args(o)[0].__setitem__("label", "newstate"),
    "a state out of range": lambda o: _args(o).__setitem__(1, {"int_arg": 99}),
    "a negative state": lambda o: _args(o).__setitem__(0, {"int_arg": -1}),
    "a port above 65535": lambda o: _args(o).__setitem__(3, {"uint_arg": 70000}),
    "an AF_UNIX socket": lambda o: _args(o)[4]["sock_arg"].__setitem__("family", "AF_UNIX"),
    "an unknown protocol": lambda o: _args(o)[4]["sock_arg"].__setitem__("protocol", "IPPROTO_UDP"),
    "a non-address": lambda o: _args(o)[4]["sock_arg"].__setitem__("saddr", "10.0.0.1\x00; rm -rf"),
    "an IPv6 address on AF_INET": lambda o: _args(o)[4]["sock_arg"].__setitem__("daddr", "fe80::1"),
    "an empty socket": lambda o: _args(o)[4].__setitem__("sock_arg", {}),
    "a huge address": lambda o: _args(o)[4]["sock_arg"].__setitem__("saddr", "1" * 100_000),
}


@pytest.mark.parametrize("damage", sorted(HOSTILE))
def test_other_shapes_are_left_alone_and_said_so(damage: str) -> None:
    obj = tetragon_event(**CHANGES[0])
    HOSTILE[damage](obj)
    ev = via_json(obj)
    before = copy.deepcopy(ev.arguments)
    assert tcp_state_args.normalize(ev) is False
    assert ev.arguments == before


def test_other_events_are_not_touched() -> None:
    obj = tetragon_event(**CHANGES[0])
    obj["process_tracepoint"]["event"] = "inet_sk_error_report"
    ev = via_json(obj)
    before = copy.deepcopy(ev.arguments)
    assert tcp_state_args.normalize(ev) is False and ev.arguments == before
    other_kind = via_json(tetragon_event(**CHANGES[0]))
    other_kind.kind = EventKind.KPROBE  # same name, another kind of event
    before = copy.deepcopy(other_kind.arguments)
    assert tcp_state_args.normalize(other_kind) is False and other_kind.arguments == before


@pytest.mark.parametrize("change", CHANGES, ids=["connect-v4", "listen-v6", "close-v6"])
@pytest.mark.parametrize("path", [via_json, via_proto], ids=["json", "proto"])
def test_the_adapters_normalize_tcp_events_themselves(change: dict, path: Any) -> None:
    """What the agent's pipeline gets from either adapter is already the native shape."""
    tet = path(tetragon_event(**change))
    assert tet.arguments == native_event(**change).arguments


@pytest.mark.parametrize("damage", sorted(HOSTILE))
def test_an_unrecognised_tcp_shape_is_counted_by_the_adapter(damage: str) -> None:
    obj = tetragon_event(**CHANGES[0])
    HOSTILE[damage](obj)
    stats = AdapterStats()
    ev = from_json.adapt(orjson.loads(orjson.dumps(obj)), stats=stats)
    if ev is None:  # rejected as malformed by the adapter itself: counted there
        assert sum(stats.malformed.values()) == 1
        return
    assert stats.repaired["tcp_state_unrecognised"] == 1
    assert stats.events[EventKind.TRACEPOINT] == 1  # the event is kept, unchanged
