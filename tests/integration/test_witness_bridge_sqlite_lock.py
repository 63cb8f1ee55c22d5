"""The agent's witness signer on a SQLite store never loses its witness to a flush waiting on its read.

A SQLite store is read in one read transaction (docs/evidence.md): an agent's write waits for the
answer. The bridge kept the witness (``runtime_witnesses``) inside that read transaction, so when
a flush was waiting to commit, the bridge's write asked for the lock the flush held while the
flush waited for the bridge's read: "database is locked" at once, the witness lost for the
interval (``witness for claim … not made``). ``witness sign --save`` already ends its read first;
the bridge now does too: the flush commits, then the witness is kept. Deterministic: the flush
here takes SQLite's write lock (``BEGIN IMMEDIATE``) while the bridge reads, and its commit waits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
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
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.bridge import WitnessBridge, load_claims

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def test_a_flush_waiting_on_the_signers_read_commits_and_the_witness_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "hot.db"
    store = open_store(f"sqlite:///{db}")
    d = HotSymbolDelta(
        HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), T0, 12, T0 + S, T0 + 2 * S, purl=PURL
    )
    store.write([d], [ObservationWindow(IMG, "n", T0, 5, Posture.EBPF_DEEP, 60, "tetragon")])
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claims = tmp_path / "claims.yaml"
    claims.write_text(f"- {{image: '{IMG}', purl: 'pkg:deb/debian/zlib1g', function: crc32}}\n")
    bridge = WitnessBridge(load_claims(claims), key_file=str(tmp_path / "k"))

    flush: dict[str, Any] = {}
    real_statement = bridge_module.statement

    def statement_while_a_flush_waits(*args: Any, **kwargs: Any) -> Any:
        """The bridge has read the store: another writer takes the write lock and commits, which
        waits until the bridge's read ends (the agent's flush, made deterministic)."""
        writer = sqlite3.connect(db, timeout=60, isolation_level=None, check_same_thread=False)
        writer.execute("BEGIN IMMEDIATE")  # the write lock, beside the bridge's read lock
        writer.execute("UPDATE hot_symbols SET invocation_count = invocation_count + 1")

        def commit() -> None:
            try:
                writer.execute("COMMIT")  # waits for the bridge's read to end
                flush["committed"] = True
            except sqlite3.Error as e:
                flush["error"] = str(e)
            finally:
                writer.close()

        flush["thread"] = threading.Thread(target=commit, daemon=True)
        flush["thread"].start()
        return real_statement(*args, **kwargs)

    monkeypatch.setattr(bridge_module, "statement", statement_while_a_flush_waits)
    bridge.observe([d])
    bridge.stored()
    made = asyncio.run(bridge.flush(store.engine))
    flush["thread"].join(timeout=120)
    assert (made, bridge.failures, bridge.last_error) == (1, 0, "")
    assert flush == {"thread": flush["thread"], "committed": True}
    with store.engine.connect() as conn:
        [kept] = wstore.find(conn, image=IMG)
        count = conn.exec_driver_sql("SELECT invocation_count FROM hot_symbols").scalar_one()
    assert kept.state == "DynamicReachable" and count == 13  # the flush's write landed too
    store.close()
