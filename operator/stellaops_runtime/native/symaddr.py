"""Find a uprobe target's address ourselves, so BCC never reads a symbol table of a file we probe.

Given a symbol *name*, BCC's ``attach_uprobe``/``get_user_addresses`` walk the
file's ``.symtab`` and ``.dynsym`` in C (libbcc's bcc_elf.c): a table whose
``sh_entsize`` is 0 makes that a division by zero, SIGFPE, and the whole agent
(or ``probes run``) dies. The files probed are not all the operator's: a
container's own binary (a PURL target, a ``/proc/<pid>/root`` path, a file
renamed over a probed path) is whatever that container wrote, and it may
rewrite it in place at any moment, so a check before BCC's read can always be
raced. So the symbol tables are read here, in Python, bounded, with the
checks the symbolizer's reader makes (canonical/symtab.py: entry sizes,
string-table links and offsets are checked against the file), and BCC is
given the address:
``attach_uprobe(name=path, addr=...)``. With an address, libbcc's
``bcc_resolve_symname`` reads only the ELF header and the program headers
(through libelf, which checks them against the file: tests/integration/
test_native_symaddr.py fuzzes them) to turn the address into a file offset;
no symbol table is read, whatever the file holds at that moment.

The address is the one BCC finds by name (``_find_sym``): the value of the
first symbol of that name, in section order (``.dynsym`` before ``.symtab`` as
linkers lay them out) and in table order, at a non-zero address. Differences,
on purpose: only function symbols (``STT_FUNC``, ``STT_GNU_IFUNC``) defined in a
section are taken (BCC by name takes the first symbol of any type, then refuses
an address outside an executable segment, so a data object is found by neither).
The tables are streamed (native/symscan.py): a table of any number of
functions is searched within bounded memory, not refused at the symbolizer's
500,000 functions or 64 MiB.

A symbol the file's own tables lack is looked for in its separate debug file
(native/symdebug.py), found and checked by the canonicalizer's search
(canonical/debugfiles.py: the GNU build-id path, then the ``.gnu_debuglink``
name next to the file, under the agent's ``/`` and the node's root, then the
file's own root; build-id and CRC-32 checked, a mismatch never read; an
address from a container's debug file only at a function start the binary's
own tables confirm: native/symstart.py), where BCC by name looks too (its
own build-id and debuglink search). Not read:
``.gnu_debugdata`` (MiniDebugInfo, LZMA) and debuginfod; a symbol present
only there is "not found", and the reason says so.

No IFUNC is resolved, by BCC (0.26 to today's source) or here: an
``STT_GNU_IFUNC`` symbol (glibc's ``strlen``) is probed at the resolver it
names, which runs when the dynamic linker binds it, not at the implementation
it picks (``__strlen_avx2``: name that to count calls). Versions are not part
of a name: glibc's ``.dynsym`` holds ``memcpy@GLIBC_2.2.5`` (a plain function)
before the ``memcpy@@GLIBC_2.14`` IFUNC, so "memcpy" is the former, for BCC
and here alike (tests/integration/test_native_symaddr.py compares both).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from stellaops_runtime.canonical.debuglink import has_symbols
from stellaops_runtime.canonical.elflayout import ElfError, read_layout
from stellaops_runtime.canonical.symtab import read_section_table
from stellaops_runtime.native.follow_files import HELD, split_root
from stellaops_runtime.native.symcancel import CancellableLimits
from stellaops_runtime.native.symdebug import DEBUG_ROOTS, debug_address
from stellaops_runtime.native.symscan import first_function

# The symbolizer's bounds on bytes read into memory (canonical/limits.py; the symbol tables are
# streamed, native/symscan.py), but not its 2 s per file: a lookup runs once per attach, and a busy
# node must not fail a probe on a large binary (libLLVM's 70,000 functions: 40 ms idle) for being slow.
# Each budget's time check also ends a lookup its caller gave up on (native/symcancel.py).
_LIMITS = CancellableLimits(parse_seconds=120.0)
ET_EXEC, ET_DYN, PF_X = 2, 3, 1


class SymbolNotFound(Exception):
    """The file has no function symbol of that name at a non-zero address. ``hint``: why it may be
    elsewhere, or where its debug file would be read ('' or "; ..."), for the failed reason."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message + hint)
        self.hint = hint


def where_of(binary: str, root: str = "", module: str = "") -> tuple[str, str] | None:
    """(root, path inside it) naming a target's file, for its ``.gnu_debuglink``: a PURL target's
    container root and file, a container's ``/proc/<pid>/root/...`` path split, None for a file held
    only by a descriptor."""
    if root and module:
        return root, module
    if binary.startswith(HELD):
        return None
    return split_root(binary)


def find_address(
    path: str,
    symbol: str,
    *,
    where: tuple[str, str] | None = None,
    debug_roots: tuple[str, ...] = DEBUG_ROOTS,
    debug_files: bool = True,
) -> int:
    """The address BCC's ``attach_uprobe(addr=...)`` takes for ``symbol`` in the ELF file at ``path``.

    The file's own tables come first, then its separate debug file (native/symdebug.py), looked for
    under the root of ``where`` ((root, path inside it) naming the file: :func:`where_of`, by
    default of ``path``) and under ``debug_roots``; not at all with ``debug_files`` False (the agent's
    ``symbols.debugFiles: false``: no separate debug file is read, for a probe as for a frame).
    Raises :class:`SymbolNotFound`, ``ElfError`` (a file that is not ELF, or damaged: its
    message says why) or ``OSError`` (the file cannot be opened or read)."""
    try:  # a name from argv keeps its undecodable bytes as surrogates: those bytes are looked for
        want = symbol.encode("utf-8", "surrogateescape") + b"\0"
    except UnicodeEncodeError:  # a lone surrogate from elsewhere (JSON's \ud800): no ELF name is that
        raise SymbolNotFound(f"symbol {symbol!a} not found: not a name a file can hold") from None
    if len(want) < 2 or b"\0" in want[:-1]:
        raise SymbolNotFound(f"symbol {symbol!a} not found: not a name a file can hold")
    hint = ""
    with open_regular(path) as f:
        layout = read_layout(f)
        budget = _LIMITS.budget("symbol lookup")
        sections = read_section_table(f, layout, budget)
        found = first_function(f, layout, sections, want, budget)
        if not found and layout.has_section_headers and not debug_files:
            if not has_symbols(sections)[0]:  # stripped: its debug file may name it, and is not read
                hint = "; separate debug files are not read (symbols.debugFiles is false)"
        elif not found and layout.has_section_headers:
            place = where if where is not None else where_of(path)
            found, hint = debug_address(f, layout, sections, want, place, debug_roots, _LIMITS)
            if not found and any(s.name == ".gnu_debugdata" for s in sections):
                hint += "; the debug information its .gnu_debugdata holds is not read"
    if not found:
        raise SymbolNotFound(f"symbol {symbol} not found", hint)
    if layout.e_type in (ET_EXEC, ET_DYN) and not any(
        s.flags & PF_X and s.vaddr <= found < s.vaddr + s.memsz for s in layout.loads
    ):  # BCC turns the address into a file offset through these only; say why, not its "could not"
        raise ElfError("not_code", f"its symbol {symbol} is at {found:#x}, in no executable segment")
    return found


def open_regular(path: str) -> BinaryIO:
    """The regular file at ``path``, opened for reading; ``ElfError('not_regular')`` for anything else.

    Opened ``O_PATH`` and checked first, then reopened through that descriptor (the same inode, whatever
    the path names by then): a FIFO, a device or a symlink to one is never opened for reading (a FIFO's
    open would wake its writer, a driver's open can act: canonical/rootopen.py's rule)."""
    probe = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(probe).st_mode):
            raise ElfError("not_regular", "not a regular file")
        try:  # O_NONBLOCK: a mandatory lock or a lease must not hold the agent either
            fd = os.open(f"/proc/self/fd/{probe}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:  # named by the caller's path, not by the descriptor's
            raise OSError(e.errno, e.strerror, path) from None
    finally:
        os.close(probe)
    return os.fdopen(fd, "rb")
