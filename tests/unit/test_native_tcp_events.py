"""TCP state records -> RuntimeCallEvent, equal to what the adapters make of Tetragon's own event.

Records are packed with records.py's layout (the one the BPF side is
generated from); tests/integration/test_native_tcp.py checks the kernel's.
The Tetragon side is built in the shape Tetragon v1.7.0 gives the tracepoint
the operator renders (see test_tcp_state_adapter.py for the sources): no
labels, the states as ``int_arg``, the ports as ``uint_arg``, the socket as
``sock_arg``; it goes through the real JSON and protobuf adapters. Also here:
the kernel filter the probe is generated with selects exactly what the
rendered Tetragon tracepoint posts, and ``tcpAllTransitions`` is an agent
setting only.
"""

from __future__ import annotations

import ipaddress

import orjson
import pytest

from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.config_base import ConfigError
from stellaops_runtime.contracts.config_node import NativeSourceConfig
from stellaops_runtime.contracts.events import ContainerInfo, EventKind
from stellaops_runtime.controller.render_tcp import tcp_tracepoint
from stellaops_runtime.native import loader, policy_config, records
from stellaops_runtime.native.config import NativeConfig, NativeConfigError
from stellaops_runtime.native.events import Decoder, encode_trailer
from stellaops_runtime.native.probes import tcp
from tests.unit.test_tcp_state_adapter import via_json, via_proto  # the two real adapters

NODE = "node-a"
FAMILY_NAME = {2: "AF_INET", 10: "AF_INET6"}


def tcp_record(
    old: int, new: int, *, flags: int = records.FLAG_TCP_ATTRIBUTED, family: int = 2, pid: int = 4242,
    saddr: str = "10.0.0.1", daddr: str = "10.0.0.2", cgroup: int = 77, sport: int = 40000,
    dport: int = 443,
) -> bytes:  # fmt: skip
    s = ipaddress.ip_address(saddr).packed.ljust(16, b"\0")
    d = ipaddress.ip_address(daddr).packed.ljust(16, b"\0")
    head = (records.KIND_TCP, flags, 0, pid, pid, 1000, 9_000, cgroup, b"curl")
    return records.STRUCTS[records.KIND_TCP].pack(*head, old, new, sport, dport, family, 6, s, d)


def decoder(stats: AdapterStats | None = None) -> Decoder:
    known = ContainerInfo(id="abc", image_digest="sha256:" + "1" * 64, cgroup_id=77)
    return Decoder(
        node_name=NODE,
        targets=[],
        wall_minus_monotonic_ns=0,
        stats=stats,
        containers=lambda cg: known if cg == 77 else None,
    )


def tetragon_json(
    old: int, new: int, *, family: int = 2, saddr: str = "10.0.0.1", daddr: str = "10.0.0.2",
    sport: int = 40000, dport: int = 443,
) -> dict:  # fmt: skip
    """The tracepoint event Tetragon exports for the rendered policy (labels dropped, socket as sock_arg)."""
    sock = {
        "family": FAMILY_NAME[family], "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
        "saddr": saddr, "daddr": daddr, "sport": sport, "dport": dport,
        "cookie": "18446623355046870528", "state": f"TCP_{tcp_state.TCP_STATES[old]}",
    }  # fmt: skip
    args = [{"int_arg": old}, {"int_arg": new}, {"uint_arg": sport}, {"uint_arg": dport}, {"sock_arg": sock}]
    return {
        "process_tracepoint": {
            "process": {"pid": 4242, "binary": "/usr/bin/curl"},
            "subsys": tcp_state.SUBSYSTEM,
            "event": tcp_state.EVENT,
            "args": args,
            "policy_name": "stellaops-web-tcp",
            "action": "KPROBE_ACTION_POST",
        },
        "node_name": NODE,
        "time": "2026-12-03T09:00:00.000000001Z",
    }


# The five changes Tetragon is given, one per selector, over both families.
SELECTED = [
    dict(old=7, new=2, sport=0, dport=443),  # connect(): no source port yet
    dict(old=7, new=10, sport=8080, dport=0, saddr="0.0.0.0", daddr="0.0.0.0"),  # listen()
    dict(old=1, new=4, family=10, saddr="fe80::1", daddr="2001:db8::5"),  # close() of an established one
    dict(old=8, new=9, sport=443, dport=40000),  # close() after the peer's FIN
    dict(old=10, new=7, family=10, saddr="::", daddr="::", sport=8080, dport=0),  # close() of a listener
]


@pytest.mark.parametrize("change", SELECTED, ids=["connect", "listen", "close-v6", "last-ack", "unlisten"])
@pytest.mark.parametrize("path", [via_json, via_proto], ids=["json", "proto"])
def test_each_selected_change_is_the_event_the_adapters_make_of_tetragons(change: dict, path: object) -> None:
    rec = tcp_record(
        change["old"], change["new"], family=change.get("family", 2),
        saddr=change.get("saddr", "10.0.0.1"), daddr=change.get("daddr", "10.0.0.2"),
        sport=change.get("sport", 40000), dport=change.get("dport", 443),
    )  # fmt: skip
    ev = decoder().decode(rec + encode_trailer("/usr/bin/curl", 123, []))
    assert ev is not None
    tet = path(tetragon_json(**change))  # type: ignore[operator]
    assert (ev.kind, ev.function_name, ev.module) == (tet.kind, tet.function_name, tet.module)
    assert ev.arguments == tet.arguments
    assert [a.label for a in ev.arguments] == [*tcp_state.EVENT_INT_ARGS, *tcp_state.EVENT_TEXT_ARGS]
    assert (
        (ev.process.pid, ev.process.binary)
        == (tet.process.pid, tet.process.binary)
        == (4242, "/usr/bin/curl")
    )
    assert ev.kind is EventKind.TRACEPOINT and ev.container is not None and ev.container.id == "abc"


def test_unattributed_transition_names_no_process_and_no_container() -> None:
    """Only with tcpAllTransitions: an accepted socket's SYN_RECV -> ESTABLISHED has no owner yet."""
    ev = decoder().decode(tcp_record(3, 1, flags=0, pid=0, cgroup=77) + encode_trailer("/bin/x", 5, []))
    assert ev is not None
    assert ev.process.pid == 0 and ev.process.binary == "" and ev.process.exec_id == ""
    assert ev.container is None


def test_hostile_tcp_records_are_counted_not_raised() -> None:
    stats = AdapterStats()
    d = decoder(stats)
    assert d.decode(tcp_record(1, 4, family=1)) is None  # AF_UNIX: not from this tracepoint
    assert d.decode(tcp_record(1, 4)[:60]) is None  # cut inside the body
    assert d.decode(tcp_record(1, 4) + b"\xff" * 5) is None  # a broken trailer
    assert d.decode(tcp_record(99, 4)) is None  # no such state (the Tetragon adapter refuses it too)
    assert d.decode(tcp_record(1, -1)) is None
    assert d.decode(tcp_record(0, 2)) is None
    assert stats.malformed == {
        "native_bad_tcp_family": 1,
        "native_short_record": 1,
        "native_short_trailer": 1,
        "native_bad_tcp_state": 3,
    }
    assert sum(stats.events.values()) == 0


def _c_filter_selects(old: int, new: int) -> bool:
    """The probe's generated C condition, evaluated (it is only ==, && and || over old and new)."""
    cond = tcp.selected_condition()
    assert set(cond) <= set("()|&=oldnew 0123456789"), cond
    return bool(eval(cond.replace("&&", " and ").replace("||", " or "), {}, {"old": old, "new": new}))


def _rendered_posts(tp: dict, old: int, new: int) -> bool:
    values = {tcp_state.INDEX["oldstate"]: old, tcp_state.INDEX["newstate"]: new}
    return any(
        all(m["operator"] == "Equal" and str(values[m["index"]]) in m["values"] for m in sel["matchArgs"])
        for sel in tp["selectors"]
    )


def test_the_kernel_filter_selects_what_the_tetragon_rendering_posts() -> None:
    """Over every pair of states (and a few values no kernel sends): the same answer from both."""
    tp = tcp_tracepoint()
    values = [*tcp_state.TCP_STATES, 0, 13, -1]
    pairs = [(o, n) for o in values for n in values]
    c = {p for p in pairs if _c_filter_selects(*p)}
    assert c == {p for p in pairs if _rendered_posts(tp, *p)}
    assert c == {p for p in pairs if tcp_state.is_syscall_transition(*p)}
    assert len({n for _, n in c}) == 5 and (7, 2) in c and (2, 1) not in c


def test_default_program_has_the_filter_and_no_owner_map() -> None:
    cfg = NativeConfig(tcp_state=True)
    text = tcp.c_source(cfg, ring_buffer=True)
    assert f"if (!{tcp.selected_condition()}) return 0;" in text
    assert "stella_tcp_owners" not in text
    every = tcp.c_source(NativeConfig(tcp_state=True, tcp_all_transitions=True), ring_buffer=False)
    assert "stella_tcp_owners" in every and "return 0;\n    u64 cg" not in every


def test_tcp_all_transitions_is_an_agent_setting_and_needs_tcp_state() -> None:
    """Read from the agent config's ``native:`` section (and written back the same way)."""
    section = NativeSourceConfig.model_validate({"tcpState": True, "tcpAllTransitions": True})
    assert section.probes is not None and section.probes.tcp_all_transitions is True
    assert section.model_dump(by_alias=True)["tcpAllTransitions"] is True
    assert NativeConfig().tcp_all_transitions is False
    for bad in ("yes", 1, None, [True]):
        with pytest.raises(NativeConfigError, match="tcp_all_transitions"):
            NativeConfig.from_dict({"tcpState": True, "tcpAllTransitions": bad})
        with pytest.raises(ConfigError, match="tcp_all_transitions: expected true or false"):
            NativeSourceConfig.model_validate({"tcpState": True, "tcpAllTransitions": bad})
    alone = NativeConfig(tcp_all_transitions=True)
    assert tcp.TRACEPOINT.split(":")[1] not in loader.program_text(alone, ring_buffer=True)


def test_a_policy_cannot_ask_for_all_transitions() -> None:
    """A probe entry carrying the setting is reported as not understood; the agent's value stays."""
    payload = {
        "apiVersion": policy_config.API_VERSION,
        "kind": policy_config.KIND,
        "policies": {"ObservationPolicy/shop/web": {"tcpState": True, "tcpAllTransitions": True}},
    }
    entries = policy_config.parse_payload(orjson.dumps(payload))
    res = policy_config.merge_entries(entries, NativeConfig())
    assert res.config.tcp_state is True and res.config.tcp_all_transitions is False
    assert any("tcpAllTransitions" in n and "not understood" in n for n in res.not_covered), res.not_covered
    kept = policy_config.merge_entries(entries, NativeConfig(tcp_all_transitions=True)).config
    assert kept.tcp_state is True and kept.tcp_all_transitions is True
