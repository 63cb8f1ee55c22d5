"""Writing a file whole or not at all: one routine for every file the project replaces.

The spool, the agent's watch record, witnesses, VEX documents, the symbol
index cache and the BCC header shim are each replaced while something may
read them, and a kill, a full disk or a file size limit can stop a write
half-way. A reader must see the old file or the new one, never half of one:
a truncated spool loses counts, a truncated watch record restarts an agent
as the node's first, a truncated witness or VEX document fails a policy
engine's verification (or, worse, parses).

So the data goes to a temporary file beside the target, created with
``O_EXCL | O_NOFOLLOW`` under a name no other writer can have picked (the
process id alone is not enough: agents in two containers are often both pid
1), given its mode explicitly (the umask is the caller's environment, not the
file's meaning), optionally synced, and renamed over the target. ``durable``
also syncs the directory, so the rename itself survives a power loss. The
temporary file is removed when anything fails, and its name
(``.<name>.tmp-<pid>-<random>``) is hidden and matches no pattern a reader
globs for (``*.witness.json``, ``*.idx``); ``stale_temporaries`` lists those a
killed writer left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path


def temporary_name(path: str | os.PathLike[str]) -> str:
    """A fresh hidden temporary path beside ``path`` (``.<name>.tmp-<pid>-<random>``)."""
    d, name = os.path.split(os.fspath(path))
    return os.path.join(d, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files writers of ``path`` left behind (a kill between create and rename)."""
    p = Path(path)
    return sorted(p.parent.glob(f".{p.name}.tmp-*"))


def write_atomically(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, durable: bool = True
) -> None:
    """Replace ``path`` with ``data``, whole or not at all. Raises OSError.

    ``mode`` is the new file's, whatever the umask. ``durable``: the file and the rename are
    on disk before this returns (fsync of the file, then of its directory).
    """
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        dfd = os.open(os.path.dirname(os.fspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        except OSError as e:
            # A file system that cannot sync a directory (some FUSE and network ones) has replaced
            # the file all the same: that is not a failed write.
            if e.errno not in (errno.EINVAL, errno.ENOTSUP):
                raise
        finally:
            os.close(dfd)
