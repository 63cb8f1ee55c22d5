"""A witness signer whose store read never returns: the claim stays due, nothing waits on it forever.

The shutdown deadline cancels the bridge's flush (agent/shutdown.py); :meth:`WitnessBridge.run`
abandons a round after ``HUNG_AFTER_SECONDS``. Before, a cancelled flush dropped the claims it
had taken (the agent logged "0 claims left without a new witness" with one left), witnesses made
in the same round were not counted, and the signer ran on asyncio's default executor, whose
threads ``asyncio.run`` joins at exit: the agent never exited while the store hung
(tests/e2e/test_witness_hung_store.py shows it with a real agent and PostgreSQL). A claim's next
signer waits for its last one (never two at once), so its last witness rests on the last read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import bridge as bridge_module
from stellaops_runtime.witness import keys
from stellaops_runtime.witness.bridge import Claim, WitnessBridge

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def delta(fn: str) -> HotSymbolDelta:
    return HotSymbolDelta(
        HotSymbolKey(IMG, ZLIB, fn, EvidenceKind.INVOKED), T0, 3, T0 + S, T0 + 2 * S, purl=PURL
    )


@pytest.fixture
def hung(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A bridge of two claims and a store; signing ``inflate`` hangs until ``release`` is set."""
    store = open_store(f"sqlite:///{tmp_path}/hot.db")
    store.write(
        [delta("crc32"), delta("inflate")], [ObservationWindow(IMG, "n", T0, 5, Posture.EBPF_DEEP, 60, "x")]
    )
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = [Claim(IMG, "pkg:deb/debian/zlib1g", fn) for fn in ("crc32", "inflate")]
    bridge = WitnessBridge(claims, key_file=str(tmp_path / "k"), concurrency=2)
    release, started = threading.Event(), threading.Semaphore(0)
    sign = bridge._sign

    def slow(engine: Any, c: Claim) -> None:
        if c.function == "inflate":
            started.release()
            release.wait(60)
        sign(engine, c)

    monkeypatch.setattr(bridge, "_sign", slow)
    bridge.observe([delta("crc32"), delta("inflate")])
    bridge.stored()
    yield bridge, store, release, started
    release.set()
    store.engine.dispose()


async def test_a_flush_cut_by_the_deadline_keeps_its_claim_due_and_its_count(hung: Any) -> None:
    bridge, store, release, started = hung
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bridge.flush(store.engine), timeout=2)
    assert started.acquire(timeout=10)
    assert (bridge.marked, bridge.generated) == (1, 1)  # inflate still due; crc32's witness counted
    [signer] = [t for t in threading.enumerate() if t.name.startswith("witness-")]
    assert signer.daemon  # the interpreter's exit does not wait for it
    with pytest.raises(TimeoutError):  # the next round waits for the signer that still hangs
        await asyncio.wait_for(bridge.flush(store.engine), timeout=1)
    assert bridge.marked == 1 and not started.acquire(timeout=0.2)  # and never starts a second one
    release.set()
    signer.join(30)
    await asyncio.sleep(0.1)  # its end reaches the loop (call_soon_threadsafe)
    assert await bridge.flush(store.engine) == 1 and bridge.marked == 0


async def test_run_abandons_a_round_that_hangs_and_signs_again_later(
    hung: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge, store, release, started = hung
    monkeypatch.setattr(bridge_module, "HUNG_AFTER_SECONDS", 1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop, lambda: store.engine, 1.0))
    try:
        assert await asyncio.to_thread(started.acquire, True, 20)
        for _ in range(200):  # the round is abandoned after a second: crc32 counted, inflate due
            if bridge.generated == 1 and bridge.marked == 1 and not task.done():
                break
            await asyncio.sleep(0.1)
        assert (bridge.generated, bridge.marked) == (1, 1) and not task.done()
        release.set()
        for _ in range(200):
            if bridge.generated == 2:
                break
            await asyncio.sleep(0.1)
        assert bridge.generated == 2 and bridge.marked == 0
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
