"""Split tails of a stripped file, read from its separate debug file: purl_targets.py's second look.

Why this module exists: a ``.part.N`` tail gcc split off a function (partial inlining) is a local
symbol, in the file's ``.symtab`` only, never in ``.dynsym``. Distributions ship their libraries
stripped and the symbols apart (``/usr/lib/debug/.build-id/xx/rest.debug``, a ``.gnu_debuglink``
name with its CRC-32), so the resolution saw no tail in the file, stored no "probed in part" fact
(agent/unprobed.py), and an answer about a function whose calls ran through its tail said "not
observed". When the file has no ``.symtab``, its debug file is found by the canonicalizer's own
search and checks (canonical/debugfiles.py's ``DebugFinder``, as native/symdebug.py finds a
probe's address: the node's roots first, then the container's own; the GNU build-id must be the
file's, through a ``.gnu_debuglink`` its CRC-32 must be the link's, it must hold a ``.symtab`` or
DWARF; a candidate that fails is never read), and its ``.symtab`` is read for the tails as the
file's own would be (``purl_targets.function_offsets``, the symbolizer's bounds).

Nothing read here is probed: a tail only turns an answer into ``unknown`` (the safe side), so a
debug file under the container's own root is read too (that container's image is the only one its
facts are stored under). The accepted file is opened again and must be the very file checked (its
stat identity). Cost: the finder hashes a debug file once per stat identity (DebugFinder), and the
tails a debug file holds for the functions asked are remembered by its SHA-256, so the containers
sharing an image, and later loads, read its symbol table once (:data:`_REMEMBERED`).

Without a debug file (none installed, refused, or ``symbols.debugFiles: false``) nothing is known of
a stripped file's tails: docs/native-probes.md, "Known limits", says what that leaves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable

from stellaops_runtime.canonical.buildidclaims import stat_identity
from stellaops_runtime.canonical.debugfiles import DebugFinder, DebugRef, DebugSearch
from stellaops_runtime.canonical.debuglink import has_symbols
from stellaops_runtime.canonical.elflayout import ElfError, build_id_from_notes, read_layout, read_notes
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, file_key
from stellaops_runtime.canonical.lru import LRU
from stellaops_runtime.canonical.rootopen import open_in_root, open_regular
from stellaops_runtime.canonical.symtab import read_section_table
from stellaops_runtime.native.symdebug import DEBUG_ROOTS

Tails = dict[str, set[str]]  # function asked -> its split tails
# (a debug file's SHA-256, the functions asked) -> their tails in it: one read per debug file
_REMEMBERED = 256
_tails: LRU[tuple[str, tuple[str, ...]], Tails] = LRU(_REMEMBERED)
_finder = DebugFinder(DebugSearch(roots=DEBUG_ROOTS), DEFAULT_LIMITS, lambda _name: None)
_lock = threading.Lock()


def debug_tails(
    fd: int,
    root: str,
    path: str,
    symbols: Iterable[str],
    read_tails: Callable[[int, Iterable[str], Tails], object],
) -> Tails:
    """The split tails of ``symbols`` that the debug file of the stripped ELF file open as ``fd``
    (``path`` inside ``root``, a container's ``/proc/<pid>/root``) names; {} when the file has its
    own ``.symtab`` (already read), or no debug file of it is found and accepted. ``read_tails``:
    ``purl_targets.function_offsets`` (passed in: that module imports this one)."""
    asked = tuple(sorted(set(symbols)))
    ref = _find(fd, root, path)
    if ref is None:
        return {}
    key = (ref.digest, asked)
    with _lock:
        known = _tails.get(key) if ref.trusted else None
    if known is not None:
        return {s: set(t) for s, t in known.items()}
    try:
        dfd, st = open_regular(ref.path) if ref.root in ("", "/") else open_in_root(ref.root, ref.path)
    except OSError:
        return {}
    try:
        if file_key(st) != ref.key or (ref.sid is not None and stat_identity(st) != ref.sid):
            return {}  # not the file checked
        found: Tails = {}
        read_tails(dfd, asked, found)
    except Exception:  # damaged, over budget, or any surprise a hostile file makes: no tail from it
        return {}
    finally:
        os.close(dfd)
    if ref.trusted:
        with _lock:
            _tails.put(key, {s: set(t) for s, t in found.items()})
    return found


def _find(fd: int, root: str, path: str) -> DebugRef | None:
    """The accepted debug file of the file open as ``fd`` when it has no ``.symtab``, else None."""
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            layout = read_layout(f)
            if not layout.has_section_headers:
                return None
            sections = read_section_table(f, layout, DEFAULT_LIMITS.budget(path))
            if has_symbols(sections)[0]:
                return None  # not stripped of its local symbols: its own table was read
            build_id, kind = build_id_from_notes(read_notes(f, layout))
            return _finder.find(
                root=root,
                path=path,
                f_fd=f.fileno(),
                layout=layout,
                build_id=build_id,
                kind=kind,
                main_key=file_key(os.fstat(f.fileno())),
                own_root_last=True,  # the node's debug files first, as for a probe's address
            )
    except (ElfError, OSError):
        return None
