"""End to end: no privacy corpus secret reaches any output of a real agent run on PostgreSQL.

The stream of tests/e2e/test_privacy_e2e.py (each corpus case as a process's
command line and as a traced argument, every case its own image) is served
by the real replay server over gRPC to the real agent CLI (``--log-level
DEBUG``) writing to a real PostgreSQL. Then no secret is in any row of any
table the agent wrote (hot symbols, observation windows and their gaps, the
ledger...), the agent's log, ``/metrics``, ``/readyz``, or the output of
``query images`` and ``query hot`` on the images. A second run against a
store that never answers ends with SIGTERM: what it held goes to the spool
file, which holds no secret either.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.e2e.test_privacy_e2e import CASES, MIN_FILE_NEEDLE, _export_lines
from tests.pg import libpq_dsn

pytestmark = pytest.mark.e2e

LINES = _export_lines()
# Each secret as it is written and as JSON escapes it (a quote or backslash in it).
NEEDLES = sorted(
    {
        form
        for c in CASES
        for s in c["secrets"]
        if len(s) >= MIN_FILE_NEEDLE
        for form in (s, json.dumps(s)[1:-1])
    }
)


def _leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as e:  # /readyz may answer 503: its body still counts
        return str(e.read().decode())


def _dump(url: str) -> str:
    """Every row of every table outside PostgreSQL's own schemas, as text."""
    out: list[str] = []
    with psycopg.connect(libpq_dsn(url)) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'"
        ).fetchall()
        assert tables
        for schema, table in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):  # names from the catalog
                out.append(repr(row))
                out.extend(
                    json.dumps(v, ensure_ascii=False, default=str) for v in row if isinstance(v, dict | list)
                )
    return "\n".join(out)


def _stored(port: int) -> bool:
    m = h.scrape(port)
    return (
        h.metric_sum(m, "stellaops_runtime_events_total") == len(LINES)
        and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
    )


async def _serve(tmp: Path) -> ReplayServer:
    jsonl = tmp / "stream.jsonl"
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in LINES), encoding="utf-8")
    loaded = load_events(jsonl)
    assert not loaded.errors and len(loaded.events) == len(LINES)
    return ReplayServer(loaded.events)


def _agent(cfg: Path) -> subprocess.Popen[str]:
    """The real agent CLI at DEBUG, so that every log line it has is written."""
    argv = [
        sys.executable,
        "-m",
        "stellaops_runtime.cli.main",
        "--log-level",
        "DEBUG",
        "agent",
        "--config",
        str(cfg),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=h.ROOT, env=env
    )


async def test_no_secret_in_postgres_logs_metrics_readyz_or_query_output(tmp_path: Path, pg_url: str) -> None:
    server = await _serve(tmp_path)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url}, privacy={"maxArgumentBytes": 8192}
    )
    proc = _agent(cfg)
    try:
        await h.wait_for(lambda: _stored(port), what="every event counted and stored", timeout=90)
        metrics, readyz = _get(port, "/metrics"), _get(port, "/readyz")
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop(grace=0)
    assert code == 0, out
    dump = await asyncio.to_thread(_dump, pg_url)
    assert "[REDACTED]" in dump
    for name, text in (("store", dump), ("log", out), ("/metrics", metrics), ("/readyz", readyz)):
        assert not _leaks(text), (name, _leaks(text))

    images = h.cli("query", "images", "--json", "--store", pg_url)
    assert images.returncode == 0, images.stderr
    assert not _leaks(images.stdout + images.stderr)
    shown = []
    step = max(2, len(LINES) // 4) // 2 * 2  # even: exec lines, and the kprobe line after each
    for line in LINES[::step] + LINES[1::step]:  # a few images: each CLI run takes a second
        body = line.get("process_exec") or line["process_kprobe"]
        digest = body["process"]["pod"]["container"]["image"]["id"].split("@")[1]
        r = h.cli("query", "hot", "--image", digest, "--json", "--store", pg_url)
        assert r.returncode in (0, 1, 3), r.stderr
        assert not _leaks(r.stdout + r.stderr), (digest, _leaks(r.stdout + r.stderr))
        shown.append(r.stdout)
    assert any("[REDACTED]" in s for s in shown)  # the samples are shown, redacted


async def test_no_secret_in_the_spool_of_an_agent_whose_store_never_answered(tmp_path: Path) -> None:
    server = await _serve(tmp_path)
    addr = await server.start("127.0.0.1:0")
    spool = tmp_path / "spool.jsonl"
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{h.free_port()}/nowhere"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        store={"url": dead, "spoolPath": str(spool), "migrate": False},
        privacy={"maxArgumentBytes": 8192},
        shutdown={"graceSeconds": 3},
    )
    proc = _agent(cfg)
    try:
        await h.wait_for(
            lambda: h.metric_sum(h.scrape(port), "stellaops_runtime_events_total") == len(LINES),
            what="every event counted",
            timeout=90,
        )
        readyz = _get(port, "/readyz")
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 90)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop(grace=0)
    assert code == 0, out
    written = await asyncio.to_thread(
        lambda: "\n".join(
            p.read_text(encoding="utf-8", errors="replace") for p in tmp_path.glob("spool.jsonl*")
        )
    )
    assert spool.name in os.listdir(tmp_path) and "[REDACTED]" in written, out
    decoded = "\n".join(
        json.dumps(json.loads(line), ensure_ascii=False)
        for line in written.splitlines()
        if line.startswith("{")
    )
    for name, text in (("spool", written), ("spool decoded", decoded), ("log", out), ("/readyz", readyz)):
        assert not _leaks(text), (name, _leaks(text))
