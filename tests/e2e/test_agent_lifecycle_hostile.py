"""A runtime socket that is absent, refuses or hangs: counted and said, and the agent keeps working.

Four agents (in this process, each with its own store and metrics port)
run with ``lifecycle.enabled: true`` against a containerd socket path nobody
serves, a unix socket that refuses connections (bound, never listening), one
that accepts and then never answers, and a Docker socket path nobody serves. Each must count the failures
(``lifecycle_stream_errors_total``), log why, keep retrying, store every
Tetragon event exactly, give no lifecycle window, and stop with exit 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.schema import hot_symbols, observation_windows
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

EVENTS = 40
DOCKER = "0123456789abcdef0123456789abcde"
STAMPS: dict[str, float] = {}  # each agent's directory: the stamp (whole seconds) of its file's lines


@pytest.fixture
def hanging(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never reads or writes a byte."""
    path = str(tmp_path / "hang.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(16)
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


@pytest.fixture
def refusing(tmp_path: Path) -> Iterator[str]:
    """A unix socket bound but not listening: every connection is refused."""
    path = str(tmp_path / "refuse.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    yield path
    s.close()


def export_file(path: Path, now: float) -> Path:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now))
    with path.open("w") as f:
        for i in range(EVENTS):
            proc = {"exec_id": f"e{i}", "pid": 7, "binary": "/prog", "docker": DOCKER}
            body = {"process": proc, "function_name": "__x64_sys_read"}
            f.write(json.dumps({"process_kprobe": body, "node_name": "n1", "time": stamp}) + "\n")
    return path


def agent_for(tmp: Path, address: str, runtime: str) -> Agent:
    """An agent reading a file of EVENTS lines all stamped at this second (STAMPS)."""
    tmp.mkdir()
    now = time.time()
    STAMPS[str(tmp)] = float(int(now))
    open_store(f"sqlite:///{tmp}/hot.db").close()  # migrated here: Alembic is not for three agents at once
    cfg = parse_config(
        {
            "tetragon": {"exportFile": str(export_file(tmp / "tetragon.log", now)), "exportFromStart": True},
            "hotSymbols": {"aggregationWindowSeconds": 1, "flushIntervalSeconds": 0.3},
            "store": {"url": f"sqlite:///{tmp}/hot.db"},
            "metrics": {"address": "127.0.0.1", "port": 0},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "lifecycle": {
                "enabled": True,
                "runtime": runtime,
                "containerdAddress": address,
                "dockerAddress": address,
                "connectionTimeout": 0.5,
                "reconnectInitialSeconds": 0.1,
                "reconnectMaxSeconds": 0.3,
                "windowSettleSeconds": 0,
            },
        }
    )
    return Agent(cfg, node_name="n1")


def stored(url: str, stamp: float) -> tuple[int, set[str]]:
    """The counts and the images of the windows. Node-wide rows (image '') are taken only as the gap
    of the event cache's hold about the first line's stamp (the file is read from its start:
    sources/export_restart.py ``_first_unwatched``), with no event and nothing dropped."""
    ow = observation_windows.c
    eng = create_store_engine(url)
    try:
        with eng.connect() as conn:
            calls = conn.execute(sa.select(sa.func.sum(hot_symbols.c.invocation_count))).scalar_one()
            images = set(
                conn.execute(sa.select(ow.image_digest).where(ow.image_digest != NODE_WIDE)).scalars()
            )
            cols = (ow.event_count, ow.dropped_events, ow.gap_start, ow.gap_end)
            node_wide = conn.execute(sa.select(*cols).where(ow.image_digest == NODE_WIDE)).all()
    finally:
        eng.dispose()
    hold = CACHE_HOLD_NS / 1e9
    assert 1 <= len(node_wide) <= 2 * hold + 2, node_wide  # a row per 1 s window the hold crosses
    for count, dropped, start, end in node_wide:
        assert (count, dropped) == (0, 0) and start is not None and end is not None, node_wide
        assert stamp - hold <= start.timestamp() < end.timestamp() <= stamp + hold, (stamp, node_wide)
    return int(calls or 0), images


async def test_a_runtime_socket_that_is_absent_refuses_or_hangs(
    tmp_path: Path, hanging: str, refusing: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stellaops_runtime.lifecycle.base")
    addresses = {
        "absent": str(tmp_path / "nobody.sock"),
        "refuses": refusing,
        "hangs": hanging,
        "docker-absent": str(tmp_path / "no-docker.sock"),
    }
    runtime = {name: "docker" if name.startswith("docker") else "containerd" for name in addresses}
    agents = {name: agent_for(tmp_path / name, addr, runtime[name]) for name, addr in addresses.items()}
    tasks = [asyncio.create_task(a.run()) for a in agents.values()]

    def settled() -> bool:
        return all(
            a.lifecycle is not None
            and a.lifecycle.observer is not None
            and a.lifecycle.observer.stats.stream_errors >= 2
            and a.pending.rows_flushed > 0
            and a.http_port
            for a in agents.values()
        )

    try:
        await h.wait_for(settled, timeout=60, what="failures counted and events stored")
        for name, a in agents.items():
            m = await asyncio.to_thread(h.scrape, a.http_port)
            assert h.metric(m, "stellaops_runtime_lifecycle_stream_errors_total") >= 2, name
            assert h.metric(m, "stellaops_runtime_lifecycle_connected") == 0, name
            assert h.metric(m, "stellaops_runtime_lifecycle_watching") == 0, name
            assert h.metric(m, "stellaops_runtime_tetragon_connected") == 1, name  # the source is fine
    finally:
        for a in agents.values():
            a.stop("test")
        codes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert codes == [0, 0, 0, 0]
    for name, a in agents.items():
        # Every event stored exactly, under the container id (nothing to enrich it from); no lifecycle window.
        stamp = STAMPS[str(tmp_path / name)]
        assert stored(a.config.store.url, stamp) == (EVENTS, {f"container:{DOCKER}"}), name
        assert a.lifecycle is not None and a.lifecycle.runs.stats.rows == 0, name
        said = [r.getMessage() for r in caplog.records if addresses[name] in r.getMessage()]
        assert any(m.startswith(f"{runtime[name]} event stream at {addresses[name]}: ") for m in said), (
            name,
            said,
        )
