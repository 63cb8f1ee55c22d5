"""Changes a backstop list found that the runtime's event stream never reported: lost events, or late.

A runtime's event stream is the watch between two lists; a backstop list
(the CRI observer's once a minute, the Docker observer's) should find nothing
it did not say. A change it finds may still be in flight (its event sent as
the list was read): each waits ``in_flight`` seconds for an event of its
container. One that gets none was lost, and other events with it, perhaps
those of a container created and removed between the two lists that no list
shows: the time since the list before is a hole (base.py ``_missed_events``).
CRI-O drops events when its channel of 1000 is full (``server.go``
``GenerateCRIEvent``); the Docker Engine skips an event for a subscriber that
has not taken it within 100 ms (moby ``pkg/pubsub/publisher.go``
``sendTopic``). Pure: times are passed in.
"""

from __future__ import annotations

from datetime import datetime

# How long a change a backstop list found may wait for its own event (in flight as the list was read)
# before the stream is taken to have lost it.
IN_FLIGHT_SECONDS = 2.0
# How long a stream stamped before the list (a reader behind) may put the verdict off at most: a wall
# clock stepped back after the list stamps every event before it, and would put it off for the step.
CATCH_UP_SECONDS = 30.0


class Unreported:
    """Changes a backstop list found, until their events come (see the module docstring)."""

    __slots__ = ("_due", "_ids", "_latest", "_list_ns", "_since", "catch_up", "in_flight")

    def __init__(self, in_flight: float = IN_FLIGHT_SECONDS, *, catch_up: float = CATCH_UP_SECONDS) -> None:
        self.in_flight = in_flight
        self.catch_up = catch_up
        self._latest = 0.0  # monotonic time after which no stream behind puts them off
        self._ids: set[str] = set()
        self._due = 0.0  # monotonic time by which their events must have come
        self._since: datetime | None = None  # the list before the one that found the first of them
        self._list_ns = 0  # when (wall clock, ns) the latest list that found some was read

    def found(self, ids: set[str], now: float, since: datetime | None, list_ns: int) -> None:
        """``ids`` changed by the list read at ``list_ns`` (the one before it: ``since``)."""
        if not ids:
            return
        if not self._ids:
            self._due, self._since = now + self.in_flight, since
            self._latest = now + max(self.in_flight, self.catch_up)
        self._ids |= ids
        self._list_ns = max(self._list_ns, list_ns)

    def event(self, event_ns: int | None, now: float) -> None:
        """An event stamped ``event_ns`` was handled (call after :meth:`heard`). The stream is in order:
        one stamped ``in_flight`` after the list means every change the list saw has been stamped (a
        runtime stamps an event a moment after the change) and has come, so those unheard are due now;
        one stamped before that means the stream is still catching up (a reader behind): they wait on,
        up to ``catch_up`` seconds after they were found (or a wall clock stepped back would be a reader
        behind for as long as its step)."""
        if not self._ids or not event_ns:
            return
        caught_up = event_ns > self._list_ns + int(self.in_flight * 1e9)
        self._due = now if caught_up else min(max(self._due, now + self.in_flight), self._latest)

    def heard(self, container_id: str) -> None:
        """An event of ``container_id`` came: its change was reported."""
        self._ids.discard(container_id)

    def wait(self, now: float) -> float | None:
        """Seconds until they are due (None: nothing waits)."""
        return max(0.0, self._due - now) if self._ids else None

    def lost(self, now: float) -> tuple[bool, datetime | None]:
        """(True, since) once some are due and still unreported; they are then forgotten."""
        if not self._ids or now < self._due:
            return False, None
        self._ids.clear()
        return True, self._since

    def clear(self) -> None:
        self._ids.clear()
