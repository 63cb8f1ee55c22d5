"""``/proc/<pid>/maps`` and the paths through which a process's files are opened.

A process's mapped files are named in its own mount namespace, so a file of
a container process is opened as ``/proc/<pid>/root/<path>``, never by the
bare path (which on the host may be a different file, or none). A mapping
whose file was deleted (maps says ``(deleted)``) can still be read while the
process lives through ``/proc/<pid>/map_files/<start>-<end>`` (root only).

The kernel writes a newline in a mapped file's name as ``\\012`` and leaves a
backslash as it is, so a maps line holding ``\\012`` may name either of two
files (``a<newline>b`` and a file literally named ``a\\012b``): such a mapping
(:attr:`Mapping.ambiguous`) is read only through its ``map_files`` entry,
which is the mapped file itself, never by its name.

Failures are :class:`ProcessError` with the outcome they are counted under:
``no_such_process`` (the pid does not exist) or ``process_exited`` (a zombie,
or gone between two reads).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass

DELETED_SUFFIX = " (deleted)"
ESCAPED_NEWLINE = "\\012"  # how maps shows a newline in a path (a backslash is not escaped)


class ProcessError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str  # without the " (deleted)" suffix
    deleted: bool

    @property
    def file_backed(self) -> bool:
        return self.inode != 0 and self.path.startswith("/")

    @property
    def ambiguous(self) -> bool:
        """The name as maps shows it may be another file's: read it through map_files only."""
        return ESCAPED_NEWLINE in self.path

    def file_offset(self, address: int) -> int:
        return address - self.start + self.offset


def parse_maps(text: str) -> list[Mapping]:
    """Parse the text of a maps file; lines that do not parse are skipped."""
    out: list[Mapping] = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            continue
        rng, perms, off, _dev, inode = parts[:5]
        path = parts[5] if len(parts) > 5 else ""
        lo, sep, hi = rng.partition("-")
        try:
            start, end, offset, ino = int(lo, 16), int(hi, 16), int(off, 16), int(inode)
        except ValueError:
            continue
        if not sep:
            continue
        deleted = path.endswith(DELETED_SUFFIX)
        if deleted:
            path = path[: -len(DELETED_SUFFIX)]
        out.append(Mapping(start, end, perms, offset, ino, path, deleted))
    out.sort(key=lambda m: m.start)
    return out


def read_maps(pid: int, *, proc_root: str = "/proc") -> list[Mapping]:
    """The mappings of a live process; ProcessError when it does not exist or has exited."""
    base = os.path.join(proc_root, str(pid))
    try:
        with open(os.path.join(base, "maps"), encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        raise ProcessError("no_such_process", f"no process {pid}") from None
    except ProcessLookupError:
        raise ProcessError("process_exited", f"process {pid} exited") from None
    except PermissionError as e:
        raise ProcessError("unreadable_file", f"cannot read maps of process {pid}: {e}") from None
    maps = parse_maps(text)
    if not maps:
        raise ProcessError("process_exited", f"process {pid} has no mappings (exited, or a kernel thread)")
    return maps


def find_mapping(maps: list[Mapping], address: int) -> Mapping | None:
    i = bisect_right([m.start for m in maps], address) - 1
    if i >= 0 and address < maps[i].end:
        return maps[i]
    return None


def process_root(pid: int, *, proc_root: str = "/proc") -> str:
    """The root directory of process ``pid`` (a magic link: its files are resolved inside it)."""
    return os.path.join(proc_root, str(pid), "root")


def root_path(pid: int, path: str, *, proc_root: str = "/proc") -> str:
    """``path`` as seen by process ``pid`` (through its root directory)."""
    return os.path.join(proc_root, str(pid), "root", path.lstrip("/"))


def map_files_path(pid: int, mapping: Mapping, *, proc_root: str = "/proc") -> str:
    return os.path.join(proc_root, str(pid), "map_files", f"{mapping.start:x}-{mapping.end:x}")


def process_alive(pid: int, *, proc_root: str = "/proc") -> bool:
    return os.path.exists(os.path.join(proc_root, str(pid), "maps"))
