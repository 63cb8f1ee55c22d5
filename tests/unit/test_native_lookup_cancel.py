"""An abandoned address lookup stops at its next step instead of reading the hostile file to the end.

native/lookup.py runs a uprobe's address lookup on a thread of its own while
the probes' thread keeps reading their buffer; when the probes stop, the wait
is abandoned. The lookup's thread went on reading the file, within 1 GiB and
120 s (native/symaddr.py), for an answer nobody wanted: after a stop (or a
reload, or a switch to Tetragon) a container's hostile symbol table kept a
core busy for up to two minutes. The lookup now checks, between its steps
(each chunk of a symbol or string table, each chunk of a debug file hashed),
whether its caller gave up, and ends there.

The file is a hostile ELF built here (200,000 decoys before the probed name:
seven chunks of the symbol table); the scan is held in its first chunk until
the caller has given up. No BPF, no compiler.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.native import lookup, symscan
from tests.unit.test_native_lookup_off_thread import _hostile

WAIT = 30.0


def _lookup_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "symlookup"]


class _Held:
    """The table scan's reads of whole chunks, counted; the first one held until :attr:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()
        chunk = symscan.CHUNK_RECORDS * 24  # one read of the 64-bit symbol table
        real = symscan.pread_exact

        def counted(fd: int, offset: int, size: int, **kw: Any) -> bytes:
            if size == chunk:
                self.reads.append(offset)
                if len(self.reads) == 1:  # held in the first chunk until the caller gave up
                    self.entered.set()
                    assert self.release.wait(WAIT)
            return real(fd, offset, size, **kw)

        monkeypatch.setattr(symscan, "pread_exact", counted)


def _look_up(app: Path, held: _Held, idle: lookup.Idle, error: type[BaseException], match: str) -> None:
    """``lookup.address`` of the hostile file with ``idle``, which ends the wait with ``error``; then
    every lookup thread started meanwhile has ended."""
    before = set(_lookup_threads())
    fd = os.open(app, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(error, match=match):
            lookup.address(fd, "stella_add", where=None, idle=idle)
    finally:
        os.close(fd)
        held.release.set()
    for t in set(_lookup_threads()) - before:
        t.join(WAIT)
        assert not t.is_alive()


def test_an_abandoned_lookup_stops_reading_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app"
    _hostile(app)
    held = _Held(monkeypatch)

    def idle() -> bool:  # the probes stop while the lookup is in the table
        assert held.entered.wait(WAIT)
        return False

    _look_up(app, held, idle, lookup.Abandoned, "the lookup of stella_add was abandoned: the probes stopped")
    assert len(held.reads) == 1, f"the abandoned lookup read {len(held.reads)} chunks of the table"


def test_a_lookup_not_abandoned_is_answered(tmp_path: Path) -> None:
    """The check between steps costs the lookup nothing when its caller waits."""
    app = tmp_path / "app"
    addr = _hostile(app)
    fd = os.open(app, os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert lookup.address(fd, "stella_add", where=None, idle=lambda: True) == addr
    finally:
        os.close(fd)


def test_a_load_given_up_by_the_switch_stops_its_lookups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load looks every uprobe target up on the probes' thread before BCC compiles (a hostile file:
    up to 120 s each). The switch cancels a source that has not stopped within STOP_WAIT_SECONDS; the
    load's lookups went on to the end for a load nobody took, holding the thread the next start waits
    for. Here the real resolve (uprobes.resolve -> find_address) is the load; BCC is not reached."""
    import asyncio

    from stellaops_runtime.native import source
    from stellaops_runtime.native.config import NativeConfig, UprobeTarget
    from stellaops_runtime.native.probes import uprobes
    from stellaops_runtime.native.source import NativeProbeSource
    from stellaops_runtime.sources.queue import EventQueue

    app = tmp_path / "app"
    _hostile(app)
    held = _Held(monkeypatch)
    resolved: list[dict[int, int | str]] = []

    def load(cfg: NativeConfig, **kw: Any) -> Any:
        resolved.append(uprobes.resolve(cfg))  # what loader.load does first, on the probes' thread
        raise AssertionError("not reached in this test")

    monkeypatch.setattr(source, "load", load)
    cfg = NativeConfig(exec_events=False, uprobes=(UprobeTarget(str(app), "stella_add"),))
    src = NativeProbeSource(cfg, queue=EventQueue(10), kernel_source="")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        assert await asyncio.to_thread(held.entered.wait, WAIT)  # the load is in the hostile table
        stop.set()
        task.cancel()  # what _stop_active does after STOP_WAIT_SECONDS
        await asyncio.gather(task, return_exceptions=True)
        held.release.set()
        assert src._thread is not None
        await asyncio.to_thread(src._thread.shutdown)  # what the next run waits for

    try:
        asyncio.run(main())
    finally:
        held.release.set()
    assert len(held.reads) == 1, f"the load given up read {len(held.reads)} chunks of the table ({resolved})"


def test_a_lookup_whose_idle_fails_stops_reading_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``idle`` reads the probes' buffer; when it raises (the reader's error: the probes are closed and
    loaded again), the wait ends with that error, and the lookup must end too, not read on for nobody."""
    app = tmp_path / "app"
    _hostile(app)
    held = _Held(monkeypatch)

    def idle() -> bool:
        assert held.entered.wait(WAIT)
        raise RuntimeError("a bug in the reader")

    _look_up(app, held, idle, RuntimeError, "a bug in the reader")
    assert len(held.reads) == 1, f"the lookup read {len(held.reads)} chunks of the table after its wait ended"


def test_a_debug_file_is_not_hashed_on_for_a_lookup_given_up(tmp_path: Path) -> None:
    """A stripped target's debug file is hashed (build-id and CRC checked) within the lookup's budget,
    a chunk at a time: a lookup given up stops there too, with Cancelled (not the Rejected a damaged or
    over-budget file gets, which the finder counts as refused)."""
    from stellaops_runtime.canonical import debugfiles
    from stellaops_runtime.native import symaddr, symcancel

    big = tmp_path / "debug"
    big.write_bytes(b"\0" * (8 << 20))
    given_up = threading.Event()
    given_up.set()
    fd = os.open(big, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with symcancel.cancellable(given_up), pytest.raises(symcancel.Cancelled):
            debugfiles._digest_and_crc(fd, 8 << 20, symaddr._LIMITS)
        assert len(debugfiles._digest_and_crc(fd, 8 << 20, symaddr._LIMITS)[0]) == 64  # not given up
    finally:
        os.close(fd)
