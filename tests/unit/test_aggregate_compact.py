"""The aggregator's compact per-key state (issue 13) keeps every answer the plain one gave.

Keys are grouped, strings and samples shared, callers one string until a
second appears: these tests pin what each of those must not change (counts,
callers, samples, the caller-key bound) and that the sharing happens.
"""

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
from stellaops_runtime.hotsymbols.samples import SampleTable, StringTable

S = 1_000_000_000
DIGEST = "sha256:" + "b" * 64


def fresh(s: str) -> str:
    """An equal string that is another object (as every decoded event has its own)."""
    return "".join(list(s))


def ev(
    t: float, *, frames: list[tuple[str, str]], args: str = "--port 80", exec_id: str = "e1"
) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.SYSCALL,
        timestamp_ns=int(t * S),
        node_name=fresh("node-1"),
        function_name="__x64_sys_read",
        process=ProcessInfo(exec_id=exec_id, pid=10, binary=fresh("/app/server"), arguments=args),
        container=ContainerInfo(id=fresh("c1"), image_digest=fresh(DIGEST), image_id="r/app@" + DIGEST),
        pod=PodInfo(namespace=fresh("shop"), name=fresh("app-1")),
        user_stack=[StackFrame(module=fresh(m), symbol=fresh(f), offset=0x10) for m, f in frames],
    )


def agg(**kw) -> HotSymbolAggregator:
    kw.setdefault("window_seconds", 60)
    kw.setdefault("min_confidence", 0.0)
    return HotSymbolAggregator(**kw)


def stack_key(module: str, fn: str) -> HotSymbolKey:
    return HotSymbolKey(DIGEST, module, fn, EvidenceKind.ON_STACK)


def test_callers_one_then_many_then_capped() -> None:
    a = agg(max_callers_per_symbol=2)
    a.observe(ev(1, frames=[("/l.so", "f"), ("/app", "main")]))
    a.observe(ev(2, frames=[("/l.so", "f"), ("/app", "main")]))  # the same caller again
    d, _ = a.drain()
    assert {x.key: x.unique_callers for x in d}[stack_key("/l.so", "f")] == 1
    a.observe(ev(3, frames=[("/l.so", "f"), ("/app", "serve")]))
    a.observe(ev(4, frames=[("/l.so", "f"), ("/app", "other")]))  # a third caller: past the cap
    d, _ = a.drain()
    by_key = {x.key: x for x in d}
    assert by_key[stack_key("/l.so", "f")].unique_callers == 2  # callers are kept across drains
    assert by_key[stack_key("/l.so", "f")].invocation_count == 2
    assert by_key[stack_key("/app", "other")].unique_callers == 0  # the bottom frame has no caller


def test_recursion_counts_once_but_every_caller() -> None:
    a = agg()
    a.observe(ev(1, frames=[("/l.so", "f"), ("/l.so", "g"), ("/l.so", "f"), ("/app", "main")]))
    d, _ = a.drain()
    by_key = {x.key: x for x in d}
    f = by_key[stack_key("/l.so", "f")]
    assert (f.invocation_count, f.unique_callers) == (1, 2)  # called by g, and by main


def test_caller_key_bound_starts_over_and_counts_are_untouched() -> None:
    a = agg(max_tracked_caller_keys=3)
    for i in range(5):
        a.observe(ev(1 + i, frames=[("/l.so", f"f{i}"), ("/app", "main")]))
    d, _ = a.drain()
    assert sum(x.invocation_count for x in d if x.key.evidence is EvidenceKind.ON_STACK) == 10
    callers = {x.key.function_name: x.unique_callers for x in d if x.key.module == "/l.so"}
    # The table was full at f3 and started over: f3 and f4 have their caller, f0..f2 were forgotten.
    assert callers == {"f0": 0, "f1": 0, "f2": 0, "f3": 1, "f4": 1}


def test_equal_strings_and_samples_are_shared_between_keys() -> None:
    a = agg()
    a.observe(ev(1, frames=[("/l.so", "f1"), ("/l.so", "f2")]))
    a.observe(ev(2, frames=[("/l.so", "f3")]))  # another event object, equal strings
    d, w = a.drain()
    stack = [x for x in d if x.key.evidence is EvidenceKind.ON_STACK]
    assert len(stack) == 3
    assert len({id(x.key.module) for x in stack}) == 1
    assert len({id(x.key.image_digest) for x in d}) == 1
    assert len({id(x.node_name) for x in d}) == 1
    # The keys of one event share one sample dict; the other event's sample is equal in all but
    # the stack, so it is its own.
    first = [x for x in stack if x.key.function_name in ("f1", "f2")]
    assert first[0].sample is first[1].sample
    assert first[0].sample["stack"] == ["/l.so!f1+0x10", "/l.so!f2+0x10"]
    assert first[0].sample["binary"] == "/app/server" and first[0].sample["namespace"] == "shop"
    assert w[0].event_count == 2 and w[0].image_digest == DIGEST


def test_equal_events_share_one_sample_tuple() -> None:
    table = SampleTable(StringTable(), symbol_id_only=False)
    one = table.of(ev(1, frames=[("/l.so", "f")]))
    two = table.of(ev(2, frames=[("/l.so", "f")]))
    other = table.of(ev(3, frames=[("/l.so", "f")], args="--port 81"))
    assert one is two and one is not other and other[2] == "--port 81"


def test_tables_are_bounded() -> None:
    share = StringTable(max_entries=4)
    kept = [share(fresh(f"s{i}")) for i in range(10)]
    assert len(share) <= 4 and kept == [f"s{i}" for i in range(10)]
    table = SampleTable(StringTable(), symbol_id_only=True, max_entries=2)
    samples = [table.of(ev(i, frames=[("/l.so", f"f{i}")])) for i in range(5)]
    assert len(table._samples) <= 2
    assert [s[1] for s in samples] == [(f"/l.so!f{i}+0x10",) for i in range(5)]


def test_peak_and_rows_follow_the_keys_and_windows() -> None:
    a = agg()
    a.observe(ev(1, frames=[("/l.so", "f1"), ("/l.so", "f2")]))
    a.observe(ev(61, frames=[("/l.so", "f1")]))  # the next window: new keys, a new window row
    assert a.key_count == 5 and a.rows == 7 and a.peak_keys == 5
    a.drain()
    assert (a.key_count, a.rows, a.peak_keys) == (0, 0, 5)
