"""What the gRPC source asks of Tetragon and how it connects, apart from the stream loop.

Split from :mod:`stellaops_runtime.sources.tetragon_grpc` (the source, which imports these):
the channel's options (the message size limit, HTTP/2 keepalive), the GetEventsRequest built
from the config's allow/deny filters (with Tetragon's drop signals let through), the
reconnect backoff, the warning for an address that names a cluster Service, and
:func:`one_line`, which makes a server's text safe for a message. Pure logic: no I/O.
"""

from __future__ import annotations

import random
import re

from stellaops_runtime.contracts.config import EventFilter, TetragonConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.rpc import ChannelOptions
from stellaops_runtime.wire.tetragon import events_pb2

# A single event may be large (a hostile workload's 4 MiB arguments): one over the limit
# would fail the whole stream, and Tetragon replays nothing after a reconnect.
MAX_MESSAGE_BYTES = 64 << 20
# What Tetragon may send ahead of the receive loop, per stream. A fixed window: grpcio's BDP
# probing grew it on the node-local socket until gRPC held several large events that the
# receive loop had not asked for yet (measured: 40 events of 8 MiB cost 80-230 MB with it,
# 45-60 MB without; see docs/benchmarks.md), so it was turned off there; our client
# (stellaops_runtime.rpc) never grows a window. The stream holds at most about this plus the
# message being received, and 1 MiB of look-ahead keeps a local socket busy.
STREAM_WINDOW = 1 << 20

# A stream that stops delivering while its connection stays open (a frozen Tetragon, a
# stuck hop on a TCP address) looked connected for good: /readyz 200 and no outage, so no
# gap covered the time nobody watched. HTTP/2 keepalive pings notice it: after this long
# without a frame from the server the client pings, and a ping unanswered within
# KEEPALIVE_TIMEOUT_SECONDS ends the stream (UNAVAILABLE), which the run loop treats as any
# broken stream: reconnect, and an outage from the last message on. Not shorter: Tetragon's
# gRPC server keeps Go's default enforcement (a ping less than 5 minutes after the last one
# is a strike; the third gets the connection closed with "too_many_pings"), so a quiet but
# healthy stream would be cut and counted as an outage.
KEEPALIVE_SECONDS = 330.0
KEEPALIVE_TIMEOUT_SECONDS = 20.0


def channel_options() -> ChannelOptions:
    """The stream channel's options: the message limit, the window and keepalive (read when called)."""
    return ChannelOptions(
        max_receive_message_length=MAX_MESSAGE_BYTES,
        keepalive_seconds=KEEPALIVE_SECONDS,
        keepalive_timeout_seconds=KEEPALIVE_TIMEOUT_SECONDS,
        stream_window=STREAM_WINDOW,
    )


# A Kubernetes Service name: Tetragon's stream is per node, a Service would
# mix the events of arbitrary nodes.
_SERVICE_HOST = re.compile(r"(\.svc(\.|$)|\.cluster\.local$)")


def service_address_warning(address: str) -> str | None:
    """A warning when the address looks like a cluster Service rather than the node."""
    if address.startswith("unix:"):
        return None
    host = address.rpartition(":")[0].strip("[]")
    if _SERVICE_HOST.search(host):
        return (
            f"tetragon.address {redact(repr(address))} names a Kubernetes Service: "
            "Tetragon's gRPC stream is per node, so a Service would mix events of arbitrary nodes. "
            "Use the node-local address "
            "(unix:///var/run/tetragon/tetragon.sock or localhost:54321 with hostNetwork)."
        )
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DETAIL_CHARS = 512


def one_line(text: str) -> str:
    """A server's text for a message: redacted, then control characters escaped (its line breaks
    cannot forge log lines) and cut at :data:`MAX_DETAIL_CHARS` (redacted first: a cut could hide a
    password from :func:`redact`). Whoever listens at the address writes it."""
    text = redact(text)
    if len(text) > MAX_DETAIL_CHARS:
        text = f"{text[:MAX_DETAIL_CHARS]}... ({len(text)} characters)"
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _filter(f: EventFilter) -> events_pb2.Filter:
    msg = events_pb2.Filter()
    msg.namespace.extend(f.namespaces)
    msg.pod_regex.extend(f.pod_regex)
    msg.binary_regex.extend(f.binary_regex)
    msg.event_set.extend(events_pb2.EventType.Value(t) for t in f.event_types)
    return msg


# Tetragon's drop signals have no process, so no filter on the process or on our event types matches
# them: with any allow filter set they were never sent, and a throttled cgroup made no gap. One more
# allow filter (allow filters are ORed) lets them through; no deny filter the config can express
# matches them (a process filter never matches an event without one, and eventTypes cannot name them).
DROP_SIGNAL_TYPES = (events_pb2.PROCESS_THROTTLE, events_pb2.RATE_LIMIT_INFO)


def build_request(cfg: TetragonConfig) -> events_pb2.GetEventsRequest:
    req = events_pb2.GetEventsRequest()
    req.allow_list.extend(_filter(f) for f in cfg.allow)
    if cfg.allow:  # none: everything is allowed, the signals too
        req.allow_list.append(events_pb2.Filter(event_set=DROP_SIGNAL_TYPES))
    req.deny_list.extend(_filter(f) for f in cfg.deny)
    return req


class Backoff:
    """Capped exponential backoff with full jitter."""

    def __init__(self, *, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self._attempt = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        cap = min(self.maximum, self.initial * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(cap / 2, cap)
