"""Unsigned 64-bit fields of an export line: protojson's range and forms, or the event is ``bad_type``.

Probe s31/h7 (a structural fuzz of stream-a's lines, one field replaced by a hostile value):
``int(e.get("offset") or 0)`` let a negative stack frame offset through every check, and the
canonicalizer raised on it, so the event was lost as ``internal_ValueError`` (no clear reason);
a fraction was cut silently (1.5 read as 1), ``true`` read as 1, and an offset past 2**64 (no
Tetragon event holds one) became a function ID. Tetragon writes these fields as protojson
uint64: a number or a string of digits, 0 .. 2**64 - 1.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from stellaops_runtime.adapter import common, from_json
from stellaops_runtime.agent.pipeline import Pipeline
from tests.integration.test_adapter_golden import _config

STREAM = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon" / "synthetic" / "stream-a.jsonl.gz"


def _kprobe_with_user_stack() -> dict:
    with gzip.open(STREAM) as f:
        for line in f:
            o = json.loads(line)
            if (o.get("process_kprobe") or {}).get("user_stack_trace"):
                return o
    raise AssertionError("no kprobe with a user stack in stream-a")


def _uprobe() -> dict:
    with gzip.open(STREAM) as f:
        for line in f:
            o = json.loads(line)
            if "process_uprobe" in o:
                return o
    raise AssertionError("no uprobe in stream-a")


BAD = [-1, -(2**63) - 1, 2**64, 2**200, 1.5, True, "-1", "0x1f", " 12", "1e3", [], {}]
GOOD = [(0, 0), (2**64 - 1, 2**64 - 1), ("4096", 4096), (4096.0, 4096), (None, 0), ("", 0)]


def _adapt(obj: dict) -> tuple[object, common.AdapterStats]:
    stats = common.AdapterStats()
    return from_json.adapt(obj, received_ns=5, stats=stats), stats


@pytest.mark.parametrize("value", BAD, ids=repr)
@pytest.mark.parametrize("where", ["user_offset", "user_address", "kernel_offset", "uprobe_offset"])
def test_a_value_no_uint64_holds_rejects_the_event_as_bad_type(value: object, where: str) -> None:
    if where == "uprobe_offset":
        obj = _uprobe()
        obj["process_uprobe"]["offset"] = value
    else:
        obj = _kprobe_with_user_stack()
        body = obj["process_kprobe"]
        stack = (
            body["user_stack_trace"]
            if where.startswith("user")
            else body.setdefault("kernel_stack_trace", [{"symbol": "do_sys_open", "offset": "12"}])
        )
        stack[-1]["address" if where.endswith("address") else "offset"] = value
    ev, stats = _adapt(obj)
    assert ev is None and stats.malformed == {"bad_type": 1}


@pytest.mark.parametrize(("value", "want"), GOOD, ids=repr)
def test_protojson_forms_of_a_uint64_are_read(value: object, want: int) -> None:
    obj = _kprobe_with_user_stack()
    obj["process_kprobe"]["user_stack_trace"][-1]["offset"] = value
    ev, stats = _adapt(obj)
    assert ev is not None and not stats.malformed
    assert ev.user_stack[-1].offset == want  # type: ignore[attr-defined]


def _run(tmp_path: Path, lines: list[bytes]) -> Pipeline:
    pipe = Pipeline(_config(tmp_path), node_name="n", fast_path=False)
    pipe.process_json([(line, time.monotonic_ns()) for line in lines])
    return pipe


def test_through_the_pipeline_a_negative_offset_is_a_clear_reject_and_its_neighbours_count(
    tmp_path: Path,
) -> None:
    with gzip.open(STREAM) as f:
        lines = [line.rstrip(b"\n") for line in f]

    def crypto_second(o: dict) -> bool:
        st = (o.get("process_kprobe") or {}).get("user_stack_trace") or []
        return len(st) > 1 and st[1].get("module", "").endswith("/libcrypto.so.3")

    # A kprobe line after its process's loader events; its second frame is in libcrypto.so.3.
    i = next(n for n in range(300, len(lines)) if crypto_second(json.loads(lines[n])))
    lines = lines[: i + 100]
    bad = json.loads(lines[i])
    bad["process_kprobe"]["user_stack_trace"][1]["offset"] = -9223372036854775809
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    want = _run(tmp_path / "a", lines)
    pipe = _run(tmp_path / "b", [*lines[:i], json.dumps(bad).encode(), *lines[i:]])
    assert dict(pipe.adapter_stats.malformed) == {"bad_type": 1}  # was internal_ValueError
    assert pipe.processed == want.processed == len(lines)
    assert pipe.adapter_stats.events == want.adapter_stats.events
