"""A mounted file the pipeline thread looks at now and then, and reads only when it changed.

The probe ConfigMap file (``native.probeConfigFile``) is read by two parts of
the pipeline: the opt-out list (agent/optout_watch.py) and the native pod
selection's policies (agent/native_selection.py). The kubelet replaces a
mounted ConfigMap's file when the ConfigMap changes, so each part asks
:meth:`WatchedFile.poll` before a batch: at most once per ``interval``
seconds it looks at the file (one ``stat``) and reads it only when its
inode, size or mtime moved since the last attempt. What the bytes mean, and
what a bad file does to the part's state, is the caller's: it parses them and
then calls :meth:`accepted` or :meth:`refused`. A refused file (a read or
parse error) is not read again until it changes, and its error is logged
once per change of error, never once a second.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from stellaops_runtime.regular_file import read_regular

log = logging.getLogger(__name__)

Mark = tuple[int, int, int]  # (inode, size, mtime ns)


@dataclass(frozen=True, slots=True)
class Changed:
    """The file's new bytes (at most ``max_bytes + 1``, so a caller can tell it is too large)."""

    raw: bytes
    mark: Mark


class Missing:
    """The file does not exist (an optional ConfigMap volume)."""


MISSING = Missing()


class WatchedFile:
    """One file at ``path``, polled from one thread only."""

    def __init__(self, path: str, *, interval: float, max_bytes: int, what: str) -> None:
        self.path = path
        self.interval = interval
        self.max_bytes = max_bytes
        self.what = what  # for the log: what reading the file gives ("opted-out pods", ...)
        self.errors = 0  # attempts that failed (stat, read or the caller's parse)
        self._next = 0.0
        self._seen: Mark | None = None  # the mark of the last attempt, good or bad
        self._last_error = ""

    def poll(self, now: float | None = None) -> Changed | Missing | None:
        """The file's bytes when it is due and changed, MISSING when it is gone, else None.

        A ``stat`` or read failure is counted and logged (once per change of error) and gives None.
        """
        now = time.monotonic() if now is None else now
        if now < self._next:
            return None
        self._next = now + self.interval
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen = None
            return MISSING
        except OSError as e:
            self.refused(None, f"cannot stat: {e.strerror or e}")
            return None
        mark = (st.st_ino, st.st_size, st.st_mtime_ns)
        if mark == self._seen:
            return None
        try:
            raw = read_regular(self.path, self.max_bytes)  # a FIFO must not stop the pipeline thread
        except OSError as e:
            self.refused(mark, f"cannot read: {e.strerror or e}")
            return None
        return Changed(raw, mark)

    def accepted(self, mark: Mark) -> None:
        """The caller used the bytes read at ``mark``: they are not read again until the file changes."""
        self._seen = mark
        self._last_error = ""

    def refused(self, mark: Mark | None, why: str) -> None:
        """The bytes at ``mark`` (None: the file could not be looked at) are unusable: counted, logged
        once per change of error, and not read again until the file changes."""
        self.errors += 1
        if why != self._last_error:
            log.error(
                "%s: %s not re-read (%s); the last %s read are kept", self.path, self.what, why, self.what
            )
        self._last_error = why
        self._seen = mark
