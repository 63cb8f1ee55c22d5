"""A graceful stop's watch record is not held at the entry of a probed call still running (RSW3, s42).

While the native probes run, the watch record's moment is capped at the entry
of the oldest probed call still running (c22c98f): a call is recorded at its
return, so an agent *killed* during it never counted it. A graceful stop is
different: the probes' last read takes every call still in flight as a record
at its entry (native/source_read.py ``_final_counters``), or marks the time
since the load as a gap when it cannot. Yet the runner recorded, as the moment
stop was asked, the same capped moment, so a call that runs for long (a probed
``main``, a worker loop, a blocking read) made every graceful restart (each
upgrade) a node-wide gap from its entry, hours or days: "unknown" about every
image of the node for that time, although every count was stored.

The real Agent runs here with a SQLite store and a spool path; its source is the
real SourceSwitch with the probes' stand-in of tests/unit/test_source_switch_overlap.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.agent.source_switch import BCC, SourceSwitch
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.native.config import NativeConfig
from tests.ports import free_port
from tests.unit.test_source_switch_overlap import CRC32, S, fake_probes


def test_a_graceful_stop_records_the_stop_not_a_long_calls_entry(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    cfg = parse_config({
        "tetragon": {"address": f"127.0.0.1:{free_port()}", "connectionTimeout": 0.3},
        "symbols": {"enabled": False},
        "attribution": {"enabled": False},
        "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}", "spoolPath": str(spool)},
        "metrics": {"port": free_port()},
        "lifecycle": {"enabled": False},
    })  # fmt: skip
    agent = Agent(cfg, node_name="n1")
    sw = agent.source
    assert isinstance(sw, SourceSwitch)
    now = time.time_ns()
    entered, queued = now - 3600 * S, now - S  # a call running for an hour; all read a second ago
    ran: list[int | None] = []

    async def run(stop: asyncio.Event) -> None:  # the probes run (SourceSwitch.run's loop stands by)
        probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
        probes.stats.connected, probes.stats.attached_ns = True, now - 7200 * S
        probes.queued_ns, probes.in_flight_ns = queued, entered
        sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 7300 * S
        sw._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
        sw._drops_marked_ns = queued
        ran.append(sw.watching_ns())
        try:
            await stop.wait()
        finally:  # cancelled (agent/shutdown.py): the last read took the call in flight as a record
            probes.stats.connected, probes.stats.detached_ns = False, time.time_ns()

    sw.run = run  # type: ignore[method-assign]

    async def main() -> int:
        task = asyncio.create_task(agent.run())
        deadline = time.monotonic() + 30
        while not ran:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.01)
        agent.stop("test")
        return await asyncio.wait_for(task, 60)

    assert asyncio.run(main()) == 0
    assert ran == [entered]  # while the probes run, a kill would lose that call: the moment waits
    alive = json.loads((tmp_path / "spool.alive").read_text())["alive_ns"]
    assert alive >= queued, f"the record holds the gap open from {(now - alive) / S:.0f} s ago"
    # every count stored: the runner had the switch mark the probe loads stored (SW3's stored_all),
    # so the next agent skips Tetragon's cached calls up to their last read, not to that moment
    raw = (tmp_path / "spool.probe-loads").read_bytes()
    assert b'"stored": true' in raw and b"crc32" in raw
