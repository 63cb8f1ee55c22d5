"""The export follower's restart side: where a restarted agent reads on, and the hole before it.

Split from :mod:`stellaops_runtime.sources.tetragon_export` (the follower's loop, a mixin of
it: the attributes are the source's). The node's watch record (agent/watch_record.py) hands
the last agent's moment (``resume_outage``) and export checkpoint (``resume_checkpoint``,
agent/export_resume.py); when the first file is opened, :meth:`RestartResume._resume_at`
seeks to the checkpoint if the file is still the checkpoint's file, or reads first the
checkpoint's file rotated beside the path while no agent ran; the agent takes the hole
(``take_outage``) as an outage up to the moment the file was opened, or to the checkpoint's
moment when it was resumed.
"""

from __future__ import annotations

import logging
from typing import Any, BinaryIO

from stellaops_runtime.sources.export_checkpoint import matches, path_hash
from stellaops_runtime.sources.export_files import TAIL, bytes_before, find_rotated, ident
from stellaops_runtime.sources.export_stats import ExportStats
from stellaops_runtime.sources.open_outage import OpenOutage

log = logging.getLogger("stellaops_runtime.sources.tetragon_export")


class RestartResume:
    """The restart side of the export follower (a mixin of ``TetragonExportSource``)."""

    path: str
    from_start: bool
    stats: ExportStats
    alive_ns: int
    _tail: bytes
    _cur_id: tuple[int, int]
    _next: list[tuple[BinaryIO, tuple[int, int]]]
    _resume: tuple[dict[str, Any], tuple[int, int] | None] | None
    _outage: OpenOutage
    _opened_at: tuple[int, int]

    # The node's watch record and the hole since the last agent (agent/watch_record.py, outages.py).

    def watching_ns(self) -> int | None:
        """The last moment every complete line written before it was queued; None while no file is open."""
        return self.alive_ns if self.stats.connected and self.alive_ns else None

    def resume_outage(self, from_ns: int, from_boot: int | None = None) -> None:
        """Nobody watched since ``from_ns`` (boottime ``from_boot``; the last agent's record): a gap
        until the file is opened, unless it is resumed at the last agent's checkpoint."""
        self._outage.resume(from_ns, from_boot)

    def resume_checkpoint(self, cp: dict[str, Any], moment: tuple[int, int] | None) -> None:
        """The last agent stored the counts of every line before ``cp`` (sources/export_checkpoint.py)
        and none after it; the lines before it it may have stored were written before ``moment``
        (wall, boottime ns). If the file at the path is still that file, it is read from there and
        the gap since that agent ends at ``moment`` (none when nothing was in doubt). ``moment``
        None: the checkpoint is of an earlier boot; the file is read from there, the gap stays
        until the file is opened (its device number may differ after a reboot: its inode and
        first bytes must not)."""
        self._resume = (cp, moment)

    def _resume_at(self, f: BinaryIO) -> tuple[BinaryIO, bool, tuple[int, int] | None]:
        """Seek ``f`` to the checkpoint if it is its file: (the file to read first, resumed, the
        moment the gap then ends; None: when the file is opened). The checkpoint's file rotated
        beside the path while no agent ran is read first from there, then ``f`` from its start
        (sources/export_files.py ``find_rotated``)."""
        if self._resume is None:
            if self.from_start and self._outage.start is not None:
                log.warning(
                    "exportFromStart with an earlier agent's watch record that holds no checkpoint of "
                    "%s: if it is the file that agent followed, the lines it counted are counted again",
                    self.path,
                )
            return f, False, None
        cp, moment = self._resume
        self._resume = None
        other = cp["path_sha256"] != path_hash(self.path)
        why = "it was written for another path" if other else matches(f, cp, same_dev=moment is not None)
        rotated = (
            None
            if other or not why.startswith("another")
            else find_rotated(self.path, cp, f, same_dev=moment is not None)
        )
        if rotated is not None:  # the path's file is read after it, from its start
            self._next.append((f, self._cur_id))
            f, self._cur_id = rotated, ident(rotated)
            log.warning(
                "export file %s was rotated since the last agent: reading the rotated file first", self.path
            )
            why = ""
        if why:
            log.warning(
                "export file %s is not resumed where the last agent's stored counts end (%s): "
                "read from its %s, the time since that agent is a gap",
                self.path, why, "start" if self.from_start else "end",
            )  # fmt: skip
            return f, False, None
        f.seek(cp["pos"])
        self._tail = bytes_before(f, cp["pos"], min(TAIL, cp["pos"])) or b""
        self.stats.resumed_at = cp["pos"]
        if moment is None:
            note = " (the node rebooted since: the time until now is a gap)"
        elif moment[0] <= (self._outage.start or 0):
            note = ""
        else:
            note = " (the lines before it whose counts the last agent may not have stored are a gap)"
        log.warning(
            "export file %s resumed at byte %d, where the last agent's stored counts end: the lines "
            "written since are read, none counted twice%s", self.path, cp["pos"], note,
        )  # fmt: skip
        return f, True, moment

    def take_outage(self) -> tuple[int, int] | None:
        """The hole since the last agent, as (start, end) wall ns, once; piecewise until the file
        opens. A wall-clock step inside it widens the span to hold both sides (hotsymbols/clock_span.py)."""
        return self._outage.take(self._opened_at if self.stats.connects else None)

    def forget_outage(self) -> None:
        self._outage.forget()
