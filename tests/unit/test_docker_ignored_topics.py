"""The Docker observer's ignored events are counted by type and action, never by the command of an exec.

The Engine names an exec's event by its command line: ``exec_create: <entrypoint> <args>``, and
``exec_start`` likewise (moby ``daemon/exec.go``; health checks too, ``daemon/health.go``). Ignored
events are counted in ``lifecycle_events_ignored_total`` by their topic, a metric label: the command, a
password given on it among the rest, must not become one.
"""

from __future__ import annotations

import asyncio
import json

from stellaops_runtime.lifecycle.docker_client import DockerClient
from stellaops_runtime.lifecycle.docker_observer import DockerObserver
from stellaops_runtime.lifecycle.metrics import lifecycle_metrics

SECRET = "hunter2-s3cret"


def _line(action: str) -> bytes:
    msg = {"Type": "container", "Action": action, "Actor": {"ID": "c" * 64, "Attributes": {}}, "timeNano": 1}
    return json.dumps(msg).encode()


def test_an_exec_command_is_no_metric_label() -> None:
    obs = DockerObserver(DockerClient("unix:///nonexistent/docker.sock"))
    for action in (
        f"exec_create: mysql -p{SECRET}",
        f"exec_start: mysql -p{SECRET}",
        "health_status: healthy",
    ):
        assert asyncio.run(obs._handle(_line(action))) == []
    exposed = repr(list(lifecycle_metrics(obs.stats, containers=0, cgroups=0)))
    assert SECRET not in exposed
    assert obs.stats.ignored == {
        "container/exec_create": 1,
        "container/exec_start": 1,
        "container/health_status": 1,
    }
