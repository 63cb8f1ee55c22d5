"""A Tetragon stream that flaps (one event, then an error, again and again) with a hostile status.

Over real gRPC: a server that sends one event per stream and then ends it with
UNAVAILABLE and a status message holding line breaks and escape sequences (a
server at the configured address is not always Tetragon: on a TCP address any
local process can listen). Every event arrives once, every break is counted,
and the message the agent logs and shows (``last_error``, the /readyz detail)
is one clipped line: the server's text cannot forge log lines.

Events arrive at most once and in order. A message the server wrote just before
it aborted may not reach the client at all (gRPC can drop it with the abort);
it was sent after the stream's last delivered message, so the outage, which
starts before that message (sources/event_hold.py), covers its time.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest

from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h

EVENTS = 5
HOSTILE = "flap\nlevel=error msg=FORGED\r\x1b[2Jcleared" + "x" * 5_000  # under the 8 KiB metadata limit


class FlappingTetragon:
    def __init__(self) -> None:
        self.served = 0
        self.server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "tetragon.FineGuidanceSensors",
            {"GetEvents": grpc.unary_stream_rpc_method_handler(self._get_events)},
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _get_events(self, _request: bytes, context: grpc.aio.ServicerContext) -> None:
        if self.served < EVENTS:  # later streams break at once: the count to compare is fixed
            msg = events_pb2.GetEventsResponse(node_name="n1")
            msg.process_kprobe.process.binary = f"/usr/bin/app{self.served}"
            msg.time.FromNanoseconds(time.time_ns())
            await context.write(msg.SerializeToString())
            self.served += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, HOSTILE)


@pytest.mark.asyncio
async def test_a_flapping_stream_loses_nothing_and_its_status_forges_no_log_line(caplog) -> None:
    tetragon = FlappingTetragon()
    await tetragon.server.start()
    queue = EventQueue(1000)
    cfg = TetragonConfig(address=f"127.0.0.1:{tetragon.port}", reconnectInitialSeconds=0.05)
    source = TetragonGrpcSource(cfg, queue=queue)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="stellaops_runtime.sources.tetragon_grpc")
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.stream_errors > EVENTS, what="the flaps")
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await tetragon.server.stop(0)
    # Each event at most once, in order: Tetragon sends only new events after a reconnect.
    assert tetragon.served == EVENTS and 1 <= source.stats.received == len(queue) <= EVENTS
    payloads = [events_pb2.GetEventsResponse.FromString(p) for p, _ in queue.take(1000)]
    got = [int(p.process_kprobe.process.binary.removeprefix("/usr/bin/app")) for p in payloads]
    assert got == sorted(set(got)) and set(got) <= set(range(EVENTS)), got
    assert source.stats.reconnects >= EVENTS and source.stats.stream_errors > EVENTS
    err = source.stats.last_error
    assert "UNAVAILABLE" in err and "flap" in err, err
    assert all(c >= " " and c != "\x7f" for c in err), repr(err)  # no line break, no escape sequence
    assert len(err) <= 1024, len(err)
    for record in caplog.records:
        text = record.getMessage()
        assert "\n" not in text and "\r" not in text and "\x1b" not in text, repr(text)


def test_a_long_status_is_redacted_before_it_is_cut() -> None:
    """A password past the cut would otherwise lose the part redact() recognises it by."""
    from stellaops_runtime.sources.tetragon_channel import MAX_DETAIL_CHARS, one_line

    url = "postgresql://app:hunter2-secret@db:5432/x"
    text = "x" * (MAX_DETAIL_CHARS - 20) + url
    shown = one_line(text)
    assert ":hun" not in shown and "secret" not in shown, shown  # not even its first letters
    assert "\n" not in one_line("a\nb") and one_line("a\x00b") == "a\\x00b"
