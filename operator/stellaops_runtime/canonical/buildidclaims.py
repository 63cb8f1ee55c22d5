"""Which files claim a build-id, and when two of them may share one cache identity.

Why this module exists: a parsed Binary is cached per *content identity*, so
a file that merely claims another file's build-id (a planted copy in one
container) never names another file's functions. Hashing every file whole to
prove that identity cost more than parsing it (0.12 s for libLLVM-14). Most
build-ids are only ever claimed by one file, so the content is hashed only
when it decides something:

- the first file seen with a build-id gets an identity made of the build-id
  and its *stat identity* (device, inode, size, mtime, ctime): no other file
  has that device and inode while it exists, and its content cannot change
  without its ctime changing (ctime cannot be set from user space; before
  Linux 6.13 times advance per clock tick, so two same-size writes in place
  within one tick can: docs/symbolization.md, "Cache identity");
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


class BuildIdClaims:
    """Bounded memory of the files claiming each build-id and the identity each got; thread-safe."""

    def __init__(
        self, limits: Limits, opener: Opener, bump: Callable[[str], None], *, max_build_ids: int = 4096
    ) -> None:
        self.limits = limits
        self._open = opener
        self._bump = bump
        self._lock = threading.Lock()  # held while hashing: only when two files claim one build-id
        self._claims: LRU[str, list[_Claim]] = LRU(max_build_ids)

    def identity(self, group: str, suffix: str, sid: StatId, root: str, path: str, fd: int) -> str:
        """The cache identity of the open file ``fd`` (``root``/``path``, stat identity ``sid``).

        ``group`` is its build-id, ``suffix`` what else the identity carries (its
        debug file's digest); files share an identity only within one
        (group, suffix). Raises ElfError (budget) when the file must be hashed
        and is too big.
        """
        key = f"{group}{suffix}"
        with self._lock:
            claims = self._claims.get(key)
            if claims is None:
                claims = []
                self._claims.put(key, claims)
            for c in claims:
                if c.sid == sid:
                    return c.identity
            if not claims:
                ident = f"{group}@file-{'-'.join(f'{v:x}' for v in sid)}{suffix}"
                claims.append(_Claim(sid, root, path, ident, None))
                return ident
            digest = file_digest(fd, sid[2], self.limits)
            self._bump("identity_files_hashed")
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
            claims.append(_Claim(sid, root, path, ident, digest))
            if len(claims) > PER_BUILD_ID:
                del claims[0]
            return ident

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
