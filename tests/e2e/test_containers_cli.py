"""``stella-runtime containers`` as an operator runs it, against a real containerd.

The CLI runs as a subprocess: its list must show the running container with
the pid, cgroup v2 id (the inode of the cgroup directory, read here), image
digest and pod that the kernel and containerd have; ``--watch --json`` must
stream the events that follow and end cleanly on SIGTERM; an unreachable
socket is exit status 2 with a message, not a traceback.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from tests.containerd_harness import Containerd, Image, build_image, running
from tests.docker_harness import Dockerd, Registry, docker_available
from tests.e2e.harness import cli

SECRET = "cli-secret-9f8e7d"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, env=(f"SERVICE_TOKEN={SECRET}",))
    ctd.import_image(img)
    return img


class Lines:
    """The JSON lines a subprocess prints, read by a thread (select on a buffered pipe would miss lines)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(json.loads(line))
        self.queue.put(None)

    def until(self, pred: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Lines up to and including the first that satisfies ``pred``."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is None:
                raise AssertionError(f"no matching line within {timeout}s: {got}")
            got.append(item)
            if pred(item):
                return got


def test_list_shows_running_containers_with_kernel_facts(ctd: Containerd, image: Image) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    ctd.ctr(
        "run",
        "-d",
        "--label",
        "io.kubernetes.pod.namespace=ns1",
        "--label",
        "io.kubernetes.pod.name=web-0",
        "--label",
        f"db.password={SECRET}",
        "--label",
        f"deploy.note=mysql -u app --password={SECRET}",
        "--label",
        "team=payments",
        image.ref,
        name,
    )
    try:
        pid = ctd.task_pid(name)
        info = CgroupResolver().resolve(pid)
        assert info is not None
        inode = os.stat(
            next(
                line.split()[4]
                for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split(" - ")[1].startswith("cgroup2 ")
            )
            + info.path
        ).st_ino

        r = cli("containers", "--address", ctd.socket, "--namespace", "k8s.io", "--json")
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line)["registry"] for line in r.stdout.splitlines()]
        row = next(x for x in rows if x["container_id"] == name)
        assert (row["pid"], row["cgroup_id"], row["status"]) == (pid, inode, "running")
        assert row["image_digest"] == image.manifest_digest
        assert (row["pod_namespace"], row["pod_name"]) == ("ns1", "web-0")
        assert "SERVICE_TOKEN=[REDACTED]" in row["env_vars"] and SECRET not in r.stdout
        # Labels are chosen by whoever starts the container: their values are filtered like the
        # environment (a secret's name loses its value, others go through the argument rules);
        # the ones naming the pod are shown as they are.
        labels = row["labels"]
        assert labels["db.password"] == "[REDACTED]" and labels["team"] == "payments"
        assert (
            labels["deploy.note"].startswith("mysql -u app --password=")
            and SECRET not in labels["deploy.note"]
        )
        assert labels["io.kubernetes.pod.name"] == "web-0"

        table = cli("containers", "--address", ctd.socket)
        assert table.returncode == 0, table.stderr
        line = next(x for x in table.stdout.splitlines() if x.startswith(name))
        assert f" {pid} " in line and f" {inode} " in line and "ns1/web-0" in line and image.ref in line
    finally:
        ctd.remove_all()


def test_watch_streams_events_and_stops_on_sigterm(ctd: Containerd, image: Image) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stellaops_runtime.cli.main",
            "containers",
            "--address",
            ctd.socket,
            "--watch",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(proc)
        lines.until(lambda x: "synced" in x)  # subscribed and listed: what follows is new
        ctd.ctr("run", "-d", "--label", f"api-token={SECRET}", image.ref, name, "/prog", "exit", "4")
        got = lines.until(
            lambda x: (
                "event" in x and x["event"]["event_type"] == "die" and x["event"]["container_id"] == name
            )
        )
        kinds = [x["event"]["event_type"] for x in got if "event" in x and x["event"]["container_id"] == name]
        assert kinds[:3] == ["create", "start", "die"]
        assert got[-1]["event"]["exit_code"] == 4
        assert got[-1]["event"]["image_digest"] == image.manifest_digest
        assert got[-1]["event"]["labels"]["api-token"] == "[REDACTED]" and SECRET not in json.dumps(got)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ctd.remove_all()


def test_watch_into_a_closed_pipe_ends_quietly(ctd: Containerd, image: Image) -> None:
    """``containers --watch | head -1``: at the next event after the reader left, the CLI ends quietly."""
    cmd = (
        f"{sys.executable} -m stellaops_runtime.cli.main containers --watch --address {ctd.socket} | head -1"
    )
    proc = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("CONTAINER")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ctd.ctr("run", "-d", image.ref, f"pipe-{uuid.uuid4().hex[:8]}", "/prog", "exit", "0")
            time.sleep(0.5)
        assert proc.wait(timeout=5) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ctd.remove_all()


def test_unreachable_socket_is_exit_2_with_a_message(tmp_path: Path) -> None:
    for runtime in ("containerd", "docker"):
        r = cli(
            "containers", "--runtime", runtime, "--address", str(tmp_path / "none.sock"), "--timeout", "1"
        )
        assert r.returncode == 2
        assert f"cannot read containers from {runtime}" in r.stderr and "Traceback" not in r.stderr


def test_docker_runtime_list(tmp_path: Path) -> None:
    if not docker_available():
        pytest.fail("dockerd and docker are needed (Debian package docker.io) and root", pytrace=False)
    d = Dockerd()
    reg = Registry(build_image(d.dir))
    try:
        d.start()
        d.docker("pull", reg.ref)
        cid = d.docker("run", "-d", "--network", "none", "-l", "io.kubernetes.pod.name=api-1", reg.ref)
        pid = int(d.docker("inspect", "-f", "{{.State.Pid}}", cid))
        r = cli("containers", "--runtime", "docker", "--address", d.socket, "--json")
        assert r.returncode == 0, r.stderr
        (row,) = [json.loads(line)["registry"] for line in r.stdout.splitlines()]
        assert (row["container_id"], row["pid"], row["status"]) == (cid, pid, "running")
        assert row["image_digest"] == reg.digest and row["pod_name"] == "api-1" and row["cgroup_id"] > 0
    finally:
        d.teardown()
        reg.close()
