"""TCP state records -> RuntimeCallEvent in the shape Tetragon's tracepoint events take; hostile records.

Records are packed with records.py's layout (the one the BPF side is
generated from); tests/integration/test_native_tcp.py checks the kernel's.
"""

from __future__ import annotations

import ipaddress

import orjson

from stellaops_runtime.adapter import from_json
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.contracts.events import ContainerInfo, EventKind
from stellaops_runtime.native import records
from stellaops_runtime.native.events import Decoder, encode_trailer
from stellaops_runtime.native.probes import tcp

NODE = "node-a"


def tcp_record(
    old: int, new: int, *, flags: int = records.FLAG_TCP_ATTRIBUTED, family: int = 2, pid: int = 4242,
    saddr: str = "10.0.0.1", daddr: str = "10.0.0.2", cgroup: int = 77,
) -> bytes:  # fmt: skip
    s = ipaddress.ip_address(saddr).packed.ljust(16, b"\0")
    d = ipaddress.ip_address(daddr).packed.ljust(16, b"\0")
    head = (records.KIND_TCP, flags, 0, pid, pid, 1000, 9_000, cgroup, b"curl")
    return records.STRUCTS[records.KIND_TCP].pack(*head, old, new, 40000, 443, family, 6, s, d)


def decoder(stats: AdapterStats | None = None) -> Decoder:
    known = ContainerInfo(id="abc", image_digest="sha256:" + "1" * 64, cgroup_id=77)
    return Decoder(
        node_name=NODE,
        targets=[],
        wall_minus_monotonic_ns=0,
        stats=stats,
        containers=lambda cg: known if cg == 77 else None,
    )


def test_attributed_transition_has_tetragons_tracepoint_shape() -> None:
    ev = decoder().decode(tcp_record(2, 1) + encode_trailer("/usr/bin/curl", 123, []))
    assert ev is not None
    args = [
        {"int_arg": 2, "label": "oldstate"}, {"int_arg": 1, "label": "newstate"},
        {"int_arg": 40000, "label": "sport"}, {"int_arg": 443, "label": "dport"},
        {"int_arg": 2, "label": "family"}, {"int_arg": 6, "label": "protocol"},
        {"string_arg": "10.0.0.1", "label": "saddr"}, {"string_arg": "10.0.0.2", "label": "daddr"},
    ]  # fmt: skip
    t = from_json.adapt(
        orjson.loads(
            orjson.dumps(
                {
                    "process_tracepoint": {
                        "process": {"pid": 4242, "binary": "/usr/bin/curl"},
                        "subsys": "sock",
                        "event": "inet_sock_set_state",
                        "args": args,
                    },
                    "node_name": NODE,
                }
            )
        ),
        stats=AdapterStats(),
    )
    assert t is not None
    assert (ev.kind, ev.function_name, ev.module, ev.arguments) == (
        t.kind, t.function_name, t.module, t.arguments,
    )  # fmt: skip
    assert ev.kind is EventKind.TRACEPOINT and ev.process.pid == 4242 and ev.process.binary == "/usr/bin/curl"
    assert ev.container is not None and ev.container.id == "abc"
    assert tcp.TCP_STATES[2] == "SYN_SENT" and tcp.TCP_STATES[1] == "ESTABLISHED"


def test_unattributed_transition_names_no_process_and_no_container() -> None:
    ev = decoder().decode(tcp_record(3, 1, flags=0, pid=0, cgroup=77) + encode_trailer("/bin/x", 5, []))
    assert ev is not None
    assert ev.process.pid == 0 and ev.process.binary == "" and ev.process.exec_id == ""
    assert ev.container is None


def test_ipv6_addresses_are_read_in_full() -> None:
    ev = decoder().decode(tcp_record(7, 10, family=10, saddr="fe80::1", daddr="::"))
    assert ev is not None
    got = {a.label: a.value for a in ev.arguments}
    assert (got["saddr"], got["daddr"], got["family"]) == ("fe80::1", "::", "10")


def test_hostile_tcp_records_are_counted_not_raised() -> None:
    stats = AdapterStats()
    d = decoder(stats)
    assert d.decode(tcp_record(1, 4, family=1)) is None  # AF_UNIX: not from this tracepoint
    assert d.decode(tcp_record(1, 4)[:60]) is None  # cut inside the body
    assert d.decode(tcp_record(1, 4) + b"\xff" * 5) is None  # a broken trailer
    assert stats.malformed == {
        "native_bad_tcp_family": 1,
        "native_short_record": 1,
        "native_short_trailer": 1,
    }
    assert sum(stats.events.values()) == 0
