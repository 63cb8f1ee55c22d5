"""A binary's ``.gnu_debuglink`` and where its separate debug file may be: the pure part of the search.

Why this module exists: canonical/debugfiles.py finds, checks and identifies
a binary's separate debug file (reads at the edge); what a binary's own
sections say about it (does it need one at all, which name and CRC-32 its
``.gnu_debuglink`` records) and where candidates are looked for are decided
here, from bytes and names only, except :func:`binary_link`, the one read of
the binary's section table it takes.
"""

from __future__ import annotations

import os
import posixpath
import struct
from dataclasses import dataclass

from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symtab import SHT_NOBITS, SectionInfo, read_section, read_section_table

__all__ = [
    "DEBUG_DIR",
    "BinaryLink",
    "DebugLink",
    "binary_link",
    "build_id_path",
    "debuglink_paths",
    "has_symbols",
    "parse_debuglink",
]

DEBUG_DIR = "/usr/lib/debug"
_MAX_DEBUGLINK_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DebugLink:
    """The contents of a ``.gnu_debuglink`` section: a file name and the CRC-32 of that file."""

    name: str
    crc: int


def parse_debuglink(data: bytes, *, little: bool) -> DebugLink | None:
    """A ``.gnu_debuglink`` section: NUL-terminated name, padding to 4 bytes, CRC-32; None when unusable.

    The name must be one plain file name (no ``/``, not ``.`` or ``..``), as the
    tools that write it produce: a link is never a path.
    """
    end = data.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3
    if crc_at + 4 > len(data):
        return None
    try:
        name = data[:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "/" in name or name in (".", "..") or not name.isprintable():
        return None
    (crc,) = struct.unpack_from("<I" if little else ">I", data, crc_at)
    return DebugLink(name, crc)


def build_id_path(build_id: str) -> str | None:
    """``/usr/lib/debug/.build-id/xx/rest.debug`` for a hex GNU build-id; None for anything else."""
    if len(build_id) < 4 or any(c not in "0123456789abcdef" for c in build_id):
        return None
    return f"{DEBUG_DIR}/.build-id/{build_id[:2]}/{build_id[2:]}.debug"


def debuglink_paths(binary_path: str, name: str) -> list[str]:
    """Where a debuglink name is looked for: next to the binary, in ``.debug/``, under /usr/lib/debug."""
    d = posixpath.dirname(posixpath.normpath("/" + binary_path.lstrip("/")))
    return [posixpath.join(d, name), posixpath.join(d, ".debug", name), DEBUG_DIR + posixpath.join(d, name)]


def has_symbols(sections: list[SectionInfo]) -> tuple[bool, bool]:
    """(has a ``.symtab`` with contents, has DWARF ``.debug_info``) among ``sections``."""
    symtab = any(s.name == ".symtab" and s.type == "SHT_SYMTAB" and s.size for s in sections)
    dwarf = any(
        s.name in (".debug_info", ".zdebug_info") and s.type != SHT_NOBITS and s.size for s in sections
    )
    return symtab, dwarf


# (has both .symtab and DWARF: nothing to look for; its .gnu_debuglink or None; that link was unusable)
BinaryLink = tuple[bool, "DebugLink | None", bool]


def binary_link(f_fd: int, layout: ElfLayout, path: str, limits: Limits) -> BinaryLink | None:
    """What the binary open as ``f_fd`` says about its debug file; None when its section table is
    unusable (indexing it will say why)."""
    try:
        with os.fdopen(os.dup(f_fd), "rb") as f:
            sections = read_section_table(f, layout, limits.budget(path))
            symtab, dwarf = has_symbols(sections)
            if symtab and dwarf:
                return True, None, False
            link_sec = next((s for s in sections if s.name == ".gnu_debuglink"), None)
            if link_sec is None or link_sec.type == SHT_NOBITS:
                return False, None, False
            if link_sec.size > _MAX_DEBUGLINK_BYTES:
                return False, None, True
            raw = read_section(f, link_sec.offset, link_sec.size, ".gnu_debuglink")
            link = parse_debuglink(raw, little=layout.little)
            return False, link, link is None
    except (ElfError, OSError, ValueError, struct.error):
        return None
