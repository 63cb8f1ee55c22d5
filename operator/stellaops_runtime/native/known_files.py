"""The files the native probes were put on, kept on disk for the agent's next start.

A process started from a probed binary that was then renamed away (``mv app
app.old`` and a new ``app``) maps ``app.old``: a linked file under another
name, which nothing ties to the target but its identity. The source remembers
the identities of the files its loads probed per target path (native/follow.py,
``known``), and a later load of the same agent finds processes still mapping
them (native/former.py). A restarted agent started with nothing: the old
process's calls went uncounted while its windows said watched. So the
identities are written here, beside the agent's other node state
(``<store.spoolPath>.native-files``, agent/source_switch.py), and read back at
the next start.

What is kept per path: (device, inode) -> (size, modification time), at most
``follow.MAX_KNOWN`` files per path and ``MAX_PATHS`` paths. Identities are
only meaningful during one boot (no process outlives a reboot, and inode
numbers are reused), so the file carries the boot id and one of another boot
is ignored. The write is atomic (atomic_file.py), and another agent's entries
on the node (a rollout where two overlap) are merged, not overwritten. A file
that cannot be read or parsed is logged, counted by the caller, and taken as
empty: a renamed-away file is then not known (as before this file existed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

from stellaops_runtime.atomic_file import write_atomically
from stellaops_runtime.boot_id import this_boot

log = logging.getLogger(__name__)

SUFFIX = ".native-files"
FORMAT = "stellaops-runtime-native-files"
MAX_PATHS = 1024
MAX_PER_PATH = 16  # as follow.MAX_KNOWN
MAX_BYTES = 4 << 20

Known = dict[str, dict[tuple[int, int], tuple[int, int]]]


class KnownFileError(Exception):
    """The file exists and cannot be used; the message says why."""


def known_path(spool_path: str) -> str:
    """Where the probed files of an agent with this spool path are kept ('' without a spool path)."""
    return spool_path + SUFFIX if spool_path else ""


def _int(v: object) -> int:
    if type(v) is not int or v < 0:
        raise KnownFileError(f"not a non-negative integer: {v!r:.40}")
    return v


def read(path: str) -> Known:
    """The files kept at ``path`` for this boot ({} when there is none, or of another boot).

    Raises KnownFileError when the file is there and cannot be used."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise KnownFileError(f"cannot open it: {e.strerror or e}") from None
    try:
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as e:
        raise KnownFileError(f"cannot read it: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise KnownFileError(f"larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:  # RecursionError: arrays nested past the parser's depth
        raise KnownFileError(f"not JSON: {type(e).__name__}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("paths"), dict):
        raise KnownFileError("not a file of probed native files")
    boot = this_boot()
    if not boot or doc.get("boot_id") != boot:
        return {}  # another boot's processes are all gone, its inode numbers mean nothing now
    out: Known = {}
    for p, files in list(doc["paths"].items())[:MAX_PATHS]:
        if not isinstance(p, str) or "\x00" in p or not isinstance(files, list):
            raise KnownFileError("a path entry is malformed")
        got: dict[tuple[int, int], tuple[int, int]] = {}
        for f in files[-MAX_PER_PATH:]:
            if not isinstance(f, list) or len(f) != 4:
                raise KnownFileError("a file entry is malformed")
            dev, ino, size, mtime = (_int(x) for x in f)
            got[(dev, ino)] = (size, mtime)
        out[p] = got
    return out


def merge(into: Known, other: Known) -> None:
    """Add ``other``'s files to ``into`` (``into``'s stay the newest), within the bounds."""
    for p, files in other.items():
        mine = into.get(p)
        if mine is None:
            if len(into) >= MAX_PATHS:
                continue
            into[p] = dict(files)
            continue
        merged = {i: c for i, c in files.items() if i not in mine}
        merged.update(mine)
        while len(merged) > MAX_PER_PATH:
            del merged[next(iter(merged))]
        mine.clear()
        mine.update(merged)


def write(path: str, known: Known) -> None:
    """Write ``known`` (merged with what is at ``path`` now: another agent's) atomically. Raises OSError."""
    now: Known = {p: dict(f) for p, f in known.items() if f}
    with contextlib.suppress(KnownFileError):  # a damaged one is replaced whole by ours
        merge(now, read(path))
    doc = {
        "format": FORMAT,
        "boot_id": this_boot(),
        "paths": {
            p: [[d, i, s, m] for (d, i), (s, m) in f.items()] for p, f in list(now.items())[-MAX_PATHS:]
        },
    }
    write_atomically(path, json.dumps(doc, separators=(",", ":")).encode(), durable=True)
