"""End to end: a privacy pattern that can backtrack exponentially never freezes the agent.

With ``privacy.extraPatterns: ['(\\w+\\s?)+=secret']`` one process whose command
line is 60 letters and a ``!`` stopped the real agent whole: ``re`` held the
GIL, so no event was counted, ``/metrics`` and ``/readyz`` did not answer and
SIGTERM did not end it. The agent now refuses the pattern at start (exit 2,
the pattern and a possessive rewrite named, no traceback); with the rewrite,
the same stream is processed and the agent exits when idle.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

HOSTILE = "a" * 60 + "!"


def _exec(i: int, arguments: str) -> dict[str, Any]:
    digest = f"{i + 1:064x}"
    process = {
        "exec_id": f"regex-{i}",
        "pid": 100 + i,
        "binary": "/usr/bin/app",
        "arguments": arguments,
        "start_time": "2026-11-24T09:00:00Z",
        "pod": {
            "namespace": "ns",
            "name": f"pod-{i}",
            "container": {
                "id": f"containerd://{digest}",
                "name": "c",
                "image": {"id": f"registry.example.com/app@sha256:{digest}", "name": "app:1"},
            },
        },
    }
    return {"process_exec": {"process": process}, "node_name": "n", "time": "2026-11-24T09:00:00Z"}


def _config(tmp: Path, pattern: str) -> tuple[Path, int]:
    lines = [_exec(0, "--ok 1"), _exec(1, HOSTILE), _exec(2, "db pw=Xy7Secret")]
    export = tmp / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in lines), encoding="utf-8")
    return h.write_config(
        tmp,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": f"sqlite:///{tmp / 'regex.db'}"},
        privacy={"extraPatterns": [pattern]},
    )


async def test_an_exponential_pattern_is_refused_at_start(tmp_path: Path) -> None:
    cfg, _ = _config(tmp_path, r"(\w+\s?)+=secret")
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    code, out = await asyncio.to_thread(h.finish, proc, 60)
    assert code == 2, out
    assert "extraPatterns" in out and "exponential time" in out and "possessive" in out, out
    assert "Traceback" not in out


async def test_the_possessive_rewrite_processes_the_same_stream(tmp_path: Path) -> None:
    cfg, port = _config(tmp_path, r"(?:\w++\s?+)+=(?P<secret>\S+)")
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await h.wait_for(
            lambda: h.metric_sum(h.scrape(port), "stellaops_runtime_events_total") == 3,
            what="all three events counted",
            timeout=60,
        )
        m = h.scrape(port)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert h.metric(m, "stellaops_runtime_fields_redacted_total") == 1
    assert "Xy7Secret" not in out
    stored = await asyncio.to_thread(lambda: b"".join(p.read_bytes() for p in tmp_path.glob("regex.db*")))
    assert b"Xy7Secret" not in stored
