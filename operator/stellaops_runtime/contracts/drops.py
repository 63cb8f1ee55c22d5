"""Tetragon telling us it dropped events: the signals that make observation gaps.

Two GetEventsResponse kinds carry no observation but say that others were not
delivered (issue 10):

- ``process_throttle`` (Tetragon's ``--cgroup-rate``): THROTTLE_START when a
  cgroup crossed the rate and Tetragon stopped posting its events,
  THROTTLE_STOP when it resumed. The event names only the cgroup (its
  directory name, e.g. ``cri-containerd-<id>.scope``), no process or pod;
  the gap tracker resolves it to a container through the events it saw.
- ``rate_limit_info`` (``--export-rate-limit``, JSON export only): the number
  of events the exporter's rate limiter dropped since its last report, node
  wide, reported once per :data:`RATE_LIMIT_REPORT_NS` (Tetragon's limiter
  interval is one minute).

The adapters turn both into :class:`DropSignal` records; nothing else is
derived from them here (plain data, no I/O).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Tetragon's export rate limiter reports what it dropped once a minute
# (cmd/tetragon: ratelimit.NewRateLimiter(ctx, 1*time.Minute, ...)).
RATE_LIMIT_REPORT_NS = 60 * 1_000_000_000


class DropKind(enum.StrEnum):
    THROTTLE_START = "throttle_start"
    THROTTLE_STOP = "throttle_stop"
    RATE_LIMIT = "rate_limit"


@dataclass(slots=True)
class DropSignal:
    """One of Tetragon's own drop signals, as the adapters read it.

    ``timestamp_ns`` 0 and ``node_name`` "" are filled by the pipeline (arrival
    time, the agent's node), as for events. ``cgroup`` is set for throttles,
    ``dropped`` (events lost) for rate-limit reports.
    """

    kind: DropKind
    timestamp_ns: int
    node_name: str
    cgroup: str = ""
    dropped: int = 0
