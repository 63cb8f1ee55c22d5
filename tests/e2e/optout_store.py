"""What an opted-out image may leave in a store, checked exactly (shared by the opt-out tests).

A pod that opted out of observation (``stellaops.io/observe-level: none``,
the ``observe-off`` label or the operator's list) leaves one thing: for each
aggregation window in which the agent dropped its events, a gap-only
``observation_windows`` row of its image on that node (event_count 0, no
posture, source ``opted_out``, gap over the whole window, no throttles and no
drops), so that no "not observed" about the image rests on that time
(docs/privacy.md). These helpers check that and nothing more is kept:

- :func:`opted_out_windows` computes from the stream itself which (image,
  node, window) rows there must be: the ground truth;
- :func:`check_gap_only_rows` asserts the store holds exactly those rows of
  the opted-out images, each of that shape;
- :func:`bytes_without_gap_rows` gives every byte of a copy of the database
  with those rows deleted and the file rebuilt (``VACUUM INTO``), so a test
  can assert that the images' digests are nowhere else (no hot symbol, index
  page, ledger row or free page left holding them);
- :func:`database_bytes` is every byte of the database files as left;
- :func:`metrics_text` is the agent's raw ``/metrics`` body, searched byte
  for byte like the database and the log.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

S = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
OPTED_OUT_SOURCE = "opted_out"


def _ns(text: str) -> int:
    """Nanoseconds since the epoch of a Tetragon RFC 3339 time (fractions up to nanoseconds)."""
    head, _, frac = text.rstrip("Z").partition(".")
    whole = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    return (whole - _EPOCH) // dt.timedelta(seconds=1) * S + int((frac + "000000000")[:9])


def pod_of(o: dict[str, Any]) -> dict[str, Any] | None:
    """The pod of a Tetragon event (None when it has none)."""
    for key, body in o.items():
        if key.startswith("process_") and isinstance(body, dict) and "process" in body:
            pod = body["process"].get("pod")
            return pod if isinstance(pod, dict) else None
    return None


def image_of(o: dict[str, Any]) -> str:
    """The image digest of a Tetragon event's pod ("" when it has none)."""
    pod = pod_of(o)
    if pod is None:
        return ""
    return str(pod.get("container", {}).get("image", {}).get("id", "")).rpartition("@")[2]


def opted_out_windows(
    objs: Iterable[dict[str, Any]], dropped: Callable[[dict[str, Any]], bool], window_seconds: int = 60
) -> set[tuple[str, str, int]]:
    """(image digest, node, window start in ns) of every window holding a dropped event."""
    wn = window_seconds * S
    out = set()
    for o in objs:
        if dropped(o):
            ts = _ns(o["time"])
            out.add((image_of(o), o["node_name"], ts - ts % wn))
    return out


def _rows(db: Path, digests: Iterable[str]) -> list[sqlite3.Row]:
    wanted = sorted(set(digests))
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        marks = ",".join("?" * len(wanted))
        return con.execute(
            f"SELECT * FROM observation_windows WHERE image_digest IN ({marks})", wanted
        ).fetchall()
    finally:
        con.close()


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def check_gap_only_rows(
    db: Path, digests: Iterable[str], expected: set[tuple[str, str, int]], window_seconds: int = 60
) -> None:
    """The store's rows of ``digests`` are exactly ``expected``, each gap-only over its whole window."""
    got = set()
    for r in _rows(db, digests):
        start = _when(r["window_start"])
        shape = (
            r["event_count"], r["posture_level"], r["window_seconds"], r["source"],
            _when(r["gap_start"]) - start, _when(r["gap_end"]) - start,
            r["throttle_count"], r["dropped_events"],
        )  # fmt: skip
        assert shape == (
            0, None, window_seconds, OPTED_OUT_SOURCE,
            dt.timedelta(0), dt.timedelta(seconds=window_seconds), 0, 0,
        ), dict(r)  # fmt: skip
        got.add((r["image_digest"], r["node_name"], (start - _EPOCH) // dt.timedelta(seconds=1) * S))
    assert got == expected


def bytes_without_gap_rows(db: Path, digests: Iterable[str], scratch: Path) -> bytes:
    """Every byte of a rebuilt copy of ``db`` without the gap-only rows of ``digests``.

    The copy is taken with SQLite's backup API (so a WAL's content is in it),
    the rows are deleted only when gap-only with source ``opted_out`` (anything
    else stays, and a digest in it is found), and ``VACUUM INTO`` writes a new
    file with no free page or stale index entry left behind.
    """
    wanted = sorted(set(digests))
    work, clean = scratch / "copy.db", scratch / "clean.db"
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(work)
    try:
        src.backup(dst)
        marks = ",".join("?" * len(wanted))
        dst.execute(
            f"DELETE FROM observation_windows WHERE image_digest IN ({marks}) AND event_count = 0"
            " AND posture_level IS NULL AND source = ? AND gap_end IS NOT NULL",
            [*wanted, OPTED_OUT_SOURCE],
        )
        dst.commit()
        dst.execute("VACUUM INTO ?", (str(clean),))
    finally:
        src.close()
        dst.close()
    return clean.read_bytes()


def database_bytes(db: Path) -> bytes:
    """Every byte of a SQLite database as the agent left it: the file and its -wal / -shm / -journal."""
    raw = db.read_bytes()
    for extra in sorted(db.parent.glob(db.name + "-*")):
        raw += extra.read_bytes()
    return raw


def metrics_text(port: int) -> str:
    """The agent's raw /metrics body."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())
