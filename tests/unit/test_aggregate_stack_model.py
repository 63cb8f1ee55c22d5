"""The aggregator's user-stack loop against a plain model of what a stack observes.

Why it exists: the loop over a kprobe's user stack is the aggregator's hottest
code on streams whose stacks never repeat (issue 13), so it is written inline
rather than through the general per-key path. This test states, with no shared
shortcut, what a stack must produce: each distinct (module, function) counted
once per event, with first/last seen, latency, the first build-id and entry ID
any of its frames carried (or its process's loader reported), and the distinct
callers of each frame; and that the fast path's repeat of an event counts what
observing it again would. Functions inlined at a frame (``StackFrame.inlined``,
canonical/inlines.py) are frames of their own, innermost first, just above it:
counted once per event, with the frame's build-id and their own entry IDs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from stellaops_runtime.canonical.function_id import function_entry_id
from stellaops_runtime.canonical.resolution import RESOLVED_SOURCES, Source
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator

S = 1_000_000_000
DIGEST = "sha256:" + "b" * 64
MODULES = ["/lib/libc.so.6", "/lib/libz.so.1", "/app/server"]
NAMES = ["", "", "read", "crc32", "main", "_ZN3foo3barEv"]
INLINED = ["inl_a", "inl_b", "read", "main"]  # "read", "main": also physical frames elsewhere
SOURCES = [Source.SYMTAB, Source.DYNSYM, Source.HINT, Source.NONE, ""]
BUILD_IDS = ["", "", "ab" * 20, "cd" * 20]


@dataclass
class Expected:
    count: int = 0
    first: int = 0
    last: int = 0
    total_latency: int = 0
    max_latency: int = 0
    build_id: str = ""
    function_id: str = ""
    callers: set[tuple[str, str]] = field(default_factory=set)


def function(f: StackFrame) -> str:
    return f.symbol or f"0x{f.offset:x}"


def random_event(rng: random.Random, t: int) -> RuntimeCallEvent:
    frames = []
    for _ in range(rng.randint(1, 6)):
        if frames and rng.random() < 0.2:  # recursion: the same function again
            g = frames[rng.randrange(len(frames))]
            frames.append(StackFrame(module=g.module, symbol=g.symbol, offset=g.offset))
            continue
        symbol = rng.choice(NAMES)
        inlined = tuple(rng.sample(INLINED, rng.randint(1, 3))) if symbol and rng.random() < 0.3 else ()
        frames.append(
            StackFrame(
                module=rng.choice(MODULES),
                symbol=symbol,
                offset=rng.choice([0x10, 0x20, 0x1A2B]),
                build_id=rng.choice(BUILD_IDS),
                source=rng.choice(SOURCES),
                inlined=inlined,
            )
        )
    return RuntimeCallEvent(
        kind=EventKind.KPROBE,
        timestamp_ns=t,
        node_name="node-1",
        function_name="__x64_sys_read",
        latency_ns=rng.choice([None, 0, 5, 700]),
        process=ProcessInfo(exec_id=rng.choice(["e1", "e2"]), pid=10, binary="/app/server"),
        container=ContainerInfo(id="c1", image_digest=DIGEST, image_id="r/app@" + DIGEST),
        pod=PodInfo(namespace="shop", name="app-1"),
        user_stack=frames,
    )


def logical(stack: list[StackFrame]) -> list[tuple[StackFrame, str, str]]:
    """(frame, function, resolved symbol) innermost first: the functions inlined at a frame, then
    the frame's own (its symbol, "" when it has none)."""
    out = []
    for f in stack:
        out.extend((f, name, name) for name in f.inlined)
        out.append((f, function(f), f.symbol))
    return out


def model(events: list[RuntimeCallEvent], loader_ids: dict[str, dict[str, str]]) -> dict[tuple, Expected]:
    out: dict[tuple, Expected] = {}
    for ev in events:
        lat = ev.latency_ns or 0
        stack = logical(ev.user_stack)
        seen = set()
        for i, (f, name, symbol) in enumerate(stack):
            key = (f.module, name)
            if key not in seen:
                seen.add(key)
                e = out.get(key)
                if e is None:
                    e = out[key] = Expected(first=ev.timestamp_ns, last=ev.timestamp_ns)
                e.count += 1
                e.first = min(e.first, ev.timestamp_ns)
                e.last = max(e.last, ev.timestamp_ns)
                e.total_latency += lat
                e.max_latency = max(e.max_latency, lat)
                bid = f.build_id or loader_ids.get(ev.process.exec_id, {}).get(f.module, "")
                if not e.build_id:
                    e.build_id = bid
                if not e.function_id and f.source in RESOLVED_SOURCES and f.build_id and symbol:
                    e.function_id = function_entry_id(f.build_id, symbol)
            if i < len(stack) - 1:
                g, caller, _ = stack[i + 1]
                out[key].callers.add((g.module, caller))
    return out


def loader(exec_id: str, module: str, build_id: str) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.LOADER,
        timestamp_ns=S,
        node_name="node-1",
        module=module,
        build_id=build_id,
        process=ProcessInfo(exec_id=exec_id, pid=10, binary="/app/server"),
        container=ContainerInfo(id="c1", image_digest=DIGEST, image_id="r/app@" + DIGEST),
    )


def test_random_stacks_count_as_the_model_says() -> None:
    rng = random.Random(13)
    loader_ids = {"e1": {MODULES[2]: "ee" * 20}}
    events = [random_event(rng, S + rng.randrange(50) * S // 10) for _ in range(400)]
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    a.observe(loader("e1", MODULES[2], "ee" * 20))
    for e in events:
        a.observe(e)
    deltas, _ = a.drain()
    got = {(d.key.module, d.key.function_name): d for d in deltas if d.key.evidence is EvidenceKind.ON_STACK}
    want = model(events, loader_ids)
    assert set(got) == set(want)
    for key, e in want.items():
        d = got[key]
        assert (d.invocation_count, d.first_seen_ns, d.last_seen_ns) == (e.count, e.first, e.last), key
        assert (d.total_latency_ns, d.max_latency_ns) == (e.total_latency, e.max_latency), key
        assert (d.build_id, d.function_id) == (e.build_id, e.function_id), key
        assert d.unique_callers == len(e.callers), key
    assert a.observations == sum(e.count for e in want.values()) + len(events) + 1


def test_stack_below_the_threshold_counts_each_distinct_function_once_and_keeps_no_callers() -> None:
    rng = random.Random(7)
    events = [random_event(rng, S) for _ in range(100)]
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.9)  # ON_STACK is 0.8
    for e in events:
        a.observe(e)
    want = model(events, {})
    assert a.below_threshold == sum(e.count for e in want.values())
    deltas, _ = a.drain()
    assert all(d.key.evidence is EvidenceKind.KERNEL_CALL for d in deltas)
    assert len(a._callers) == 0


def test_repeat_of_an_observed_stack_counts_as_observing_it_again() -> None:
    rng = random.Random(21)
    for _ in range(30):
        e = random_event(rng, 2 * S)
        twice = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
        twice.observe(e)
        twice.observe(e)
        bound = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
        n, slots, window = bound.observe_bound(e)
        bound.repeat(slots, window, e.timestamp_ns, e.latency_ns or 0, n, 0)
        assert twice.observations == bound.observations
        assert twice.drain()[0] == bound.drain()[0]


def test_a_sample_shows_inlined_functions_above_their_frame() -> None:
    bid = "ab" * 20
    outer = StackFrame(
        module="/app/server",
        symbol="main.serve",
        offset=0x1234,
        build_id=bid,
        symbol_offset=0x34,
        source=Source.GOPCLNTAB,
        inlined=("main.parse", "main.check"),
    )
    caller = StackFrame(module="/app/server", symbol="main.main", offset=0x2000, build_id=bid)
    caller.symbol_offset, caller.source = 8, Source.GOPCLNTAB
    ev = random_event(random.Random(1), S)
    ev.user_stack = [outer, caller]
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    a.observe(ev)
    deltas, _ = a.drain()
    rows = {d.key.function_name: d for d in deltas if d.key.evidence is EvidenceKind.ON_STACK}
    assert set(rows) == {"main.parse", "main.check", "main.serve", "main.main"}
    want_stack = [
        "/app/server!main.parse (inlined)",
        "/app/server!main.check (inlined)",
        "/app/server!main.serve+0x34",
        "/app/server!main.main+0x8",
    ]
    for name, d in rows.items():
        assert d.function_id == f"{bid}:{name}+0x0"
        assert d.sample is not None and d.sample["stack"] == want_stack
    # the caller chain runs through the inlined functions: parse <- check <- serve <- main
    chain = ("main.parse", "main.check", "main.serve", "main.main")
    assert [rows[n].unique_callers for n in chain] == [1, 1, 1, 0]
