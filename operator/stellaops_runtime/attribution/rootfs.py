"""Reading a root filesystem without ever leaving it.

A root is ``/`` for the host, an unpacked image, or ``/proc/<pid>/root`` of a
live container. Paths inside it are resolved the way the container sees
them: an absolute symlink (``/etc/os-release -> /usr/lib/os-release``,
Debian 12's ``/lib -> usr/lib``) is re-anchored at the root, a relative one is
followed from its directory. What never happens is leaving the root: a path
whose ``..`` climbs above ``/`` is ``outside_root`` and a relative symlink
that does is ``symlink_escape`` (both :class:`AttributionError`), and more
than 40 links is a ``symlink_loop``. A path with a NUL byte, or nested too deep
for the recursive walk below, is a ``bad_path``.

Names are resolved by string walking with ``lstat``/``readlink`` under the
root (memoized per directory, which is what package-database indexes need);
files are *opened* through canonical/rootopen.py, the one confined opener
every container path goes through (``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS)``, or the same walk in user space): a container that
swaps a directory for a symlink between the two steps is still read inside
its root. Only regular files are read (opened non-blocking, so a FIFO never
hangs a lookup); a FIFO, device or socket is ``not_regular``.
"""

from __future__ import annotations

import os
import stat

from stellaops_runtime.attribution.model import AttributionError, ErrorKind
from stellaops_runtime.canonical.rootopen import NotRegularFile, open_dir_in_root, open_in_root

MAX_SYMLINKS = 40  # as the kernel's path walk (MAXSYMLINKS)
MAX_LEVELS = 256  # directory levels of a path resolved (no file of a real image is nested deeper)
_MEMO_LIMIT = 65_536


def normalize(path: str, *, kind: ErrorKind = ErrorKind.OUTSIDE_ROOT) -> str:
    """Lexically normalized absolute path inside the root (``/a/./b/../c`` -> ``/a/c``).

    A relative path is taken from the root. ``..`` above ``/`` raises
    :class:`AttributionError` of ``kind`` instead of being clamped: a caller
    asking for ``../../etc/passwd`` asked for something outside the root.
    """
    return _join((), path, kind=kind, original=path)


def _join(base: tuple[str, ...], rel: str, *, kind: ErrorKind, original: str) -> str:
    parts = list(base)
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise AttributionError(kind, f"{original!r} climbs above the root filesystem")
            parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def split(path: str) -> tuple[str, str]:
    """(parent, name) of a normalized absolute path; the parent of ``/x`` is ``/``."""
    parent, _, name = path.rpartition("/")
    return parent or "/", name


def join(parent: str, name: str) -> str:
    return parent + name if parent == "/" else f"{parent}/{name}"


def _check(path: str) -> None:
    """A NUL byte ends a path for the kernel; Python refuses it (``ValueError``): it names no file.
    A path of more than :data:`MAX_LEVELS` directory levels is refused before the recursive walk,
    so the answer does not depend on the interpreter's recursion limit (a library may raise it)."""
    if "\0" in path:
        raise AttributionError(ErrorKind.BAD_PATH, f"{path!r}: a path with a NUL byte names no file")
    if path.count("/") > MAX_LEVELS:
        raise _too_deep(path)


def _too_deep(path: str) -> AttributionError:
    # Resolution recurses once per directory level (and per symlink): a path nested a
    # thousand levels deep (an image can hold one, PATH_MAX allows 2,048) is refused, not a crash.
    return AttributionError(ErrorKind.BAD_PATH, f"{path[:200]!r}...: nested too deep to resolve")


class RootFS:
    """One root filesystem: resolve names inside it and read files through it."""

    __slots__ = ("_dir_memo", "_prefix", "root")

    def __init__(self, root: str) -> None:
        if not root:
            raise AttributionError(ErrorKind.BAD_ROOT, "no root filesystem given")
        try:
            st = os.stat(root)
        except OSError as e:
            raise AttributionError(ErrorKind.BAD_ROOT, f"root filesystem {root!r}: {e.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise AttributionError(ErrorKind.BAD_ROOT, f"root filesystem {root!r} is not a directory")
        self.root = os.path.abspath(root)
        self._prefix = "" if self.root == "/" else self.root
        self._dir_memo: dict[str, str] = {}

    @property
    def memo_size(self) -> int:
        return len(self._dir_memo)

    def forget(self) -> None:
        """Drop the directory memo (index builds fill it; lookups need little of it)."""
        self._dir_memo.clear()

    def host_path(self, inroot: str) -> str:
        """The host path of a *resolved* in-root path (for messages and ``lstat``)."""
        return self._prefix + inroot if inroot != "/" else (self._prefix or "/")

    # -- name resolution -------------------------------------------------------

    def resolve(self, path: str, *, follow_final: bool = True) -> str:
        """The in-root path with symlinks followed inside the root.

        Components that do not exist are kept as written (a mapped file that
        was deleted can still be looked up in a package database by name).
        With ``follow_final=False`` only the directories are resolved, so a
        symlink keeps its own name (``libz.so.1`` rather than its target).
        """
        budget = [MAX_SYMLINKS]
        _check(path)
        try:
            return self._canon(normalize(path), follow_final, budget, path)
        except RecursionError:
            raise _too_deep(path) from None

    def resolve_dir(self, path: str) -> str:
        """Resolved form of a normalized directory path, memoized (index builds resolve thousands)."""
        _check(path)
        try:
            return self._canon_dir(path, [MAX_SYMLINKS], path)
        except RecursionError:
            raise _too_deep(path) from None

    def _canon(self, path: str, follow: bool, budget: list[int], original: str) -> str:
        if path == "/":
            return path
        parent, name = split(path)
        candidate = join(self._canon_dir(parent, budget, original), name)
        return self._follow(candidate, budget, original) if follow else candidate

    def _canon_dir(self, path: str, budget: list[int], original: str) -> str:
        if path == "/":
            return path
        hit = self._dir_memo.get(path)
        if hit is not None:
            return hit
        resolved = self._canon(path, True, budget, original)
        if len(self._dir_memo) >= _MEMO_LIMIT:
            self._dir_memo.clear()
        self._dir_memo[path] = resolved
        return resolved

    def _follow(self, candidate: str, budget: list[int], original: str) -> str:
        host = self._prefix + candidate
        try:
            st = os.lstat(host)
        except OSError:
            return candidate  # missing (or a non-directory in the way): keep the name as written
        if not stat.S_ISLNK(st.st_mode):
            return candidate
        budget[0] -= 1
        if budget[0] < 0:
            raise AttributionError(ErrorKind.SYMLINK_LOOP, f"{original!r}: too many levels of symbolic links")
        try:
            target = os.readlink(host)
        except OSError as e:
            raise AttributionError(ErrorKind.IO, f"{original!r}: cannot read link {candidate}: {e}") from None
        # An absolute target starts again at the root; a relative one at the link's directory.
        base = () if target.startswith("/") else tuple(p for p in split(candidate)[0].split("/") if p)
        try:
            new = _join(base, target, kind=ErrorKind.SYMLINK_ESCAPE, original=original)
        except AttributionError:
            raise AttributionError(
                ErrorKind.SYMLINK_ESCAPE,
                f"{original!r}: symlink {candidate} -> {target} points outside the root filesystem",
            ) from None
        return self._canon(new, True, budget, original)

    # -- reading -----------------------------------------------------------------

    def open(self, path: str, *, flags: int = os.O_RDONLY, resolved: bool = False) -> int:
        """A read-only descriptor of the regular file ``path``, opened confined to the root.

        Raises :class:`FileNotFoundError` (and other ``OSError``) like ``open``,
        and :class:`~stellaops_runtime.canonical.rootopen.NotRegularFile` (an
        ``OSError``) for a FIFO, device, socket or directory. ``flags`` with
        ``O_DIRECTORY`` opens a directory instead (for listing it).
        """
        canon = path if resolved else self.resolve(path)
        if flags & os.O_DIRECTORY:
            return open_dir_in_root(self.root, canon)
        return open_in_root(self.root, canon)[0]

    def read_bytes(self, path: str, *, limit: int, resolved: bool = False) -> bytes:
        """The whole content of a regular file; :class:`AttributionError` if larger than ``limit``
        (``io``) or not a regular file (``not_regular``)."""
        try:
            fd = self.open(path, resolved=resolved)
        except NotRegularFile as e:
            raise AttributionError(ErrorKind.NOT_REGULAR, f"{path}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if st.st_size > limit:
                raise AttributionError(
                    ErrorKind.IO, f"{path}: {st.st_size} bytes, more than the {limit} read"
                )
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(limit + 1)[:limit]
        finally:
            os.close(fd)

    def listdir(self, path: str, *, resolved: bool = False) -> list[str]:
        """Names in a directory of the root (``[]`` if it does not exist)."""
        try:
            fd = self.open(path, flags=os.O_RDONLY | os.O_DIRECTORY, resolved=resolved)
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def lstat(self, path: str) -> os.stat_result | None:
        """``lstat`` of a *resolved* in-root path, ``None`` if it does not exist."""
        try:
            return os.lstat(self.host_path(path))
        except OSError:
            return None
