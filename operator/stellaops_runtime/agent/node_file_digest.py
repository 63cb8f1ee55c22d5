"""A probed node file's content digest: an mtime-only touch is no replacement.

A node file Tetragon probes counts as replaced when its (device, inode, size, modification time)
moves (agent/node_file_gaps.py ``replaced``): the uprobe stays on the file, or at the old build's
offset, the policy was loaded with. But ``touch libssl.so`` (or a package manager's restore of the
same bytes) moves the modification time alone, leaving the bytes, so the probe sits where it did
and sees every call: no gap is due. The agent keeps a digest of each file's contents with its
baseline identity (agent/node_file_baseline.py), taken once per identity on a worker thread, and a
change of the modification time alone with the same digest is a touch. A rewrite in place (``cp``
over it) with other bytes, even of the same size, has another digest: replaced.

Bounded: a file over :data:`MAX_BYTES` gets no digest (any change to it is a replacement, as before),
and the digest is of the bytes read between two ``fstat`` calls that agree with the identity asked
for: a file written while it is read gets none.
"""

from __future__ import annotations

import hashlib
import os

MAX_BYTES = 128 << 20  # a digest costs about a tenth of a second per 100 MiB, once per identity
CHUNK = 1 << 20

Stat = tuple[int, int, int, int]  # (device, inode, size, modification time ns)


def _stat(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def digest(path: str, ident: Stat) -> str | None:
    """The BLAKE2b digest of the file at ``path`` (a node file's name, as agent/tetragon_facts.py
    ``host_files`` names it) when it is still ``ident`` and no larger than :data:`MAX_BYTES`; None
    otherwise (gone, another file, too large, written while read, unreadable)."""
    if ident[2] > MAX_BYTES:
        return None
    from stellaops_runtime.native.follow_files import open_path

    try:
        fd, st = open_path(path)
    except (OSError, ValueError):
        return None
    try:
        first = _stat(st)
        if first[:4] != ident:
            return None
        h = hashlib.blake2b(digest_size=32)
        left = ident[2] + 1  # one byte past the size: a file grown meanwhile shows in its stat anyway
        while left > 0:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        if _stat(os.fstat(fd)) != first:
            return None
        return h.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def touch_only(kept: Stat, found: Stat) -> bool:
    """Whether ``found`` differs from ``kept`` by its modification time alone (same file and size)."""
    return kept[:3] == found[:3] and kept[3] != found[3]
