"""``Symbolizer.resolve_file_many`` pauses the cyclic garbage collector for its batch (issue 12).

What a user of the batch (``stella-runtime symbolize --file FILE OFFSET...``)
would notice: the same answers as one ``resolve_file`` per offset (checked in
tests/integration/test_symbolize_warm.py), no collection while the batch runs
even when the collector's thresholds would start one every few allocations,
and the collector's state as it was before the batch afterwards: on when it
was on, off when the caller had turned it off, on again when the batch
raises. Real file: this machine's libstdc++ (and runc's lazily loaded
``.gopclntab``: a lazy source read during the batch).
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.canonical.symbolizer import Symbolizer

LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
RUNC = "/usr/sbin/runc"


def _offsets(path: str, n: int) -> list[int]:
    probe = Symbolizer(file_lines=False)
    try:
        b = probe.binary(path)
        t = max(b.load_all(), key=len)
        rng = random.Random(12)
        out: list[int] = []
        while len(out) < n:
            i = rng.randrange(len(t))
            off = b.layout.offset_of(t.starts[i] + rng.randrange(max(1, t.ends[i] - t.starts[i])))
            if off is not None:
                out.append(off)
        return out
    finally:
        probe.close()


@pytest.fixture
def eager_collector() -> Iterator[list[int]]:
    """Thresholds that start a young collection every 10 allocations; yields the generations
    collected since (appended by a gc callback)."""
    collected: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    old = gc.get_threshold()
    was_on = gc.isenabled()
    gc.enable()
    gc.set_threshold(10, 10, 10)
    gc.callbacks.append(note)
    try:
        yield collected
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*old)
        if not was_on:
            gc.disable()


@pytest.mark.parametrize("path", [LIBSTDCXX, RUNC])
def test_no_collection_during_a_batch(path: str, eager_collector: list[int]) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} not installed")
    offsets = _offsets(path, 3000)
    sym = Symbolizer(file_lines=False)
    gc.collect()  # the counts start at zero: a collection due before the call would start in it
    eager_collector.clear()
    answers = sym.resolve_file_many(path, offsets)
    during = len(eager_collector)  # read before anything allocates: the collector is back on
    assert during == 0, f"{during} collections ran during the batch"
    assert gc.isenabled()
    assert sum(r.resolved for r in answers) == len(offsets)
    # the same offsets one call at a time: the collector runs between calls as it always did
    sym2 = Symbolizer(file_lines=False)
    one = [sym2.resolve_file(path, o) for o in offsets]
    assert eager_collector, "the thresholds did not start any collection: the test proves nothing"
    assert [r.to_json() for r in one] == [r.to_json() for r in answers]
    sym.close()
    sym2.close()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    if not Path(LIBSTDCXX).exists():
        pytest.skip(f"{LIBSTDCXX} not installed")
    offsets = _offsets(LIBSTDCXX, 50)
    sym = Symbolizer(file_lines=False)
    gc.disable()
    try:
        assert len(sym.resolve_file_many(LIBSTDCXX, offsets)) == len(offsets)
        assert not gc.isenabled()
    finally:
        gc.enable()
    sym.close()


def test_the_collector_is_back_on_when_a_batch_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path(LIBSTDCXX).exists():
        pytest.skip(f"{LIBSTDCXX} not installed")
    sym = Symbolizer(file_lines=False)

    def broken(*args: object, **kwargs: object) -> None:
        assert not gc.isenabled()  # paused while the batch runs
        raise RuntimeError("a lookup failed")

    monkeypatch.setattr(sym, "resolve_file", broken)
    with pytest.raises(RuntimeError):
        sym.resolve_file_many(LIBSTDCXX, [0x1000, 0x2000])
    assert gc.isenabled()
    # a single offset is one call: nothing to pause for
    calls: list[bool] = []

    def note(*args: object, **kwargs: object) -> str:
        calls.append(gc.isenabled())
        return "answer"

    monkeypatch.setattr(sym, "resolve_file", note)
    assert sym.resolve_file_many(LIBSTDCXX, [0x1000]) == ["answer"]
    assert calls == [True]
    sym.close()
