"""A uprobe's function found in the probed file's separate debug file: native/symaddr.py's second look.

Why this module exists: distributions strip their binaries and ship the
symbols apart (``/usr/lib/debug/.build-id/xx/rest.debug``, a ``.gnu_debuglink``
name with its CRC-32). A function only there (a static glibc function with
``libc6-dbg``) could not be probed. The debug file is found and checked by
the canonicalizer's own search (canonical/debugfiles.py's
:class:`~stellaops_runtime.canonical.debugfiles.DebugFinder`, the same order,
roots and checks: its GNU build-id must be the binary's, through a
``.gnu_debuglink`` its CRC-32 must be the one the link records, it must have a
``.symtab`` or DWARF); a candidate that fails any check is never read for an
address (a wrong address is a probe on the wrong instruction). The accepted
file is then opened again, must be the very file checked (its stat identity),
is scanned as the binary is (native/symscan.py, the same bounds), and must
still be that file after the scan (a young file: the same SHA-256).

Roots searched: :data:`DEBUG_ROOTS` first (the agent's ``/``, where BCC
looked, and the node's root as a ``hostPID`` agent sees it), then the
binary's own (a container's ``/proc/<pid>/root``): the node's debug file
wins. A ``.gnu_debuglink`` name is looked for only when the file's path is
known (a target held only by a descriptor: its build-id only).

A debug file under the binary's own root, when that is not one of the roots
given, is the container's word while the probe sits on the image layer's
file, shared by every container of the image: one the container wrote (its
overlay's upper layer, a volume: native/symlayer.py) is not read for a probe,
and an address from one in the image's layers is taken only where the
binary's own tables say a function starts (native/symstart.py), never
mid-instruction.
"""

from __future__ import annotations

import os
import threading
from typing import BinaryIO

from stellaops_runtime.canonical.buildidclaims import stat_identity
from stellaops_runtime.canonical.debugfiles import DebugFinder, DebugRef, DebugSearch
from stellaops_runtime.canonical.debuglink import build_id_path, has_symbols
from stellaops_runtime.canonical.elflayout import (
    BUILD_ID_GNU,
    ElfError,
    ElfLayout,
    build_id_from_notes,
    read_layout,
    read_notes,
)
from stellaops_runtime.canonical.indexcheck import still
from stellaops_runtime.canonical.limits import Limits, file_key
from stellaops_runtime.canonical.rootopen import open_in_root, open_regular
from stellaops_runtime.canonical.symtab import SectionInfo, read_section_table
from stellaops_runtime.native.symlayer import container_wrote
from stellaops_runtime.native.symscan import first_function
from stellaops_runtime.native.symstart import confirmed_start

DEBUG_ROOTS = ("/", "/proc/1/root")
_MAX_FINDERS = 8  # one per set of roots asked for (the agent: one)
_finders: dict[tuple[tuple[str, ...], Limits], DebugFinder] = {}
_lock = threading.Lock()
_said = threading.local()  # the counters one lookup's search bumped (its refusals, for the reason)


def _count(name: str) -> None:
    said: list[str] | None = getattr(_said, "names", None)
    if said is not None:
        said.append(name)


def _finder(roots: tuple[str, ...], limits: Limits) -> DebugFinder:
    """One finder per (roots, limits): it remembers what checked candidates held (by stat identity),
    so a debug file is hashed once, not at every attach."""
    with _lock:
        found = _finders.get((roots, limits))
        if found is None:
            if len(_finders) >= _MAX_FINDERS:
                _finders.clear()
            found = _finders[(roots, limits)] = DebugFinder(DebugSearch(roots=roots), limits, _count)
        return found


def debug_address(
    f: BinaryIO,
    layout: ElfLayout,
    sections: list[SectionInfo],
    want: bytes,
    where: tuple[str, str] | None,
    roots: tuple[str, ...],
    limits: Limits,
) -> tuple[int, str]:
    """(the address of ``want`` in the binary open as ``f``'s accepted debug file or 0, '' or why not:
    "; ..." for the failed reason). ``where``: (root, path in it) of the binary, None if unknown."""
    build_id, kind = build_id_from_notes(read_notes(f, layout))
    ref, refused = accepted_debug_file(f, layout, build_id, kind, where, roots, limits)
    if ref is not None:
        found, why = _read(ref, want, limits)
        if found and ref.root not in roots:  # the container's word: the binary's own code must agree
            unconfirmed = _unconfirmed(f, layout, sections, ref, found, limits)
            return (0, unconfirmed) if unconfirmed else (found, "")
        return found, why
    if has_symbols(sections)[0]:
        return 0, ""  # the file has its own .symtab: it is not stripped of this name
    why = f"; a debug file of it was refused ({', '.join(refused)})" if refused else ""
    debug = build_id_path(build_id) if kind == BUILD_ID_GNU else None
    if debug is None:
        return 0, why or "; it has no .symtab and no GNU build-id to find its debug file by"
    return 0, f"{why}; no debug file of it was found (install it for the agent as {debug})"


def accepted_debug_file(
    f: BinaryIO,
    layout: ElfLayout,
    build_id: str,
    kind: str,
    where: tuple[str, str] | None,
    roots: tuple[str, ...],
    limits: Limits,
) -> tuple[DebugRef | None, list[str]]:
    """(the accepted debug file of the binary open as ``f``, or None; why each candidate refused was:
    ``not_regular``, ``crc_mismatch``, ...), searched in ``roots`` first, then its own (``where``'s
    root: (root, path in it) of the binary, None if unknown). Also native/purl_debug.py's search, so
    a debug file is hashed once per stat identity for both."""
    root, path = where or ("/", "")
    said: list[str] = []
    _said.names = said
    try:
        ref = _finder(roots, limits).find(
            root=root,
            path=path,
            f_fd=f.fileno(),
            layout=layout,
            build_id=build_id,
            kind=kind,
            main_key=file_key(os.fstat(f.fileno())),
            debuglink=bool(path),
            own_root_last=True,  # the node's debug files first: a container's is its own word
        )
    finally:
        _said.names = None
    return ref, sorted({n.removeprefix("debug_files_rejected_") for n in said if "_rejected_" in n})


def _unconfirmed(
    f: BinaryIO, layout: ElfLayout, sections: list[SectionInfo], ref: DebugRef, found: int, limits: Limits
) -> str:
    """'' when the debug file is not the container's own write (native/symlayer.py) and the binary's
    own tables say a function starts at ``found`` (native/symstart.py), else the reason no probe is
    put there."""
    written = container_wrote(ref.root, ref.path)
    if written:
        return (
            f"; its debug file {ref.describe()} is {written}: a container's own debug file is not trusted "
            "with a probe on its image's file, shared by every container of the image (install it on the "
            "node or in the image)"
        )
    if confirmed_start(f, layout, sections, found, limits.budget("function starts")):
        return ""
    return (
        f"; its debug file {ref.describe()} names it at {found:#x}, where the file's own tables "
        "(.eh_frame_hdr, .dynsym, gopclntab) show no function start: a debug file under the target's "
        "root is not trusted with a probe there (install it on the node)"
    )


def _read(ref: DebugRef, want: bytes, limits: Limits) -> tuple[int, str]:
    """``want``'s address in the debug file ``ref`` names, read only if it is the very file checked."""
    try:
        fd, st = open_regular(ref.path) if ref.root in ("", "/") else open_in_root(ref.root, ref.path)
    except OSError as e:
        return 0, f"; its debug file {ref.describe()} cannot be opened: {e.strerror or e}"
    with os.fdopen(fd, "rb") as d:
        if file_key(st) != ref.key or (ref.sid is not None and stat_identity(st) != ref.sid):
            return 0, f"; its debug file {ref.describe()} changed since it was checked"
        try:
            dl = read_layout(d)
            budget = limits.budget(ref.path)
            found = first_function(d, dl, read_section_table(d, dl, budget), want, budget)
        except (ElfError, OSError) as e:
            return 0, f"; its debug file {ref.describe()} cannot be read: {e}"
        if not still(d.fileno(), ref.sid, "" if ref.trusted else ref.digest, limits):
            return 0, f"; its debug file {ref.describe()} changed while it was read"
    return found, ""
