"""After a file is parsed: is what was parsed what was identified? And its debug file, attached.

Why this module exists: a file's identity (canonical/buildidclaims.py) is
decided before it is parsed, from its stat identity or from a hash of its
content, and the parse reads the file again later (on the parse worker,
possibly much later). canonical/filecache.py keeps the caches; the checks
that a parsed file may be cached under that identity are here:

- :func:`still`: the open file still has the stat identity it was identified
  with, and for a young read (whose stat identity proves nothing about the
  content) the same SHA-256;
- :func:`attach_debug`: the separate debug file found at identification is
  opened, parsed, checked the same way (its digest is part of the binary's
  identity) and attached; one replaced since is not.

Both count what they refuse through the cache's counter callback.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from stellaops_runtime.canonical import buildidclaims
from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.buildidclaims import StatId
from stellaops_runtime.canonical.debugfiles import DebugRef
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.limits import Limits, file_digest, file_key

__all__ = ["attach_debug", "still"]

Opener = Callable[[str, str], tuple[int, os.stat_result]]


def still(fd: int, sid: StatId | None, young_digest: str, limits: Limits) -> bool:
    """Whether the open file ``fd`` is still what was identified: its stat identity unchanged, and
    for a young read (whose stat identity proves nothing about the content) the same SHA-256."""
    try:
        st = os.fstat(fd)
        if sid is not None and buildidclaims.stat_identity(st) != sid:
            return False
        return not young_digest or file_digest(fd, st.st_size, limits) == young_digest
    except (OSError, ElfError):
        return False


def attach_debug(
    b: Binary, ref: DebugRef, limits: Limits, bump: Callable[[str], None], opener: Opener
) -> bool:
    """Attach ``ref``, the debug file found when ``b``'s file was identified; False when it was
    replaced since. When it cannot be read or indexed, ``b`` keeps its own tables (counted)."""
    try:
        fd, st = opener(ref.root, ref.path)
    except OSError:
        bump("debug_files_rejected_unreadable")
        return True
    if file_key(st) != ref.key or (ref.sid is not None and buildidclaims.stat_identity(st) != ref.sid):
        os.close(fd)
        bump("debug_files_rejected_changed")
        return False
    check = os.dup(fd)  # Binary.open takes fd over
    try:
        try:
            dbg = Binary.open(ref.path, known_build_id=(ref.build_id, ref.kind), limits=limits, fd=fd)
        except ElfError as e:
            bump(f"debug_files_rejected_{e.reason}")
            return True
        # its digest is part of the identity: what was parsed must be what was hashed
        if not still(check, ref.sid, "" if ref.trusted else ref.digest, limits):
            dbg.close()
            bump("debug_files_rejected_changed")
            return False
    finally:
        os.close(check)
    b.attach_debug(dbg, ref.describe())
    bump("debug_files_attached")
    return True
