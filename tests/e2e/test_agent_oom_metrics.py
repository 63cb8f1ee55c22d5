"""The real agent's /metrics say what its OOM watch saw and lost (lifecycle/oom_watch.py).

The OOM watch holds each running container's OOM counter open and reads it
when the kernel says it changed; it gives up a container when its watch
limit is reached, and loses new-cgroup notifications when the kernel's
inotify queue overflows. Before, none of these counts left the process (one
warning line at most): an operator could not see that OOM kills of
containers their runtime missed went uncounted. The agent
(``stella-runtime agent``, lifecycle on a private containerd) now exposes
``lifecycle_oom_notifications_total``, ``lifecycle_oom_unwatched_total`` and
``lifecycle_oom_births_overflows_total``; a process exec'd into a running,
memory-limited container allocates until the kernel OOM-kills it, and the
notification is counted.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.containerd_harness import Containerd, Image, build_image, running
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

P = "stellaops_runtime_"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, ref="test.local/h10-oom:1")
    ctd.import_image(img)
    return img


def _wait(
    port: int, proc: subprocess.Popen[str], cond: Callable[[dict], bool], what: str, timeout: float = 60
) -> dict:
    deadline = time.monotonic() + timeout
    samples: dict = {}
    while time.monotonic() < deadline and proc.poll() is None:
        samples = h.scrape(port)
        if samples and cond(samples):
            return samples
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last samples: {sorted(k[0] for k in samples)}")


def test_the_oom_watch_counts_reach_the_agent_metrics(
    ctd: Containerd, image: Image, tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    name = uuid.uuid4().hex * 2
    export = tmp_path / "tetragon.log"
    export.touch()
    config, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export)},
        store={"url": sqlite_at_head(tmp_path / "hot.db")},  # at head: what is tested is the OOM watch
        symbols={"enabled": False},
        attribution={"enabled": False},
        lifecycle={"enabled": True, "containerdAddress": ctd.socket, "containerdNamespace": ctd.namespace},
    )
    ctd.ctr("run", "-d", "--memory-limit", str(32 << 20), image.ref, name, "/prog", "sleep", "600")
    proc = h.start_agent(config)
    try:
        m = _wait(port, proc, lambda s: h.metric(s, P + "lifecycle_cgroups") >= 1, "the container's cgroup")
        for family in (
            "notifications",
            "unwatched",
            "births_overflows",
            "early_evicted",
            "parents_unwatched",
        ):
            assert (P + f"lifecycle_oom_{family}_total", ()) in m, family
        for loss in ("unwatched", "births_overflows", "early_evicted", "parents_unwatched"):
            assert h.metric(m, P + f"lifecycle_oom_{loss}_total") == 0, loss  # the parent is watched
        # A process of the container allocates past its limit: the kernel OOM-kills it and
        # announces the change of the container's OOM counter, which the watch holds open.
        rc = ctd.ctr_status("task", "exec", "--exec-id", "eat", name, "/prog", "eat")
        assert rc != 0, "the allocating process was not killed"
        _wait(
            port,
            proc,
            lambda s: h.metric(s, P + "lifecycle_oom_notifications_total") >= 1,
            "the notification",
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc_agent, out = h.finish(proc)
        ctd.remove_all()
    assert rc_agent == 0, out[-4000:]
