"""What a file is for the symbolizer (:class:`FileId`), and how it opens and stats a file inside a root.

Why this module exists: canonical/filecache.py caches parsed files by
identity; the identity record itself and the two ways a file is reached
(opened inside a root, never blocking on a FIFO; stat'ed, regular files
only) are shared with canonical/symbolizer.py and kept here.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from stellaops_runtime.canonical.buildidclaims import StatId
from stellaops_runtime.canonical.debugfiles import DebugRef
from stellaops_runtime.canonical.limits import FileKey
from stellaops_runtime.canonical.rootopen import NotRegularFile, open_in_root, open_regular, stat_in_root

__all__ = ["FileId", "open_file", "stat_file"]


@dataclass(frozen=True, slots=True)
class FileId:
    """What a file is: its build-id and its content identity (build-id + content digest)."""

    build_id: str
    kind: str
    identity: str
    key: FileKey
    debug: DebugRef | None = None  # its separate debug file, when one was accepted
    sid: StatId | None = None  # (device, inode, size, mtime, ctime) when it was identified
    young_digest: str = ""  # SHA-256 of a young read (canonical/buildidclaims.py): what an index must hash to


def open_file(root: str, path: str) -> tuple[int, os.stat_result]:
    """A regular file by its path inside ``root`` (``/`` = the host: opened as is, still non-blocking)."""
    if root in ("", "/"):
        return open_regular(path)
    return open_in_root(root, path)


def stat_file(root: str, path: str) -> os.stat_result:
    st = stat_in_root(root, path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, st.st_mode)
    return st
