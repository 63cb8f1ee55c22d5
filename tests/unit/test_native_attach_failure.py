"""The BCC source survives what goes wrong around the probes, and loses no record at its stop.

- A load whose attach step raises (BCC's bare ``Exception``: the ring or perf
  buffer cannot be opened for want of file descriptors or locked memory) is a
  load failure, reported and tried again; before, the exception left
  ``NativeProbeSource.run`` and the agent's BCC source was gone until Tetragon
  answered again.
- An error while the probes run closes them and loads them again; the switch
  marks the time they were detached as a gap (before: ``run`` ended, no gap).
- Records written after the reader's last poll are queued by the last read
  of the counters (before, that read polled and threw them away).

Stand-ins for BCC drive the real loader, source and switch.
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


# -- an error while the probes run ------------------------------------------------------------


class _GoodMap(_Map):
    def open_ring_buffer(self, cb: Any) -> None:
        pass

    def __getitem__(self, key: Any) -> list[int]:
        return [0]  # a per-CPU counter


class _GoodBPF(_BPF):
    polls = 0

    def __getitem__(self, name: bytes) -> _GoodMap:  # type: ignore[override]
        return _GoodMap()

    def ring_buffer_poll(self, timeout_ms: int) -> None:
        _GoodBPF.polls += 1


class _GoodBCC:
    BPF = _GoodBPF


def test_an_error_while_the_probes_run_closes_them_and_loads_them_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, any exception in the reader ended ``run``: the node unwatched until Tetragon came back,
    with no gap (the switch still said bcc)."""
    monkeypatch.setattr(loader, "load_bcc", lambda: (_GoodBCC, ""))
    _BPF.closed = 0
    real = NativeProbeSource._poll_batch
    boom = [True]

    def flaky(self: NativeProbeSource, timeout_ms: int, probes: Any = None) -> list[bytes]:
        if boom[0] and probes is None:
            boom[0] = False
            raise RuntimeError("a bug in the reader")
        return real(self, timeout_ms, probes)

    monkeypatch.setattr(NativeProbeSource, "_poll_batch", flaky)

    async def scenario() -> tuple[NativeProbeSource, asyncio.Task[None]]:
        src = NativeProbeSource(NativeConfig(exec_events=False), queue=EventQueue(10), kernel_source="",
                                retry_seconds=0.05)  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        for _ in range(400):
            if (src.stats.connects >= 2 and src.stats.connected) or task.done():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        return src, task

    with caplog.at_level("ERROR"):
        src, task = asyncio.run(scenario())
    assert task.exception() is None
    assert src.stats.connects == 2 and src.stats.reconnects == 1  # loaded again
    assert _BPF.closed == 2  # the failed run's probes were closed, then the second's at the stop
    assert src.stats.last_error == "the probes' reader failed: RuntimeError: a bug in the reader"
    assert "native probes stopped after an unexpected error" in caplog.text


async def test_the_switch_marks_probes_detached_on_their_own_as_a_gap() -> None:
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch import BCC, SourceSwitch
    from stellaops_runtime.contracts.config import parse_config

    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})

    async def in_thread(fn: Any, *args: Any) -> Any:
        return fn(*args)

    sw = SourceSwitch(cfg, queue=EventQueue(10), pipeline=Pipeline(cfg, node_name="n"), in_pipeline=in_thread)
    sw.bcc = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    sw.mode = BCC
    sw._reload_check_at = sw._next_check = float("inf")  # no reload, no Tetragon check in this tick
    sw.bcc.stats.connected, sw.bcc.stats.attached_ns = True, 1_000
    await sw._tick_bcc(0.0)
    assert sw._gap_from is None  # attached: nothing to mark
    sw.bcc.stats.connected, sw.bcc.stats.detached_ns = False, 5_000  # the reader failed
    await sw._tick_bcc(0.0)
    assert sw._gap_from == 5_000
    sw.bcc.stats.connected, sw.bcc.stats.attached_ns, sw.bcc.stats.detached_ns = True, 9_000, 0
    await sw._tick_bcc(0.0)
    assert sw._gap_from is None  # loaded again: the gap closed at the attach


class _TailMap(_GoodMap):
    callback: Any = None

    def open_ring_buffer(self, cb: Any) -> None:
        _TailMap.callback = cb


class _TailBPF(_GoodBPF):
    after_stop: list[int] = []  # polls made since the test set its stop (one entry each)
    stopping = False

    def __getitem__(self, name: bytes) -> _TailMap:  # type: ignore[override]
        return _TailMap()

    def ring_buffer_poll(self, timeout_ms: int) -> None:
        if _TailBPF.stopping:
            _TailBPF.after_stop.append(timeout_ms)
            if len(_TailBPF.after_stop) == 2:  # written after the reader's last poll, before the close
                import ctypes

                data = ctypes.create_string_buffer(b"late-record")
                _TailMap.callback(None, ctypes.addressof(data), 11)


class _TailBCC:
    BPF = _TailBPF


def test_records_written_after_the_readers_last_poll_are_queued_not_thrown_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last read of the counters polled the buffer once more and dropped what it got: records the
    kernel counted as emitted that no count ever held."""
    monkeypatch.setattr(loader, "load_bcc", lambda: (_TailBCC, ""))
    _TailBPF.stopping, _TailBPF.after_stop = False, []
    queue = EventQueue(10)

    async def scenario() -> NativeProbeSource:
        src = NativeProbeSource(NativeConfig(exec_events=False), queue=queue, kernel_source="")
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await asyncio.wait_for(src.ready.wait(), 10)
        _TailBPF.stopping = True
        stop.set()
        await asyncio.wait_for(task, 10)
        return src

    src = asyncio.run(scenario())
    assert len(_TailBPF.after_stop) >= 2
    assert [p for p, _ in queue.take(10)] == [b"late-record"]
    assert src.stats.received == 1
