"""End to end: an agent run with the rendering of ``spec.containerRuntime`` reaches its runtime.

A private, real containerd (tests/containerd_harness.py) listens on a socket
in a temporary directory, a path no default mount or default address names, as
k3s's ``/run/k3s/containerd/containerd.sock`` is. The operator's renderer is
given that path as the RuntimeObserver's ``containerRuntime.socketPath``; the
DaemonSet mounts the socket's directory at the same path (so inside the pod
the path is the host's), and the real agent (``stella-runtime agent``), run
with the rendered config's lifecycle section verbatim, must list the
runtime's containers and say so: ``/readyz`` ``lifecycle: in_sync`` and
``lifecycle_state{state="in_sync"}`` 1, not ``no_runtime_socket`` (which
caps every container window at ActiveTracing).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import parse_observer_spec
from stellaops_runtime.controller.agent_config import AGENT_CONFIG_KEY
from stellaops_runtime.controller.render_agent import render_agent_objects
from tests.containerd_harness import Containerd, running
from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


def _rendered(socket: str) -> dict[str, dict[str, Any]]:
    spec = parse_observer_spec(
        {
            "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
            "containerRuntime": {"kind": "containerd", "socketPath": socket},
        }
    )
    objs = render_agent_objects(name="default", uid="u-1", namespace="stellaops-agent", spec=spec)
    return {o["kind"]: o for o in objs}


def test_the_agent_with_the_rendered_config_is_in_sync_with_a_containerd_elsewhere(
    tmp_path: Path, ctd: Containerd, sqlite_at_head: Callable[[Path], str]
) -> None:
    objs = _rendered(ctd.socket)
    pod = objs["DaemonSet"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "runtime-socket"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "runtime-socket"]
    assert volume["hostPath"]["path"] == mount["mountPath"] == os.path.dirname(ctd.socket)
    lifecycle = json.loads(objs["ConfigMap"]["data"][AGENT_CONFIG_KEY])["lifecycle"]
    assert lifecycle["containerdAddress"] == ctd.socket and lifecycle["enabled"] == "auto"

    export = tmp_path / "tetragon.log"
    export.touch()
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": sqlite_at_head(tmp_path / "hot.db")},  # at head: the socket is tested
        symbols={"enabled": False},
        attribution={"enabled": False},
        lifecycle=lifecycle,
    )
    proc = h.start_agent(cfg)
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline and proc.poll() is None:
            if h.scrape(port):
                state = x.readyz(port)[1].get("lifecycle")
                if state == "in_sync":
                    break
            time.sleep(0.2)
        assert state == "in_sync", (state, proc.poll())
        samples = h.scrape(port)
        assert h.metric(samples, "stellaops_runtime_lifecycle_state", state="in_sync") == 1
        assert h.metric(samples, "stellaops_runtime_lifecycle_state", state="no_runtime_socket") == 0
        proc.send_signal(signal.SIGTERM)
        code, out = h.finish(proc)
    finally:
        x.kill_all([proc])
    assert code == 0, out
    assert f"container lifecycle observer: containerd at {ctd.socket}" in out, out[-4000:]
    assert "no runtime socket" not in out
