"""Tetragon's JSON export written live for a real agent that runs the container lifecycle observer.

The lifecycle e2e tests (test_agent_lifecycle_containers.py, test_agent_lifecycle_cri.py,
test_posture_silent_container_e2e.py) each wrote kprobe events of containers named only by
``process.docker`` (31 characters, no pod, no image: Tetragon without its Kubernetes
informer) to the export file every 0.2 s, and configured the agent the same way: SQLite
store, the export file read from its start, no symbols, no attribution, short windows.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e import harness as h

NODE = "e2e-node"
FUNCTION = "__x64_sys_write"


def kprobe(docker: str, stack: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A kprobe event of ``FUNCTION`` now, in the container ``docker``; with ``stack``, its user stack."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    proc = {"exec_id": "ZXhlYzE=", "pid": 7, "binary": "/prog", "docker": docker}
    body: dict[str, Any] = {"process": proc, "function_name": FUNCTION, "policy_name": "stellaops-syscalls"}
    if stack is not None:
        body["user_stack_trace"] = stack
    return {"process_kprobe": body, "node_name": NODE, "time": stamp}


class ExportWriter:
    """Appends one kprobe event of each of ``dockers`` to the export file every 0.2 s, as Tetragon does."""

    def __init__(self, path: Path, dockers: list[str], stack: list[dict[str, str]] | None = None) -> None:
        self.path, self.dockers, self.stack = path, dockers, stack
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with self.path.open("a") as f:
                f.write("".join(json.dumps(kprobe(d, self.stack)) + "\n" for d in self.dockers))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def lifecycle_agent_config(
    tmp_path: Path, *, url: str, window_seconds: float, lifecycle: dict[str, Any]
) -> tuple[Path, int, Path, str]:
    """(config, metrics port, export file, store URL) of an agent reading the export file from its
    start into ``url`` (tests/conftest.py's ``sqlite_at_head`` copy: lifecycle windows are tested
    here, not the migrations), with ``lifecycle`` as its lifecycle section."""
    export = tmp_path / "tetragon.log"
    export.touch()
    config, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        hotSymbols={"aggregationWindowSeconds": window_seconds, "flushIntervalSeconds": 0.5},
        store={"url": url},
        symbols={"enabled": False},
        attribution={"enabled": False},
        lifecycle=lifecycle,
    )
    return config, port, export, url


def containerd_lifecycle(socket: str, namespace: str) -> dict[str, Any]:
    """The lifecycle section of an agent following a private containerd."""
    return {
        "enabled": True,
        "containerdAddress": socket,
        "containerdNamespace": namespace,
        "windowSettleSeconds": 0.5,
    }
