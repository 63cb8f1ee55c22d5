"""``--exit-when-idle`` stops only an agent that is idle: its source read to the end, its counts stored.

Before, "idle" meant only "no event arrived for N seconds", counted from the
agent's creation: an agent busy starting up, or whose export-file reader was
behind (a long line, a loaded machine), exited 0 having read part of its
file (one such agent stopped after 558 of 20,000 events), and the e2e tests
that use the flag could hide the lost counts. Now an export-file source must
have read its file to the end after the last event arrived, and an agent
that ends without storing everything (rows spooled for the next start, or
lost) exits 2 saying how many.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h
from tests.e2e.test_spool_shared import config as spool_config
from tests.e2e.test_store_failures import GOOD, config, expected, stored

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# One line the reader needs many reads for before the first event arrives (under the 64 MiB line
# limit, so it is one malformed event, not a drop): the reader is busy, no event arrives meanwhile.
LONG_LINE = b"x" * (48 << 20)


async def test_an_agent_whose_reader_is_behind_is_not_idle(tmp_path: Path, pg_url: str) -> None:
    export = tmp_path / "tetragon.log"
    export.write_bytes(LONG_LINE + b"\n" + b"\n".join(GOOD) + b"\n")
    cfg, _port = config(tmp_path, pg_url, export)
    code, out = await asyncio.to_thread(h.finish, h.start_agent(cfg, "--exit-when-idle", "0.1"), 120)
    assert code == 0, out
    assert f"{len(GOOD) + 1} events received, {len(GOOD)} processed" in out, out  # the long line: malformed
    assert stored(pg_url) == expected()


async def test_rows_left_unstored_at_an_idle_exit_are_named_and_exit_2(tmp_path: Path, pg: Any) -> None:
    with socket.socket() as s:  # a port nobody listens on: the store never answers
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    spool = tmp_path / "hot.spool"
    url = f"postgresql+psycopg://postgres@127.0.0.1:{dead}/nowhere"
    # exportFromStart off: the file is empty when the agent opens it, so it reads the same lines
    # without first waiting 10 s for the silent store to say whether the node is new
    # (sources/export_restart.py, HISTORY_WAIT_SECONDS), as tests/e2e/test_spool_shared.py does.
    cfg, port = spool_config(tmp_path, url, export, spool, from_start=False)
    proc = h.start_agent(cfg, "--exit-when-idle", "1")
    # Written once the agent follows the file, read from where it ended when opened.
    try:
        await h.wait_for(lambda: x.connected(port), what="the agent follows the file", timeout=60)
    except BaseException:
        proc.kill()
        raise
    export.write_bytes(b"\n".join(GOOD) + b"\n")
    code, out = await asyncio.to_thread(h.finish, proc, 120)
    assert code == 2, out
    assert spool.exists(), out  # kept for the next start, as without the flag
    assert "--exit-when-idle: " in out and "rows were not stored" in out, out
