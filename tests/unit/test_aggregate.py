"""Hot-symbol bridge: what counts as an observation, windows, callers, confidence."""

from __future__ import annotations

from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolKey
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator

S = 1_000_000_000
DIGEST = "sha256:" + "a" * 64
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1"


def ev(kind: EventKind, t: float, **kw) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=kind,
        timestamp_ns=int(t * S),
        node_name="node-1",
        process=ProcessInfo(
            exec_id=kw.pop("exec_id", "e1"), pid=10, binary="/app/server", arguments="--port 80"
        ),
        container=ContainerInfo(id="c1", image_digest=DIGEST, image_id="r/app@" + DIGEST),
        pod=PodInfo(namespace="shop", name="app-1"),
        **kw,
    )


def agg(**kw) -> HotSymbolAggregator:
    kw.setdefault("window_seconds", 60)
    kw.setdefault("min_confidence", 0.0)
    return HotSymbolAggregator(**kw)


def by_key(deltas):
    out: dict[HotSymbolKey, int] = {}
    for d in deltas:
        out[d.key] = out.get(d.key, 0) + d.invocation_count
    return out


def test_uprobe_is_one_invocation_keyed_by_module() -> None:
    a = agg()
    for i in range(3):
        a.observe(ev(EventKind.UPROBE, 100 + i, function_name="crc32", module=LIBZ))
    # The same function name in another file is another key.
    a.observe(ev(EventKind.UPROBE, 100, function_name="crc32", module="/opt/vendored/libz.so"))
    deltas, windows = a.drain()
    counts = by_key(deltas)
    assert counts[HotSymbolKey(DIGEST, LIBZ, "crc32", EvidenceKind.INVOKED)] == 3
    assert counts[HotSymbolKey(DIGEST, "/opt/vendored/libz.so", "crc32", EvidenceKind.INVOKED)] == 1
    d = next(x for x in deltas if x.key.module == LIBZ)
    assert (d.first_seen_ns, d.last_seen_ns) == (100 * S, 102 * S)
    assert d.confidence == 1.0 and d.node_name == "node-1"
    assert d.sample["arguments"] == "--port 80" and d.sample["namespace"] == "shop"
    assert sum(w.event_count for w in windows) == 4
    assert a.drain() == ([], [])  # drained means gone


def test_stack_observes_each_distinct_function_once_with_its_caller() -> None:
    a = agg()
    stack = [
        StackFrame(module=LIBZ, symbol="crc32", offset=0x47C4),
        StackFrame(module=LIBC, symbol="getaddrinfo", offset=0xEFC80),
        StackFrame(module=LIBC, symbol="getaddrinfo", offset=0xEFC90),  # recursion: counted once
        StackFrame(module="/app/server", symbol="", offset=0x1234),  # no symbol: keyed by file offset
    ]
    a.observe(ev(EventKind.SYSCALL, 5, function_name="__x64_sys_connect", user_stack=stack))
    a.observe(ev(EventKind.SYSCALL, 6, function_name="__x64_sys_connect", user_stack=stack[:2]))
    deltas, _ = a.drain()
    counts = by_key(deltas)
    assert counts == {
        HotSymbolKey(DIGEST, "[kernel]", "__x64_sys_connect", EvidenceKind.KERNEL_CALL): 2,
        HotSymbolKey(DIGEST, LIBZ, "crc32", EvidenceKind.ON_STACK): 2,
        HotSymbolKey(DIGEST, LIBC, "getaddrinfo", EvidenceKind.ON_STACK): 2,
        HotSymbolKey(DIGEST, "/app/server", "0x1234", EvidenceKind.ON_STACK): 1,
    }
    crc = next(d for d in deltas if d.key.function_name == "crc32")
    assert crc.unique_callers == 1 and crc.confidence == 0.8
    gai = next(d for d in deltas if d.key.function_name == "getaddrinfo")
    # callers: itself (recursion) and /app/server
    assert gai.unique_callers == 2
    assert crc.sample["stack"][0] == f"{LIBZ}!crc32+0x47c4"


def test_exec_and_loader_observe_files_and_loader_build_ids_reach_stack_frames() -> None:
    a = agg()
    a.observe(ev(EventKind.EXEC, 1, module="/app/server"))
    a.observe(ev(EventKind.LOADER, 1, module=LIBZ, build_id="1f95d549"))
    a.observe(
        ev(
            EventKind.SYSCALL,
            2,
            function_name="__x64_sys_write",
            user_stack=[StackFrame(module=LIBZ, symbol="deflate")],
        )
    )
    deltas, _ = a.drain()
    keys = {d.key: d for d in deltas}
    assert keys[HotSymbolKey(DIGEST, "/app/server", "", EvidenceKind.EXECUTED)].confidence == 0.5
    loaded = keys[HotSymbolKey(DIGEST, LIBZ, "", EvidenceKind.LOADED)]
    assert loaded.confidence == 0.2 and loaded.build_id == "1f95d549"
    assert keys[HotSymbolKey(DIGEST, LIBZ, "deflate", EvidenceKind.ON_STACK)].build_id == "1f95d549"
    # After the process exits its build-id map is forgotten.
    a.observe(ev(EventKind.EXIT, 3))
    a.observe(
        ev(
            EventKind.SYSCALL,
            4,
            function_name="__x64_sys_write",
            user_stack=[StackFrame(module=LIBZ, symbol="inflate")],
        )
    )
    deltas, _ = a.drain()
    assert next(d for d in deltas if d.key.function_name == "inflate").build_id == ""


def test_windows_split_counts_and_history() -> None:
    a = agg(window_seconds=60)
    for t in (0, 59.9, 60, 125):
        a.observe(ev(EventKind.UPROBE, t, function_name="f", module=LIBC))
    deltas, windows = a.drain()
    assert sorted((d.window_start_ns // S, d.invocation_count) for d in deltas) == [(0, 2), (60, 1), (120, 1)]
    assert sorted((w.window_start_ns // S, w.event_count) for w in windows) == [(0, 2), (60, 1), (120, 1)]


def test_confidence_threshold_drops_weak_evidence() -> None:
    a = agg(min_confidence=0.5)
    a.observe(ev(EventKind.LOADER, 1, module=LIBZ, build_id="ab"))
    a.observe(ev(EventKind.EXEC, 1, module="/app/server"))
    deltas, windows = a.drain()
    assert [d.key.evidence for d in deltas] == [EvidenceKind.EXECUTED]
    assert a.below_threshold == 1
    assert sum(w.event_count for w in windows) == 2  # still under observation


def test_symbol_id_only_sample_has_no_arguments() -> None:
    a = agg(symbol_id_only=True)
    a.observe(ev(EventKind.UPROBE, 1, function_name="f", module=LIBC))
    (d,), _ = a.drain()
    assert set(d.sample) == {"binary", "stack"}


def test_callers_are_bounded() -> None:
    a = agg(max_callers_per_symbol=3)
    for i in range(10):
        stack = [StackFrame(module=LIBC, symbol="malloc"), StackFrame(module="/app", symbol=f"caller{i}")]
        a.observe(ev(EventKind.SYSCALL, 1, function_name="__x64_sys_brk", user_stack=stack))
    deltas, _ = a.drain()
    assert next(d for d in deltas if d.key.function_name == "malloc").unique_callers == 3


def test_host_events_are_filed_under_the_node() -> None:
    a = agg()
    e = ev(EventKind.EXEC, 1, module="/usr/sbin/sshd")
    e.container = None
    e.pod = None
    a.observe(e)
    (d,), _ = a.drain()
    assert d.key.image_digest == "host:node-1"


def test_canonicalized_frames_carry_entry_ids_and_hints_do_not() -> None:
    bid = "93ac61ec5a8eb1396f9fbd350e3169a558528a40"
    resolved = StackFrame(
        module=LIBC, symbol="getaddrinfo", offset=0xF1234, build_id=bid, symbol_offset=0x24,
        function_id=f"{bid}:getaddrinfo+0x24", source="dynsym",
    )  # fmt: skip
    hinted = StackFrame(module=LIBZ, symbol="deflate", offset=0x3A00, build_id="ff" * 20, source="hint")
    a = agg()
    a.observe(
        ev(
            EventKind.SYSCALL, 1, function_name="__x64_sys_connect",
            function_id="kb:__x64_sys_connect+0x0", user_stack=[resolved, hinted],
        )
    )  # fmt: skip
    deltas, _ = a.drain()
    got = {(d.key.module, d.key.function_name): d for d in deltas}
    assert got[(LIBC, "getaddrinfo")].function_id == f"{bid}:getaddrinfo+0x0"
    assert got[(LIBZ, "deflate")].function_id == ""  # a hint is not a resolved symbol
    kernel = got[("[kernel]", "__x64_sys_connect")]
    assert (kernel.function_id, kernel.build_id) == ("kb:__x64_sys_connect+0x0", "kb")
    # samples show resolved frames with the offset from the symbol, hints with the file offset
    assert got[(LIBC, "getaddrinfo")].sample["stack"] == [
        f"{LIBC}!getaddrinfo+0x24",
        f"{LIBZ}!deflate+0x3a00",
    ]


def test_uprobe_is_keyed_on_the_canonical_symbol_of_its_function_id() -> None:
    bid = "ab" * 20
    a = agg()
    a.observe(
        ev(EventKind.UPROBE, 1, module="/app/server", function_name="_ZN3app6handleEv",
           function_id=f"{bid}:app::handle()+0x0")
    )  # fmt: skip
    (d,), _ = a.drain()
    assert (d.key.function_name, d.function_id, d.build_id) == (
        "app::handle()",
        f"{bid}:app::handle()+0x0",
        bid,
    )
