"""A load whose attach step raises (BCC's bare Exception) is a load failure, reported and retried.

BCC raises a bare ``Exception`` when, after the program compiled, the output
buffer cannot be opened (a perf buffer per CPU needs file descriptors and
locked memory) or an attach fails in a way the probe modules do not catch.
Before, that exception left ``NativeProbeSource.run``: the agent's BCC source
ended for good, with the switch still on it, and was never tried again. A
stand-in for BCC (the compile succeeds, opening the buffer fails) drives the
real loader and source.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stellaops_runtime.native import loader
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue


class _Map:
    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def open_ring_buffer(self, cb: Any) -> None:
        raise Exception("Could not open ring buffer")  # BCC's own form: a bare Exception

    def open_perf_buffer(self, cb: Any, page_cnt: int = 8, lost_cb: Any = None) -> None:
        raise Exception("Could not open perf buffer")


class _BPF:
    closed = 0

    def __init__(self, text: bytes) -> None:
        self.funcs: dict[str, Any] = {}

    def __getitem__(self, name: bytes) -> _Map:
        return _Map()

    def cleanup(self) -> None:
        _BPF.closed += 1


class _BCC:
    BPF = _BPF


@pytest.mark.parametrize("ring_buffer", [True, False], ids=["ring-buffer", "perf-buffer"])
def test_a_buffer_that_cannot_be_opened_is_a_load_error_and_the_source_retries(
    monkeypatch: pytest.MonkeyPatch, ring_buffer: bool
) -> None:
    monkeypatch.setattr(loader, "load_bcc", lambda: (_BCC, ""))
    _BPF.closed = 0
    cfg = NativeConfig(exec_events=False)
    with pytest.raises(loader.LoadError, match="the probes could not be attached: Exception: Could not open"):
        loader.load(cfg, kernel_source="", ring_buffer=ring_buffer)
    assert _BPF.closed == 1  # what was loaded is released

    async def scenario() -> tuple[NativeProbeSource, asyncio.Task[None]]:
        src = NativeProbeSource(cfg, queue=EventQueue(10), kernel_source="", ring_buffer=ring_buffer,
                                retry_seconds=0.05)  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        for _ in range(400):  # tried again after retry_seconds, not ended
            if src.stats.connect_failures >= 2 or task.done():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        return src, task

    src, task = asyncio.run(scenario())
    assert task.exception() is None
    assert src.stats.connect_failures >= 2 and src.stats.connects == 0
    assert "Could not open" in src.stats.last_error
