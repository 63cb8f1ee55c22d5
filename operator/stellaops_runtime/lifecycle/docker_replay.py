"""Whether Docker's replay of the events before a subscription may have lost some (its 256-event buffer).

The Docker observer asks ``GET /events?since=T0`` with T0 the instant before
the request, so what happens between T0 and the moment the Engine registers
the stream is replayed first. The Engine replays from a ring of its last
``eventsLimit = 256`` events of every type (moby v20.10
``daemon/events/events.go``: ``PublishMessage`` drops the oldest once 256 are
held; ``loadBufferedEvents`` walks the ring from the newest back and stops at
the first event older than ``since``). More than 256 events between T0 and
the registration (a busy node, a loaded Engine slow to take the request), and
the oldest of them are gone from the replay, silently: a container created,
run and removed there is in neither the list nor the stream.

The check needs no extra request. The stream is not filtered by type, so the
replay holds every event of the ring newer than T0. If the ring overflowed,
that replay is 256 events, all stamped before the registration, which was
before the first event reached us (``first_seen_ns``, this host's clock, the
Engine's too). The replay comes before any live event, and live events are
stamped after the registration. So: count the events stamped no later than
the arrival of the first one; 256 of them mean the replay may have lost
events (a burst of that many live ones in that instant also counts: a rare
and safe false alarm); an event stamped after that arrival ends the check:
the replay is over. An empty replay never starts the check, and needs none:
an overflow leaves 256 events to replay. An event without a usable time
counts (it cannot be placed).
"""

from __future__ import annotations

REPLAY_LIMIT = 256  # moby daemon/events/events.go eventsLimit


class ReplayCheck:
    """One connection's check of the Engine's replay; :meth:`see` each event's ``timeNano`` in order."""

    __slots__ = ("count", "done", "first_seen_ns", "since_ns")

    def __init__(self, since_ns: int) -> None:
        self.since_ns = since_ns  # what the stream asked the Engine to replay from
        self.first_seen_ns = 0  # this host's clock when the first event arrived (0: none yet)
        self.count = 0  # events stamped no later than that
        self.done = False

    def arrived(self, now_ns: int) -> None:
        """The first line of the stream arrived at ``now_ns`` (it may be handled much later: the observer
        rebuilds its registry first, and live events that came meanwhile are stamped after this)."""
        if not self.first_seen_ns:
            self.first_seen_ns = now_ns

    def see(self, event_ns: int | None, now_ns: int) -> bool:
        """One event of the stream (``event_ns``: its ``timeNano``, None when absent or invalid),
        handled at ``now_ns`` (the first one's arrival, when :meth:`arrived` was not told); True once, when
        the replay may have lost events."""
        if self.done:
            return False
        self.arrived(now_ns)
        if event_ns is not None and event_ns > self.first_seen_ns:
            self.done = True  # a live event: the replay is over, and it was whole
            return False
        self.count += 1
        if self.count >= REPLAY_LIMIT:
            self.done = True
            return True
        return False
