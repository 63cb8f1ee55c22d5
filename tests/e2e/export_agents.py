"""Shared scaffolding of the export-file restart tests: real agents, a file the test writes.

The tests of the Tetragon JSON export source across agent restarts (test_export_resume*.py,
test_export_record_*.py, test_export_rotated_while_stopped.py, test_export_restart_gap.py)
start real ``stella-runtime agent`` subprocesses on a file they append the synthetic stream to
(tests/fixtures/tetragon/synthetic, copied from /work/shared/fixtures/tetragon), stop them
(SIGTERM, SIGKILL) and compare what the store holds with the ground truth. What they share
lives here: the stream split in thirds, writing lines, waiting for an agent to have stored
what it read, the store's totals, the node-wide gaps, and the ``query observed`` check.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.e2e import harness as h

NODE = "e2e-node"
OBJS = h.stream_objects()
THIRD = len(OBJS) // 3

Totals = tuple[dict[str, int], dict[str, int]]


def lines(objs: list[dict[str, Any]]) -> bytes:
    """The stream objects as export lines of the agent's node, timed now."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return b"".join(json.dumps({**o, "node_name": NODE, "time": now}).encode() + b"\n" for o in objs)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def uprobe_counts(objs: list[dict[str, Any]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for o in objs:
        u = o.get("process_uprobe")
        if u:
            digest = u["process"]["pod"]["container"]["image"]["id"].split("@")[1]
            out[f"{digest}|{u['path']}|{u['symbol']}"] += 1
    return dict(out)


def summed(url: str, evidence: str) -> dict[str, int]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT image_digest, module, function_name, SUM(invocation_count) FROM signals.hot_symbols "
                "WHERE evidence_kind = :e GROUP BY 1, 2, 3"
            ),
            {"e": evidence},
        )
        out = {f"{d}|{m}|{f}": int(n) for d, m, f, n in res}
    eng.dispose()
    return out


def none_gaps(url: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """The node-wide gaps with source ``none`` (nobody watched), ordered by start."""
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT gap_start, gap_end FROM signals.observation_windows WHERE image_digest = '' "
                "AND gap_end IS NOT NULL AND source = 'none' AND node_name = :n ORDER BY gap_start"
            ),
            {"n": NODE},
        )
        out = [(a, b) for a, b in res]
    eng.dispose()
    return out


def first_hold_and_after(url: str, until: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The node-wide gaps after the node's first agent's hold (sources/export_restart.py
    ``_first_unwatched``: the event cache's hold before it opened the file, or about the first line
    of a file read from its start), merged where they touch, each from ``until`` at the earliest.
    ``until``: a moment after that agent read its first lines and before any later agent started,
    so the hold ends before it and every later agent's gap after it. A row holds the union of its
    window's gaps, so a later gap in the hold's window reaches back to it: what is asserted of the
    result is what the store says unwatched from ``until`` on, as an answer reads it."""
    from tests.e2e.test_agent_restart_gap import merged

    return [(max(a, until), b) for a, b in merged(none_gaps(url)) if b > until]


def only_first_hold(url: str, began: dt.datetime, until: dt.datetime) -> None:
    """The node-wide gaps are the node's first agent's hold alone, within the event cache's hold
    before ``began`` (a moment before the first lines were written and that agent started) and
    ``until`` (:func:`first_hold_and_after`)."""
    from tests.e2e.test_agent_restart_gap import HOLD, merged

    spans = merged(none_gaps(url))
    assert spans, "no gap: the time before the node's first agent read the file reads watched"
    assert began - HOLD - dt.timedelta(seconds=1) <= spans[0][0], (began, spans)
    assert first_hold_and_after(url, until) == [], (spans, until)


def truth(*parts: list[dict[str, Any]]) -> Totals:
    """The ground truth of the stream parts: (uprobe counts, on-stack counts)."""
    inv: Counter[str] = Counter()
    stack: Counter[str] = Counter()
    for p in parts:
        inv += Counter(uprobe_counts(p))
        stack += h.expected_stack_counts(p)
    return dict(inv), dict(stack)


def stored(url: str) -> Totals:
    return summed(url, "invoked"), summed(url, "on_stack")


def settled(port: int, n: int) -> bool:
    """At least ``n`` events processed (more: a line read twice) and every count stored."""
    m = h.scrape(port)
    return (
        h.metric(m, "stellaops_runtime_event_processing_latency_seconds_count") >= n
        and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
    )


def connected(port: int) -> bool:
    return h.metric(h.scrape(port), "stellaops_runtime_tetragon_connected") == 1


def conf(url: str, spool: str, export: Path, *, from_start: bool = True) -> dict[str, Any]:
    return {
        "store": {"url": url, "spoolPath": spool},
        "tetragon": {"exportFile": str(export), "exportFromStart": from_start},
    }


def committed_on_disk(spool: str) -> bool:
    """The watch record holds a committed export checkpoint and nothing in flight."""
    try:
        doc = json.loads(Path(spool + ".alive").read_bytes())
    except (OSError, ValueError):
        return False
    export = doc.get("export") or {}
    return export.get("committed") is not None and export.get("in_flight") is None


async def stop(proc: Any, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
    """Send ``sig`` and wait (60 s) for the agent's exit code and output."""
    proc.send_signal(sig)
    return await asyncio.to_thread(h.finish, proc, 60)


def unknown_answer(url: str) -> None:
    """``query observed`` for a function never seen answers unknown (exit 3), not "not observed"."""
    digest = h.EXPECTED["images"][0]["digest"]
    r = h.cli("query", "observed", "--function", "no_such_fn", "--image", digest, "--store", url)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)


def kill_all(procs: list[Any]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """The agent's ``/readyz``: (HTTP status, its JSON body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
