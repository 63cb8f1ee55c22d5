"""End to end: a binary whose parse is slow does not stall event intake (issue 11).

The real agent CLI follows a Tetragon export file. A procfs of our own
(``symbols.procRoot``) gives one live "process" whose container root holds
``/usr/lib/libslow.so``: a generated ELF with 150,000 function symbols, whose
parse (hundreds of milliseconds of pure-Python symbol-table work) is within
its budget. Its event comes first; the synthetic stream's well-formed events
are then appended in small chunks while the parse runs. Checked:

- the agent keeps processing events (the latency histogram's count rises)
  while the parse is in flight, and answers /metrics meanwhile;
- the slow binary's first frame is counted unresolved (``parse_pending``),
  the event itself counted;
- once the parse is done, the same frame resolves to its function;
- every well-formed event is counted exactly (the stream's ground truth).
"""

from __future__ import annotations

import copy
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.canonical.buildidclaims import STAT_TRUST_SECONDS
from tests.e2e import harness as h
from tests.integration import big_elf

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
SLOW_DIGEST = "sha256:" + "51" * 32
# Near the 500,000-function budget, and unsized (the slower path): the column reader parses
# 150,000 sized functions in ~0.1 s, too short for two metric scrapes to fall inside the parse.
SYMBOLS = 450_000
FUNC = 123_456
PID = 5151
CHUNK = 50
WAIT = 90  # seconds each step may take on a loaded machine (a step that is done returns at once)


@dataclass
class Sample:
    at: float
    processed: float  # events through the pipeline (latency histogram count)
    parses_in_flight: float


def slow_event(template: dict[str, Any], n: int) -> dict[str, Any]:
    o = copy.deepcopy(template)
    k = o["process_kprobe"]
    k["process"]["pid"] = PID
    k["process"]["exec_id"] = f"slow-{n}"
    k["process"]["pod"]["container"]["image"]["id"] = f"registry.example.com/slow@{SLOW_DIGEST}"
    offset = big_elf.func_offset(FUNC) + 2
    k["user_stack_trace"] = [{"module": "/usr/lib/libslow.so", "offset": str(offset), "symbol": "hint_slow"}]
    o["node_name"] = "e2e-node"
    return o


def sample(port: int) -> Sample | None:
    m = h.scrape(port)
    if not m:
        return None
    ops = "stellaops_runtime_symbolizer_operations_total"
    queued = h.metric(m, ops, op="parse_jobs_queued")
    done = h.metric(m, ops, op="parse_jobs_done")
    processed = h.metric(m, "stellaops_runtime_event_processing_latency_seconds_count")
    return Sample(time.monotonic(), processed, queued - done)


def stored(url: str) -> list[dict[str, Any]]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT image_digest, module, function_name, function_id, evidence_kind, invocation_count"
                " FROM hot_symbols"
            )
        )
        out = [dict(r._mapping) for r in res]
    eng.dispose()
    return out


def append(path: Path, objs: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        f.write("".join(json.dumps(o) + "\n" for o in objs))


def test_a_slow_parse_does_not_stall_intake(tmp_path: Path) -> None:
    root = tmp_path / "container"
    big_elf.write(root / "usr/lib/libslow.so", SYMBOLS, sized=False)
    # A file changed under STAT_TRUST_SECONDS ago is named by its hash at every sighting (its stat
    # identity is not trusted yet: canonical/buildidclaims.py), which for this large file is a job of
    # the parse worker: the last event's frame would be parse_pending too when the agent parsed the
    # file within 2 s of its writing. The file is made old first, as an image's libraries are.
    written = (root / "usr/lib/libslow.so").stat().st_ctime
    while time.time() - written < STAT_TRUST_SECONDS + 0.5:
        time.sleep(0.1)
    proc_root = tmp_path / "proc"
    (proc_root / str(PID)).mkdir(parents=True)
    (proc_root / str(PID) / "root").symlink_to(root)
    (proc_root / str(PID) / "maps").write_text("")
    template = next(o for o in OBJS if "process_kprobe" in o and o["process_kprobe"].get("user_stack_trace"))
    export = tmp_path / "export.jsonl"
    export.write_text("")
    url = f"sqlite:///{tmp_path}/hot.db"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": url},
        symbols={"procRoot": str(proc_root), "parseWaitMilliseconds": 20},
        attribution={"enabled": False},
    )
    # Stopped by SIGTERM once the last event is processed: --exit-when-idle ended the agent while a
    # loaded machine was still parsing (no event for 3 s), before the test appended its last event.
    agent = h.start_agent(cfg)
    samples: list[Sample] = []
    try:
        deadline = time.monotonic() + WAIT
        while (s := sample(port)) is None:
            assert agent.poll() is None and time.monotonic() < deadline, "agent did not come up"
            time.sleep(0.05)

        def feed() -> None:
            append(export, [slow_event(template, 0)])
            for i in range(0, len(OBJS), CHUNK):
                append(export, OBJS[i : i + CHUNK])
                time.sleep(0.02)

        writer = threading.Thread(target=feed)
        writer.start()
        deadline = time.monotonic() + WAIT
        while writer.is_alive() or not samples or samples[-1].processed < len(OBJS) + 1:
            assert time.monotonic() < deadline, "events were not processed in time"
            if (s := sample(port)) is not None:
                samples.append(s)
            time.sleep(0.02)
        writer.join()
        deadline = time.monotonic() + WAIT
        while samples[-1].parses_in_flight:  # the parse finishes in the background
            assert time.monotonic() < deadline, "the slow parse never finished"
            time.sleep(0.05)
            if (s := sample(port)) is not None:
                samples.append(s)
        append(export, [slow_event(template, 1)])  # the same frame, after the parse
        m: dict = {}
        deadline = time.monotonic() + WAIT
        while h.metric(m, "stellaops_runtime_event_processing_latency_seconds_count") < len(OBJS) + 2:
            assert time.monotonic() < deadline, "the last event was not processed"
            time.sleep(0.05)
            m = h.scrape(port) or m
        agent.send_signal(signal.SIGTERM)
        code, out = h.finish(agent)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert code == 0, out

    # Intake went on while the parse ran: a scrape during the parse (a parse on the event loop would
    # hold the scrape until it ended) counted events taken in after the slow one, the feed's first.
    # (It asked for two scrapes during the parse, with events between them: a quiet machine parsed
    # within one 20 ms sampling step and the clean-clone CI failed on it, with 200 events in.)
    during = [s for s in samples if s.parses_in_flight > 0]
    assert during, samples
    assert max(s.processed for s in during) > 1, during

    def unresolved(reason: str) -> float:
        return h.metric(m, "stellaops_runtime_frames_unresolved_total", stack="user", reason=reason)

    assert unresolved("parse_pending") == 1  # the first slow frame only: identity and index in one job
    assert unresolved("budget_exceeded") == 0  # the slow file was within its budget
    assert h.metric(m, "stellaops_runtime_frames_resolved_total", stack="user", source="symtab") == 1

    rows = stored(url)
    on_stack = [r for r in rows if r["evidence_kind"] == "on_stack"]
    good = {
        f"{r['image_digest']}|{r['module']}|{r['function_name']}": r["invocation_count"]
        for r in on_stack
        if r["image_digest"] != SLOW_DIGEST
    }
    assert good == dict(h.expected_stack_counts(OBJS))  # the well-formed events, counted exactly
    slow = {r["function_name"]: r for r in on_stack if r["image_digest"] == SLOW_DIGEST}
    assert set(slow) == {"hint_slow", f"slow_function_{FUNC}"}, slow
    assert slow["hint_slow"]["invocation_count"] == 1 and slow["hint_slow"]["function_id"] == ""
    resolved = slow[f"slow_function_{FUNC}"]
    assert resolved["invocation_count"] == 1
    assert resolved["function_id"] == f"{'5a' * 20}:slow_function_{FUNC}+0x0"  # rows name the function
