"""Tetragon -> BCC -> Tetragon on the real kernel: the agent CLI switches both ways, counts stay exact.

The real agent (a subprocess) streams from the real replay server; the
server is stopped mid-run, the agent falls back to its own BCC probes, a
workload executes a binary of its own N times, the server comes back with
other events and the agent switches back. Then, in the SQLite store:

- the Tetragon events of both server runs are counted exactly as a
  reference pipeline counts them (none lost in a switch, none doubled);
- the binary's exec count from BCC is exactly N;
- windows say which source observed (``tetragon`` / ``bcc``), and the time
  between the sources is a node-wide gap with source ``none``.

Skips, with detect.py's reason, where BCC cannot run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from stellaops_runtime.adapter.common import KERNEL_MODULE
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

EVENTS = h.stream_events()
FIRST, SECOND = EVENTS[:300], EVENTS[300:700]
EXECS = 25
HOST = "host:e2e-node"
P = "stellaops_runtime_"


@pytest.fixture(scope="module")
def report() -> Report:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.PASSIVE:
        pytest.skip(f"native probes cannot run here: {rep.missing}")
    return rep


def _ns(text: str | None) -> int:
    if not text:
        return 0
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1e9)


def stored(db: Path) -> tuple[Counter[tuple[str, str, str, str]], list[tuple[str, str, int, str, int, int]]]:
    with sqlite3.connect(db) as c:
        counts: Counter[tuple[str, str, str, str]] = Counter()
        for image, module, fn, ev, n in c.execute(
            "SELECT image_digest, module, function_name, evidence_kind, invocation_count FROM hot_symbols"
        ):
            counts[(image, module, fn, ev)] += n
        windows = [
            (image, source, n, gs, _ns(gs), _ns(ge))
            for image, source, n, gs, ge in c.execute(
                "SELECT image_digest, source, event_count, gap_start, gap_end FROM observation_windows"
            )
        ]
    return counts, [(i, s, n, g, a, b) for i, s, n, g, a, b in windows]


def reference(config: Path) -> Counter[tuple[str, str, str, str]]:
    """What the pipeline counts for both server runs' events, processed once each."""
    p = Pipeline(parse_config(yaml.safe_load(config.read_text())), node_name="e2e-node")
    p.process_proto([(e.payload, time.monotonic_ns()) for e in (*FIRST, *SECOND)])
    deltas, _ = p.drain()
    out: Counter[tuple[str, str, str, str]] = Counter()
    for d in deltas:
        k = d.key
        out[(k.image_digest, k.module, k.function_name, str(k.evidence))] += d.invocation_count
    return out


def readyz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503 while not ready: the body says why
        return json.loads(e.read())


def scraped(port: int, name: str, **labels: str) -> float:
    return h.metric(h.scrape(port), P + name, **labels)


@pytest.mark.bpf
async def test_the_agent_switches_to_bcc_and_back_without_losing_or_doubling(
    tmp_path: Path, report: Report
) -> None:
    db = tmp_path / "hot.db"
    addr = f"127.0.0.1:{h.free_port()}"
    probes = tmp_path / "probes.json"  # the operator's probe ConfigMap: a policy asking for getppid
    probes.write_text(json.dumps({
        "apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig",
        "policies": {"ObservationPolicy/shop/web": {"syscalls": [{"name": "getppid"}]}},
    }))  # fmt: skip
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        store={"url": f"sqlite:///{db}"},
        native={"fallbackAfterSeconds": 1, "tetragonCheckSeconds": 0.3, "probeConfigFile": str(probes)},
    )
    workload = tmp_path / "stella-switch-workload"
    shutil.copy("/bin/true", workload)
    server = ReplayServer(FIRST)
    await server.start(addr)
    agent = h.start_agent(cfg)
    try:
        await h.wait_for(
            lambda: scraped(port, "events_received_total", source="tetragon-grpc") == len(FIRST),
            timeout=60, what="the first Tetragon run streamed",
        )  # fmt: skip
        t_stop = time.time_ns()
        await server.stop()
        t_stopped = time.time_ns()
        await h.wait_for(
            lambda: scraped(port, "native_connected") == 1
            and scraped(port, "agent_source", source="bcc") == 1,
            timeout=60, what="the BCC probes attached",
        )  # fmt: skip
        ready = await asyncio.to_thread(readyz, port)
        assert ready["source"] == "bcc" and ready["source_connected"] is True and ready["ready"], ready
        for _ in range(EXECS):
            await asyncio.to_thread(subprocess.run, [str(workload)], check=True)
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", "import os; os.getppid()"], check=True)
        await h.wait_for(
            lambda: scraped(port, "native_kernel_events_total", probe="exec", counter="emitted") >= EXECS,
            timeout=60, what="the probes' kernel counters",
        )  # fmt: skip
        assert scraped(port, "native_probe_config_errors_total") == 0
        t_back = time.time_ns()
        server = ReplayServer(SECOND)
        await server.start(addr)
        await h.wait_for(
            lambda: scraped(port, "events_received_total", source="tetragon-grpc") == len(FIRST) + len(SECOND)
            and scraped(port, "agent_source", source="tetragon") == 1,
            timeout=60, what="the second Tetragon run streamed",
        )  # fmt: skip
        samples = h.scrape(port)
        assert h.metric(samples, P + "source_switches_total", to="bcc") == 1
        assert h.metric(samples, P + "source_switches_total", to="tetragon") == 1
        assert h.metric(samples, P + "native_connected") == 0
        assert h.metric(samples, P + "tetragon_connected") == 1
        assert h.metric(samples, P + "events_received_total", source="bcc") >= EXECS
    finally:
        agent.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, agent, 60)
        await server.stop()
    assert code == 0, out
    assert "switching to the agent's own BCC probes" in out, out
    assert "answers again: stopping the BCC probes" in out, out
    assert "Traceback" not in out, out

    counts, windows = stored(db)
    tetragon_rows = Counter({k: n for k, n in counts.items() if not k[0].startswith("host:")})
    assert tetragon_rows == reference(cfg)  # every Tetragon event once: none lost, none doubled
    assert counts[(HOST, str(workload), "", "executed")] == EXECS
    # The probe ConfigMap's syscall was traced: the policy applies on the BCC side too.
    assert counts[(HOST, KERNEL_MODULE, "__x64_sys_getppid", "kernel_call")] >= 1

    sources = {(i, s) for i, s, n, *_ in windows if n}
    assert (HOST, "bcc") in sources, windows
    assert {s for i, s in sources if not i.startswith("host:")} == {"tetragon"}, windows
    gaps = [(a, b) for i, s, n, _, a, b in windows if i == "" and s == "none"]
    assert gaps, windows
    first, last = min(a for a, _ in gaps), max(b for _, b in gaps)
    # From the last moment Tetragon was known alive (its last message, which arrived before the
    # test saw the whole first run and stopped the server), less what it may still have held then
    # (sources/event_hold.py; the recording's stamps are too old to be a backlog), to its return.
    assert t_stop - 10_000_000_000 - CACHE_HOLD_NS <= first <= t_stop - CACHE_HOLD_NS, (
        first,
        t_stop,
        t_stopped,
    )
    assert last >= t_back and last <= time.time_ns(), (last, t_back)
    assert out.count("recorded as a gap") == 2, out  # Tetragon -> BCC, and BCC -> Tetragon


def test_no_tetragon_and_no_bcc_says_why_once_and_never_crash_loops(tmp_path: Path) -> None:
    """BCC's binding hidden (STELLA_BCC_PYTHON_DIR names an empty directory), Tetragon absent."""
    cfg, _ = h.write_config(
        tmp_path,
        tetragon={"address": f"127.0.0.1:{h.free_port()}", "connectionTimeout": 0.3},
        store={"url": f"sqlite:///{tmp_path / 'hot.db'}"},
        native={"fallbackAfterSeconds": 0.3},
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1", STELLA_BCC_PYTHON_DIR=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", "--config", str(cfg),
         "--exit-when-idle", "3"],
        capture_output=True, text=True, timeout=90, cwd=h.ROOT, env=env,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert out.count("BCC probes cannot run on this node") == 1, out  # said once, not per retry
    assert "BCC's Python binding (bcc/__init__.py) is not in" in out, out
    assert "was never reachable" in out and "native probes unavailable" in out, out
    assert "switching to the agent's own BCC probes" not in out and "Traceback" not in out, out
    after = out.split("BCC probes cannot run on this node", 1)[1]
    assert "reconnecting to tetragon" in after, out  # it keeps trying Tetragon
