"""The native symbol-table index (canonical/_symindex.c) and kallsyms parse (canonical/_kallsyms.c),
when they are built, and the switch to them.

Why this module exists: indexing a symbol table in Python was about a third of
a cold batch's instructions (issue 12, docs/benchmarks.md), and parsing
/proc/kallsyms in Python most of the kernel table's load (issue 13). The
package's C extensions do the same work over the bytes; they are optional
(built at install time when a compiler is there, setup.py), so this module
says whether they are loaded and calls them. ``STELLAOPS_SYMINDEX=python`` in
the environment makes every table use the Python path (canonical/symtab.py's
columns, canonical/addrindex.py's rules, canonical/kallsyms_rows.py's parse),
read at each table built, so tests can compare both on one process
(tests/integration/test_symindex_native.py, tests/unit/test_kallsyms_native.py).
Both give the same entries, ends and names.
"""

from __future__ import annotations

import logging
import os
import sys
from array import array
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Protocol

from stellaops_runtime.canonical.limits import Budget

__all__ = ["ENV", "Section", "answer_first", "kallsyms", "loaded", "native_index"]

ENV = "STELLAOPS_SYMINDEX"


def built_from_current_source(module_file: str | None) -> bool:
    """Whether the extension at ``module_file`` was built after its C source last changed.

    In a checkout installed in place (``pip install -e``) the shared object stays beside
    ``_symindex.c``; edited or pulled without a rebuild, the old build would be called with the
    new Python side's arguments and fail every batch. Where the source is not shipped (an image,
    a wheel) there is nothing to compare and the build is taken. Its sources are the C files and
    headers beside it whose names start with the module's (``_symindex.c``; ``_kallsyms.c``,
    ``_kallsyms_table.c``, ``_kallsyms.h``)."""
    if not module_file:
        return False
    base = os.path.basename(module_file).split(".", 1)[0]  # _symindex.cpython-311-...so: _symindex
    folder = os.path.dirname(module_file)
    try:
        built = os.stat(module_file).st_mtime_ns
        sources = [n for n in os.listdir(folder) if n.startswith(base) and n.endswith((".c", ".h"))]
        return all(built >= os.stat(os.path.join(folder, n)).st_mtime_ns for n in sources)
    except FileNotFoundError:
        return os.path.exists(module_file)
    except OSError:
        return False


def _current(module: ModuleType) -> ModuleType | None:
    """``module`` when built from its current source; else None, with a warning."""
    if built_from_current_source(module.__file__):
        return module
    logging.getLogger(__name__).warning(
        "%s is older than its source: the Python path is used until it is rebuilt (scripts/setup.sh)",
        module.__file__,
    )
    return None


try:
    from stellaops_runtime.canonical import _symindex  # type: ignore[attr-defined]

    _NATIVE: ModuleType | None = _current(_symindex)
except ImportError:  # no compiler at install time: the Python path
    _NATIVE = None
try:
    from stellaops_runtime.canonical import _kallsyms  # type: ignore[attr-defined]

    _KALLSYMS: ModuleType | None = _current(_kallsyms)
except ImportError:
    _KALLSYMS = None


class Section(Protocol):
    @property
    def addr(self) -> int: ...

    @property
    def size(self) -> int: ...


def loaded() -> bool:
    """Whether tables are indexed natively now (the extension is built and not switched off)."""
    return _NATIVE is not None and os.environ.get(ENV, "") != "python"


def native_index(
    sections: Sequence[Section],
    data: bytes,
    strtab: bytes,
    name: str,
    *,
    is64: bool,
    little: bool,
    arm: bool,
    max_bytes: int,
    budget: Budget | None,
) -> tuple[list[int], list[int], list[int]] | None:
    """(starts, ends, name offset of each entry) of a symbol section's functions, built natively;
    None when the Python path must build it (no extension, switched off, or an alias group whose
    names are not ASCII). Raises the budget's error as the Python path does."""
    if _NATIVE is None or not loaded():
        return None
    addrs = array("Q", [s.addr for s in sections])
    sizes = array("Q", [s.size for s in sections])
    limit = budget.limits.max_symbols if budget is not None else sys.maxsize
    out = _NATIVE.index(data, strtab, is64, little, arm, addrs.tobytes(), sizes.tobytes(), max_bytes, limit)
    if isinstance(out, int):
        if budget is not None:
            budget.check_symbols(out, name)
        raise AssertionError("the native index counted more functions than the budget allows")
    return out  # type: ignore[no-any-return]  # None: the Python path builds it


def answer_first() -> Callable[..., Any] | None:
    """The native batch of ``QuickLookup.answer_many`` (its first range and first table), or None
    when the extension is not built or switched off."""
    if _NATIVE is None or not loaded():
        return None
    return _NATIVE.answer_first  # type: ignore[no-any-return]


def kallsyms() -> ModuleType | None:
    """The native kallsyms parse (canonical/_kallsyms.c: rows, blocks, name_index), or None when it
    is not built or switched off."""
    if _KALLSYMS is None or os.environ.get(ENV, "") == "python":
        return None
    return _KALLSYMS
