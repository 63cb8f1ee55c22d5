"""End to end: every privacy corpus secret, in a Tetragon JSON export, through the real agent CLI into SQLite.

The export holds one ``process_exec`` per corpus case (the case as
``process.arguments``, its binary when the case names one) and one
``process_kprobe`` per case (the case as a traced string argument of
``security_file_permission``, preceded by the binary's path when the case
names one, under an innocent command line), each with its
own image digest so that every event keeps its own stored row and sample. The
agent runs as a subprocess (``stella-runtime agent --exit-when-idle``) on the
file; no secret may appear anywhere in the database file's bytes or in the
agent's output, and the agent must count exactly the events written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

FIXTURES = h.ROOT / "tests" / "fixtures" / "privacy"


def _cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in ("corpus.yaml", "cli_corpus.yaml", "formats_corpus.yaml"):
        doc = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
        out += [
            {"input": c["input"], "secrets": c["secrets"], "binary": c.get("binary", "")}
            for c in doc["secrets"]
        ]
    return out


CASES = _cases()
# Secrets too short to search a whole database file for ("c1" is in many hex
# ids) are checked in their own event's stored sample instead.
MIN_FILE_NEEDLE = 6
# Two characters ("'s" of "it's&&Tail") are in the agent's own English log text (a migration's
# title, "today's rule"): such secrets are checked in their event's stored sample, not the log.
MIN_LOG_NEEDLE = 3


def _process(i: int, binary: str, arguments: str) -> dict[str, Any]:
    digest = hashlib.sha256(f"privacy-e2e-{i}".encode()).hexdigest()
    return {
        "exec_id": f"privacy-e2e-{i}",
        "pid": 10_000 + i,
        "uid": 0,
        "cwd": "/",
        "binary": binary,
        "arguments": arguments,
        "flags": "execve",
        "start_time": "2026-11-24T09:00:00Z",
        "pod": {
            "namespace": "privacy",
            "name": f"pod-{i}",
            "container": {
                "id": f"containerd://{digest}",
                "name": "c",
                "image": {"id": f"registry.example.com/privacy/app@sha256:{digest}", "name": "app:1"},
            },
        },
    }


def _export_lines() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for i, case in enumerate(CASES):
        binary = case["binary"] or "/bin/sh"
        lines.append(
            {
                "process_exec": {"process": _process(i, binary, case["input"])},
                "node_name": "privacy-node",
                "time": "2026-11-24T09:00:00Z",
            }
        )
        j = len(CASES) + i
        # A case that needs its binary carries it in the traced text, as a command line does.
        traced = f"{case['binary']} {case['input']}" if case["binary"] else case["input"]
        lines.append(
            {
                "process_kprobe": {
                    "process": _process(j, "/usr/bin/app", "--config /etc/app.yaml"),
                    "function_name": "security_file_permission",
                    "args": [{"string_arg": traced}, {"file_arg": {"path": "/etc/app.yaml"}}],
                    "action": "KPROBE_ACTION_POST",
                    "policy_name": "privacy-e2e",
                },
                "node_name": "privacy-node",
                "time": "2026-11-24T09:00:01Z",
            }
        )
    return lines


def _database_bytes(tmp: Path) -> bytes:
    """The database file, and a WAL or journal left beside it (they count as the database)."""
    raw = (tmp / "privacy.db").read_bytes()
    for extra in sorted(tmp.glob("privacy.db-*")):
        raw += extra.read_bytes()
    return raw


def _samples(db: Path) -> list[str]:
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.connect() as c:
        out = [
            s if isinstance(s, str) else json.dumps(s)
            for (s,) in c.execute(sa.text("SELECT sample FROM hot_symbols"))
        ]
    eng.dispose()
    return out


async def test_no_corpus_secret_reaches_the_store_or_the_logs(tmp_path: Path) -> None:
    lines = _export_lines()
    export = tmp_path / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in lines), encoding="utf-8")
    db = tmp_path / "privacy.db"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": f"sqlite:///{db}"},
        privacy={"maxArgumentBytes": 8192},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    m = await h.wait_processed(
        port, len(lines), source="tetragon-export", what="every exported line processed"
    )
    code, out = await asyncio.to_thread(h.finish, proc, 120)
    assert code == 0, out

    # Every event written was counted, none dropped or filtered.
    assert h.metric(m, "stellaops_runtime_events_received_total", source="tetragon-export") == len(lines)
    assert h.metric_sum(m, "stellaops_runtime_events_total") == len(lines)

    secrets = {s for c in CASES for s in c["secrets"]}
    raw = await asyncio.to_thread(_database_bytes, tmp_path)
    for secret in secrets:
        if len(secret) >= MIN_FILE_NEEDLE:
            assert secret.encode() not in raw, secret
        if len(secret) >= MIN_LOG_NEEDLE:
            assert secret not in out, secret

    # Each event's own stored sample: its arguments are there, redacted, without that case's secrets.
    by_pod: dict[str, dict[str, Any]] = {}
    for sample in _samples(db):
        doc = json.loads(sample)
        by_pod[doc["pod"]] = doc
    assert len(by_pod) == len(lines)
    for i, case in enumerate(CASES):
        exec_args = by_pod[f"pod-{i}"]["arguments"]
        traced = by_pod[f"pod-{len(CASES) + i}"]["event_arguments"][0]
        for text in (exec_args, traced):
            assert "[REDACTED]" in text, (case["input"], text)
            for secret in case["secrets"]:
                assert secret not in text, (secret, text)
