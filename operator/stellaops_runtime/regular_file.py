"""Reading the files a user names: the agent's config, witness keys, claims, envelopes, kallsyms, the spool.

Each path is a user's (``--config``, a config value, a command-line
argument), so it may name what is no file at all: a FIFO nobody writes to
(``open`` waits for a writer for ever, and the retried call outlives SIGTERM:
the agent never started and ``witness verify`` never answered), a device
that never ends (``/dev/zero``) or a socket. A file is therefore opened
without blocking, must be a regular file (a Kubernetes Secret or ConfigMap
mount is symlinks to one, which are followed), and is read to at most one
byte past the caller's limit, so the caller can say the file is too large
without reading all of it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular(path: str | Path, *, follow: bool = True) -> int:
    """A read-only descriptor of the regular file at ``path``, opened without blocking.

    For a caller that streams the file itself (``/proc/kallsyms``: a regular file whose
    size says 0, read to its end). ``follow=False`` refuses a symlink (``O_NOFOLLOW``).
    Raises OSError as :func:`read_regular` does."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the regular file at ``path``.

    Raises OSError when it cannot be opened or read, or is no regular file
    (``strerror`` then says what it is: ``not a regular file (a FIFO)``)."""
    fd = open_regular(path)
    try:
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
