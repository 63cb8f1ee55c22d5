"""``stella-runtime containers`` shows hostile labels escaped, never as rows or terminal controls.

Whoever creates a container chooses its labels, and the table prints the
pod namespace and name from them. A newline in a label forged a row of its
own (a container that is not there, a digest it does not run) and an escape
sequence reached the operator's terminal (clear the screen, retitle the
window). Real containerd; the CLI as a subprocess; the truth is the one
container the test runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stellaops_runtime.cli.containers import _event_line
from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent, LifecycleEventType
from tests.containerd_harness import Containerd, Image, build_image, running
from tests.e2e.harness import cli

pytestmark = [pytest.mark.e2e]

FORGED = "fake-0000  running  1  1  sha256:forged  x/y  evil.example/forged:1"
HOSTILE = f"web\n{FORGED}\x1b[2J\x1b]0;owned\x07\r"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, ref="test.local/hostile-cli:1")
    ctd.import_image(img)
    return img


def _controls(text: str) -> list[str]:
    return [c for c in text if not c.isprintable() and c != "\n"]


def test_a_hostile_pod_label_is_escaped_in_the_table(ctd: Containerd, image: Image) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    ctd.ctr("run", "-d", "--label", "io.kubernetes.pod.namespace=shop",
            "--label", f"io.kubernetes.pod.name={HOSTILE}", image.ref, name)  # fmt: skip
    try:
        r = cli("containers", "--address", ctd.socket, "--namespace", ctd.namespace)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 2 and lines[1].startswith(name), lines  # the header and the one container
        assert _controls(r.stdout) == []
        assert "shop/web\\n" + FORGED + "\\x1b[2J\\x1b]0;owned\\x07\\r" in lines[1]
    finally:
        ctd.remove_all()


def test_a_hostile_event_is_one_escaped_line() -> None:
    ev = ContainerLifecycleEvent(
        event_type=LifecycleEventType.START, runtime="containerd", namespace="k8s.io", container_id="c1",
        labels={"io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": HOSTILE},
    )  # fmt: skip
    line = _event_line(ev)
    assert "\n" not in line and _controls(line) == [] and "pod=shop/web\\n" in line
