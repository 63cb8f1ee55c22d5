"""The operator's list of opted-out pods, re-read by the pipeline when its mounted file changes.

The operator writes the uid, namespace and name of every pod whose
``stellaops.io/observe-level`` opts it out into the probe ConfigMap
(``optedOut`` in ``probes.json``, controller/render_policy.py); the agent pod
mounts it as ``native.probeConfigFile``. The kubelet replaces a mounted
ConfigMap's file when the ConfigMap changes (about a minute later at most,
its sync period), so the pipeline thread asks :meth:`OptOutWatch.poll` before
each batch; that looks at the file (one ``stat``) at most once per
``interval`` seconds and reads it only when its inode, size or mtime moved.

A file that cannot be read or parsed leaves the list as it was (counted in
``errors``, logged once per change): losing the list would trace pods that
asked not to be, so only a successful read replaces it. A file that does not
exist (the ConfigMap's volume is optional) is an empty list only until a list
was read once. Entries the parser skips are counted in ``bad_entries``.
"""

from __future__ import annotations

import logging
import os
import time

from stellaops_runtime.native.config import NativeConfigError
from stellaops_runtime.native.policy_config import MAX_FILE_BYTES, parse_opted_out
from stellaops_runtime.privacy.optout import OptOut

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0


class OptOutWatch:
    """Feeds ``optout.set_operator`` from the file at ``path`` (poll from the pipeline thread only)."""

    def __init__(self, path: str, optout: OptOut, *, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.optout = optout
        self.interval = interval
        self.reads = 0  # successful reads
        self.errors = 0  # reads that failed (the list kept as it was)
        self.bad_entries = 0  # entries of the last read that were skipped
        self._next = 0.0
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime ns) of the last attempt
        self._ever_read = False
        self._last_error = ""

    def poll(self, now: float | None = None) -> bool:
        """Re-read the file if it is due and changed; True when the opt-out list changed."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            return False
        self._next = now + self.interval
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen = None
            return False if self._ever_read else self.optout.set_operator(())
        except OSError as e:
            return self._failed(None, f"cannot stat: {e.strerror or e}")
        mark = (st.st_ino, st.st_size, st.st_mtime_ns)
        if mark == self._seen:
            return False
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
            pods, bad = parse_opted_out(raw, source=self.path)
        except OSError as e:
            return self._failed(mark, f"cannot read: {e.strerror or e}")
        except NativeConfigError as e:
            return self._failed(mark, str(e))
        self._seen = mark
        self._ever_read = True
        self._last_error = ""
        self.reads += 1
        self.bad_entries = bad
        if bad:
            log.warning("%s: %d opted-out pod entries unusable and skipped", self.path, bad)
        changed = self.optout.set_operator(pods)
        if changed:
            log.info("opted-out pods from the operator: %d", self.optout.operator_pods)
        return changed

    def _failed(self, mark: tuple[int, int, int] | None, why: str) -> bool:
        self.errors += 1
        if why != self._last_error:
            log.error("opted-out pods not re-read (%s); the last list read is kept", why)
        self._last_error = why
        self._seen = mark  # the same bad file is not parsed again every second
        return False
