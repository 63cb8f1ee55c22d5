"""Which files claim a build-id, and when two of them may share one cache identity.

Why this module exists: a parsed Binary is cached per *content identity*, so
a file that merely claims another file's build-id (a planted copy in one
container) never names another file's functions. Hashing every file whole to
prove that identity cost more than parsing it (0.12 s for libLLVM-14). Most
build-ids are only ever claimed by one file, so the content is hashed only
when it decides something:

- the first file seen with a build-id gets an identity made of the build-id
  and its *stat identity* (device, inode, size, mtime, ctime): no other file
  has that device and inode while it exists, and a write to it changes its
  ctime (ctime cannot be set from user space) *once the clock has moved past
  the ctime's tick*. Before Linux 6.13 times advance per clock tick (1-10 ms;
  a whole second on filesystems that store seconds), so two same-size writes
  in place within one tick leave the stat identity unchanged. A stat identity
  is therefore trusted only for a read that starts when the file's ctime is
  at least :data:`STAT_TRUST_SECONDS` old on the real-time clock that stamps
  it (CLOCK_REALTIME);
- a *young* file (ctime newer than that) is hashed: its identity comes from
  its content, and its claim is marked young: each later sighting of the same
  stat identity hashes it again (a young read proves nothing about the content
  after it), until a sighting whose read starts after the margin finds the same
  digest and trusts the claim from then on;
- the same file seen again (another root or path, another process's mapping:
  the same stat identity) gets the same identity, still unhashed;
- when another file (another stat identity) claims that build-id, it is
  hashed, and so is each earlier claimant not hashed yet, reopened at its
  path and accepted only while its stat identity is unchanged before and
  after the read. It shares an earlier claimant's identity only when the
  SHA-256 digests are equal; otherwise (different content, or an earlier file
  gone, replaced or unreadable) it gets an identity of its own.

Files without a build-id are hashed anyway (their fallback build-id is the
digest) and keyed by it, as before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.limits import BUDGET_EXCEEDED, Limits, file_digest

StatId = tuple[int, int, int, int, int]  # (device, inode, size, mtime ns, ctime ns)
Opener = Callable[[str, str], tuple[int, os.stat_result]]

PER_BUILD_ID = 8  # claimants remembered per build-id (older ones: no sharing, never a wrong share)

# A stat identity vouches for a file's content only when the read starts this long after its ctime
# (CLOCK_REALTIME, the clock that stamps it): far more than a clock tick (1-10 ms) or the one-second
# times of filesystems that store seconds, so no later write can be given the same ctime.
STAT_TRUST_SECONDS = 2.0
STAT_TRUST_NS = int(STAT_TRUST_SECONDS * 1e9)
Clock = Callable[[], int]  # nanoseconds of CLOCK_REALTIME: time.time_ns


def stat_trusted(sid: StatId, now_ns: int) -> bool:
    """Whether a read starting at ``now_ns`` may be cached under the stat identity ``sid``.

    False while the file's ctime is less than :data:`STAT_TRUST_SECONDS` old, or in
    the future (a clock stepped back): a write within the ctime's tick could still
    follow the read without changing any field of ``sid``.
    """
    return now_ns - sid[4] >= STAT_TRUST_NS


def still_same(fd: int, sid: StatId) -> bool:
    """Whether the open file ``fd`` still has the stat identity ``sid`` (False once closed)."""
    try:
        return stat_identity(os.fstat(fd)) == sid
    except (OSError, ValueError):
        return False


def check_size(size: int, limits: Limits) -> None:
    """``budget_exceeded`` for a file larger than ``max_file_bytes`` (hashed or not: one budget per file)."""
    if size > limits.max_file_bytes:
        raise ElfError(
            BUDGET_EXCEEDED, f"{size} bytes to hash, more than the {limits.max_file_bytes}-byte budget"
        )


def stat_identity(st: os.stat_result) -> StatId:
    """(device, inode, size, mtime ns, ctime ns): what a file is while it exists, unchanged."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(slots=True)
class _Claim:
    sid: StatId
    root: str
    path: str
    identity: str
    digest: str | None  # SHA-256 hex, None until another file claimed the build-id
    young: bool = False  # read while its ctime was young: hashed again at each sighting until trusted


class BuildIdClaims:
    """Bounded memory of the files claiming each build-id and the identity each got; thread-safe."""

    def __init__(
        self,
        limits: Limits,
        opener: Opener,
        bump: Callable[[str], None],
        *,
        max_build_ids: int = 4096,
    ) -> None:
        self.limits = limits
        self._open = opener
        self._bump = bump
        self._lock = threading.Lock()  # held while hashing: only when two files claim one build-id
        self._claims: LRU[str, list[_Claim]] = LRU(max_build_ids)

    def identity(
        self, group: str, suffix: str, sid: StatId, root: str, path: str, fd: int, *, trusted: bool = True
    ) -> tuple[str, str | None]:
        """(cache identity, young digest or None) of the open file ``fd`` (``root``/``path``, ``sid``).

        ``group`` is its build-id, ``suffix`` what else the identity carries (its
        debug file's digest); files share an identity only within one
        (group, suffix). The digest (SHA-256 hex, read now from ``fd``) is
        returned when the read was young (``trusted`` false: :func:`stat_trusted`
        at the instant before the caller's first read of ``fd``): the caller
        must not cache the answer under ``sid`` and must check that what it
        parses later still has that digest. Raises ElfError (budget) when the
        file must be hashed and is too big.
        """
        key = f"{group}{suffix}"
        with self._lock:
            claims = self._claims.get(key)
            if claims is None:
                claims = []
                self._claims.put(key, claims)
            digest = ""
            for c in claims:
                if c.sid != sid:
                    continue
                if not c.young:
                    return c.identity, None
                digest = self._hash(fd, sid)  # a young claim: only its content says it is the same
                if digest == c.digest:
                    c.young = not trusted
                    return c.identity, None if trusted else digest
                claims.remove(c)  # rewritten within its ctime's tick: named by its new content below
                self._bump("identity_young_files_changed")
                break
            if not claims and trusted and not digest:
                ident = f"{group}@file-{'-'.join(f'{v:x}' for v in sid)}{suffix}"
                claims.append(_Claim(sid, root, path, ident, None))
                return ident, None
            if not digest:
                digest = self._hash(fd, sid)
            ident = ""
            for c in list(claims):
                if c.digest is None:
                    c.digest = self._digest_of(c)
                    if c.digest is None:  # gone, replaced or unreadable: never shared again
                        claims.remove(c)
                        self._bump("identity_claims_dropped")
                        continue
                if c.digest == digest:
                    ident = c.identity
                    break
            if ident:
                self._bump("identity_shared")
            else:
                ident = f"{group}@{digest}{suffix}"  # all 256 bits: see docs/function-ids.md
            claims.append(_Claim(sid, root, path, ident, digest, not trusted))
            if len(claims) > PER_BUILD_ID:
                del claims[0]
            return ident, None if trusted else digest

    def settled(self, group: str, suffix: str, sid: StatId) -> bool:
        """Whether :meth:`identity` would answer the file ``sid`` without hashing anything: a claim
        of it is remembered and was not young."""
        with self._lock:
            claims = self._claims.data.get(f"{group}{suffix}")  # not a use: leaves the LRU order
            return claims is not None and any(c.sid == sid and not c.young for c in claims)

    def _hash(self, fd: int, sid: StatId) -> str:
        digest = file_digest(fd, sid[2], self.limits)
        self._bump("identity_files_hashed")
        return digest

    def _digest_of(self, c: _Claim) -> str | None:
        """SHA-256 of an earlier claimant, read now: None unless it is still the same file throughout."""
        try:
            fd, st = self._open(c.root, c.path)
        except OSError:
            return None
        try:
            if stat_identity(st) != c.sid:
                return None
            self._bump("identity_files_hashed")
            digest = file_digest(fd, st.st_size, self.limits)
            if stat_identity(os.fstat(fd)) != c.sid:
                return None
            return digest
        except (OSError, ElfError):
            return None
        finally:
            os.close(fd)
