"""An agent that never reached its source says so and exits 2 (README: "server unreachable").

With ``--exit-when-idle`` a run that never connected used to exit 0 silently,
indistinguishable from a quiet cluster. A source that was reached and then
went quiet is still a normal idle stop (exit 0).
"""

from __future__ import annotations

import asyncio

import pytest

from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h

pytestmark = pytest.mark.e2e


def test_tetragon_never_reachable_exits_2_with_the_reason(tmp_path, sqlite_at_head) -> None:
    addr = f"127.0.0.1:{h.free_port()}"  # nothing listens there
    cfg, _ = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": sqlite_at_head(tmp_path / "s.db")}
    )
    code, out = h.finish(h.start_agent(cfg, "--exit-when-idle", "1.5"), 60)
    assert code == 2, out
    assert f"Tetragon at {addr} was never reachable" in out
    assert "Traceback" not in out


def test_export_file_never_present_exits_2_with_the_reason(tmp_path, sqlite_at_head) -> None:
    missing = tmp_path / "tetragon.log"
    cfg, _ = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(missing), "exportFromStart": True},
        store={"url": sqlite_at_head(tmp_path / "s.db")},
    )
    code, out = h.finish(h.start_agent(cfg, "--exit-when-idle", "1"), 60)
    assert code == 2, out
    assert f"export file {missing} was never reachable (export file {missing} does not exist)" in out


async def test_a_reached_source_that_goes_quiet_is_a_normal_idle_stop(tmp_path, sqlite_at_head) -> None:
    events = h.stream_events()[:50]
    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    try:
        cfg, _ = h.write_config(
            tmp_path, tetragon={"address": addr}, store={"url": sqlite_at_head(tmp_path / "s.db")}
        )
        code, out = await asyncio.to_thread(h.finish, h.start_agent(cfg, "--exit-when-idle", "1.5"), 60)
    finally:
        await server.stop()
    assert code == 0, out
    assert "never reachable" not in out
    assert "50 events received, 50 processed" in out
