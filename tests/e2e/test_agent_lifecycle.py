"""The agent's lifecycle end to end: unix socket, filters from config, SIGTERM flushes and exits 0."""

from __future__ import annotations

import asyncio
import signal

import pytest

from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h
from tests.e2e.test_bad_input import _sqlite_rows

pytestmark = pytest.mark.e2e


async def test_sigterm_flushes_and_exits_0_over_a_unix_socket_with_filters(tmp_path, sqlite_at_head) -> None:
    """unix:// address, deny filter from config applied by the server, SIGTERM stops cleanly."""
    events = h.stream_events()
    server = ReplayServer(events)
    sock = tmp_path / "tetragon.sock"
    addr = await server.start(f"unix://{sock}")
    db = tmp_path / "hs.db"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr, "deny": [{"eventTypes": ["PROCESS_UPROBE"]}]},
        store={"url": sqlite_at_head(db)},  # at head (tests/conftest.py): the stop is tested
    )
    wanted = sum(1 for e in events if e.event_type != events_pb2.PROCESS_UPROBE)
    proc = h.start_agent(cfg)  # no --exit-when-idle: only the signal stops it
    try:
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source="tetragon-grpc")
                == wanted
            ),
            what="all non-uprobe events received",
        )
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        await server.stop()
    assert code == 0, out
    assert server.served == wanted == len(events) - 1832
    rows = _sqlite_rows(db)
    assert not [k for k in rows if k[3] == "invoked"]  # every uprobe was denied by the filter
    on_stack = {f"{d}|{m}|{f}": n for (d, m, f, e), (n, _) in rows.items() if e == "on_stack"}
    assert on_stack == dict(h.expected_stack_counts(h.stream_objects()))  # flushed on SIGTERM
