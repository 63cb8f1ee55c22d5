"""The BCC source's error texts go through the message redaction (contracts/redact.py).

A load failure's message (BCC's compiler output, a path, whatever the loader
quotes) and the message and traceback of an exception in the probes' reader
reach ``stats.last_error`` (read by the source switch, the agent's
"never reachable" message, the PURL targets' marks, ``stella-runtime
probes``) and the agent's log. Before, both were copied as they were: a
secret quoted by an exception (``password=...``, a DSN's ``user:pass@``) was
kept there and logged with its traceback.

Stand-ins for BCC drive the real loader and source.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stellaops_runtime.native import loader
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.loader import LoadError
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue

SECRET = "hunter2-s3cret"
MESSAGE = f"cannot read record: password={SECRET} from postgres://app:{SECRET}@db:5432/x"


class _Map:
    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def open_ring_buffer(self, cb: Any) -> None:
        pass

    def open_perf_buffer(self, cb: Any, page_cnt: int = 8, lost_cb: Any = None) -> None:
        pass

    def __getitem__(self, key: Any) -> list[int]:
        return [0]  # a per-CPU counter


class _BPF:
    def __init__(self, text: bytes) -> None:
        self.funcs: dict[str, Any] = {}

    def __getitem__(self, name: bytes) -> _Map:
        return _Map()

    def ring_buffer_poll(self, timeout_ms: int) -> None:
        pass

    def perf_buffer_poll(self, timeout_ms: int) -> None:
        pass

    def cleanup(self) -> None:
        pass


class _BCC:
    BPF = _BPF


async def _run_until(src: NativeProbeSource, done: Any) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    reached = False
    for _ in range(6000):  # 60 s at most: the source's counters are polled, there is no event to wait on
        if (reached := done()) or task.done():
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 60)
    assert reached, "the source never reached the state waited for"


def test_a_reader_failure_keeps_no_secret_in_last_error_or_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loader, "load_bcc", lambda: (_BCC, ""))
    real = NativeProbeSource._poll_batch
    boom = [True]

    def failing(self: NativeProbeSource, timeout_ms: int, probes: Any = None) -> list[bytes]:
        if boom[0] and probes is None:
            boom[0] = False
            raise ValueError(MESSAGE)
        return real(self, timeout_ms, probes)

    monkeypatch.setattr(NativeProbeSource, "_poll_batch", failing)
    src = NativeProbeSource(NativeConfig(exec_events=False), queue=EventQueue(10), kernel_source="",
                            retry_seconds=0.05)  # fmt: skip
    with caplog.at_level("DEBUG"):
        asyncio.run(_run_until(src, lambda: src.stats.connects >= 2 and src.stats.connected))
    assert src.stats.last_error.startswith("the probes' reader failed: ValueError: cannot read record: ")
    assert SECRET not in src.stats.last_error, src.stats.last_error
    assert "native probes stopped after an unexpected error" in caplog.text
    assert "Traceback" in caplog.text and "in failing" in caplog.text  # the traceback is still logged
    assert SECRET not in caplog.text, caplog.text


def test_a_load_failure_keeps_no_secret_in_last_error_or_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise LoadError(MESSAGE)

    monkeypatch.setattr("stellaops_runtime.native.source.load", refused)
    src = NativeProbeSource(NativeConfig(exec_events=False), queue=EventQueue(10), kernel_source="",
                            retry_seconds=0.05)  # fmt: skip
    with caplog.at_level("DEBUG"):
        asyncio.run(_run_until(src, lambda: src.stats.connect_failures >= 1))
    assert src.stats.last_error.startswith("cannot read record: password=")
    assert SECRET not in src.stats.last_error, src.stats.last_error
    assert "native probes not loaded: cannot read record" in caplog.text
    assert SECRET not in caplog.text, caplog.text


def test_a_followed_file_that_could_not_be_probed_keeps_no_secret_in_failed() -> None:
    """A look at the targets' files (native/follow.py) lists a replaced file it could not probe in
    ``stats.failed``, which ``stella-runtime probes`` and ``/readyz`` show: its reason (BCC's or the
    kernel's text, a path) goes through the redaction as a load's failures do."""
    from stellaops_runtime.native.follow_files import Followed

    src = NativeProbeSource(NativeConfig(exec_events=False), queue=EventQueue(10), kernel_source="",
                            retry_seconds=0.05)  # fmt: skip
    src._note_followed(Followed(failed=[("uprobe /app/bin:handler", MESSAGE)]), now_ns=2_000_000_000)
    assert [label for label, _ in src.stats.failed] == ["uprobe /app/bin:handler"]
    why = src.stats.failed[0][1]
    assert why.startswith("cannot read record: password=") and SECRET not in why, why
