"""Opening a file by a container's path without ever leaving the container's root.

Why this module exists: the agent reads ELF files, package databases and SBOMs
from other people's containers with root privileges. A plain
``open("/proc/<pid>/root/usr/lib/x.so")`` follows the container's symlinks
from the *agent's* root: ``usr/lib/x.so -> /etc/shadow`` would read the
host's ``/etc/shadow``. Every place that opens a file by a container path
(the canonicalizer through ``/proc/<pid>/root``, ``symbolize --root``,
attribution's databases and binaries, ``attribute --root``, SBOM-relative
paths, the agent's purls step) calls :func:`open_in_root` here.

The rule, the same as container runtimes apply (``openat2`` with
``RESOLVE_IN_ROOT``):

- the path is resolved component by component inside the root; an absolute
  symlink target starts again at the root, ``..`` at the root stays at the
  root, so nothing outside it can be named;
- magic links (``/proc/<pid>/root``, ``/proc/self/fd/N`` inside the tree)
  are not followed (``RESOLVE_NO_MAGICLINKS``); more than 40 symlinks is ``ELOOP``;
- the final object is opened with ``O_NONBLOCK`` (a FIFO never blocks the
  open) and ``fstat``-ed: anything that is not a regular file (FIFO, device,
  socket, directory) is refused with :class:`NotRegularFile`.

The kernel's ``openat2(2)`` (Linux 5.6+) is used through ``ctypes``; where
it is missing (ENOSYS, or a seccomp profile that answers EPERM) the same
walk is done in user space with ``O_PATH | O_NOFOLLOW`` descriptors and
``readlinkat``. :data:`FORCE_USERSPACE` selects the fallback (tests do).
The root itself is opened with ``O_PATH | O_DIRECTORY``, following a
``/proc/<pid>/root`` magic link on purpose: that is the container's root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

SYS_OPENAT2 = 437  # the same number on every architecture (unified syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
MAX_SYMLINKS = 40

FORCE_USERSPACE = False  # tests set it to exercise the fallback walk

_O_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFile(OSError):
    """The path names a FIFO, device, socket or directory: refused, never read."""

    reason = "not_regular"

    def __init__(self, path: str, mode: int) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({_kind(mode)})", path)
        self.mode = mode


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
    ):
        if test(mode):
            return name
    return f"mode {mode:o}"


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_syscall = None
_openat2_ok: bool | None = None  # None: not tried yet


def _openat2(dirfd: int, path: str, flags: int) -> int:
    global _syscall
    if _syscall is None:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syscall
        fn.restype = ctypes.c_long
        fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
        _syscall = fn
    how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    raw = os.fsencode(path)
    for _ in range(8):  # EAGAIN: a rename raced with ".." resolution; the kernel asks to retry
        fd = _syscall(SYS_OPENAT2, dirfd, raw, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def kernel_resolves_in_root() -> bool:
    """Whether ``openat2(RESOLVE_IN_ROOT)`` works here (probed once)."""
    global _openat2_ok
    if _openat2_ok is None:
        try:
            dfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.close(_openat2(dfd, ".", _O_PATH_FLAGS))
                _openat2_ok = True
            finally:
                os.close(dfd)
        except OSError:
            _openat2_ok = False
    return _openat2_ok


def _no_nul(path: str) -> None:
    """A NUL byte names no file: ctypes would pass ``openat2`` the text before it (another file),
    ``os`` raises ``ValueError``; both are refused as ``EINVAL``, an ``OSError`` like any other.
    So is a lone surrogate (JSON's ``"\\ud800"``), which ``os.fsencode`` cannot encode
    (``UnicodeEncodeError``); ``\\udc80``-``\\udcff`` are undecodable bytes of a real name, kept."""
    if "\0" in path:
        raise OSError(errno.EINVAL, "path holds a NUL byte", path.replace("\0", "\\0"))
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise OSError(errno.EINVAL, "path holds a lone surrogate", shown) from None


def open_root(root: str) -> int:
    """An ``O_PATH`` descriptor of the root directory (a ``/proc/<pid>/root`` link is followed)."""
    _no_nul(root)
    return os.open(root or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _walk(rootfd: int, path: str, final_flags: int) -> int:
    """The user-space equivalent of openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)."""
    todo = _components(path)
    todo.reverse()  # a stack: next component last
    stack = [os.dup(rootfd)]  # directory descriptors from the root down
    links = 0
    try:
        while todo:
            part = todo.pop()
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            dfd = stack[-1]
            fd = os.open(part, _O_PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                st = os.fstat(fd)
            except OSError:
                os.close(fd)
                raise
            if stat.S_ISLNK(st.st_mode):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=dfd)
                if target.startswith("/"):  # re-rooted: start again at the root
                    while len(stack) > 1:
                        os.close(stack.pop())
                new = _components(target)
                new.reverse()
                todo.extend(new)
                continue
            if not todo:  # the final component: open it for real, relative to its directory
                os.close(fd)
                return os.open(part, final_flags | os.O_NOFOLLOW, dir_fd=dfd)
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        # The path named the root itself (or walked back up to it).
        return os.open(".", final_flags, dir_fd=stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def open_at(rootfd: int, path: str, flags: int) -> int:
    """``path`` opened with ``flags`` inside the root ``rootfd`` (no regular-file check)."""
    _no_nul(path)
    if not FORCE_USERSPACE and kernel_resolves_in_root():
        return _openat2(rootfd, path.lstrip("/") or ".", flags)
    return _walk(rootfd, path, flags)


def _check_regular(fd: int, path: str) -> os.stat_result:
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(path, st.st_mode)
    return st


def open_in_root(root: str | int, path: str) -> tuple[int, os.stat_result]:
    """(read-only descriptor, its stat) of the regular file ``path`` inside ``root``.

    ``root`` is a directory path (``/``, an unpacked image, ``/proc/<pid>/root``)
    or a descriptor from :func:`open_root`. The object is first opened with
    ``O_PATH`` and checked, so a device is never opened for reading (a
    driver's open can have effects); it is then opened again through that
    descriptor (``/proc/self/fd``), so what is opened is the inode checked,
    whatever was put at the path meanwhile, and must be the same inode.
    Raises ``OSError`` like ``open`` (``FileNotFoundError``, ``ELOOP``, ...)
    and :class:`NotRegularFile`.
    """
    rootfd = open_root(root) if isinstance(root, str) else root
    try:
        probe = open_at(rootfd, path, _O_PATH_FLAGS)
        first = _check_regular(probe, path)
        try:  # not by path again: a FIFO or device swapped in after the check would be opened
            fd = os.open(f"/proc/self/fd/{probe}", _READ_FLAGS)
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None
        finally:
            os.close(probe)
    finally:
        if isinstance(root, str):
            os.close(rootfd)
    st = _check_regular(fd, path)
    if (st.st_dev, st.st_ino) != (first.st_dev, first.st_ino):
        os.close(fd)
        raise OSError(errno.ESTALE, "file replaced while it was opened", path)
    return fd, st


def stat_in_root(root: str, path: str) -> os.stat_result:
    """``stat`` of ``path`` resolved inside ``root`` (an ``O_PATH`` open, no read access needed)."""
    if root in ("", "/"):
        _no_nul(path)
        return os.stat(path)
    rootfd = open_root(root)
    try:
        fd = open_at(rootfd, path, _O_PATH_FLAGS)
    finally:
        os.close(rootfd)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def open_dir_in_root(root: str | int, path: str) -> int:
    """A readable descriptor of the directory ``path`` inside ``root`` (for listing it)."""
    rootfd = open_root(root) if isinstance(root, str) else root
    try:
        return open_at(rootfd, path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        if isinstance(root, str):
            os.close(rootfd)


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """A host path we chose ourselves (``/proc/<pid>/map_files/...``): non-blocking, regular files only."""
    _no_nul(path)
    fd = os.open(path, _READ_FLAGS)
    return fd, _check_regular(fd, path)
