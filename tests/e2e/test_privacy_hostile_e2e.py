"""End to end: secrets in hostile places of Tetragon events never reach the store, the log or /metrics.

The real agent CLI (``--log-level DEBUG``, so that every log line it has is
written) reads a crafted stream once from a Tetragon JSON export file and once
over gRPC from the replay server, into SQLite, with ``maxArgumentBytes: 256``.
The stream holds a secret in each place the s29 privacy probe found a way
out, next to places that already held (pod labels and annotations, cwd, an
opted-out pod), and, in the export file only, lines that are not events:
a wrong-typed field whose value is a secret, an unknown event key holding
one, a line that is not JSON. Then:

- no secret (nor more than seven characters of a secret that truncation cut)
  is anywhere in the database file's bytes, the agent's output or the
  ``/metrics`` text;
- every good event was stored, each with its own sample holding
  ``[REDACTED]`` where its secret was, and every line was received and
  counted (events, malformed, unhandled).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

DOP_BODY = "e0555c359047192be38e7eb720ef6e0f220b8c0cd3e2e0555c359047192be38e"


def _process(i: int, arguments: str, **extra: Any) -> dict[str, Any]:
    digest = hashlib.sha256(f"hostile-{i}".encode()).hexdigest()
    pod = {
        "namespace": "hostile",
        "name": f"pod-{i}",
        "pod_labels": extra.pop("labels", {}),
        "pod_annotations": extra.pop("annotations", {}),
        "container": {
            "id": f"containerd://{digest}",
            "name": "c",
            "image": {"id": f"registry.example.com/app@sha256:{digest}", "name": "app:1"},
        },
    }
    return {
        "exec_id": f"hostile-{i}",
        "pid": 1000 + i,
        "uid": 0,
        "cwd": "/",
        "binary": "/usr/bin/app",
        "arguments": arguments,
        "start_time": "2026-11-24T09:00:00Z",
        "pod": pod,
        **extra,
    }


def _exec(i: int, arguments: str, **extra: Any) -> dict[str, Any]:
    return {
        "process_exec": {"process": _process(i, arguments, **extra)},
        "node_name": "n",
        "time": "2026-11-24T09:00:00Z",
    }


def _kprobe(i: int, args: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"process": _process(i, "--cfg x"), "function_name": "security_file_permission", "args": args}
    return {"process_kprobe": body, "node_name": "n", "time": "2026-11-24T09:00:01Z"}


# (event, the secrets that must not survive it, whether its sample must show [REDACTED])
EVENTS: list[tuple[dict[str, Any], tuple[str, ...], bool]] = [
    (
        _kprobe(0, [{"bytes_arg": base64.b64encode(b"mysql\0--password\0NulSepPw0a\0-h\0db").decode()}]),
        ("NulSepPw0a",),
        True,
    ),
    (_kprobe(1, [{"string_arg": '{"password":"ab\\"EscQuote1b rest"}'}]), ("EscQuote1b",), True),
    (_kprobe(2, [{"string_arg": "LabelledPw2c", "label": "db_password"}]), ("LabelledPw2c",), True),
    (_exec(3, "q" * 230 + " dop_v1_" + DOP_BODY), (DOP_BODY[:8],), True),
    (_exec(4, "q" * 236 + " Mailaddr4d.doe@example.com"), ("Mailaddr4d",), True),
    (_exec(5, "q" * 240 + " --card 4111 1111 1111 1111"), ("4111 111",), True),
    # places that held before: kept as tests of the whole path
    (
        _exec(6, "--x", labels={"token": "LabelVal6e"}, cwd="/home/CwdSecret6f"),
        ("LabelVal6e", "CwdSecret6f"),
        False,
    ),
    (
        _exec(7, "--x OptedOut7g", annotations={"stellaops.io/observe-level": "None"}),
        ("OptedOut7g",),
        False,
    ),
]
# Export lines that are not events we use; each secret must stay out of the log and /metrics.
NOT_EVENTS: list[tuple[str, str]] = [
    (json.dumps({"process_WrongKey8h=x": {}, "node_name": "n"}), "WrongKey8h"),
    (
        json.dumps(
            {
                "process_kprobe": {
                    "process": _process(9, "--x"),
                    "function_name": "f",
                    "user_stack_trace": [{"module": "m", "offset": "BadOffset9i"}],
                },
                "node_name": "n",
            }
        ),
        "BadOffset9i",
    ),
    ("not json BadJson10j", "BadJson10j"),
]
OPTED_OUT = 1  # EVENTS[7]


def _start(config: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "stellaops_runtime.cli.main", "--log-level", "DEBUG", "agent"]
    return subprocess.Popen(
        [*argv, "--config", str(config), "--exit-when-idle", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=h.ROOT,
        env=env,
    )


def _metrics_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


async def _run(tmp: Path, tetragon: dict[str, Any], source: str, lines: int) -> tuple[dict, str, str]:
    db = tmp / "hostile.db"
    cfg, port = h.write_config(
        tmp, tetragon=tetragon, store={"url": f"sqlite:///{db}"}, privacy={"maxArgumentBytes": 256}
    )
    proc = _start(cfg)
    try:
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source=source) == lines
            ),
            what="every line received",
            timeout=60,
        )
        await h.wait_for(
            lambda: (
                h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == lines
            ),
            what="every line processed",
            timeout=60,
        )
        m, text = h.scrape(port), await asyncio.to_thread(_metrics_text, port)
        code, out = await asyncio.to_thread(h.finish, proc, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert "Traceback" not in out
    return m, text, out


def _check_store_and_output(tmp: Path, metrics_text: str, out: str, needles: list[str]) -> None:
    raw = b"".join(p.read_bytes() for p in sorted(tmp.glob("hostile.db*")))
    for needle in needles:
        assert needle.encode() not in raw, needle
        assert needle not in out, needle
        assert needle not in metrics_text, needle
    eng = sa.create_engine(f"sqlite:///{tmp / 'hostile.db'}")
    with eng.connect() as c:
        samples = [
            json.loads(s) if isinstance(s, str) else s
            for (s,) in c.execute(sa.text("SELECT sample FROM hot_symbols"))
        ]
    eng.dispose()
    by_pod = {s["pod"]: s for s in samples}
    assert set(by_pod) == {f"pod-{i}" for i in range(len(EVENTS) - OPTED_OUT)}  # every good event, no other
    for i, (_, _, redacted) in enumerate(EVENTS[: len(EVENTS) - OPTED_OUT]):
        text = json.dumps(by_pod[f"pod-{i}"])
        assert ("[REDACTED]" in text) == redacted, text


async def test_hostile_export_file_leaks_nothing(tmp_path: Path) -> None:
    export = tmp_path / "tetragon.log"
    lines = [json.dumps(e) for e, _, _ in EVENTS] + [line for line, _ in NOT_EVENTS]
    export.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tetragon = {"exportFile": str(export), "exportFromStart": True}
    m, text, out = await _run(tmp_path, tetragon, "tetragon-export", len(lines))

    assert h.metric_sum(m, "stellaops_runtime_events_total") == len(EVENTS)
    assert h.metric(m, "stellaops_runtime_events_opted_out_total", reason="annotation") == OPTED_OUT
    assert h.metric(m, "stellaops_runtime_events_unhandled_total", kind="other") == 1
    assert h.metric(m, "stellaops_runtime_events_malformed_total", reason="bad_type") == 1
    assert h.metric(m, "stellaops_runtime_events_malformed_total", reason="invalid_json") == 1
    assert h.metric(m, "stellaops_runtime_arguments_truncated_total") == 3
    needles = [s for _, secrets, _ in EVENTS for s in secrets] + [s for _, s in NOT_EVENTS]
    _check_store_and_output(tmp_path, text, out, needles)


async def test_hostile_grpc_stream_leaks_nothing(tmp_path: Path) -> None:
    jsonl = tmp_path / "stream.jsonl"
    jsonl.write_text("".join(json.dumps(e) + "\n" for e, _, _ in EVENTS), encoding="utf-8")
    loaded = load_events(jsonl)
    assert not loaded.errors and len(loaded.events) == len(EVENTS)
    server = ReplayServer(loaded.events)
    addr = await server.start("127.0.0.1:0")
    try:
        m, text, out = await _run(tmp_path, {"address": addr}, "tetragon-grpc", len(EVENTS))
    finally:
        await server.stop()
    assert h.metric_sum(m, "stellaops_runtime_events_total") == len(EVENTS)
    assert h.metric_sum(m, "stellaops_runtime_events_malformed_total") == 0
    _check_store_and_output(tmp_path, text, out, [s for _, secrets, _ in EVENTS for s in secrets])
