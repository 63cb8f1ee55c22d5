"""The agent's fast path (agent/fastpath.py) gives exactly what the ordinary path gives.

Every fixture stream in tests/fixtures/tetragon, as gRPC protobuf and as JSON
export lines, runs through two real Pipelines, one with the fast path and one
without; each drain is written into its own real SQLite store, and every
column of every table (but the wall-clock ``updated_at``-like ones) is
compared, with the adapter's, opt-out, privacy, canonicalizer, gap,
aggregator and attribution counters. Hostile cases: one key with a secret in
its arguments and one without, frames left ``parse_pending`` while their file
is parsed, an opted-out pod, an exit then more events of that process, a
container snapshot swap, drains between repeats, windows crossed, corrupt
messages, and outcomes evicted at a tiny bound.
"""

from __future__ import annotations

import datetime as dt
import gzip
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from stellaops_runtime.agent.fastpath import MAX_SKIP, SAMPLE, SKIP
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.canonical.parseworker import ParsePending, ParseWorker
from stellaops_runtime.contracts.config import AgentConfig, parse_config
from stellaops_runtime.lifecycle.lookup import ContainerLookup, EnrichStats
from stellaops_runtime.lifecycle.registry import POD_NAME_LABEL, POD_NAMESPACE_LABEL, ContainerRecord
from stellaops_runtime.store import schema
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.wire.tetragon import events_pb2
from tests.integration import test_hostile_elf_builder as eb

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon"
STREAM_A = FIXTURES / "synthetic" / "stream-a.jsonl.gz"
UPSTREAM = FIXTURES / "events.jsonl"
WALL_CLOCK = {"updated_at", "committed_at", "quarantined_at", "issued_at"}
S = 1_000_000_000
T0 = 1_795_000_000 * S  # 2026-11-19
SECRET = "hunter2-Zq8vX3"
IMG = "registry.example.com/shop/web@sha256:" + "b" * 64
CID = "containerd://" + "a" * 64


def _lines(path: Path) -> list[bytes]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [ln for ln in raw.splitlines() if ln.strip()]


def _proto(line: bytes) -> bytes:
    return json_format.Parse(
        line, events_pb2.GetEventsResponse(), ignore_unknown_fields=True
    ).SerializeToString()


def _json(msg: events_pb2.GetEventsResponse) -> bytes:
    """Export form: protojson with proto field names, compact, fields in field-number order."""
    text = json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None)
    return orjson.dumps(orjson.loads(text))


def _shifted(line: bytes, by_ns: int) -> bytes:
    """The same export line ``by_ns`` later (time rewritten through protobuf, so both forms agree)."""
    msg = json_format.Parse(line, events_pb2.GetEventsResponse(), ignore_unknown_fields=True)
    if msg.HasField("time"):
        msg.time.FromNanoseconds(msg.time.ToNanoseconds() + by_ns)
    return _json(msg)


@dataclass
class Run:
    tables: dict[str, list[tuple[Any, ...]]]
    counters: dict[str, Any]
    pipe: Pipeline


def _dump(engine: sa.Engine, since: dt.datetime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, but the wall-clock columns, in a stable order.

    Times from ``since`` on are the arrival times the pipeline stamps on events
    that carry none (or an absurd one): they differ between any two runs, so they
    read ``"arrival"`` (the windows they fall in are kept apart by their other columns).
    """
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            cols = [c for c in table.columns if c.name not in WALL_CLOCK]
            rows = conn.execute(sa.select(*cols)).all()
            out[table.name] = sorted(
                (
                    tuple("arrival" if isinstance(v, dt.datetime) and v >= since else v for v in r)
                    for r in rows
                ),
                key=repr,
            )
    return out


def _column(run: Run, name: str, table: sa.Table = schema.hot_symbols) -> list[Any]:
    cols = [c.name for c in table.columns if c.name not in WALL_CLOCK]
    return [r[cols.index(name)] for r in run.tables[table.name]]


def _canonicalizer(counters: Counter[str]) -> dict[str, int]:
    """The canonicalizer's counters but the ones that say which cache answered: ``cache_hits``, and
    whether a probed function's ID came from its cache or was looked up again (only their sum)."""
    out: dict[str, int] = {}
    for k, v in counters.items():
        if k == "events_function_cached" or k.startswith("events_function_resolved_"):
            k = "events_function_cached_or_resolved"
        if k != "cache_hits" and v:
            out[k] = out.get(k, 0) + v
    return out


def _counters(p: Pipeline) -> dict[str, Any]:
    a, pr, g = p.adapter_stats, p.privacy, p.gaps.stats
    fc = p.canonicalizer
    return {
        "processed": p.processed,
        "internal_errors": p.internal_errors,
        "latency_count": p.latency.count,
        "adapter": (
            dict(a.events),
            dict(a.unhandled),
            dict(a.malformed),
            dict(a.repaired),
            a.tetragon_export_dropped,
        ),
        "optout": p.optout.counts(),
        "privacy": (
            pr.events_seen,
            pr.events_filtered,
            pr.fields_redacted,
            pr.arguments_truncated,
            dict(pr.redactions_by_pattern),
        ),
        "canonicalizer": _canonicalizer(fc.counters) if fc else None,
        "gaps": (dict(g.throttles), dict(g.rate_limit_dropped), dict(g.gap_windows), dict(g.own_dropped)),
        "aggregator": (p.aggregator.observations, p.aggregator.below_threshold, p.aggregator.peak_keys),
        "attribution": dict(p.attribution.outcomes) if p.attribution else None,
    }


Step = Callable[[Pipeline, int], None]


def _run(
    tmp_path: Path,
    name: str,
    cfg: AgentConfig,
    items: list[bytes],
    *,
    json_lines: bool,
    fast: bool,
    batch: int = 64,
    drain_every: int = 0,
    node: str = "bench",
    before_batch: Step | None = None,
    **fast_kw: int,
) -> Run:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)  # the start of a window the run stamps
    pipe = Pipeline(cfg, node_name=node, fast_path=fast)
    if fast and fast_kw:
        assert pipe.fast_path is not None
        for k, v in fast_kw.items():
            setattr(pipe.fast_path, f"_{k}", v)
    url = f"sqlite:///{tmp_path}/{name}-{'fast' if fast else 'slow'}.db"
    store = open_store(url)
    proc = pipe.process_json if json_lines else pipe.process_proto
    try:
        for n, i in enumerate(range(0, len(items), batch)):
            if before_batch is not None:
                before_batch(pipe, n)
            proc([(x, time.monotonic_ns()) for x in items[i : i + batch]])
            if drain_every and (n + 1) % drain_every == 0:
                store.write(*pipe.drain())
        store.write(*pipe.drain())
        tables = _dump(store.engine, since)
    finally:
        store.close()
    return Run(tables, _counters(pipe), pipe)


def _both(tmp_path: Path, name: str, cfg: AgentConfig, items: list[bytes], **kw: Any) -> tuple[Run, Run]:
    # Events that carry no time are stamped with the wall clock as they arrive (agent/pipeline.py): both
    # runs read one frozen clock, so a minute boundary between or inside them cannot split their windows
    # differently (the test failed that way when the two runs straddled a minute).
    frozen = time.time_ns()
    with mock.patch.object(time, "time_ns", lambda: frozen):
        slow = _run(tmp_path, name, cfg, items, fast=False, **kw)
        fast = _run(tmp_path, name, cfg, items, fast=True, **kw)
    for name_ in slow.tables:  # the rows that differ, if any, are what the failure shows
        only_slow = [r for r in slow.tables[name_] if r not in fast.tables[name_]]
        only_fast = [r for r in fast.tables[name_] if r not in slow.tables[name_]]
        assert (name_, only_slow, only_fast) == (name_, [], [])
    assert fast.tables == slow.tables
    assert fast.counters == slow.counters
    assert sum(len(v) for v in slow.tables.values()) > 0
    return slow, fast


CFG = parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}})


# -- every fixture stream, both encodings --------------------------------------------------


@pytest.mark.parametrize("json_lines", [False, True], ids=["grpc", "json"])
def test_stream_a_cycled_across_windows_and_drains(tmp_path: Path, json_lines: bool) -> None:
    """stream-a twice, the second pass 70 s later (new windows), a drain every 10 batches."""
    base = _lines(STREAM_A)
    lines = [*base, *(_shifted(ln, 70 * S) for ln in base)]
    items = lines if json_lines else [_proto(ln) for ln in lines]
    slow, fast = _both(tmp_path, "stream-a", CFG, items, json_lines=json_lines, drain_every=10)
    st = fast.pipe.fast_path.stats  # type: ignore[union-attr]
    assert st.hits > len(base) // 2  # repeats within each pass and of the first pass
    assert slow.counters["processed"] == fast.counters["processed"] > len(base)
    # The window history holds two passes of uprobe counts, and they add up to the fixture's truth.
    truth = orjson.loads((FIXTURES / "synthetic" / "stream-a.expected.json").read_bytes())["uprobe_counts"]
    got = {
        f"{img}|{mod}|{fn}": n
        for img, mod, fn, ev, n in zip(
            *(_column(fast, c) for c in ("image_digest", "module", "function_name", "evidence_kind")),
            _column(fast, "invocation_count"),
            strict=True,
        )
        if ev == "invoked"
    }
    assert got == {k: 2 * v for k, v in truth.items()}


def test_stream_a_with_frames_resolved_against_this_machine(tmp_path: Path) -> None:
    """hostRoot / resolves libc frames here (a parse wait long enough that nothing stays pending)."""
    cfg = parse_config(
        {
            "hotSymbols": {"aggregationWindowSeconds": 60},
            "symbols": {"hostRoot": "/", "parseWaitMilliseconds": 60_000},
        }
    )
    items = [_proto(ln) for ln in _lines(STREAM_A) * 2]
    _, fast = _both(tmp_path, "resolved", cfg, items, json_lines=False, drain_every=20)
    assert fast.counters["canonicalizer"].get("resolved_dynsym", 0) > 0  # frames did resolve here


@pytest.mark.parametrize("json_lines", [False, True], ids=["grpc", "json"])
def test_upstream_events_repeated(tmp_path: Path, json_lines: bool) -> None:
    """Upstream Tetragon lines (throttles, events without time or node, kinds not counted), three times."""
    lines = _lines(UPSTREAM) * 3
    items = lines if json_lines else [_proto(ln) for ln in lines]
    _both(tmp_path, "upstream", CFG, items, json_lines=json_lines, batch=16, drain_every=3)


# -- hostile cases ----------------------------------------------------------------------------


def _kprobe(
    t_ns: int,
    *,
    exec_id: str = "ZXhlYy0x",
    pid: int = 4242,
    args: str = "--port 8080",
    labels: dict[str, str] | None = None,
    offsets: tuple[int, ...] = (0x1234, 0x5678),
    node: str = "node-a",
    module: str = "/usr/lib/libx.so",
    string_arg: str = "",
) -> events_pb2.GetEventsResponse:
    m = events_pb2.GetEventsResponse()
    k = m.process_kprobe
    p = k.process
    p.exec_id, p.binary, p.arguments = exec_id, "/app/web", args
    p.pid.value = pid
    p.pod.namespace, p.pod.name = "shop", "web-1"
    p.pod.container.id = CID
    p.pod.container.image.id = IMG
    p.pod.pod_labels.update(labels or {"app": "web"})
    k.function_name, k.policy_name = "__x64_sys_write", "stellaops-syscalls"
    if string_arg:
        k.args.add().string_arg = string_arg
    for off in offsets:
        f = k.user_stack_trace.add()
        f.module, f.offset, f.symbol = module, off, "hint"
    m.node_name = node
    m.time.FromNanoseconds(t_ns)
    return m


def _loader(
    t_ns: int,
    *,
    exec_id: str = "ZXhlYy0x",
    pid: int = 4242,
    build_id: bytes = b"\x42" * 20,
    node: str = "node-a",
) -> events_pb2.GetEventsResponse:
    m = events_pb2.GetEventsResponse()
    ld = m.process_loader
    ld.process.exec_id, ld.process.binary = exec_id, "/app/web"
    ld.process.pid.value = pid
    ld.process.pod.namespace, ld.process.pod.name = "shop", "web-1"
    ld.process.pod.container.id = CID
    ld.process.pod.container.image.id = IMG
    ld.path, ld.buildid = "/usr/lib/libx.so", build_id
    m.node_name = node
    m.time.FromNanoseconds(t_ns)
    return m


def _exit(
    t_ns: int, *, exec_id: str = "ZXhlYy0x", pid: int = 4242, node: str = "node-a"
) -> events_pb2.GetEventsResponse:
    m = events_pb2.GetEventsResponse()
    m.process_exit.process.exec_id = exec_id
    m.process_exit.process.pid.value = pid
    m.process_exit.process.pod.container.id = CID
    m.process_exit.process.pod.container.image.id = IMG
    m.node_name = node
    m.time.FromNanoseconds(t_ns)
    return m


def _encode(msgs: list[events_pb2.GetEventsResponse], json_lines: bool) -> list[bytes]:
    return [_json(m) for m in msgs] if json_lines else [m.SerializeToString() for m in msgs]


@pytest.mark.parametrize("json_lines", [False, True], ids=["grpc", "json"])
def test_same_process_with_and_without_a_secret(tmp_path: Path, json_lines: bool) -> None:
    """One exec id whose arguments gain a secret: never a repeat of the innocent events, always redacted."""
    msgs = []
    for i in range(40):
        args = f"--password={SECRET} --port 8080" if i % 3 == 1 else "--port 8080"
        value = f"Authorization: Bearer {SECRET}{SECRET}" if i % 5 == 2 else "GET /"
        msgs.append(_kprobe(T0 + i * S // 10, args=args, string_arg=value))
    _, fast = _both(tmp_path, "secret", CFG, _encode(msgs, json_lines), json_lines=json_lines, batch=8)
    assert SECRET not in repr(fast.tables)
    assert fast.counters["privacy"][2] > 0  # fields redacted, on repeats too
    assert fast.pipe.fast_path.stats.hits > 20  # type: ignore[union-attr]


@pytest.mark.parametrize("json_lines", [False, True], ids=["grpc", "json"])
def test_opted_out_pod_repeats_are_counted_and_never_stored(tmp_path: Path, json_lines: bool) -> None:
    off = {"app": "web", "stellaops.io/observe-off": "true"}
    msgs = [_kprobe(T0 + i * S, labels=off if i % 2 else None) for i in range(30)]
    _, fast = _both(tmp_path, "optout", CFG, _encode(msgs, json_lines), json_lines=json_lines, batch=4)
    assert fast.counters["optout"]["label"] == 15
    assert fast.pipe.fast_path.stats.hits >= 20  # type: ignore[union-attr]


@pytest.mark.parametrize("json_lines", [False, True], ids=["grpc", "json"])
def test_loader_exit_and_late_events_of_the_process(tmp_path: Path, json_lines: bool) -> None:
    """Build-ids from a loader, then the process's exit, then the same events again: recomputed each time."""
    msgs = [_kprobe(T0)]
    msgs += [_loader(T0 + S)] + [_kprobe(T0 + (2 + i) * S) for i in range(5)]
    msgs += [_exit(T0 + 8 * S)] + [_kprobe(T0 + (9 + i) * S) for i in range(5)]
    msgs += [_loader(T0 + 15 * S)] + [_kprobe(T0 + (16 + i) * S) for i in range(5)]
    msgs += [_loader(T0 + 22 * S, build_id=b"\x43" * 20)] + [_kprobe(T0 + (23 + i) * S) for i in range(5)]
    _, fast = _both(tmp_path, "exit", CFG, _encode(msgs, json_lines), json_lines=json_lines, batch=3)
    st = fast.pipe.fast_path.stats  # type: ignore[union-attr]
    assert st.hits > 0 and st.stale > 0
    # Each loader and the exit changed what the process's frames resolve to: recomputed, not replayed.
    assert st.stale >= 3


def test_container_snapshots_fill_events_and_invalidate_outcomes(tmp_path: Path) -> None:
    """Events without image or pod, filled from the lifecycle registry; a new snapshot every third batch."""
    msgs = []
    for i in range(40):
        m = _kprobe(T0 + i * S)
        m.process_kprobe.process.ClearField("pod")
        m.process_kprobe.process.docker = "a" * 31
        msgs.append(m)
    record = ContainerRecord(
        container_id="a" * 64, namespace="k8s.io", image_ref="registry.example.com/shop/web:1",
        image_digest="sha256:" + "c" * 64, status="running", pid=PID, cgroup_id=77,
        labels={POD_NAMESPACE_LABEL: "shop", POD_NAME_LABEL: "web-1"},
    )  # fmt: skip
    stats: dict[bool, EnrichStats] = {}

    def swap(pipe: Pipeline, n: int) -> None:
        if n % 3 == 0:  # the observer replaces the snapshot after every change
            st = stats.setdefault(pipe.fast_path is not None, EnrichStats())
            pipe.container_lookup = ContainerLookup([record], "containerd", stats=st)

    _, fast = _both(
        tmp_path, "lookup", CFG, _encode(msgs, False), json_lines=False, batch=4, before_batch=swap
    )
    assert stats[True] == stats[False] and stats[True].events == 40
    assert set(_column(fast, "image_digest")) == {"sha256:" + "c" * 64}
    st = fast.pipe.fast_path.stats  # type: ignore[union-attr]
    assert st.stale > 0 and st.hits > 0


@pytest.mark.parametrize("bound", [{"max_entries": 3}, {"max_key_bytes": 1200}], ids=["entries", "bytes"])
@pytest.mark.parametrize("json_lines", [False, True], ids=["grpc", "json"])
def test_a_tiny_bound_evicts_and_counts(tmp_path: Path, json_lines: bool, bound: dict[str, int]) -> None:
    msgs = [_kprobe(T0 + i * S, offsets=(0x1000 + i % 7,)) for i in range(70)]
    _, fast = _both(
        tmp_path, "bound", CFG, _encode(msgs, json_lines), json_lines=json_lines, batch=5, **bound
    )
    fp = fast.pipe.fast_path
    assert fp is not None and fp.stats.evictions > 0
    assert len(fp) <= 3 if "max_entries" in bound else fp._key_bytes <= 1200


def test_invalidate_recomputes_every_outcome_and_keeps_following_processes(tmp_path: Path) -> None:
    """What the opt-out list's reload calls: outcomes are recomputed, the exit of a process still counts."""
    msgs = [_loader(T0), *(_kprobe(T0 + (1 + i) * S) for i in range(8)), _exit(T0 + 10 * S)]
    msgs += [_kprobe(T0 + (11 + i) * S) for i in range(4)]

    def reload(pipe: Pipeline, n: int) -> None:
        if pipe.fast_path is not None and n == 2:
            pipe.fast_path.invalidate()

    _, fast = _both(
        tmp_path, "invalidate", CFG, _encode(msgs, False), json_lines=False, batch=2, before_batch=reload
    )
    st = fast.pipe.fast_path.stats  # type: ignore[union-attr]
    assert st.stale >= 2 and st.hits > 0


def test_the_defaults_documented() -> None:
    """docs/benchmarks.md: at most 4,096 outcomes and 4 MiB of keys; 4,096 events skipped at first,
    doubling while nothing repeats up to 65,536."""
    fp = Pipeline(CFG).fast_path
    assert fp is not None and (fp._max_entries, fp._max_key_bytes, SKIP, MAX_SKIP) == (
        4096,
        4 << 20,
        4096,
        65536,
    )


def test_the_skip_doubles_while_nothing_repeats_and_starts_over_on_repeats() -> None:
    fp = Pipeline(CFG).fast_path
    assert fp is not None
    skips = []
    for _ in range(7):  # samples of first sights only: stacks that never repeat
        for _ in range(SAMPLE):
            fp._sample(True)
        skips.append(fp._skip)
        fp._skip = 0  # as if the skipped events went by
    assert skips == [SKIP, 2 * SKIP, 4 * SKIP, 8 * SKIP, 16 * SKIP, MAX_SKIP, MAX_SKIP]
    for _ in range(SAMPLE):  # a sample of repeats (seen before): no skip, and the next one is SKIP again
        fp._sample(False)
    assert fp._skip == 0
    for _ in range(SAMPLE):
        fp._sample(True)
    assert fp._skip == SKIP
    assert fp.stats.skipped == 0  # counted as events are skipped, not when a skip is decided


def test_an_outcome_is_kept_from_the_third_sight(tmp_path: Path) -> None:
    msgs = [_kprobe(T0 + i * S) for i in range(5)]
    stored = []

    def seen(pipe: Pipeline, n: int) -> None:
        if pipe.fast_path is not None:
            stored.append((pipe.fast_path.stats.stored, pipe.fast_path.stats.hits))

    _both(tmp_path, "third", CFG, _encode(msgs, False), json_lines=False, batch=1, before_batch=seen)
    assert stored == [(0, 0), (0, 0), (0, 0), (1, 0), (1, 1)]  # before each of the five events


def test_a_live_process_whose_file_cannot_be_read_is_never_remembered(tmp_path: Path) -> None:
    """A process of this node whose library is not in its root: that may change while it lives."""
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    proc = tmp_path / "proc"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "root").symlink_to(root)
    (proc / str(PID) / "maps").write_text("")
    cfg = parse_config(
        {
            "hotSymbols": {"aggregationWindowSeconds": 60},
            "symbols": {"procRoot": str(proc)},
            "attribution": {"enabled": False},
        }
    )
    msgs = [_kprobe(T0 + i * S) for i in range(8)]
    _, fast = _both(tmp_path, "live", cfg, _encode(msgs, False), json_lines=False, batch=2, node="node-a")
    st = fast.pipe.fast_path.stats  # type: ignore[union-attr]
    assert st.not_kept.get("live_process", 0) > 0 and st.hits == 0


@pytest.mark.parametrize("json_lines", [False, True], ids=["grpc", "json"])
def test_hostile_messages_between_repeats(tmp_path: Path, json_lines: bool) -> None:
    """Truncated, doubled-time, time-less, far-future, too old and garbage messages among repeats."""
    good = _kprobe(T0)
    items: list[bytes] = []
    for i in range(12):
        m = _kprobe(T0 + i * S)
        raw = _json(m) if json_lines else m.SerializeToString()
        items.append(raw)
        items.append(raw[: len(raw) // 2])  # cut short
        items.append(b"\x00\xff garbage")
        # far ahead, negative, 1 ns, a boot-relative time (1970-01-31): all clamped (validate.MIN_EVENT_NS)
        future = _kprobe((T0 + 10**9 * S, -5 * S, 1, 30 * 86_400 * S)[i % 4])
        items.append(_json(future) if json_lines else future.SerializeToString())
        timeless = events_pb2.GetEventsResponse()
        timeless.CopyFrom(good)
        timeless.ClearField("time")
        items.append(_json(timeless) if json_lines else timeless.SerializeToString())
        if not json_lines:
            items.append(raw + good.SerializeToString()[-14:])  # the time field twice: protobuf merges
        else:
            items.append(raw.replace(b'"node_name"', b'"time":"2026-11-24T09:00:00Z","node_name"'))
    _, fast = _both(tmp_path, "hostile", CFG, items, json_lines=json_lines, batch=7)
    assert fast.counters["adapter"][2]  # the malformed ones were counted (and equally so)
    st = fast.pipe.fast_path.stats  # type: ignore[union-attr]
    assert {"no_key", "time"} <= set(st.not_kept) and st.hits > 0  # no time, or a clamped one: not kept


def test_a_stream_that_never_repeats_skips_its_keys_and_still_follows_loaders(tmp_path: Path) -> None:
    """Settled repeats, then stacks that never repeat (the keys are skipped), a loader among them,
    then the first repeats again: recomputed with the loader's build-id, as the ordinary path does."""
    a = [_kprobe(T0 + i * S // 100) for i in range(4)]
    unique = [_kprobe(T0 + S, offsets=(0x10000 + i, 0x20000)) for i in range(SAMPLE + SKIP + 100)]
    later = [_kprobe(T0 + 2 * S + i) for i in range(4)]
    msgs = [*a, *unique[:600], _loader(T0 + S), *unique[600:], *later]
    _, fast = _both(tmp_path, "unique", CFG, _encode(msgs, False), json_lines=False, batch=64)
    st = fast.pipe.fast_path.stats  # type: ignore[union-attr]
    assert st.skipped > 0 and st.stale > 0
    assert st.skipped <= st.misses and st.hits + st.misses == len(msgs)  # skipped: events that went by
    assert (b"\x42" * 20).hex() in set(_column(fast, "build_id"))


# -- a frame whose file is still being parsed ---------------------------------------------------

BID = b"\x42" * 20
PID = 4242


def test_parse_pending_frames_are_not_remembered(tmp_path: Path) -> None:
    """A local process's frames stay parse_pending while the worker is busy, then resolve, fast or not."""
    root = tmp_path / "root"
    offsets = eb.write(root / "usr/lib/libx.so", eb.Elf(build_id=BID, functions=["alpha", "beta"]))
    proc = tmp_path / "proc"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "root").symlink_to(root)
    (proc / str(PID) / "maps").write_text("")
    cfg = parse_config(
        {
            "hotSymbols": {"aggregationWindowSeconds": 60},
            "symbols": {"procRoot": str(proc), "parseWaitMilliseconds": 20},
            "attribution": {"enabled": False},
        }
    )
    stack = (offsets["beta"] + 3, offsets["alpha"] + 1)
    msgs = [_loader(T0)] + [_kprobe(T0 + (1 + i) * S, offsets=stack) for i in range(30)]
    items = _encode(msgs, False)
    release: dict[str, threading.Event] = {}

    def occupy(pipe: Pipeline, n: int) -> None:
        w = pipe.canonicalizer.gate  # type: ignore[union-attr]
        assert isinstance(w, ParseWorker)
        if n == 0:  # the worker is busy with a job the test holds: the file's parse waits behind it
            wait, w.wait_seconds = w.wait_seconds, 0.01
            release["e"] = threading.Event()
            try:
                w.run("test-blocker", lambda: release["e"].wait(30))
            except ParsePending:
                pass
            finally:
                w.wait_seconds = wait
        if n == 4:
            release["e"].set()
            deadline = time.monotonic() + 30
            while w.in_flight:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            # From here on every batch waits for what it needs: a symbol source read lazily at its
            # first lookup is a job of its own, and a loaded machine ran past the 20 ms wait in one
            # run and not in the other (a CI failure: the runs' parse_pending counts differed).
            w.wait_seconds = 60

    slow, fast = _both(
        tmp_path, "pending", cfg, items, json_lines=False, batch=3, node="node-a", before_batch=occupy
    )
    assert slow.counters["canonicalizer"].get("parse_pending", 0) > 0
    assert fast.pipe.fast_path.stats.not_kept.get("parse_pending", 0) > 0  # type: ignore[union-attr]
    assert fast.pipe.fast_path.stats.hits > 10  # type: ignore[union-attr]
    assert {"alpha", "beta"} <= set(
        _column(fast, "function_name")
    )  # resolved once the parse finished, on the fast path too


def test_the_agent_config_switches_the_fast_path(tmp_path) -> None:
    """``hotSymbols.fastPath`` (default true) decides whether the agent's pipeline has a fast path."""
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config

    store = {"store": {"url": f"sqlite:///{tmp_path}/x.db"}}
    on = Agent(parse_config(store), node_name="n")
    off = Agent(parse_config({**store, "hotSymbols": {"fastPath": False}}), node_name="n")
    try:
        assert on.pipeline.fast_path is not None and off.pipeline.fast_path is None
    finally:
        for a in (on, off):
            a._worker.shutdown(wait=False)
