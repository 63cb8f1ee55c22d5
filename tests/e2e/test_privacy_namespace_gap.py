"""End to end: a pod of an image in a namespace the privacy allowlist leaves out; a question is never "no".

``privacy.allowedNamespaces`` drops every event of a pod outside the listed
namespaces (privacy/filter.py), as the opt-out drops an opted-out pod's. The
synthetic stream (four images on three nodes) is changed so that pod
``billing-70-25165`` runs in namespace ``dev``, which the agent's allowlist
leaves out, and the other pod of the same image, ``billing-70-2c014`` (in
``shop``, listed), never calls ``uncompress``. The ground truth: in that
image, ``uncompress`` ran, only in the pod whose namespace is not watched.

The real agent reads the stream over gRPC from the replay server into SQLite
(no lifecycle observer, as where no runtime socket is mounted), and ``stella-runtime
query observed`` is asked about it. "not observed" (exit 1) is a wrong
answer: a pod of the image ran unwatched, and the agent saw its events
arrive. The answer must be unknown (exit 3), naming that gap. A function the
watched pod called stays "observed" with exactly the watched pod's count, and
nothing of the dropped pod is stored.

Seen failing before the fix: exit 1 "not_observed" (the allowlist's drop left
no gap, so the watched pod's windows alone backed a "no").
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

IMG = h.EXPECTED["images"][0]["digest"]  # billing-70
FILTERED_POD, WATCHED_POD = "billing-70-25165", "billing-70-2c014"


def _body(o: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (b for k, b in o.items() if k.startswith("process_") and isinstance(b, dict) and "process" in b), None
    )


def stream() -> tuple[list[dict[str, Any]], int, int]:
    """The changed stream, the filtered pod's events, and the watched pod's ``inflate`` uprobe events."""
    out: list[dict[str, Any]] = []
    filtered = inflate = 0
    for original in h.stream_objects():
        o = json.loads(json.dumps(original))
        body = _body(o)
        pod = body["process"].get("pod") if body else None
        name = pod.get("name") if isinstance(pod, dict) else None
        if name == WATCHED_POD and "uncompress" in json.dumps(body):
            continue  # the watched pod never calls uncompress, nor has it on a stack
        if name == FILTERED_POD:
            assert pod is not None
            pod["namespace"] = "dev"
            filtered += 1
        elif name == WATCHED_POD and "process_uprobe" in o and '"inflate"' in json.dumps(o["process_uprobe"]):
            inflate += 1
        out.append(o)
    return out, filtered, inflate


async def test_a_function_only_a_pod_outside_the_allowed_namespaces_called_is_unknown(
    tmp_path: Path, sqlite_at_head: Any
) -> None:
    objs, filtered, inflate = stream()
    assert filtered > 100 and inflate > 0
    jsonl = tmp_path / "stream.jsonl"
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in objs))
    server = ReplayServer(load_events(jsonl).events)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        store={"url": sqlite_at_head(tmp_path / "hot.db")},
        privacy={"allowedNamespaces": ["shop", "payments", "default"]},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await h.wait_for(
            lambda: (
                h.metric(
                    h.scrape(port), "stellaops_runtime_events_filtered_total", reason="namespace_not_allowed"
                )
                == filtered
            ),
            what="every event of the filtered pod dropped",
        )
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
    store = f"sqlite:///{tmp_path}/hot.db"
    q = ["query", "observed", "--image", IMG, "--json", "--store", store]
    r = h.cli(*q, "--function", "inflate")
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (0, "observed"), r.stdout + r.stderr
    assert "invoked " + str(inflate) in doc["reason"], doc["reason"]  # the watched pod's calls, no more
    r = h.cli(*q, "--function", "uncompress")
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown"), r.stdout + r.stderr
    assert "privacy.allowedNamespaces" in doc["reason"], doc["reason"]
    assert {g["scope"] for g in doc["gaps"]} == {"image"}
    assert all(g["not_watched"] == ["not_allowed"] for g in doc["gaps"]), doc["gaps"]
    raw = (tmp_path / "hot.db").read_bytes()
    assert FILTERED_POD.encode() not in raw and FILTERED_POD not in out  # the pod itself is never kept
