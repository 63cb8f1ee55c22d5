"""agent/fastpath.py: what the fast path remembers under a key replays only for that key's encoding.

A gRPC payload's key is the serialized message without its time field, an
export line's key the line without its time's value (adapter/rawkey.py):
both are bytes. When both lived in one table, a payload whose key bytes were
an export line's key (or the other way round) replayed the other encoding's
outcome, counted as an event it is not. Tetragon itself cannot send such a
pair (it writes the node name last, and an export line starts with ``{``,
which no well-formed protobuf field starts with), but whoever feeds the
pipeline bytes can: here a node name ending like an export line's time.

Also: the table's key bytes are counted exactly (a key seen a second time
used to be counted twice, until every store evicted everything else).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from stellaops_runtime.adapter import rawkey
from stellaops_runtime.agent.fastpath import FastPath
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.wire.tetragon import events_pb2

S = 1_000_000_000
T0 = 1_795_000_000 * S  # 2026-11-19T...
CFG = parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}})
# The end of an export line whose time's value was taken out: a JSON line's key ends so.
NODE = 'node-a,"time":""}'


def _payload(t_ns: int, *, node: str = NODE, exec_id: str = "ZXhlYy0x", offset: int = 0x1234) -> bytes:
    m = events_pb2.GetEventsResponse()
    k = m.process_kprobe
    k.process.exec_id, k.process.binary = exec_id, "/app/web"
    k.process.pid.value = 4242
    k.function_name, k.policy_name = "__x64_sys_write", "stellaops-syscalls"
    f = k.user_stack_trace.add()
    f.module, f.offset = "/usr/lib/libx.so", offset
    m.node_name = node
    m.time.FromNanoseconds(t_ns)
    return m.SerializeToString()


def _colliding_line() -> tuple[bytes, bytes]:
    """A gRPC payload and an "export line" whose keys are the same bytes."""
    payload = _payload(T0)
    got = rawkey.proto_key(payload)
    assert got is not None
    key = got[0]
    assert key.endswith(b',"time":""}')
    line = key[:-2] + b"2026-11-19T10:00:00Z" + key[-2:]  # the time's value between the quotes
    split = rawkey.json_key(line)
    assert split is not None and split[0] == key  # the same key bytes in the two encodings
    return payload, line


def _counters(p: Pipeline) -> dict[str, Any]:
    a = p.adapter_stats
    return {
        "processed": p.processed,
        "internal_errors": p.internal_errors,
        "adapter": (dict(a.events), dict(a.unhandled), dict(a.malformed), dict(a.repaired)),
        "privacy": (p.privacy.events_seen, p.privacy.events_filtered),
        "aggregator": p.aggregator.observations,
    }


def _feed(fast: bool) -> tuple[Pipeline, list[dict[str, Any]]]:
    """Five repeats of the payload (an outcome kept from the third), then the line, then the payload."""
    _, line = _colliding_line()
    pipe = Pipeline(CFG, node_name="n", fast_path=fast)
    seen = []
    for i in range(5):
        pipe.process_proto([(_payload(T0 + i * S), 1)])
    seen.append(_counters(pipe))
    pipe.process_json([(line, 1)])
    seen.append(_counters(pipe))
    pipe.process_proto([(_payload(T0 + 9 * S), 1)])
    seen.append(_counters(pipe))
    return pipe, seen


def test_a_line_with_a_payloads_key_bytes_is_no_repeat_of_it() -> None:
    fast, with_fast_path = _feed(True)
    _, without = _feed(False)
    assert fast.fast_path is not None and fast.fast_path.stats.hits >= 2  # the payload's outcome was kept
    # The line is no event (not JSON): counted malformed, as without the fast path, never as the payload.
    assert with_fast_path == without
    assert with_fast_path[1]["processed"] == with_fast_path[0]["processed"]
    assert sum(with_fast_path[1]["adapter"][2].values()) == sum(with_fast_path[0]["adapter"][2].values()) + 1


def test_a_payloads_outcome_outlives_a_line_with_its_key_bytes() -> None:
    """The line neither replays nor replaces the payload's outcome: the next payload is its repeat."""
    _, line = _colliding_line()
    pipe = Pipeline(CFG, node_name="n")
    fp = pipe.fast_path
    assert fp is not None
    for i in range(3):
        pipe.process_proto([(_payload(T0 + i * S), 1)])
    assert len(fp) == 1
    pipe.process_json([(line, 1)])  # not JSON: the ordinary path refuses it, nothing is kept for it
    assert len(fp) == 1 and fp.stats.hits == 0
    pipe.process_proto([(_payload(T0 + 5 * S), 1)])
    assert fp.stats.hits == 1  # the payload's own outcome, still there


def _key_bytes(fp: FastPath) -> int:
    return fp._key_bytes


def test_key_bytes_are_counted_once_per_key_and_the_bound_keeps_what_fits() -> None:
    """40 keys seen twice each, then two keys alternating: the bound holds ~10 keys, so both are kept."""
    size = len(_payload(T0, offset=0x1000, node="node-a")) + 16
    pipe = Pipeline(CFG, node_name="n")
    fp = pipe.fast_path
    assert fp is not None
    fp._max_key_bytes = 10 * size
    t = T0
    for i in range(40):
        for _ in range(2):
            t += S
            pipe.process_proto([(_payload(t, offset=0x1000 + i, node="node-a"), 1)])
    assert _key_bytes(fp) <= fp._max_key_bytes
    for _ in range(6):
        for off in (0x2000, 0x2001):
            t += S
            pipe.process_proto([(_payload(t, offset=off, node="node-a"), 1)])
    assert fp.stats.hits > 0
    assert Counter(fp.stats.not_kept).get("too_large", 0) == 0
