"""The agent runs the lifecycle observer: real containerd, real containers, the real agent CLI.

A private containerd (tests/containerd_harness.py) runs two containers of
images built in the test: CALLED (its process makes syscalls Tetragon
reports) and IDLE (runs, never makes a call Tetragon reports); a third image,
NEVER, is imported and never run. Tetragon's JSON export, written live by the
test, holds kprobe events of the CALLED container named only by
``process.docker`` (31 characters, no pod, no image: Tetragon without its
Kubernetes informer). The agent (``stella-runtime agent``) with
``lifecycle.enabled: true`` must

- have both containers in its registry and fill the CALLED events' image
  digest and pod from it (the counts land under the image digest);
- give IDLE observation windows with no events at posture Passive (it ran
  here, but the CALLED container's kprobe events say nothing of which probes
  selected IDLE), so ``query observed`` says "unknown ... only at posture
  Passive" for it, never "not observed", and "unknown ... no observation
  window" for NEVER;
- after a restart while the containers run, rebuild its registry and go on
  adding windows, keeping the ones stored before.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.store.engine import create_store_engine
from stellaops_runtime.store.schema import hot_symbols, observation_windows
from tests.containerd_harness import Containerd, Image, build_image, running
from tests.e2e import harness as h
from tests.e2e.lifecycle_export import (
    FUNCTION,
    NODE,
    ExportWriter,
    containerd_lifecycle,
    lifecycle_agent_config,
)

pytestmark = [pytest.mark.e2e]

POD = ("--label", "io.kubernetes.pod.namespace=shop", "--label", "io.kubernetes.pod.name=cart-1")


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def images(ctd: Containerd) -> dict[str, Image]:
    out = {}
    for name in ("called", "idle", "never"):  # a different environment: a different digest each
        img = build_image(ctd.dir, ref=f"test.local/h2-{name}:1", env=(f"ROLE={name}",))
        ctd.import_image(img)
        out[name] = img
    return out


def windows_of(url: str, image: str) -> dict[int, tuple[int, int | None]]:
    """window start (s) -> (events, posture rank) of ``image``'s observation windows."""
    eng = create_store_engine(url)
    try:
        with eng.connect() as conn:
            o = observation_windows.c
            rows = conn.execute(
                sa.select(o.window_start, o.event_count, o.posture_level).where(o.image_digest == image)
            ).all()
    finally:
        eng.dispose()
    return {int(r.window_start.timestamp()): (int(r.event_count), r.posture_level) for r in rows}


def run_agent(
    config: Path, port: int, until: Any, what: str, *, on_sync: Any = None, timeout: float = 40
) -> tuple[str, dict]:
    """Start the agent, call ``on_sync()`` once its registry is in sync, wait for ``until(metrics)``,
    stop it with SIGTERM; (output, last metrics)."""
    proc = h.start_agent(config)
    deadline = time.monotonic() + timeout
    samples: dict = {}
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            samples = h.scrape(port)
            if on_sync is not None and h.metric(samples, "stellaops_runtime_lifecycle_connected") == 1:
                on_sync()
                on_sync = None
            if samples and on_sync is None and until(samples):
                break
            time.sleep(0.3)
        else:
            proc.kill()
            out, _ = proc.communicate()
            raise AssertionError(f"timed out waiting for {what}:\n{out[-4000:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    rc, out = h.finish(proc)
    assert rc == 0, out
    return out, samples


def query(url: str, image: str) -> tuple[int, str]:
    r = h.cli("query", "observed", "--image", image, "--function", FUNCTION, "--store", url)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout + r.stderr


def test_the_agent_enriches_events_and_records_windows_of_containers_that_ran(
    ctd: Containerd, images: dict[str, Image], tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    called, idle = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2  # 64 hex characters, as runtimes name them
    ctd.ctr("run", "-d", *POD, images["called"].ref, called)
    ctd.ctr("run", "-d", images["idle"].ref, idle)
    config, port, export, url = lifecycle_agent_config(
        tmp_path,
        url=sqlite_at_head(tmp_path / "hot.db"),
        # Both waits below are for windows to close (1 s ones, as the next test's; 2 s ones
        # doubled each wait): the same rows, counted and checked the same way.
        window_seconds=1,
        lifecycle=containerd_lifecycle(ctd.socket, ctd.namespace),
    )
    digest_called, digest_idle = images["called"].manifest_digest, images["idle"].manifest_digest
    writers: list[ExportWriter] = []
    try:

        def idle_windows(samples: dict) -> bool:
            return h.metric(samples, "stellaops_runtime_lifecycle_window_rows_total") >= 2 and bool(
                windows_of(url, digest_idle)
            )

        # Tetragon's events start once the registry is in sync (before it, they cannot be enriched).
        def write_events() -> None:
            writers.append(ExportWriter(export, [called[:31]]))

        _, m = run_agent(config, port, idle_windows, "windows of the idle image", on_sync=write_events)
        assert h.metric(m, "stellaops_runtime_lifecycle_containers") == 2
        assert h.metric(m, "stellaops_runtime_lifecycle_cgroups") == 2
        assert h.metric(m, "stellaops_runtime_lifecycle_connected") == 1
        assert h.metric(m, "stellaops_runtime_lifecycle_enriched_total", field="image_digest") > 0
        assert h.metric(m, "stellaops_runtime_lifecycle_enriched_total", field="pod") > 0

        # The CALLED events were filed under the image digest from the registry, with the pod.
        eng = create_store_engine(url)
        with eng.connect() as conn:
            c = hot_symbols.c
            rows = conn.execute(
                sa.select(c.image_digest, c.function_name, c.invocation_count, c.sample)
            ).all()
        eng.dispose()
        assert {r.image_digest for r in rows} == {digest_called}, rows
        [row] = [r for r in rows if r.function_name == FUNCTION]
        sample = row.sample if isinstance(row.sample, dict) else json.loads(row.sample)
        assert row.invocation_count > 0 and (sample["namespace"], sample["pod"]) == ("shop", "cart-1")

        # IDLE: windows with no events, at Passive: the node's kprobe events (CALLED's) show nothing
        # of which probes selected IDLE, so no "not observed" may rest on them.
        before = windows_of(url, digest_idle)
        assert before and all(events == 0 and rank == 1 for events, rank in before.values()), before
        rc, text = query(url, digest_idle)
        assert rc == 3 and text.startswith("unknown") and "only at posture Passive" in text, text
        assert query(url, digest_called)[0] == 0
        rc, text = query(url, images["never"].manifest_digest)
        assert rc == 3 and "unknown" in text and "no observation window" in text, text

        # Restarted while the containers run: the registry is rebuilt, windows go on, old ones stay.
        def more_windows(samples: dict) -> bool:
            return (
                h.metric(samples, "stellaops_runtime_lifecycle_containers") == 2
                and len(windows_of(url, digest_idle).keys() - before.keys()) >= 1
            )

        _, m = run_agent(config, port, more_windows, "windows after the restart")
        assert h.metric(m, "stellaops_runtime_lifecycle_resyncs_total") >= 1
        after = windows_of(url, digest_idle)
        assert before.items() <= after.items(), (before, after)
        assert query(url, digest_idle)[0] == 3
    finally:
        for w in writers:
            w.close()
        ctd.remove_all()


async def test_no_window_while_the_event_source_is_not_connected(
    ctd: Containerd, images: dict[str, Image], tmp_path: Path
) -> None:
    """The runtime is watched, but Tetragon is unreachable: nobody could have seen a call, so no
    watched window; the time the image ran here unwatched is a gap of the image (source ``none``)."""
    idle = uuid.uuid4().hex * 2
    ctd.ctr("run", "-d", images["idle"].ref, idle)
    url = f"sqlite:///{tmp_path}/hot.db"
    cfg = parse_config(
        {
            "tetragon": {"address": f"127.0.0.1:{h.free_port()}", "reconnectInitialSeconds": 0.1,
                         "reconnectMaxSeconds": 0.3, "connectionTimeout": 0.5},
            "hotSymbols": {"aggregationWindowSeconds": 1, "flushIntervalSeconds": 0.3},
            "store": {"url": url},
            "metrics": {"address": "127.0.0.1", "port": 0},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "lifecycle": {"enabled": True, "containerdAddress": ctd.socket,
                          "containerdNamespace": ctd.namespace, "windowSettleSeconds": 0},
        }
    )  # fmt: skip
    agent = Agent(cfg, node_name=NODE)
    task = asyncio.create_task(agent.run())
    try:
        part = agent.lifecycle
        assert part is not None

        def registry_in_sync() -> bool:
            obs = part.observer
            return (
                obs is not None and obs.stats.connected and len(obs.registry) == 1 and obs.stats.connects > 0
            )

        await h.wait_for(registry_in_sync, timeout=60, what="the registry in sync")
        await asyncio.sleep(3.5)  # three whole windows with the container running
        t_away = time.time()  # every second before this one, from the first sample on, is unwatched
        m = await asyncio.to_thread(h.scrape, agent.http_port)
        assert h.metric(m, "stellaops_runtime_lifecycle_connected") == 1
        assert h.metric(m, "stellaops_runtime_tetragon_connected") == 0
        assert h.metric(m, "stellaops_runtime_lifecycle_watching") == 0
        assert h.metric(m, "stellaops_runtime_lifecycle_unwatched_gap_rows_total") > 0
    finally:
        agent.stop("test")
        assert await asyncio.wait_for(task, 60) == 0
        ctd.remove_all()
    assert part.runs.stats.rows == 0
    windows = windows_of(url, images["idle"].manifest_digest)
    assert windows and all(v == (0, None) for v in windows.values()), windows  # gaps, never watched
    eng = create_store_engine(url)
    try:
        with eng.connect() as conn:
            o = observation_windows.c
            spans = conn.execute(
                sa.select(o.gap_start, o.gap_end, o.source)
                .where(o.image_digest == images["idle"].manifest_digest)
                .order_by(o.window_start)
            ).all()
    finally:
        eng.dispose()
    assert {r.source for r in spans} == {"none"}
    assert all(a.gap_end >= b.gap_start for a, b in itertools.pairwise(spans))  # unbroken
    assert spans[-1].gap_end.timestamp() >= t_away - 1.5  # up to a sample of the last second
    r = h.cli("query", "observed", "--store", url, "--image", images["idle"].manifest_digest,
              "--function", FUNCTION, "--json")  # fmt: skip
    assert r.returncode == 3, r.stdout  # unknown, never "not observed"
