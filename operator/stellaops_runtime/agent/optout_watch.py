"""The operator's list of opted-out pods, re-read by the pipeline when its mounted file changes.

With it, the uids of the pods whose annotation names a level (``optedIn``),
which speak over the container runtime's record of a pod created opted out
(privacy/optout.py).

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
import time
from collections.abc import Callable

from stellaops_runtime.agent.watched_file import Missing, WatchedFile
from stellaops_runtime.native.config import NativeConfigError
from stellaops_runtime.native.policy_config import MAX_FILE_BYTES, parse_opted_in, parse_opted_out
from stellaops_runtime.privacy.optout import OptOut

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0


class OptOutWatch:
    """Feeds ``optout.set_operator`` from the file at ``path`` (poll from the pipeline thread only)."""

    def __init__(self, path: str, optout: OptOut, *, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.optout = optout
        self.reads = 0  # successful reads
        self.bad_entries = 0  # entries of the last read that were skipped
        self._file = WatchedFile(path, interval=interval, max_bytes=MAX_FILE_BYTES, what="opted-out pods")
        self._ever_read = False
        # The wall clock of a read: optedIn speaks over the runtime's record from then on (tests set it).
        self.wall: Callable[[], int] = time.time_ns

    @property
    def interval(self) -> float:
        """Seconds between two looks at the file (tests set 0)."""
        return self._file.interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self._file.interval = seconds

    @property
    def errors(self) -> int:
        """Reads that failed (the list kept as it was)."""
        return self._file.errors

    def poll(self, now: float | None = None) -> bool:
        """Re-read the file if it is due and changed; True when the opt-out list changed."""
        got = self._file.poll(now)
        if got is None:
            return False
        if isinstance(got, Missing):
            return False if self._ever_read else self.optout.set_operator(())
        try:
            pods, bad = parse_opted_out(got.raw, source=self.path)
            at_level, bad_in = parse_opted_in(got.raw, source=self.path)
        except NativeConfigError as e:
            self._file.refused(got.mark, str(e))
            return False
        self._file.accepted(got.mark)
        self._ever_read = True
        self.reads += 1
        self.bad_entries = bad + bad_in
        if self.bad_entries:
            log.warning(
                "%s: %d opted-out/opted-in pod entries unusable and skipped", self.path, self.bad_entries
            )
        changed = self.optout.set_operator(pods, at_level, self.wall())
        if changed:
            log.info("opted-out pods from the operator: %d", self.optout.operator_pods)
        return changed
