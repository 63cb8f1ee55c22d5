"""Separate debug files: finding, checking and identifying the file that holds a binary's symbols.

Why this module exists: distributions strip their binaries and ship the
symbols apart (Debian's ``*-dbg`` and ``*-dbgsym`` packages, Fedora's
``debuginfo``), and llvm-symbolizer and gdb read them. A stripped libc only
has ``.dynsym``: its static functions resolve to the exported neighbour or to
nothing. With the debug file they get the same names, and so the same
function IDs, as an unstripped copy of the same build.

Where a debug file is looked for, in order (the first one accepted wins):

1. ``/usr/lib/debug/.build-id/<first 2 hex digits>/<rest>.debug``, for a GNU
   build-id, under the binary's own root (the container's), then under each
   configured root (the host root);
2. the ``.gnu_debuglink`` name, in the binary's directory, in
   ``<dir>/.debug/`` and in ``/usr/lib/debug/<dir>/``, under the same roots;
3. ``<dir>/<build-id>/debuginfo`` in each configured debuginfod-style cache
   directory (read as it is; nothing is ever fetched).

Files under a root are opened through canonical/rootopen.py (never leaving
the root, regular files only). A candidate is accepted only when it is an
ELF file with a ``.symtab`` or DWARF, its GNU build-id equals the binary's
(a debug file without a build-id is accepted through ``.gnu_debuglink`` only,
when its CRC-32 matches), and, for ``.gnu_debuglink``, its CRC-32 equals the
one the link records. Every rejection is counted (``debug_files_rejected_<why>``)
and the binary keeps its own tables. The accepted file's SHA-256 becomes part
of the binary's cache identity (canonical/filecache.py): a debug file planted
in one container can only ever name the functions of that container's copy.

A candidate is hashed (SHA-256 and CRC-32 of the whole file) when it is
checked, and it is checked each time a binary is identified, which happens
once per (process root, path): every new process of a container. What a
check read is remembered by the candidate's stat identity once a read
started after :data:`~stellaops_runtime.canonical.buildidclaims.STAT_TRUST_SECONDS`
past its ctime (its content cannot change then without the identity
changing): later checks of that identity reuse it (``debug_files_hashed``
counts the hashes). A young candidate is hashed at each check, like a young
binary, until a read after the margin.

Pure logic (:func:`parse_debuglink`, the candidate paths) in the middle; the
reads at the edge, in :class:`DebugFinder`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from stellaops_runtime.canonical.buildidclaims import StatId, stat_identity, stat_trusted
from stellaops_runtime.canonical.debuglink import (
    BinaryLink,
    DebugLink,
    binary_link,
    build_id_path,
    debuglink_paths,
    has_symbols,
)
from stellaops_runtime.canonical.elflayout import (
    BUILD_ID_GNU,
    ElfError,
    ElfLayout,
    build_id_from_notes,
    parse_notes,
    read_chunks,
    read_layout,
    read_notes,
)
from stellaops_runtime.canonical.limits import BUDGET_EXCEEDED, MALFORMED, FileKey, Limits, file_key
from stellaops_runtime.canonical.lru import LRU
from stellaops_runtime.canonical.rootopen import NotRegularFile, open_in_root, open_regular
from stellaops_runtime.canonical.symtab import SHT_NOBITS, SectionInfo, read_section, read_section_table

# How a debug file was found (the suffix of ``debug_files_found_<how>``).
BY_BUILD_ID = "build_id"
BY_DEBUGLINK = "debuglink"
BY_DEBUGINFOD = "debuginfod"

# Why a candidate was refused (the suffix of ``debug_files_rejected_<why>``).
BUILD_ID_MISMATCH = "build_id_mismatch"
CRC_MISMATCH = "crc_mismatch"
NO_SYMBOLS = "no_symbols"
UNREADABLE = "unreadable"
NOT_REGULAR = "not_regular"
BAD_LINK = "bad_debuglink"


@dataclass(frozen=True, slots=True)
class DebugSearch:
    """Where debug files are looked for (besides the binary's own root)."""

    enabled: bool = True
    # Roots searched after the binary's own one, e.g. the host root ("/" or "/host").
    roots: tuple[str, ...] = ("/",)
    # debuginfod-style caches, ``<dir>/<build-id>/debuginfo``, read in this process's filesystem.
    debuginfod_dirs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DebugRef:
    """An accepted debug file: where it is, how it was found, and what it is."""

    root: str
    path: str
    how: str
    key: FileKey
    build_id: str
    kind: str
    digest: str  # SHA-256 hex of its bytes
    sid: StatId | None = None  # (device, inode, size, mtime, ctime) when it was hashed
    trusted: bool = True  # hashed when its ctime was old enough for sid to vouch for it (buildidclaims)

    def describe(self) -> str:
        where = self.path if self.root in ("", "/") else f"{self.root.rstrip('/')}/{self.path.lstrip('/')}"
        return f"{where} ({self.how})"


# (build-id, kind, has .symtab or DWARF, SHA-256 hex, CRC-32) of a candidate, as a trusted read found it
_Read = tuple[str, str, bool, str, int]
_REMEMBERED_READS = 4096  # candidates' trusted reads remembered (LRU): one per debug file in use


class WouldHash(Exception):
    """A candidate would have to be read whole, and it is larger than the caller allows."""


class Rejected(Exception):
    """A candidate debug file that is not this binary's: ``reason`` is counted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- reads at the edge --------------------------------------------------------------


def _open(root: str, path: str) -> tuple[int, os.stat_result]:
    if root in ("", "/"):
        return open_regular(path)
    return open_in_root(root, path)


def _digest_and_crc(fd: int, size: int, limits: Limits) -> tuple[str, int]:
    """SHA-256 hex and CRC-32 of the whole file, streamed, within the file budget."""
    if size > limits.max_file_bytes:
        raise Rejected(BUDGET_EXCEEDED, f"{size} bytes, more than the {limits.max_file_bytes}-byte budget")
    budget = limits.budget()
    h = hashlib.sha256()
    crc = 0

    def consume(chunk: memoryview) -> None:
        nonlocal crc
        h.update(chunk)
        crc = zlib.crc32(chunk, crc)

    try:
        pos = read_chunks(fd, size, consume, lambda: budget.check_time("hashing a debug file"))
    except ElfError as e:
        raise Rejected(e.reason, str(e)) from None
    if pos != size:
        raise Rejected(UNREADABLE, "file shrank while it was read")
    return h.hexdigest(), crc


class DebugFinder:
    """Finds the accepted debug file of one binary; counts what it found and what it refused."""

    def __init__(
        self,
        search: DebugSearch,
        limits: Limits,
        count: Callable[[str], None],
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.search = search
        self.limits = limits
        self.count = count
        self.clock = clock  # CLOCK_REALTIME ns: is a candidate's ctime old enough to vouch for it?
        # what trusted reads of candidates found, by stat identity: (build-id, kind, symbols, digest, crc)
        self._read: LRU[StatId, _Read] = LRU(_REMEMBERED_READS)
        self._links: LRU[StatId, BinaryLink] = LRU(_REMEMBERED_READS)  # binaries' sections, by stat identity
        self._lock = threading.Lock()  # the parse worker and the caller's thread both check candidates

    def find(
        self,
        *,
        root: str,
        path: str,
        f_fd: int,
        layout: ElfLayout,
        build_id: str,
        kind: str,
        main_key: FileKey,
        max_hash_bytes: int | None = None,
        main_sid: StatId | None = None,
        debuglink: bool = True,
        own_root_last: bool = False,
    ) -> DebugRef | None:
        """The debug file for the binary at ``path`` in ``root`` (open as ``f_fd``), or None.

        ``debuglink``: False when ``path`` does not name where the binary is (a caller holding only a
        descriptor): its ``.gnu_debuglink`` name is then not looked for, only its build-id.

        ``main_sid``: the binary's stat identity, given when it vouches for its content (a trusted
        read): what its sections say (complete, its ``.gnu_debuglink``) is then read once for it.

        ``own_root_last``: look under the configured roots before the binary's own, root by root (its
        build-id path, then its debuglink names, in each), for native/symdebug.py: the node's debug
        files before a container's, which are that container's word.

        ``max_hash_bytes``: raise :class:`WouldHash` rather than read a larger candidate whole (a
        check on the caller's thread, which must stay bounded; 0: no read at all)."""
        if not self.search.enabled or not layout.has_section_headers:
            return None
        with self._lock:  # what the binary's sections say, by its stat identity when that vouches for it
            said = self._links.get(main_sid) if main_sid is not None else None
        if said is None:
            said = binary_link(f_fd, layout, path, self.limits)
            if said is None:
                return None  # the binary's own section table is unusable: indexing it will say why
            if main_sid is not None:
                with self._lock:
                    self._links.put(main_sid, said)
        complete, link, bad = said
        if bad:
            self.count(f"debug_files_rejected_{BAD_LINK}")
        if complete:
            return None  # nothing a debug file could add
        own = root or "/"
        roots = [own] + [r for r in self.search.roots if r and r != own]
        if own_root_last and len(roots) > 1:
            roots = roots[1:] + roots[:1]
        gnu = kind == BUILD_ID_GNU
        candidates: list[tuple[str, str, str]] = []
        bid_path = build_id_path(build_id) if gnu else None
        if bid_path is not None:
            candidates += [(r, bid_path, BY_BUILD_ID) for r in roots]
        if link is not None and debuglink:
            candidates += [(r, p, BY_DEBUGLINK) for r in roots for p in debuglink_paths(path, link.name)]
        if gnu:
            for d in self.search.debuginfod_dirs:
                candidates.append(("/", posixpath.join(d, build_id, "debuginfo"), BY_DEBUGINFOD))
        if own_root_last:  # root by root: the configured roots' build-id and debuglink files first
            candidates.sort(key=lambda c: (1, 0) if c[2] == BY_DEBUGINFOD else (0, roots.index(c[0])))
        seen: set[FileKey] = {main_key}
        for r, p, how in candidates:
            ref = self._try(r, p, how, build_id if gnu else "", link, seen, max_hash_bytes)
            if ref is not None:
                self.count(f"debug_files_found_{how}")
                return ref
        return None

    def _try(
        self,
        root: str,
        path: str,
        how: str,
        build_id: str,
        link: DebugLink | None,
        seen: set[FileKey],
        max_hash_bytes: int | None = None,
    ) -> DebugRef | None:
        try:
            fd, st = _open(root, path)
        except NotRegularFile:
            self.count(f"debug_files_rejected_{NOT_REGULAR}")
            return None
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno not in (None, 2, 20):  # ENOENT, ENOTDIR: simply not there
                self.count(f"debug_files_rejected_{UNREADABLE}")
            return None
        try:
            key = file_key(st)
            if key in seen:  # the binary itself, or a candidate already refused
                return None
            seen.add(key)
            ref = self._check(fd, st, root, path, how, build_id, link, max_hash_bytes)
        except Rejected as e:
            self.count(f"debug_files_rejected_{e.reason}")
            return None
        except OSError:  # an I/O error while hashing it
            self.count(f"debug_files_rejected_{UNREADABLE}")
            return None
        finally:
            os.close(fd)
        return ref

    def _check(
        self,
        fd: int,
        st: os.stat_result,
        root: str,
        path: str,
        how: str,
        build_id: str,
        link: DebugLink | None,
        max_hash_bytes: int | None = None,
    ) -> DebugRef:
        sid = stat_identity(st)
        trusted = stat_trusted(sid, self.clock())  # before its first read
        with self._lock:
            known = self._read.get(sid) if trusted else None  # read after the margin: the same content
        if known is None and max_hash_bytes is not None and st.st_size > max_hash_bytes:
            raise WouldHash(path)
        if known is not None:
            bid, kind, symbols, digest, crc = known
        else:
            bid, kind, symbols = _headers(fd, path, self.limits)
        if build_id and bid != build_id:
            raise Rejected(BUILD_ID_MISMATCH, f"{path}: build-id {bid or 'none'}, expected {build_id}")
        if not build_id and how != BY_DEBUGLINK:
            raise Rejected(BUILD_ID_MISMATCH, f"{path}: no build-id to match")
        if not symbols:
            raise Rejected(NO_SYMBOLS, f"{path}: neither .symtab nor DWARF")
        if known is None:
            digest, crc = _digest_and_crc(fd, st.st_size, self.limits)
            self.count("debug_files_hashed")
            if trusted:
                with self._lock:
                    self._read.put(sid, (bid, kind, symbols, digest, crc))
        if how == BY_DEBUGLINK and link is not None and crc != link.crc:
            raise Rejected(CRC_MISMATCH, f"{path}: CRC-32 {crc:#010x}, the link says {link.crc:#010x}")
        return DebugRef(root, path, how, file_key(st), bid, kind, digest, sid, trusted)


def _headers(fd: int, path: str, limits: Limits) -> tuple[str, str, bool]:
    """(build-id, kind, has .symtab or DWARF) of a candidate debug file open as ``fd``."""
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            layout = read_layout(f)
            budget = limits.budget(path)
            sections = read_section_table(f, layout, budget) if layout.has_section_headers else []
            bid, kind = build_id_from_notes(read_notes(f, layout))
            if not bid:  # a debug file's PT_NOTE may point at nothing: its note section still says it
                bid, kind = _section_build_id(f, sections, layout.little)
    except ElfError as e:
        raise Rejected(e.reason, str(e)) from None
    except (OSError, ValueError, struct.error) as e:
        raise Rejected(MALFORMED, f"{type(e).__name__}: {e}") from None
    return bid, kind, any(has_symbols(sections))


def _section_build_id(f: BinaryIO, sections: list[SectionInfo], little: bool) -> tuple[str, str]:
    """The build-id from the ``.note.gnu.build-id`` section (debug files keep it; PT_NOTE may be empty)."""
    for s in sections:
        if s.name == ".note.gnu.build-id" and s.type != SHT_NOBITS and 0 < s.size <= 4096:
            data = read_section(f, s.offset, s.size, s.name)
            return build_id_from_notes(parse_notes(data, little=little, align=s.addralign or 4))
    return "", ""
