"""After a drain the agent keeps nothing of the drained keys but their distinct callers (issue 13).

The agent's memory after a flush is what it holds between flushes; these
tests pin what a drain lets go of, by object identity and reference counts
(never RSS: that is measured in bench/agent_memory_bench.py):

- the aggregator's string and sample tables start over: no string, sample or
  event of a drained key stays referenced;
- the fast path drops the drained slots its outcomes held (and keeps counting
  repeats exactly, see tests/integration/test_fastpath.py);
- callers are kept across drains as hashes in arrays (hotsymbols/callers.py):
  equal callers from different objects count once, callers whose
  ``module!function`` texts would coincide count apart, the bound still holds.
"""

from __future__ import annotations

import gc
import gzip
import sys
import time
from array import array
from pathlib import Path

from google.protobuf import json_format

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
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
from stellaops_runtime.hotsymbols.callers import CallerTable
from stellaops_runtime.hotsymbols.slots import Slot
from stellaops_runtime.wire.tetragon import events_pb2
from tests.new_objects import live, only_new

S = 1_000_000_000
DIGEST = "sha256:" + "c" * 64
STREAM_A = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon" / "synthetic" / "stream-a.jsonl.gz"


def fresh(s: str) -> str:
    """An equal string that is another object (every decoded event has its own)."""
    return "".join(list(s))


def ev(t: float, frames: list[tuple[str, str]], *, args: str = "--port 80") -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.SYSCALL,
        timestamp_ns=int(t * S),
        node_name=fresh("node-1"),
        function_name="__x64_sys_read",
        process=ProcessInfo(exec_id="e1", pid=10, binary=fresh("/app/server"), arguments=args),
        container=ContainerInfo(id=fresh("c1"), image_digest=fresh(DIGEST), image_id="r/app@" + DIGEST),
        pod=PodInfo(namespace=fresh("shop"), name=fresh("app-1")),
        user_stack=[StackFrame(module=fresh(m), symbol=fresh(f), offset=0x10) for m, f in frames],
    )


def agg(**kw: int) -> HotSymbolAggregator:
    return HotSymbolAggregator(window_seconds=60, min_confidence=0.0, **kw)


def test_a_drain_leaves_no_string_sample_or_event_of_its_keys_behind() -> None:
    a = agg()
    e = ev(1, [("/l.so", "f"), ("/app", "main")], args=fresh("--token-file /run/x --port 80"))
    binary, args, frame_module = e.process.binary, e.process.arguments, e.user_stack[0].module
    held = [sys.getrefcount(x) for x in (e, binary, args, frame_module)]
    a.observe(e)
    assert [sys.getrefcount(x) for x in (e, binary, args, frame_module)] > held  # the keys hold them
    deltas, windows = a.drain()
    assert {d.sample["arguments"] for d in deltas} == {"--token-file /run/x --port 80"}
    del deltas, windows
    gc.collect()
    assert [sys.getrefcount(x) for x in (e, binary, args, frame_module)] == held
    # The tables start over, and sharing goes on for the next window's keys.
    a.observe(ev(61, [("/l.so", "f")]))
    a.observe(ev(62, [("/l.so", "g")]))
    deltas, _ = a.drain()
    stack = [d for d in deltas if d.key.evidence is EvidenceKind.ON_STACK]
    assert len(stack) == 2 and stack[0].key.module is stack[1].key.module


def test_callers_survive_drains_as_ints_and_count_exactly() -> None:
    a = agg()
    a.observe(ev(1, [("/l.so", "f"), ("/app", "main")]))
    a.observe(ev(2, [("/l.so", "f"), ("/app", "main")]))  # the same caller, other string objects
    d, _ = a.drain()
    assert {x.key.function_name: x.unique_callers for x in d if x.key.module == "/l.so"} == {"f": 1}
    a.observe(ev(61, [("/l.so", "f"), ("/app", "serve")]))
    d, _ = a.drain()
    assert {x.key.function_name: x.unique_callers for x in d if x.key.module == "/l.so"} == {"f": 2}
    # Kept: machine words in arrays only, no string or other object of a key or a caller.
    table = a._callers
    assert len(table) == 1
    assert all(type(getattr(table, s)) in (array, int) for s in CallerTable.__slots__)


def test_callers_whose_texts_would_coincide_are_two() -> None:
    # "a!b" + "!" + "c" and "a" + "!" + "b!c" are one text but two (module, function) callers.
    t = CallerTable(max_callers=256, max_keys=10)
    t.add("img", "/l.so", "f", "/opt/a!b", "c")
    t.add("img", "/l.so", "f", "/opt/a", "b!c")
    t.add("img", "/l.so", "f", fresh("/opt/a"), fresh("b!c"))
    assert t.count("img", "/l.so", "f") == 2
    assert t.count("img", "/l.so", "g") == 0 and t.count("other", "/l.so", "f") == 0


def test_caller_table_bound_starts_over_and_says_so() -> None:
    t = CallerTable(max_callers=2, max_keys=3)
    assert [t.add("i", "/m", f"f{n}", "/app", "main") for n in range(3)] == [False] * 3
    for c in ("a", "b", "c"):  # capped at max_callers
        t.add("i", "/m", "f0", "/app", c)
    assert t.count("i", "/m", "f0") == 2
    assert t.add("i", "/m", "f3", "/app", "main") is True  # full: started over
    assert (len(t), t.resets, t.count("i", "/m", "f0"), t.count("i", "/m", "f3")) == (1, 1, 0, 1)


def test_the_callers_bound_invalidates_slots_the_fast_path_holds() -> None:
    a = agg(max_tracked_caller_keys=2)
    a.observe(ev(1, [("/l.so", "f"), ("/app", "main")]))
    epoch = a.epoch
    a.observe(ev(2, [("/l.so", "g"), ("/l.so", "h"), ("/app", "main")]))  # a third caller key
    assert a.epoch == epoch + 1


def _live_slots() -> int:
    return live(Slot)


def _stream_a_three_times() -> list[bytes]:
    lines = [ln for ln in gzip.decompress(STREAM_A.read_bytes()).splitlines() if ln.strip()][:400]
    protos = [
        json_format.Parse(ln, events_pb2.GetEventsResponse(), ignore_unknown_fields=True).SerializeToString()
        for ln in lines
    ]
    return protos * 3  # from the third sight an outcome is kept


def _pipeline_after_drain(release: bool) -> tuple[Pipeline, int, int]:
    pipe = Pipeline(parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}}), node_name="bench")
    assert pipe.fast_path is not None
    if not release:
        pipe.aggregator.on_drain.clear()
    items = _stream_a_three_times()
    for i in range(0, len(items), 64):
        pipe.process_proto([(x, time.monotonic_ns()) for x in items[i : i + 64]])
    assert pipe.fast_path.stats.stored > 0 and pipe.fast_path.stats.hits > 0
    before = _live_slots()
    deltas, windows = pipe.drain()
    assert deltas and windows
    del deltas, windows
    return pipe, before, _live_slots()


def test_the_fast_path_lets_go_of_drained_slots() -> None:
    with only_new():  # counts see the slots made here, not the worker's whole heap (tests/new_objects.py)
        pipe, before, after = _pipeline_after_drain(release=True)
        assert before > 0 and after == 0
        # Without the drain callback the fast path's outcomes would keep them (the test can fail).
        _, before_kept, kept = _pipeline_after_drain(release=False)
        assert kept > 0 and kept <= before_kept
        del pipe
