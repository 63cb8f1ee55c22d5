"""End to end: a command line of thousands of client names does not stop the agent.

``privacy.maxArgumentBytes`` may be raised to 1 MiB; the adapter cuts a field
at 64 Ki characters. A process whose command line was ``curl curl curl ...``
(64 KiB) cost the privacy filter minutes of one scan per word, with the
interpreter's lock held: the real agent counted nothing else, and answered
neither ``/metrics`` nor ``/readyz``, meanwhile. Now the stream (that line,
``docker login login ...``, and a secret next to them) is counted, redacted
and stored, and the agent exits when idle.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.adapter.validate import MAX_TEXT_CHARS
from tests.e2e import harness as h

pytestmark = pytest.mark.e2e


def _exec(i: int, binary: str, arguments: str) -> dict[str, Any]:
    digest = f"{i + 1:064x}"
    process = {
        "exec_id": f"scan-{i}",
        "pid": 100 + i,
        "binary": binary,
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


async def test_thousands_of_client_words_are_filtered_without_stopping_the_agent(tmp_path: Path) -> None:
    lines = [
        _exec(0, "/bin/sh", "curl " * (MAX_TEXT_CHARS // 5)),
        _exec(1, "/usr/bin/docker", "login " * (MAX_TEXT_CHARS // 6 - 10) + "-u me -p DockerPw7q"),
        _exec(2, "/usr/bin/app", "--password=AppPw3z"),
    ]
    export = tmp_path / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in lines), encoding="utf-8")
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": f"sqlite:///{tmp_path / 'scan.db'}"},
        privacy={"maxArgumentBytes": 1 << 20},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await h.wait_for(
            lambda: h.metric_sum(h.scrape(port), "stellaops_runtime_events_total") == len(lines),
            what="every event counted",
            timeout=60,
        )
        m = h.scrape(port)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert h.metric(m, "stellaops_runtime_fields_redacted_total") == 2
    stored = await asyncio.to_thread(lambda: b"".join(p.read_bytes() for p in tmp_path.glob("scan.db*")))
    assert b"DockerPw7q" not in stored and b"AppPw3z" not in stored
    assert b"-p [REDACTED]" in stored
