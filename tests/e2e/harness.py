"""Helpers for end-to-end tests: run the real CLI, scrape its real metrics endpoint."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "tetragon"
STREAM = FIX / "synthetic" / "stream-a.jsonl.gz"
EXPECTED = json.loads((FIX / "synthetic" / "stream-a.expected.json").read_text())

# Every secret in the synthetic stream's arguments: none may reach the store.
STREAM_SECRETS = (
    "hunter2",
    "S3cr3tPass",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "alice@example.com",
)


@functools.cache
def _stream_events() -> tuple[Any, ...]:
    from stellaops_runtime.replay.events import load_events

    loaded = load_events(STREAM)
    assert not loaded.errors, loaded.errors
    return tuple(loaded.events)


def stream_events() -> list[Any]:
    """``load_events(STREAM).events``, read once per test process: each read parses the 3,144
    events with protobuf's JSON reader (0.6 s CPU), and a dozen test modules did it at import, in
    every xdist worker's collection. Copies, so a test may change its events or its list."""
    return [dataclasses.replace(e, labels=dict(e.labels)) for e in _stream_events()]


@functools.cache
def _stream_lines() -> tuple[bytes, ...]:
    with gzip.open(STREAM) as f:
        return tuple(line for line in f if line.strip())


def stream_objects() -> list[dict[str, Any]]:
    """The stream's 3,144 JSON objects, new ones at each call (a test may change them). Two dozen
    test modules ask at import, in every xdist worker's collection: the file is unzipped once per
    process, and orjson parses it in ~60% of the json module's time (0.04 s CPU a call, not 0.067)."""
    return [orjson.loads(line) for line in _stream_lines()]


def expected_stack_counts(objs: list[dict[str, Any]]) -> Counter[str]:
    """``digest|module|symbol`` -> kprobe events with that function on their user stack (once per event)."""
    out: Counter[str] = Counter()
    for o in objs:
        k = o.get("process_kprobe")
        if not k or not k.get("user_stack_trace"):
            continue
        digest = k["process"]["pod"]["container"]["image"]["id"].split("@")[1]
        seen = {
            (f.get("module", ""), f.get("symbol") or f"0x{int(f.get('offset', 0)):x}")
            for f in k["user_stack_trace"]
        }
        for module, sym in seen:
            out[f"{digest}|{module}|{sym}"] += 1
    return out


def write_config(tmp: Path, **sections: dict[str, Any]) -> tuple[Path, int]:
    """An agent config file; returns (path, metrics port)."""
    port = free_port()
    doc: dict[str, Any] = {
        "nodeName": "e2e-node",
        "tetragon": {"reconnectInitialSeconds": 0.1, "reconnectMaxSeconds": 0.5, "connectionTimeout": 2},
        "hotSymbols": {"flushIntervalSeconds": 0.5, "aggregationWindowSeconds": 60},
        "metrics": {"address": "127.0.0.1", "port": port},
        # Off unless a test turns it on: a containerd running on the test host must not add its
        # containers' windows to every test's store (lifecycle.enabled "auto" would).
        "lifecycle": {"enabled": False},
        # The fixtures' events are stamped 2026-11-24: with the default 90 days, from 2027-02-24 on
        # a store whose first record is the agent's start (its gap flushed before the events) would
        # keep them out as rows of days the retention removed (store/late_rows.py).
        "store": {"retentionDays": 3660},
    }
    for k, v in sections.items():
        doc.setdefault(k, {}).update(v)
    p = tmp / "agent.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p, port


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def start_agent(config: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", "--config", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"agent did not exit in {timeout}s:\n{out}") from None
    return proc.returncode, out


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Metric samples by (name, sorted labels); empty dict when the endpoint is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def metric_sum(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


# Generous: the suite runs on three workers at once (a busy machine); a condition that holds returns at once.
async def wait_for(pred, *, timeout: float = 90.0, what: str = "condition") -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(pred):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


PROCESSED = "stellaops_runtime_event_processing_latency_seconds_count"


async def wait_processed(
    port: int,
    n: int,
    *,
    source: str = "tetragon-grpc",
    also: Any = None,
    timeout: float = 90.0,  # noqa: ASYNC109
    what: str = "every event received and processed",
) -> dict:
    """Wait until the agent received ``n`` events from ``source`` and its pipeline finished each one;
    returns a scrape that holds every counter the pipeline moved for them.

    "Received" alone races the pipeline thread (a first kernel frame loads the kernel's symbol
    table, a first binary is parsed, and a loaded machine starves the thread): counters read then
    can miss the last events. The latency histogram counts a batch's events once the batch is done,
    after every counter the batch moved; the scrape returned is the next one (taken after one that
    saw the whole count), or that one itself when the agent has exited meanwhile (the endpoint
    renders the histogram after the pipeline's counters, so it holds them too). ``also(samples)``
    adds a condition on the same scrape (say, a flush that met what the test asserts on).
    """
    seen: list[dict] = []

    def whole(m: dict) -> bool:
        received = metric(m, "stellaops_runtime_events_received_total", source=source)
        return received == n and metric(m, PROCESSED) == n and (also is None or bool(also(m)))

    def done() -> bool:
        m = scrape(port)
        if whole(m):
            seen[:] = [m]
            return True
        return False

    await wait_for(done, timeout=timeout, what=what)
    after = await asyncio.to_thread(scrape, port)
    return after if whole(after) else seen[0]


_STOPPED = re.compile(
    r"agent stopped: (?P<received>\d+) events received, (?P<processed>\d+) processed, "
    r"(?P<flushed>\d+) hot-symbol rows flushed, (?P<dropped>\d+) dropped, (?P<spooled>\d+) spooled, "
    r"(?P<witnesses>\d+) witnesses"
)


def stopped_counts(out: str) -> dict[str, int]:
    """The totals of the agent's last log line (agent/runner.py), read from its output once it exited.

    A run ended by ``--exit-when-idle`` can exit between two scrapes: its own final count is the
    one that cannot be missed. Empty when the agent never logged it (it did not stop cleanly).
    """
    found = list(_STOPPED.finditer(out))
    return {k: int(v) for k, v in found[-1].groupdict().items()} if found else {}


def run_export_agent(tmp: Path, url: str, lines: list[dict[str, Any]], name: str = "export") -> str:
    """Run the real agent over ``lines`` as a Tetragon export file (read from its start, frames
    resolved against this host) into the store at ``url`` until it is idle; its output.

    It must exit 0 having received every line, by its own final count (:func:`stopped_counts`):
    no scrape can miss it on a loaded machine."""
    export = tmp / f"{name}.jsonl"
    export.write_text("".join(json.dumps(o) + "\n" for o in lines))
    cfg, _port = write_config(
        tmp,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": url},
        symbols={"hostRoot": "/"},
        attribution={"hostRoot": "/"},
    )
    # The idle exit waits for the file read to its end and a flush after that storing everything
    # (agent/idle_exit.py); nothing is appended and nothing scraped here, so 1 s of quiet is enough.
    code, out = finish(start_agent(cfg, "--exit-when-idle", "1"), 120)
    assert code == 0, out
    assert stopped_counts(out).get("received") == len(lines), out
    return out


async def run_replay_agent(
    tmp: Path, url: str, events: list[Any]
) -> tuple[int, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Serve ``events`` (ReplayEvents) as Tetragon's gRPC stream to the real agent, storing into
    ``url``, until it processed every one; then stop it (SIGTERM: its last flush stores what it
    counted; --exit-when-idle sat 2 s idle first). Its exit code, its output and the metrics
    scraped once everything was processed."""
    from stellaops_runtime.replay.server import ReplayServer

    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    cfg, port = write_config(tmp, tetragon={"address": addr}, store={"url": url})
    proc = start_agent(cfg)
    try:
        await wait_for(
            lambda: (
                metric_sum(scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(events)
            ),
            what="every event processed",
        )
        m = scrape(port)
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(finish, proc, 60)
    finally:
        await server.stop()
        if proc.poll() is None:
            proc.kill()
    return code, out, m


async def scrape_replay_agent(
    tmp: Path, events: list[Any], settled: Any, **sections: dict[str, Any]
) -> tuple[int, str, str]:
    """Serve ``events`` as Tetragon's gRPC stream to the real agent (configured by ``write_config``
    with ``sections``), wait until ``settled(port)`` holds, read its raw ``/metrics`` text and stop
    it (SIGTERM). Its exit code, its output and that text."""
    from stellaops_runtime.replay.server import ReplayServer

    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    try:
        tetragon = {**sections.pop("tetragon", {}), "address": addr}
        cfg, port = write_config(tmp, tetragon=tetragon, **sections)
        proc = start_agent(cfg)
        try:
            await wait_for(lambda: settled(port), what="the agent settled")
            text = await asyncio.to_thread(raw_metrics, port)
        finally:
            proc.send_signal(signal.SIGTERM)
            code, out = await asyncio.to_thread(finish, proc, 60)
    finally:
        await server.stop(grace=0)
    return code, out, text


def raw_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


class Output:
    """A started agent's output, read as it comes (a thread), so a test can wait for one of its lines.

    Waiting for what the agent says it does (it waits for the node's other agent, it is stopping)
    instead of sleeping: a process still importing on a loaded machine has said nothing yet.
    Use :meth:`finish` instead of :func:`finish` for that process (both would read its pipe).
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="agent-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def has(self, needle: str) -> bool:
        return needle in self.text()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._thread.join(30)
            raise AssertionError(f"agent did not exit in {timeout}s:\n{self.text()}") from None
        self._thread.join(30)
        return self.proc.returncode, self.text()


def log_seconds(out: str, first: str, last: str) -> float:
    """Seconds between the agent's first log line holding ``first`` and its last holding ``last``.

    Its own clock, from its own lines: what the agent controls (say, SIGTERM to "agent stopped"),
    without the start of the signal's handling and the interpreter's exit that a loaded machine
    stretches. Fails when either line is missing.
    """

    def stamp(line: str) -> dt.datetime:
        return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

    lines = out.splitlines()
    starts = [stamp(ln) for ln in lines if first in ln]
    ends = [stamp(ln) for ln in lines if last in ln]
    assert starts and ends, f"no {first!r} or no {last!r} line in:\n{out}"
    return (ends[-1] - starts[0]).total_seconds()
