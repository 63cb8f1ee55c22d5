"""An allow filter must not hide Tetragon's drop signals from the agent (brief s39/G).

``tetragon.allow`` travels in the GetEventsRequest, and Tetragon's filters that
look at the process (namespaces, pod and binary regexes) or at the event type
never match ``process_throttle`` / ``rate_limit_info``, which have no process.
So with any allow filter set, Tetragon stopped sending its throttle signals to
the agent: a cgroup Tetragon throttled (``--cgroup-rate``) made no gap, and its
image's windows could answer "not observed" over calls Tetragon never reported.
The request now carries one more allow filter, for those two event types only
(allow filters are ORed), whenever the allow list is not empty. The replay
server filters with Tetragon's semantics (replay/filters.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from google.protobuf import json_format

from stellaops_runtime.contracts.config import EventFilter, TetragonConfig
from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource, build_request
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h

DROP_TYPES = {events_pb2.PROCESS_THROTTLE, events_pb2.RATE_LIMIT_INFO}


def _event(obj: dict) -> ReplayEvent:
    return ReplayEvent.from_message(json_format.Parse(json.dumps(obj), events_pb2.GetEventsResponse()))


def test_no_allow_list_asks_for_everything_as_before() -> None:
    req = build_request(TetragonConfig())
    assert not req.allow_list and not req.deny_list


def test_an_allow_list_also_allows_the_drop_signals() -> None:
    cfg = TetragonConfig(allow=[EventFilter(namespaces=["shop"], eventTypes=["PROCESS_KPROBE"])])
    req = build_request(cfg)
    assert list(req.allow_list[0].namespace) == ["shop"]
    assert any(set(f.event_set) == DROP_TYPES and not f.namespace for f in req.allow_list)
    assert len(req.allow_list) == 2


async def test_the_agent_source_receives_throttles_through_a_namespace_allow_filter() -> None:
    kprobe = {
        "process_kprobe": {
            "process": {"pid": 7, "binary": "/app", "pod": {"namespace": "shop", "name": "web-0"}},
            "function_name": "__x64_sys_openat",
        },
        "node_name": "n1",
        "time": "2026-12-05T10:00:00Z",
    }
    other_ns = {**kprobe, "process_kprobe": {**kprobe["process_kprobe"], "process": {"pid": 8, "binary": "/x",
                "pod": {"namespace": "kube-system", "name": "dns"}}}}  # fmt: skip
    throttle = {
        "process_throttle": {"type": "THROTTLE_START", "cgroup": "cri-containerd-" + "ab" * 32 + ".scope"},
        "node_name": "n1",
        "time": "2026-12-05T10:00:01Z",
    }
    events = [_event(kprobe), _event(other_ns), _event(throttle), _event(kprobe)]
    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    queue = EventQueue(1000)
    cfg = TetragonConfig(address=addr, allow=[EventFilter(namespaces=["shop"])], reconnectInitialSeconds=0.1)
    source = TetragonGrpcSource(cfg, queue=queue)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.received >= 3, what="the allowed events", timeout=15)
        await asyncio.sleep(0.2)  # nothing more comes: the other namespace's event is filtered
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()
    kinds = [events_pb2.GetEventsResponse.FromString(p).WhichOneof("event") for p, _ in queue.take(100)]
    assert kinds == ["process_kprobe", "process_throttle", "process_kprobe"]
