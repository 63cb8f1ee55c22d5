"""End to end: an agent run with the rendering of ``spec.tetragon.address`` reaches a Tetragon elsewhere.

A real gRPC replay server (``stella-runtime tetragon-replay --listen
unix://...``) serves Tetragon's API on a socket in a temporary directory, a
path outside the usual ``/var/run/tetragon`` (as a Helm ``tetragon.grpc.address``
changed to ``/var/run/cilium/tetragon``, say, would put it). The
operator's renderer is given that address: the DaemonSet mounts the socket's
directory at the same path (so inside the pod the address is the host's), and
the real agent (``stella-runtime agent``), run with the rendered config's
``tetragon`` section verbatim, must receive every event served, not report
Tetragon unreachable (contracts/tetragon_socket.py).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts.crds import parse_observer_spec
from stellaops_runtime.controller.agent_config import AGENT_CONFIG_KEY
from stellaops_runtime.controller.render_agent import render_agent_objects
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

EVENTS = 40  # the first lines of the synthetic stream: enough to show the stream flows


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory under /tmp: pytest's tmp_path may pass the 107 bytes of a socket address."""
    path = Path(tempfile.mkdtemp(prefix="stellaops-tg-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_agent_with_the_rendered_address_reaches_tetragon_elsewhere(
    tmp_path: Path, socket_dir: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    address = f"unix://{socket_dir}/tetragon.sock"
    spec = parse_observer_spec(
        {"store": {"secretRef": {"name": "stellaops-store", "key": "url"}}, "tetragon": {"address": address}}
    )
    objs = {
        o["kind"]: o
        for o in render_agent_objects(name="default", uid="u-1", namespace="stellaops-agent", spec=spec)
    }
    pod = objs["DaemonSet"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tetragon"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tetragon"]
    assert volume["hostPath"] == {"path": str(socket_dir), "type": "DirectoryOrCreate"}
    assert mount == {"name": "tetragon", "mountPath": str(socket_dir), "readOnly": True}
    tetragon = json.loads(objs["ConfigMap"]["data"][AGENT_CONFIG_KEY])["tetragon"]
    assert tetragon["address"] == address

    stream = tmp_path / "stream.jsonl"
    with gzip.open(h.STREAM, "rt") as f:
        stream.write_text("".join(line for _, line in zip(range(EVENTS), f, strict=False)))
    log = (tmp_path / "replay.log").open("w")
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stellaops_runtime.cli.main",
            "tetragon-replay",
            str(stream),
            "--listen",
            address,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=h.ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert replay.stdout is not None
        line = replay.stdout.readline()  # said once bound: no wait on time
        assert line.startswith("listening on "), (line, (tmp_path / "replay.log").read_text())
        cfg, port = h.write_config(
            tmp_path,
            tetragon=tetragon,  # the rendered section, as written
            store={"url": sqlite_at_head(tmp_path / "hot.db")},  # at head: the address is tested
            symbols={"enabled": False},
            attribution={"enabled": False},
        )
        agent = h.start_agent(cfg)
        try:
            deadline = time.monotonic() + 60  # a condition, not a wait on time: a loaded machine is slow
            processed = 0.0
            while time.monotonic() < deadline and agent.poll() is None and processed < EVENTS:
                samples = h.scrape(port)
                processed = h.metric_sum(samples, "stellaops_runtime_event_processing_latency_seconds_count")
                time.sleep(0.2)
            assert processed == EVENTS, (processed, agent.poll())
            agent.send_signal(signal.SIGTERM)
            code, out = h.finish(agent, 60)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(timeout=30)
    finally:
        replay.terminate()
        replay.wait(timeout=30)
        log.close()
    assert code == 0, out
    assert h.stopped_counts(out).get("received") == EVENTS, out[-4000:]
