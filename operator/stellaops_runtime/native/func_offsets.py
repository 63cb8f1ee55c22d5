"""Which functions, entry clones and split tails an ELF file defines, and at which file offsets.

Split from native/purl_targets.py (which plans the uprobes of functions named by PURL, per
container): this is the reading of one file's symbol tables, within the symbolizer's bounds, that
the plan, the node's files' tails (native/host_tails.py) and a stripped file's debug file
(native/purl_debug.py) share. Pure reading of an open descriptor; no probing, no roots.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from stellaops_runtime.canonical import symtab
from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout, file_build_id, read_layout
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS
from stellaops_runtime.native.config import MAX_UPROBE_TARGETS
from stellaops_runtime.store.name_spellings import clone_of, entry_clone_of


def symbol_offsets(fd: int, symbols: Iterable[str]) -> dict[str, int]:
    """File offsets of those ``symbols`` the ELF file defines as functions (.symtab, then .dynsym)."""
    return function_offsets(fd, symbols)[0]


def function_offsets(
    fd: int,
    symbols: Iterable[str],
    tails: dict[str, set[str]] | None = None,
    segments: ElfLayout | None = None,
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """:func:`symbol_offsets`, and for each of ``symbols`` the offsets of its GCC clones entered once
    per call of it (``crc32.isra.0``, ``crc32.constprop.0``: name_spellings.entry_clone_of), at an
    offset none of its other probes has. gcc -O2 compiles a static function into such clones only:
    a probe on its name alone found nothing and its calls ran unseen. Not ``.part.N`` (the function
    jumps to it: a call counted twice) nor ``.cold`` (no call enters it). A symbol is compared at
    the lengths of the names asked only (a name of 100,000 dots costs no more).

    ``tails``, when given, gets for each of ``symbols`` its split tails the file defines
    (:func:`split_tail_of`, at most MAX_UPROBE_TARGETS each): left unprobed, so the function was
    probed in part (agent/unprobed.py tells the store).

    ``segments``: the layout whose segments turn a symbol's address into a file offset, when not the
    file's own (a separate debug file's symbols, the stripped binary's segments: native/purl_debug.py)."""
    wanted = set(symbols)
    lengths = sorted({len(s) for s in wanted})
    out: dict[str, int] = {}
    clones: dict[str, dict[str, int]] = {}
    with os.fdopen(os.dup(fd), "rb") as f:
        layout = read_layout(f)  # ElfError when not ELF or damaged
        mapped = segments or layout
        budget = DEFAULT_LIMITS.budget(f"symbols of {fd}")  # the symbolizer's bounds on bytes, symbols, time
        sections = symtab.read_section_table(f, layout, budget)
        for section in (".symtab", ".dynsym"):
            cols = symtab.function_symbols(
                sections, f, section, is64=layout.is64, little=layout.little, budget=budget
            )
            for i, sym in enumerate(cols.names):
                if sym not in wanted:
                    if "." in sym and (base := _clone_base(sym, wanted, lengths)) is not None:
                        file_off = mapped.offset_of(cols.starts[i])
                        of = clones.setdefault(base, {})  # past the bound: reported, not probed
                        if file_off is not None and len(of) <= MAX_UPROBE_TARGETS:
                            of.setdefault(sym, file_off)
                    elif tails is not None and "." in sym:
                        base = _clone_base(sym, wanted, lengths, split_tail_of)
                        got = tails.setdefault(base, set()) if base is not None else None
                        if got is not None and len(got) < MAX_UPROBE_TARGETS:
                            got.add(sym)
                    continue
                if sym in out:
                    continue
                file_off = mapped.offset_of(cols.starts[i])
                if file_off is not None:
                    out[sym] = file_off
            if len(out) == len(wanted):
                break
    found: dict[str, dict[str, int]] = {}
    for base, of in clones.items():  # one probe per offset: an alias of the function is not probed again
        taken = {out[base]} if base in out else set()
        for sym, off in sorted(of.items()):
            if off not in taken:
                taken.add(off)
                found.setdefault(base, {})[sym] = off
    return out, found


def split_tail_of(sym: str, name: str) -> bool:
    """Whether ``sym`` is a tail partial inlining split off ``name`` (``crc32.part.0``, also as
    ``crc32.part.0.isra.0`` or ``crc32.isra.0.part.0``): a caller that inlined the head calls it
    directly, so a probe at ``name`` alone misses that call. Not its cold or hot part, which no
    call enters (name_spellings.clone_of)."""
    if not clone_of(sym, name):
        return False
    words = set(sym[len(name) :].replace(" (", "").replace(")", "").split("."))
    return "part" in words and not words & _NOT_TAIL


_NOT_TAIL = frozenset({"cold", "hot", "warm"})


def build_id_of(fd: int) -> str:
    """The ELF file's build-id (GNU, Go, else its content hash); "" when it cannot be read (then a
    question by function ID does not meet its tails: one by name still does)."""
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            return file_build_id(f)[0]
    except (ElfError, OSError):
        return ""


def _clone_base(
    sym: str, wanted: set[str], lengths: list[int], is_clone: Callable[[str, str], bool] = entry_clone_of
) -> str | None:
    """The name asked that ``sym`` is a clone of (``is_clone``: an entry clone), if any."""
    for n in lengths:
        if n >= len(sym):
            break
        if sym[n] in ". " and (base := sym[:n]) in wanted and is_clone(sym, base):
            return base
    return None
