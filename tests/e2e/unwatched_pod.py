"""One pod of an image left unwatched, the other watched: the shared setup of the e2e tests of that case.

tests/e2e/test_optout_partial_image.py (the pod opted out) and
tests/e2e/test_privacy_namespace_gap.py (the pod in a namespace the privacy allowlist leaves
out) change the synthetic stream the same way, run the real agent on it the same way and ask
the same two questions; only how the pod is left out, what the agent counts for it and the
reason the answer names differ.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.node_alive import each_node_alive_after

IMG = h.EXPECTED["images"][0]["digest"]  # billing-70
UNWATCHED_POD, WATCHED_POD = "billing-70-25165", "billing-70-2c014"


def _body(o: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (b for k, b in o.items() if k.startswith("process_") and isinstance(b, dict) and "process" in b), None
    )


def stream(leave_out: Callable[[dict[str, Any]], None]) -> tuple[list[dict[str, Any]], int, int]:
    """The changed stream (``leave_out`` changes the unwatched pod's ``pod`` object of each of its
    events), the unwatched pod's events, and the watched pod's ``inflate`` uprobe events."""
    out: list[dict[str, Any]] = []
    left = inflate = 0
    for original in h.stream_objects():
        o = json.loads(json.dumps(original))
        body = _body(o)
        pod = body["process"].get("pod") if body else None
        name = pod.get("name") if isinstance(pod, dict) else None
        if name == WATCHED_POD and "uncompress" in json.dumps(body):
            continue  # the watched pod never calls uncompress, nor has it on a stack
        if name == UNWATCHED_POD:
            assert pod is not None
            leave_out(pod)
            left += 1
        elif name == WATCHED_POD and "process_uprobe" in o and '"inflate"' in json.dumps(o["process_uprobe"]):
            inflate += 1
        out.append(o)
    return out, left, inflate


Waited = tuple[Callable[[int], bool], str]  # a condition on the agent's metrics port, and what it waits for


async def run_agent(
    tmp_path: Path, objs: list[dict[str, Any]], store_url: str, waits: list[Waited], **config: Any
) -> str:
    """The real agent on ``objs`` served over gRPC by the replay server, into ``store_url``: each of
    ``waits`` waited for, then every event processed, then the agent stopped by --exit-when-idle
    (exit 0); its output."""
    jsonl = tmp_path / "stream.jsonl"
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in objs))
    server = ReplayServer(load_events(jsonl).events)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(tmp_path, tetragon={"address": addr}, store={"url": store_url}, **config)
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        for ready, what in waits:
            await h.wait_for(functools.partial(ready, port), what=what)
        await h.wait_for(
            lambda: (
                h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(objs)
            ),
            what="every event processed",
        )
        code, out = await asyncio.to_thread(h.finish, proc, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop()
    assert code == 0, out
    each_node_alive_after(
        store_url
    )  # the agent exits after the stream: its nodes ran on (tests/node_alive.py)
    return out


def assert_answers(tmp_path: Path, out: str, inflate: int, reason: str, not_watched: str) -> None:
    """``inflate`` observed with exactly the watched pod's calls; ``uncompress``, which only the
    unwatched pod called, unknown (exit 3) naming ``reason`` and image gaps ``not_watched``;
    nothing of the unwatched pod in the store or the agent's output."""
    store = f"sqlite:///{tmp_path}/hot.db"
    q = ["query", "observed", "--image", IMG, "--json", "--store", store]
    r = h.cli(*q, "--function", "inflate")
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (0, "observed"), r.stdout + r.stderr
    assert "invoked " + str(inflate) in doc["reason"], doc["reason"]  # the watched pod's calls, no more
    r = h.cli(*q, "--function", "uncompress")
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown"), r.stdout + r.stderr
    assert reason in doc["reason"], doc["reason"]
    assert {g["scope"] for g in doc["gaps"]} == {"image"}
    assert all(g["not_watched"] == [not_watched] for g in doc["gaps"]), doc["gaps"]
    raw = (tmp_path / "hot.db").read_bytes()
    assert UNWATCHED_POD.encode() not in raw and UNWATCHED_POD not in out  # the pod itself is never kept
