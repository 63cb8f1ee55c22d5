"""Which symbol name DWARF gives a subprogram, and which of its code ranges is which part.

The DWARF source of the symbolizer (canonical/dwarfinfo.py) is only read for files without a
symbol table, and its function IDs must be the ones the symbol table would give (issue 12): the
linkage name where DWARF has one, a plain name only where that is the symbol name, nothing where
DWARF does not record the symbol's name, and GCC's hot/cold parts split as its ``foo.cold``
symbols split them. docs/function-ids.md, "Names from DWARF", has the rules and measurements.
Pure functions over pyelftools DIEs.
"""

from __future__ import annotations

from elftools.dwarf.compileunit import CompileUnit
from elftools.dwarf.die import DIE

__all__ = ["attr_text", "code_parts", "mangles", "own_linkage_name", "usable_name"]

_LINKAGE_ATTRS = ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name")


def attr_text(die: DIE, name: str) -> str:
    """A string attribute's text; "" when absent or not a string.

    pyelftools gives None for a string its section does not hold (a ``DW_FORM_strp`` offset past
    a damaged ``.debug_str``) and an int for a wrong form: neither is a name (``str()`` of them
    named functions ``None``)."""
    attr = die.attributes.get(name)
    if attr is None:
        return ""
    value = attr.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


# DW_LANG_* of languages whose functions have mangled symbol names (C++ family, ObjC++, Rust)
_MANGLING_LANGUAGES = frozenset({0x04, 0x11, 0x19, 0x1A, 0x1C, 0x21})


def mangles(cu: CompileUnit) -> bool:
    attr = cu.get_top_DIE().attributes.get("DW_AT_language")
    return attr is not None and isinstance(attr.value, int) and attr.value in _MANGLING_LANGUAGES


def usable_name(die: DIE, mangling: bool) -> str:
    """The symbol name DWARF gives a subprogram, or "" when it does not give one.

    The linkage name (mangled) wherever the ``DW_AT_specification``/``DW_AT_abstract_origin``
    chain has one; else the plain ``DW_AT_name``, which is the symbol name in C and for
    ``extern "C"`` functions (``DW_AT_external``, such as ``main``) of C++ and Rust units. A C++ or
    Rust function with internal linkage (static, anonymous namespace, lambda bodies; GCC writes
    no linkage name for them) has a mangled symbol DWARF does not record: its short name
    (``_M_invoke``, ``fmt``) is shared by many functions, so it gives "".
    """
    plain = ""
    external = False
    cur: DIE | None = die
    seen = 0
    while cur is not None and seen < 4:
        attrs = cur.attributes
        for attr in _LINKAGE_ATTRS:
            text = attr_text(cur, attr)
            if text:
                return text
            if attr in attrs:  # a linkage name that cannot be read: the symbol's name is unknown
                return ""
        plain = plain or attr_text(cur, "DW_AT_name")
        ext = attrs.get("DW_AT_external")
        external = external or bool(ext is not None and ext.value)
        nxt = None
        for ref in ("DW_AT_specification", "DW_AT_abstract_origin"):
            if ref in attrs:
                nxt = cur.get_DIE_from_attribute(ref)
                break
        cur = nxt
        seen += 1
    return plain if plain and (external or not mangling) else ""


def own_linkage_name(die: DIE) -> bool:
    """Whether the DIE names its symbol itself (GCC's D0/D2 destructor bodies of one origin do)."""
    return any(attr in die.attributes for attr in _LINKAGE_ATTRS)


def code_parts(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A subprogram's code ranges, overlapping ones merged, the one holding its entry first.

    The entry is the first range listed (GCC lists the function's first part, then its
    ``.cold`` part); empty and inverted ranges are dropped. Ranges that only touch stay apart:
    the linker may place a ``.cold`` part right before its function (``main.cold`` ends where
    ``main`` starts), and the symbol table has two functions there.
    """
    entry = ranges[0][0]
    merged: list[list[int]] = []
    for low, high in sorted(r for r in ranges if r[1] > r[0]):
        if merged and low < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    first = [m for m in merged if m[0] <= entry < m[1]]
    rest = [m for m in merged if not m[0] <= entry < m[1]]
    return [(m[0], m[1]) for m in first + rest]
