"""End to end: a running container of an image that sends no event lowers the image's window.

A private containerd (tests/containerd_harness.py) runs two containers of
image ``SHARED`` and one of image ``ALONE``. Tetragon's JSON export, written
live by the test, holds kprobe events with user stacks (EbpfDeep: the
functions on them were seen) of the first ``SHARED`` container and of the
``ALONE`` one, named by ``process.docker`` only as Tetragon without its
Kubernetes informer names them. The second ``SHARED`` container sends
nothing: no policy traces it, or its processes started before the policy.
A function that ran only there was seen by nobody, so the real agent
(``lifecycle.enabled: true``) must count that running container at Passive
in the windows it ran in, and the real CLI must answer unknown (exit 3,
naming such windows) for ``SHARED``, where it said "not observed"
(exit 1, EbpfDeep) from the first container's stacks alone; ``ALONE``,
whose one container is traced with stacks, stays not observed (exit 1):
the container that sends the events is not counted a second time as silent
(the events' 31-character id and the runtime's 64-character one are one
container). The export file is read from its start, so the hold about its
first line is a node-wide gap (sources/export_restart.py ``take_outage``)
that alone makes any whole answer unknown: both questions are asked of the
period after it, and the node-wide gaps must be that hold alone.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows
from tests.containerd_harness import Containerd, Image, build_image, running
from tests.e2e import harness as h
from tests.e2e.lifecycle_export import ExportWriter, containerd_lifecycle, lifecycle_agent_config
from tests.node_alive import alive_now, proof_now

pytestmark = [pytest.mark.e2e]

NOT_CALLED = "uncompress"  # on no stack the traced containers sent
STACK = [
    {"address": "4198400", "offset": "4096", "symbol": "write_all", "module": "/prog"},
    {"address": "4198656", "offset": "4352", "symbol": "main", "module": "/prog"},
]


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


def node_gaps(url: str) -> list[tuple[int, int]]:
    """The node-wide gaps (image ''), (start, end) in wall ns, each window's row's part joined where they
    touch, ordered by start."""
    eng = create_store_engine(url)
    try:
        with eng.connect() as conn:
            o = observation_windows.c
            q = sa.select(o.gap_start, o.gap_end).where(o.image_digest == "", o.gap_end.is_not(None))
            rows = sorted((datetime_to_ns(a), datetime_to_ns(b)) for a, b in conn.execute(q))
    except sa.exc.OperationalError:  # the agent has not created the store yet
        return []
    finally:
        eng.dispose()
    out: list[tuple[int, int]] = []
    for a, b in rows:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def after_hold(url: str, image: str) -> int:
    """How many windows of ``image`` with events start at or after the end of the first node-wide gap."""
    gaps = node_gaps(url)
    return sum(1 for w in evidenced(url, image) if w >= gaps[0][1]) if gaps else 0


def observed(url: str, image: str, since: int | None = None) -> tuple[int, dict[str, Any]]:
    # the store keeps microseconds: the gap's end exactly, as RFC 3339 (a gap ending at 'since' is before it)
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since // 10**9)) if since is not None else ""
    period = ["--since", f"{at}.{since % 10**9 // 1000:06d}Z"] if since is not None else []
    r = h.cli(
        "query", "observed", "--image", image, "--function", NOT_CALLED, *period, "--json", "--store", url
    )  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def run_agent(
    tmp_path: Path, ctd: Containerd, dockers: list[str], done: Callable[[str, dict], bool], store: str
) -> str:
    """Run the real agent; once its registry is in sync, write kprobe events of ``dockers`` (Tetragon's
    events start then: before it they name no image) until ``done(url, metrics)``; stop it (SIGTERM,
    exit 0)."""
    lifecycle = containerd_lifecycle(ctd.socket, ctd.namespace)
    config, port, export, url = lifecycle_agent_config(
        tmp_path, url=store, window_seconds=2, lifecycle=lifecycle
    )
    writer: ExportWriter | None = None
    proc = h.start_agent(config)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            samples = h.scrape(port)
            if writer is None and h.metric(samples, "stellaops_runtime_lifecycle_connected") == 1:
                writer = ExportWriter(export, dockers, STACK)
            if writer is not None and done(url, samples):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("timed out waiting for the windows of events")
        writer.close()
        proc.send_signal(signal.SIGTERM)
        rc, out = h.finish(proc)
        assert rc == 0, out
    finally:
        if writer is not None:
            writer.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return url


def test_a_silent_running_container_keeps_its_image_unknown(
    ctd: Containerd, tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    shared = build_image(ctd.dir, ref="test.local/silent-shared:1", env=("ROLE=shared",))
    alone = build_image(ctd.dir, ref="test.local/silent-alone:1", env=("ROLE=alone",))
    images: list[Image] = [shared, alone]
    for img in images:
        ctd.import_image(img)
    traced, silent, single = (uuid.uuid4().hex * 2 for _ in range(3))  # 64 hex characters each
    began = time.time_ns()  # before the agent started and the first line was written
    try:
        ctd.ctr("run", "-d", shared.ref, traced)
        ctd.ctr("run", "-d", shared.ref, silent)
        ctd.ctr("run", "-d", alone.ref, single)
        url = run_agent(
            tmp_path,
            ctd,
            [traced[:31], single[:31]],
            lambda url, _: min(after_hold(url, i.manifest_digest) for i in images) >= 3,
            sqlite_at_head(tmp_path / "hot.db"),  # at head (tests/conftest.py): not a migration test
        )
    finally:
        ctd.remove_all()

    # the node-wide gaps: the hold about the file's first line alone, at most the hold on either side of
    # a line written after ``began``
    gaps = node_gaps(url)
    assert len(gaps) == 1, gaps
    start, since = gaps[0]
    assert began - CACHE_HOLD_NS - 10**9 <= start and since - start <= 2 * CACHE_HOLD_NS, (began, gaps)
    # the agent was stopped after its windows; its node ran on (a record of it now, and a proof of life
    # now, tests/node_alive.py), so the time after its last window is watched, not open
    # (store/coverage_open.py: the stopped agent's own proof of life, migration 0015, ended it)
    with open_store(url) as s, s.engine.connect() as c:
        nodes = sorted(set(c.execute(sa.select(observation_windows.c.node_name).distinct()).scalars()))
    with open_store(url) as s:
        s.write([], alive_now(nodes))
    proof_now(url, nodes)
    code, doc = observed(url, shared.manifest_digest, since)
    assert doc["gaps"] == [], doc
    assert (code, doc["answer"]) == (3, "unknown"), doc  # the silent container could have called it
    assert "a running container that sent none counts at Passive" in doc["reason"], doc["reason"]
    code, doc = observed(url, alone.manifest_digest, since)
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    assert doc["coverage"]["posture"]["highest"] == "EbpfDeep", doc


def evidenced(url: str, image: str) -> dict[int, int | None]:
    """window start (ns) -> evidenced_level of ``image``'s windows with events."""
    eng = create_store_engine(url)
    try:
        with eng.connect() as conn:
            o = observation_windows.c
            q = sa.select(o.window_start, o.evidenced_level).where(o.image_digest == image, o.event_count > 0)
            return {datetime_to_ns(r.window_start): r.evidenced_level for r in conn.execute(q)}
    except sa.exc.OperationalError:  # the agent has not created the store yet
        return {}
    finally:
        eng.dispose()


def test_a_container_started_later_lowers_the_windows_it_runs_in(
    ctd: Containerd, tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """The image's one container is traced with stacks; a second one starts while the agent runs.
    The windows before it stay EbpfDeep; the windows from when the agent's registry holds it on read
    Passive, whether their first rows were written before its lifecycle sample gave it to the
    aggregator (written again) or after."""
    late = build_image(ctd.dir, ref="test.local/silent-late:1", env=("ROLE=late",))
    ctd.import_image(late)
    traced, second = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    started: list[int] = []  # wall clock before the second container's start, and once the registry has it

    def done(url: str, samples: dict) -> bool:
        got = evidenced(url, late.manifest_digest)
        if not started:
            if len(got) >= 2:  # two windows of the traced container alone
                started.append(time.time_ns())
                ctd.ctr("run", "-d", late.ref, second)
            return False
        if len(started) == 1:
            if h.metric(samples, "stellaops_runtime_lifecycle_containers") == 2:
                started.append(time.time_ns())
            return False
        return sum(1 for w in got if w > started[1]) >= 2  # two windows begun since

    try:
        ctd.ctr("run", "-d", late.ref, traced)
        url = run_agent(tmp_path, ctd, [traced[:31]], done, sqlite_at_head(tmp_path / "hot.db"))
    finally:
        ctd.remove_all()
    window = 2_000_000_000
    got = evidenced(url, late.manifest_digest)
    before = {w: v for w, v in got.items() if w + window <= started[0]}
    after = {w: v for w, v in got.items() if w >= started[1]}
    assert before and set(before.values()) == {3}, got
    # Passive; or None in the one window per UTC day that marks the second container, which showed
    # no call that day while the traced one did (hotsymbols/day_calls.py; it may be a lifecycle row)
    days = len({w // (86_400 * 1_000_000_000) for w in got})
    assert after and set(after.values()) <= {0, 1} and list(got.values()).count(0) <= days, got
