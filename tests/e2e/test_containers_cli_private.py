"""``stella-runtime containers`` against a real containerd: what the runtime's metadata may carry stays out.

containerd takes any image name (``ctr images tag``, its API): an image named
``https://ci:SECRET@registry/app:1`` was printed whole in the table, in
``--json`` (``image_ref``) and in the ``image_pull`` event of ``--watch``,
and kept so in the observer's registry and events (the pipeline's fallback
image key). Labels were filtered by the CLI only. The observer now filters
labels, annotations and the image reference as each record and event is
made (lifecycle/scrub.py); the keys it reads (pod identity) are kept. A
Docker container's secret label stays out too (the CLI's own filter, which
did that before, is gone: the observer's must).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.containerd_harness import Containerd, Image, build_image, running
from tests.docker_harness import Dockerd, Registry, docker_available
from tests.e2e.harness import cli
from tests.e2e.test_containers_cli import Lines

SECRET = "cli-ref-secret-4c3b2a"
PRIVATE_REF = f"https://ci:{SECRET}@reg.example.com/team/app:1"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, ref="test.local/h10-private:1")
    ctd.import_image(img)
    return img


def test_image_refs_and_labels_with_credentials_are_never_printed(ctd: Containerd, image: Image) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "containers", "--address", ctd.socket,
         "--namespace", ctd.namespace, "--watch", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    name = uuid.uuid4().hex
    try:
        lines = Lines(proc)
        lines.until(lambda x: "synced" in x, timeout=60)
        ctd.ctr("images", "tag", image.ref, PRIVATE_REF)
        ctd.ctr("run", "-d", "--label", f"db.password={SECRET}",
                "--label", "io.kubernetes.pod.name=cart-1", "--annotation", f"vault.token={SECRET}",
                PRIVATE_REF, name)  # fmt: skip

        def started(x: dict) -> bool:
            return "event" in x and x["event"]["event_type"] == "start" and x["event"]["container_id"] == name

        got = lines.until(started, timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        pulls = [x["event"] for x in got if "event" in x and x["event"]["event_type"] == "image_pull"]
        assert pulls and all(p["image_ref"].startswith("https://ci:[REDACTED]") for p in pulls), pulls
        start = got[-1]["event"]
        assert start["image_ref"].startswith("https://ci:[REDACTED]"), start
        assert start["image_digest"] == image.manifest_digest  # the digest is read with the real name
        assert start["labels"]["db.password"] == "[REDACTED]"
        assert start["labels"]["io.kubernetes.pod.name"] == "cart-1"  # identity: kept
        assert start["annotations"]["vault.token"] == "[REDACTED]"
        assert SECRET not in json.dumps(got)

        for args in (("containers",), ("containers", "--json")):
            r = cli(*args, "--address", ctd.socket, "--namespace", ctd.namespace)
            assert r.returncode == 0, r.stderr
            assert name in r.stdout and "https://ci:[REDACTED]" in r.stdout, r.stdout
            assert SECRET not in r.stdout + r.stderr, r.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ctd.remove_all()
        ctd.ctr("images", "rm", PRIVATE_REF, check=False)


def test_docker_labels_with_secrets_are_never_printed() -> None:
    if not docker_available():
        pytest.fail("dockerd and docker are needed (Debian package docker.io) and root", pytrace=False)
    d = Dockerd()
    reg = Registry(build_image(d.dir))
    try:
        d.start()
        d.docker("pull", reg.ref)
        cid = d.docker("run", "-d", "--network", "none", "-l", f"db.password={SECRET}",
                       "-l", "io.kubernetes.pod.name=api-1", reg.ref)  # fmt: skip
        r = cli("containers", "--runtime", "docker", "--address", d.socket, "--json")
        assert r.returncode == 0, r.stderr
        (row,) = [json.loads(line)["registry"] for line in r.stdout.splitlines()]
        assert row["container_id"] == cid and row["pod_name"] == "api-1"
        assert row["labels"]["db.password"] == "[REDACTED]" and SECRET not in r.stdout + r.stderr
    finally:
        d.teardown()
        reg.close()
