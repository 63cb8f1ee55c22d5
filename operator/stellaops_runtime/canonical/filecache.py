"""Files to parsed Binaries: identity-keyed caches, refusal memory, and the parse gate.

Why this module exists: it is the one place where a file's *contents* are
read for the symbolizer (split from symbolizer.py, which resolves frames
against what is cached here). A file is opened through canonical/rootopen.py
inside its root and must be a regular file. :class:`BinaryCache` keeps:

- a file's :class:`FileId` (build-id and content identity) per (root, path,
  device, inode, size, mtime, ctime);
- one :class:`~stellaops_runtime.canonical.binary.Binary` per *identity*
  (build-id + the file's stat identity, or + SHA-256 of the content once
  another file claims the build-id: canonical/buildidclaims.py), LRU-bounded:
  a file that merely claims another file's build-id never shares its parsed
  sources;
- the files refused for their budget, damage or type, by stat identity
  (device, inode, size, mtime, ctime) and by identity, so they are not read
  again (a file rewritten in place, even with its mtime restored, is).

A stat identity vouches for a file's content only when the read starts
``STAT_TRUST_SECONDS`` (2 s) after the file's ctime (canonical/buildidclaims.py):
a *young* file is identified by its SHA-256, its FileId is not cached under
its stat identity (each sighting reads it again until it is old enough), a
refusal of it by its stat key holds only until the margin has passed (then
it is read once more), and what is indexed from it is hashed again after the
parse and kept only with the same digest. Every
indexed file (and its debug file) is checked after its parse to still have
the stat identity it was identified with.

When a file is identified, its separate debug file is looked for
(canonical/debugfiles.py); the accepted one's digest is part of the
identity, and it is attached to the Binary when the file is indexed.

Cache look-ups (and the ``stat`` they need) run on the caller's thread; the
reads that fill a cache run through a gate (canonical/parseworker.py): at
once, or on the parse-worker thread with a bounded wait, in which case the
caller may get :class:`~stellaops_runtime.canonical.parseworker.ParsePending`.
A file identified before under another root or path with the same stat
identity (every new process of a container maps the libraries the first one
did, under its own ``/proc/<pid>/root``), by a trusted read that hashed
nothing, is read again on the caller's thread: its build-id note, its debug
file's remembered check and its claim, no hash; queued behind a busy worker
(indexing another file, reading DWARF for seconds) it was ``parse_pending``.
The caches are shared with that thread, so every access holds one lock.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.buildidclaims import (
    STAT_TRUST_NS,
    BuildIdClaims,
    Clock,
    StatId,
    check_size,
    stat_identity,
    stat_trusted,
)
from stellaops_runtime.canonical.debugfiles import DebugFinder, DebugSearch, WouldHash
from stellaops_runtime.canonical.elflayout import (
    BUILD_ID_FALLBACK,
    ElfError,
    ElfLayout,
    build_id_from_notes,
    fallback_from_digest,
    oversized_build_id_notes,
    read_layout,
    read_notes,
)
from stellaops_runtime.canonical.fileid import FileId, open_file, stat_file
from stellaops_runtime.canonical.indexcache import IndexCache
from stellaops_runtime.canonical.indexcheck import attach_debug, still
from stellaops_runtime.canonical.limits import (
    BUDGET_EXCEEDED,
    DEFAULT_LIMITS,
    MALFORMED,
    NOT_REGULAR,
    Limits,
    RefusedFiles,
    file_digest,
    file_key,
)
from stellaops_runtime.canonical.parseworker import InlineGate, ParseGate

_StatKey = tuple[str, str, int, int, int, int, int]  # (root, path, *stat identity)
# A young file read before (under any root or path: a new process of the container) is read again on the
# caller's thread up to this size, its debug file too (hashing 16 MiB: ~10 ms),
# so a file seen again within its first seconds answers as a cached one would, not parse_pending.
YOUNG_INLINE_BYTES = 16 << 20
# Refusals worth remembering: the same bytes would be refused again.
_Heads = tuple[ElfLayout, str, str, bool]  # layout, build-id, its kind, oversized build-id notes
_REMEMBERED = frozenset({BUDGET_EXCEEDED, MALFORMED, NOT_REGULAR, "not_elf", "truncated_elf", "bad_elf"})


class BinaryCache:
    """Identity-keyed parsed binaries, file identities and refusals; thread-safe, reads via a gate."""

    def __init__(
        self,
        *,
        max_binaries: int = 64,
        max_paths: int = 4096,
        limits: Limits = DEFAULT_LIMITS,
        gate: ParseGate | None = None,
        debug: DebugSearch | None = None,
        index_cache_dir: str | None = None,
        clock: Clock = time.time_ns,
    ) -> None:
        self.limits = limits
        self.clock = clock  # CLOCK_REALTIME ns, against file ctimes (a seam for tests)
        self.debug_search = debug or DebugSearch()
        self._debug = DebugFinder(self.debug_search, limits, self.bump, clock)
        self.gate: ParseGate = gate or InlineGate()
        self._lock = threading.Lock()
        self._binaries: LRU[str, Binary] = LRU(max_binaries, on_evict=Binary.close)
        self._paths: LRU[_StatKey, FileId] = LRU(max_paths)
        self.refused = RefusedFiles(max_paths)
        # refusals of young files (by stat key) -> when they are read once more: the key proves nothing yet
        self._recheck: LRU[object, int] = LRU(max_paths)
        # stat identities read while young (never cached): a sighting under any root or path reads again
        self._young: LRU[StatId, bool] = LRU(max_paths)
        # stat identities identified by a trusted read without hashing: another root's sighting of one
        # (a new process of the container) is read on the caller's thread, never queued for the worker
        self._known: LRU[StatId, bool] = LRU(max_paths)
        self._heads: LRU[StatId, _Heads] = LRU(max_paths)  # layout, build-id note, by trusted stat identity
        self.counters: Counter[str] = Counter()
        self._claims = BuildIdClaims(limits, open_file, self.bump, max_build_ids=max_paths)
        # Indexed symbol tables kept on disk across restarts (canonical/indexcache.py), when asked for.
        self.index_cache = (
            IndexCache(index_cache_dir, max_entries=limits.max_symbols, bump=self.bump)
            if index_cache_dir
            else None
        )

    def set_debug_search(self, search: DebugSearch) -> None:
        """Where separate debug files are looked for from now on (files identified before keep theirs)."""
        self.debug_search = search
        self._debug = DebugFinder(search, self.limits, self.bump, self.clock)

    def bump(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def stats(self) -> dict[str, int]:
        """Counters (``resolved_<source>``, failure outcomes, ...), cache figures and the gate's."""
        with self._lock:
            out = dict(self.counters)
            out["binaries_cached"] = len(self._binaries)
            out["binaries_evicted"] = self._binaries.evictions
            out["files_refused"] = len(self.refused)
            out["files_refused_remembered"] = self.refused.hits
        out.update(self.gate.stats())
        return out

    def identify(self, path: str, *, root: str = "/") -> FileId:
        """Build-id and content identity of the file at ``path`` inside ``root``; cached per inode and mtime.

        Raises OSError when the file cannot be read (:class:`NotRegularFile` for a
        FIFO, device, socket), ElfError when it is not a usable ELF or over budget,
        ParsePending when the gate's wait ran out before the file was read.
        """
        skey, hit = self._cached_identity(root, path)
        if hit is not None:
            return hit
        return self.gate.run(("identify", skey), lambda: self._read_identity(root, path, skey))

    def _cached_identity(self, root: str, path: str) -> tuple[_StatKey, FileId | None]:
        """The file's stat key and its cached FileId (None: not read yet); raises for a refused file."""
        st = stat_file(root, path)
        skey = (root, path, *stat_identity(st))
        sid = stat_identity(st)
        with self._lock:
            hit = self._paths.get(skey)
            again = hit is None and self._young.get(sid) is not None
            known = hit is None and self._known.get(sid) is not None
        if hit is None:
            self._check_refused(sid, path)  # ctime included: rewritten, read again
            # read before (under this root and path or another): read again here, within a bound
            bound = YOUNG_INLINE_BYTES if again and st.st_size <= YOUNG_INLINE_BYTES else 0 if known else -1
            if bound >= 0:
                try:
                    hit = self._read_identity(root, path, skey, max_hash_bytes=bound)
                except WouldHash:  # more to hash than the bound: on the worker, as a first read
                    hit = None
        return skey, hit

    def _read_identity(
        self, root: str, path: str, skey: _StatKey, *, max_hash_bytes: int | None = None
    ) -> FileId:
        """Read the file's identity; :class:`WouldHash` rather than hash a file larger than
        ``max_hash_bytes`` (0: rather than hash anything; the caller checked this file's size)."""
        cheap = max_hash_bytes == 0
        with self._lock:
            hit = self._paths.get(skey)  # a job queued twice
        if hit is not None:
            return hit
        fd, st = open_file(root, path)
        fkey = file_key(st)
        sid = stat_identity(st)
        trusted = stat_trusted(sid, self.clock())  # before the first read of this file
        try:
            self._check_refused(sid, path)
            with self._lock:  # its headers, read once per stat identity that vouches for its content
                heads: _Heads | None = self._heads.get(sid) if trusted else None
            if heads is None:
                with os.fdopen(os.dup(fd), "rb") as f:
                    layout = read_layout(f)
                    notes = read_notes(f, layout)
                noted, noted_kind = build_id_from_notes(notes)
                heads = (layout, noted, noted_kind, bool(oversized_build_id_notes(notes)))
                if trusted and heads[1]:
                    with self._lock:
                        self._heads.put(sid, heads)
            layout, bid, kind, oversized = heads
            if oversized:  # skipped: a hostile size (canonical/elflayout.py)
                self.bump("build_id_notes_oversized")
            check_size(st.st_size, self.limits)  # the budget a digest would have: as before
            if cheap and not (bid and trusted):
                raise WouldHash(path)
            digest = file_digest(fd, st.st_size, self.limits) if not bid else ""
            if not bid:
                bid, kind = fallback_from_digest(digest), BUILD_ID_FALLBACK
            debug = self._debug.find(
                root=root,
                path=path,
                f_fd=fd,
                layout=layout,
                build_id=bid,
                kind=kind,
                main_key=fkey,
                max_hash_bytes=max_hash_bytes,
                main_sid=sid if trusted else None,
            )
            # another debug file, other names: another cache entry
            suffix = f"+debug@{debug.digest}" if debug is not None else ""
            young = ""
            if digest:
                identity = f"{bid}@{digest}{suffix}"  # the whole digest (docs/function-ids.md)
                young = "" if trusted else digest
            else:  # hashed only when another file claims this build-id (canonical/buildidclaims.py)
                if cheap and not self._claims.settled(bid, suffix, sid):
                    raise WouldHash(path)
                identity, got = self._claims.identity(bid, suffix, sid, root, path, fd, trusted=trusted)
                young = got or ""
        except ElfError as e:
            self._refuse(sid, e.reason, 0 if trusted else sid[4] + STAT_TRUST_NS)
            raise
        finally:
            os.close(fd)
        fid = FileId(bid, kind, identity, fkey, debug, sid, young)
        with self._lock:
            if young:  # not cached under its stat identity: read again at each sighting while young
                self.counters["identity_young_reads"] += 1
                self._young.put(sid, True)
            else:
                self._paths.put((root, path, *sid), fid)
                self._young.pop(sid)
                if kind != BUILD_ID_FALLBACK:  # nothing to hash when seen again: see _cached_identity
                    self._known.put(sid, True)
        return fid

    def file_build_id(self, path: str, *, root: str = "/") -> tuple[str, str]:
        """(build-id, kind) of the file at ``path``; see :meth:`identify`."""
        fid = self.identify(path, root=root)
        return fid.build_id, fid.kind

    def _check_refused(self, key: object, path: str) -> None:
        with self._lock:
            until = self._recheck.get(key)
            if until is not None and self.clock() >= until:
                # refused while young: read once more, now that its stat identity vouches for it
                self._recheck.pop(key)
                self.refused.forget(key)
                self.counters["refusals_rechecked"] += 1
                return
            reason = self.refused.get(key)
        if reason is not None:
            raise ElfError(reason, f"{path}: refused before ({reason}), not read again")

    def _refuse(self, key: object, reason: str, recheck_at: int = 0) -> None:
        """Remember a refusal of ``key``; ``recheck_at`` (ns, CLOCK_REALTIME): read it once more then."""
        if reason in _REMEMBERED:
            with self._lock:
                self.refused.put(key, reason)
                if recheck_at:
                    self._recheck.put(key, recheck_at)
                else:
                    self._recheck.pop(key)

    def cached_binary(self, identity: str) -> Binary | None:
        """The Binary indexed for a content identity (:attr:`FileId.identity`), if cached."""
        if not identity:
            return None
        with self._lock:
            b = self._binaries.get(identity)
            if b is not None and b.stale:  # its file changed after it was indexed: index it again
                self._binaries.pop(identity)
                self.counters["binaries_stale"] += 1
                return None
            return b

    def binary(self, path: str, *, root: str = "/") -> Binary:
        """The indexed Binary for the file at ``path`` inside ``root`` (cached by content identity).

        Raises OSError when the file cannot be read, ElfError when it is not a usable
        ELF, ParsePending when the gate's wait ran out before it was indexed.
        """
        skey, fid = self._cached_identity(root, path)
        if fid is None:  # one job reads the identity and indexes: the whole parse goes on in the background
            return self.gate.run(
                ("binary", skey), lambda: self._index(root, path, self._read_identity(root, path, skey))
            )
        cached = self.cached_binary(fid.identity)
        if cached is not None:
            return cached
        self._check_refused(fid.identity, path)
        return self.gate.run(("binary", fid.identity), lambda: self._index(root, path, fid))

    def _index(self, root: str, path: str, fid: FileId, *, retry: bool = True) -> Binary:
        cached = self.cached_binary(fid.identity)  # a job queued twice
        if cached is not None:
            return cached
        self._check_refused(fid.identity, path)
        fd, st = open_file(root, path)
        if file_key(st) != fid.key or (fid.sid is not None and stat_identity(st) != fid.sid):
            os.close(fd)
            raise OSError(errno.ESTALE, "file changed while it was read", path)
        check = os.dup(fd)  # Binary.open takes fd over; this one checks the file after the parse
        try:
            try:
                b = Binary.open(
                    path,
                    known_build_id=(fid.build_id, fid.kind),
                    identity=fid.identity,
                    limits=self.limits,
                    fd=fd,
                    gate=self.gate,
                    index_cache=self.index_cache,
                )
            except ElfError as e:
                if not still(check, fid.sid, fid.young_digest, self.limits):
                    raise OSError(errno.ESTALE, "file changed while it was read", path) from None
                self._refuse(fid.identity, e.reason)
                young = fid.sid is not None and bool(fid.young_digest)
                self._refuse(
                    fid.sid or fid.key, e.reason, fid.sid[4] + STAT_TRUST_NS if fid.sid and young else 0
                )
                raise
            if not still(check, fid.sid, fid.young_digest, self.limits):
                b.close()  # what was parsed may be another content than the one identified
                self.bump("files_changed_while_indexed")
                raise OSError(errno.ESTALE, "file changed while it was read", path)
        finally:
            os.close(check)
        if fid.debug is not None and not attach_debug(b, fid.debug, self.limits, self.bump, open_file):
            # The debug file was replaced since the file was identified: identify it again, once.
            b.close()
            skey: _StatKey = (root, path, *(fid.sid or (*fid.key, 0)))
            with self._lock:
                self._paths.pop(skey)
            if not retry:
                raise OSError(errno.ESTALE, "debug file changed while it was read", fid.debug.path)
            return self._index(root, path, self._read_identity(root, path, skey), retry=False)
        with self._lock:
            self._binaries.put(b.identity, b)
            self.counters["binaries_loaded"] += 1
        return b

    def close(self) -> None:
        with self._lock:
            self._binaries.clear()
