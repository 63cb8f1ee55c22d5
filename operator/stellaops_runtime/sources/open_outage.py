"""An unwatched span not yet handed to the agent: where it starts, on both clocks.

Both Tetragon sources (gRPC, sources/tetragon_grpc.py; the export file,
sources/tetragon_export.py) keep one: from the moment nobody is known to
watch the node (a stream that ended, the last agent's last watching moment)
until a source watches again. The agent takes it piece by piece
(agent/outages.py ``take_outage``): while it is open each piece ends now and
the next starts there; once a source watches, the last piece ends at that
moment and the outage is closed. Each moment is read on the wall clock and on
the boot clock, so a wall-clock step inside the span widens it to hold both
sides (hotsymbols/clock_span.py) instead of dropping it.
"""

from __future__ import annotations

from stellaops_runtime.hotsymbols.clock_span import covering, now_pair


class OpenOutage:
    """The start of an outage not handed over yet (None: there is none)."""

    __slots__ = ("boot", "start")

    def __init__(self) -> None:
        self.start: int | None = None  # wall ns
        self.boot: int | None = None  # boottime ns of the same moment; None: unknown (another boot's)

    def open(self, wall_ns: int, boot_ns: int | None) -> None:
        """An outage from this moment, unless one is open already (it started earlier)."""
        if self.start is None:
            self.start, self.boot = wall_ns, boot_ns

    def resume(self, wall_ns: int, boot_ns: int | None) -> None:
        """An outage open since this moment at the latest (the last agent's last watching moment)."""
        if self.start is None or wall_ns < self.start:
            self.start, self.boot = wall_ns, boot_ns

    def forget(self) -> None:
        """Drop it: another source takes over and accounts for the time itself."""
        self.start = self.boot = None

    def take(self, watching_since: tuple[int, int] | None) -> tuple[int, int] | None:
        """The piece not handed over yet, as (start, end) wall ns; None if there is none.

        ``watching_since``: (wall, boottime) ns a source watches again from, which closes
        the outage; None while nobody watches (the piece ends now, the next starts there)."""
        start, start_boot = self.start, self.boot
        if start is None:
            return None
        if watching_since is not None:
            end, end_boot = watching_since
            self.start = self.boot = None
        else:
            end, end_boot = now_pair()
            self.start, self.boot = end, end_boot
        start, end = covering(start, start_boot, end, end_boot)
        return (start, end) if end > start else None
