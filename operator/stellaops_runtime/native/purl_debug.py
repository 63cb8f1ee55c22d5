"""A stripped file's symbols from its separate debug file, for functions named by PURL: purl_targets.py's
second look.

Why this module exists: distributions ship their libraries stripped and the symbols apart
(``/usr/lib/debug/.build-id/xx/rest.debug``, a ``.gnu_debuglink`` name with its CRC-32). A stripped
file keeps only ``.dynsym``, so the resolution missed what only ``.symtab`` names:

- a ``.part.N`` tail gcc split off a function (partial inlining), a local symbol: no "probed in
  part" fact was stored (agent/unprobed.py), and an answer about a function whose calls ran through
  its tail said "not observed";
- a function not exported (``static``, hidden) and its entry clones (``.isra``, ``.constprop``):
  reported ``not_in_package`` and never probed.

When the file has no ``.symtab``, its debug file is found by the canonicalizer's own search and
checks (canonical/debugfiles.py's ``DebugFinder``, through native/symdebug.py's
``accepted_debug_file``, as a probe's address is found: the node's roots first, then the container's
own; the GNU build-id must be the file's, through a ``.gnu_debuglink`` its CRC-32 must be the
link's, it must hold a ``.symtab`` or DWARF; a candidate that fails is never read, and why is said
in the report's detail), and its ``.symtab`` is read as the file's own would be
(``purl_targets.function_offsets``, the symbolizer's bounds; addresses turned into offsets by the
stripped file's own segments).

Nothing read here is an address a probe is put at: a function or clone found only here is probed
by name, and the loader looks its address up itself (native/symaddr.py: a container's debug file is
trusted only where the binary's own tables show a function start). A tail only turns an answer into
``unknown`` (the safe side). The accepted file is opened again and must be the very file checked
(its stat identity). Cost: the finder hashes a debug file once per stat identity (DebugFinder), and
what a debug file holds for the functions asked is remembered by its SHA-256 (:data:`_REMEMBERED`),
so the containers sharing an image, and later loads, read its symbol table once.

Without a debug file (none installed, refused, or ``symbols.debugFiles: false``) nothing is known of
a stripped file's local symbols: docs/native-probes.md, "Known limits", says what that leaves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import TypeAlias

from stellaops_runtime.canonical.buildidclaims import stat_identity
from stellaops_runtime.canonical.debugfiles import DebugRef
from stellaops_runtime.canonical.debuglink import has_symbols
from stellaops_runtime.canonical.elflayout import (
    ElfError,
    ElfLayout,
    build_id_from_notes,
    read_layout,
    read_notes,
)
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, file_key
from stellaops_runtime.canonical.lru import LRU
from stellaops_runtime.canonical.rootopen import open_in_root, open_regular
from stellaops_runtime.canonical.symtab import read_section_table
from stellaops_runtime.native.symdebug import DEBUG_ROOTS, accepted_debug_file

Tails = dict[str, set[str]]  # function asked -> its split tails
# (offsets of the functions asked, of their entry clones, their tails): purl_targets.function_offsets
DebugSymbols: TypeAlias = tuple[dict[str, int], dict[str, dict[str, int]], Tails]
Reader = Callable[[int, Iterable[str], Tails, ElfLayout], tuple[dict[str, int], dict[str, dict[str, int]]]]
_Key = tuple[str, tuple[str, ...], tuple[tuple[int, int, int], ...]]
# (a debug file's SHA-256, the functions asked, the binary's segments) -> what it holds of them
_REMEMBERED = 256
_read: LRU[_Key, DebugSymbols] = LRU(_REMEMBERED)
_lock = threading.Lock()


def debug_symbols(
    fd: int, root: str, path: str, symbols: Iterable[str], read: Reader, why: list[str] | None = None
) -> DebugSymbols | None:
    """What the debug file of the stripped ELF file open as ``fd`` (``path`` inside ``root``, a
    container's ``/proc/<pid>/root``) holds of ``symbols``; None when the file has its own
    ``.symtab`` (already read), or no debug file of it is found and accepted. ``read``:
    ``purl_targets.function_offsets`` (passed in: that module imports this one). ``why`` gets why a
    debug file of it was refused or could not be read (the report's detail, as a probe's failed
    reason says it: native/symdebug.py)."""
    asked = tuple(sorted(set(symbols)))
    found, refused = _find(fd, root, path)
    if refused and found is None and why is not None:
        why.append(f"a debug file of it was refused ({', '.join(refused)})")
    if found is None:
        return None
    ref, layout = found
    key = (ref.digest, asked, tuple((s.vaddr, s.offset, s.filesz) for s in layout.loads))
    with _lock:
        known = _read.get(key) if ref.trusted else None
    if known is not None:
        return _copy(known)
    note = why.append if why is not None else (lambda _w: None)
    try:
        dfd, st = open_regular(ref.path) if ref.root in ("", "/") else open_in_root(ref.root, ref.path)
    except OSError as e:
        note(f"its debug file {ref.describe()} cannot be opened: {e.strerror or e}")
        return None
    try:
        if file_key(st) != ref.key or (ref.sid is not None and stat_identity(st) != ref.sid):
            note(f"its debug file {ref.describe()} changed since it was checked")
            return None  # not the file checked
        tails: Tails = {}
        offsets, clones = read(dfd, asked, tails, layout)
    except Exception as e:  # damaged, over budget, or any surprise a hostile file makes: nothing from it
        note(f"its debug file {ref.describe()} cannot be read: {e}"[:300])
        return None
    finally:
        os.close(dfd)
    out = (offsets, clones, tails)
    if ref.trusted:
        with _lock:
            _read.put(key, _copy(out))
    return out


def with_debug(
    found: dict[str, int], clones: dict[str, dict[str, int]], tails: Tails, debug: DebugSymbols
) -> DebugSymbols:
    """A stripped file's own finds with its debug file's: a function (or entry clone) only the debug
    file names is probed too, by name (the loader finds its address there: native/symaddr.py, with
    its trust rules); its tails are the debug file's.

    One probe per offset, as in the file's own tables (``purl_targets.function_offsets``): a clone the
    debug file puts where the file's own table already has the function (or another of its clones)
    is not probed again. A debug file under a container's root is that image's word: one naming
    ``f.isra.0`` at ``f``'s own start put two uprobes on one instruction, each call counted twice."""
    dfound, dclones, dtails = debug
    merged = {**dfound, **found}
    out: dict[str, dict[str, int]] = {}
    for base in sorted({*clones, *dclones}):
        taken = {merged[base]} if base in merged else set()
        for sym, off in [*sorted(clones.get(base, {}).items()), *sorted(dclones.get(base, {}).items())]:
            if off not in taken and sym not in out.get(base, {}):
                taken.add(off)
                out.setdefault(base, {})[sym] = off
    return merged, out, {s: tails.get(s, set()) | dtails.get(s, set()) for s in {*tails, *dtails}}


def _copy(d: DebugSymbols) -> DebugSymbols:
    return dict(d[0]), {k: dict(v) for k, v in d[1].items()}, {k: set(v) for k, v in d[2].items()}


def _find(fd: int, root: str, path: str) -> tuple[tuple[DebugRef, ElfLayout] | None, list[str]]:
    """The accepted debug file of the file open as ``fd`` when it has no ``.symtab``, and the file's
    layout, else None; and why candidates were refused (native/symdebug.py's search)."""
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            layout = read_layout(f)
            if not layout.has_section_headers:
                return None, []
            sections = read_section_table(f, layout, DEFAULT_LIMITS.budget(path))
            if has_symbols(sections)[0]:
                return None, []  # not stripped of its local symbols: its own table was read
            build_id, kind = build_id_from_notes(read_notes(f, layout))
            ref, refused = accepted_debug_file(
                f, layout, build_id, kind, (root, path), DEBUG_ROOTS, DEFAULT_LIMITS
            )
            return (None if ref is None else (ref, layout)), refused
    except (ElfError, OSError):
        return None, []
