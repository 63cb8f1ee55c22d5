"""Native probe payloads -> RuntimeCallEvent: the Tetragon adapter's shapes, and hostile payloads counted.

Records are built here with the same struct layouts the BPF side writes
(records.py); the integration tests check the kernel really writes them.
"""

from __future__ import annotations

import orjson
import pytest

from stellaops_runtime.adapter import from_json
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.contracts.events import ContainerInfo, EventKind
from stellaops_runtime.contracts.syscalls import X86_64
from stellaops_runtime.native import records
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.events import Decoder, encode_trailer, exec_id, names_file

NODE = "node-a"
OFFSET = 1_700_000_000_000_000_000  # wall clock minus monotonic clock
TARGETS = [UprobeTarget("/usr/lib/libfoo.so.1", "foo_parse")]


def header(
    kind: int, *, pid: int = 4242, ktime: int = 5_000, cgroup: int = 77, comm: bytes = b"worker"
) -> tuple:
    return (kind, 0, 0, pid, pid + 1, 1000, ktime, cgroup, comm)


def record(kind: int, *body: object, **kw: object) -> bytes:
    return records.STRUCTS[kind].pack(*header(kind, **kw), *body)  # type: ignore[arg-type]


def decoder(**kw: object) -> Decoder:
    return Decoder(node_name=NODE, targets=TARGETS, wall_minus_monotonic_ns=OFFSET, **kw)  # type: ignore[arg-type]


def tetragon(obj: dict) -> object:
    ev = from_json.adapt(from_json.decode_line(orjson.dumps(obj)), stats=AdapterStats())
    assert ev is not None
    return ev


def test_exec_has_the_tetragon_shape() -> None:
    ev = decoder().decode(
        record(records.KIND_EXEC, 4242, 0, b"/usr/bin/netserver") + encode_trailer("", 0, [])
    )
    assert ev is not None
    t = tetragon(
        {"process_exec": {"process": {"pid": 4242, "binary": "/usr/bin/netserver"}}, "node_name": NODE}
    )
    assert (ev.kind, ev.module, ev.process.binary, ev.process.pid, ev.function_name) == (
        t.kind, t.module, t.process.binary, t.process.pid, t.function_name,  # type: ignore[attr-defined]
    )  # fmt: skip
    assert ev.process.exec_id == exec_id(NODE, 5_000, 4242)
    assert ev.timestamp_ns == 5_000 + OFFSET
    assert ev.container is None  # a host process unless the registry knows the cgroup


def test_relative_exec_path_takes_procs_answer() -> None:
    ev = decoder().decode(record(records.KIND_EXEC, 1, 0, b"./run") + encode_trailer("/opt/app/run", 0, []))
    assert ev is not None and ev.process.binary == "/opt/app/run"


def test_syscall_has_the_tetragon_kprobe_shape() -> None:
    payload = record(records.KIND_SYSCALL, X86_64["getpgid"], 1) + encode_trailer("/bin/su", 0, [])
    ev = decoder().decode(payload)
    assert ev is not None
    t = tetragon(
        {
            "process_kprobe": {
                "process": {"pid": 4242, "binary": "/bin/su"},
                "function_name": "__x64_sys_getpgid",
            },
            "node_name": NODE,
        }
    )
    assert (ev.kind, ev.function_name, ev.module, ev.process.binary) == (
        t.kind, t.function_name, t.module, t.process.binary,  # type: ignore[attr-defined]
    )  # fmt: skip
    assert ev.kind is EventKind.SYSCALL
    assert ev.arguments == []  # not sampled: no sample_every argument


def test_uprobe_has_the_tetragon_shape_plus_latency_and_stack() -> None:
    frames = [(0x55_0000_1234, 0x1234, "/usr/bin/app"), (0x7F00_0000_0010, 0, "")]
    payload = record(records.KIND_UPROBE, 0, 3, 250_000) + encode_trailer("/usr/bin/app", 4_000, frames)
    ev = decoder().decode(payload)
    assert ev is not None
    t = tetragon(
        {
            "process_uprobe": {
                "process": {"pid": 4242, "binary": "/usr/bin/app"},
                "path": "/usr/lib/libfoo.so.1",
                "symbol": "foo_parse",
            },
            "node_name": NODE,
        }
    )
    assert (ev.kind, ev.function_name, ev.module, ev.symbol_offset) == (
        t.kind, t.function_name, t.module, t.symbol_offset,  # type: ignore[attr-defined]
    )  # fmt: skip
    assert ev.latency_ns == 250_000
    assert [(f.module, f.offset, f.address) for f in ev.user_stack] == [
        ("/usr/bin/app", 0x1234, 0x55_0000_1234),
        ("", 0, 0x7F00_0000_0010),  # in no file: kept with its address only
    ]
    assert ev.process.exec_id == exec_id(NODE, 4_000, 4242)


def test_container_comes_from_the_cgroup_registry() -> None:
    c = ContainerInfo(id="abc", image_digest="sha256:" + "1" * 64, cgroup_id=77)
    d = decoder(containers=lambda cg: c if cg == 77 else None)
    ev = d.decode(record(records.KIND_SYSCALL, X86_64["openat"], 1) + encode_trailer("", 0, []))
    assert ev is not None and ev.container is c and ev.image_key == c.image_digest


def test_sampled_syscall_says_its_rate() -> None:
    ev = decoder().decode(record(records.KIND_SYSCALL, X86_64["openat"], 16) + encode_trailer("", 0, []))
    assert ev is not None and [(a.label, a.value) for a in ev.arguments] == [("sample_every", "16")]


def test_nul_and_invalid_utf8_in_texts_are_repaired_not_fatal() -> None:
    d = decoder()
    ev = d.decode(record(records.KIND_EXEC, 1, 0, b"/tmp/\xff\xfebad") + encode_trailer("", 0, []))
    assert ev is not None and ev.process.binary.startswith("/tmp/") and "\x00" not in ev.process.binary


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "native_short_record"),
        (b"\x01" * 10, "native_short_record"),
        (bytes([9]) + bytes(100), "native_unknown_kind"),
        (record(records.KIND_EXEC, 1, 0, b"/x")[:60], "native_short_record"),
        (record(records.KIND_SYSCALL, 9999, 1), "native_unknown_syscall"),
        (record(records.KIND_UPROBE, 5, -1, 1), "native_unknown_uprobe_target"),
        (record(records.KIND_SYSCALL, 0, 1) + b"\x01\x02", "native_short_trailer"),
        (record(records.KIND_SYSCALL, 0, 1) + encode_trailer("/b", 0, []) + b"x", "native_bad_trailer"),
        (record(records.KIND_SYSCALL, 0, 1) + encode_trailer("/b", 0, [])[:-1], "native_bad_trailer"),
        (
            record(records.KIND_SYSCALL, 0, 1)
            + (0).to_bytes(8, "little")
            + (65535).to_bytes(2, "little")
            + bytes(2),
            "native_bad_trailer",
        ),
        (
            record(records.KIND_UPROBE, 0, 1, 1) + encode_trailer("", 0, [(1, 2, "/m")])[:-3],
            "native_bad_trailer",
        ),
    ],
)
def test_hostile_payloads_are_counted_never_raised(payload: bytes, reason: str) -> None:
    d = decoder()
    assert d.decode(payload) is None
    assert d.stats.malformed == {reason: 1}


def test_huge_stack_is_cut_at_the_pipelines_depth() -> None:
    frames = [(i, i, "/usr/bin/app") for i in range(500)]
    payload = record(records.KIND_UPROBE, 0, 1, 1) + encode_trailer("/usr/bin/app", 0, frames)
    ev = decoder(max_stack_depth=20).decode(payload)
    assert ev is not None and len(ev.user_stack) == 20


def test_wrong_payload_type_is_counted() -> None:
    d = decoder()
    assert d.decode("not bytes") is None  # type: ignore[arg-type]
    assert d.stats.malformed == {"native_short_record": 1}


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/usr/bin/app", True), ("/dev/fdx", True), ("/proc/self/exe-like", True), ("/proc/12/exec", True),
        ("app", False), ("./app", False), ("", False),
        ("/dev/fd/3", False), ("/proc/self/fd/7", False), ("/proc/thread-self/fd/7", False),
        ("/proc/self/exe", False), ("/proc/4242/exe", False), ("/proc/4242/fd/3", False),
    ],
)  # fmt: skip
def test_an_execve_path_names_the_file_unless_relative_or_a_descriptor(path: str, names: bool) -> None:
    assert names_file(path) is names
