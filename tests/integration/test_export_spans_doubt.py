"""Spooled counts of the export file whose lines could not be checked (s40/e).

store/export_spans.py checks a spooled batch of the export file against the spans other agents
stored. An inode at or above 2**63 (XFS with inode64, overlay, btrfs, NFS hand such out) made
the spans "not well formed": no agent wrote any and no replay was checked, so counts another
agent had stored already were stored again, silently. The ``ino`` bigint column now keeps the
inode's 64 bits as a signed number. Real SQLite and PostgreSQL stores.
"""

from __future__ import annotations

from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.export_spans import read_spans
from tests.integration.test_export_spans_store import (
    NODE,
    _gaps,
    _invoked,
    _position,
    _replay,
    _spooled,
    _stored_live,
)

BIG = (1 << 64) - 3  # an inode no signed 64-bit integer holds


def test_spans_of_an_inode_past_2_63_are_stored_and_checked(url: str) -> None:
    store = open_store(url)
    try:
        big = _position(f"{NODE}/x", 100, 900, spans=[[BIG, 100, 900, ""]])
        big["checkpoint"]["ino"] = BIG
        _stored_live(store, f"{NODE}/x", 100, 900, position=big)
        assert [s[:4] for s in read_spans(store.db, NODE)] == [(f"{NODE}/x", BIG, 100, 900)]
        pending = _replay(
            store, [_spooled(f"{NODE}/y", _position(f"{NODE}/y", 500, 800, spans=[[BIG, 500, 800, ""]]))]
        )
        assert _invoked(store) == 3 and pending.spool_recounted_rows == 2  # X's counts alone
        assert _gaps(store)
        # The same inode number's low 63 bits are another file: never met by its two's complement.
        low = BIG - (1 << 63)
        pending = _replay(
            store, [_spooled(f"{NODE}/z", _position(f"{NODE}/z", 500, 800, spans=[[low, 500, 800, ""]]))]
        )
        assert _invoked(store) == 6 and pending.spool_recounted_rows == 0
        assert {s[1] for s in read_spans(store.db, NODE)} == {BIG, low}
    finally:
        store.close()
