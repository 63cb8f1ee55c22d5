"""What a user types to name a function, turned into the question the store answers.

Split from :mod:`stellaops_runtime.store.refs` (images, package URLs, times and the text checks
every question shares). Pure parsing, no I/O: :func:`function_query` reads a symbol name (mangled
or canonical) or a function ID (``<build-id>:<symbol>+0x<offset>``, in any spelling of its hex)
into a :class:`FunctionQuery`, the names a stored function may have for it. Raises
:class:`~stellaops_runtime.store.refs.RefError` with a message meant for the user.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellaops_runtime.canonical.demangle import demangle, language_of, strip_symbol_decorations
from stellaops_runtime.canonical.function_id import FunctionId, function_entry_id, parse_function_id
from stellaops_runtime.store import rust_paths
from stellaops_runtime.store.name_spellings import c_function_of, clone_of, spaceless
from stellaops_runtime.store.refs import BLANKS, HEX_DIGITS, RefError, no_controls, utf8_only


@dataclass(frozen=True, slots=True)
class FunctionQuery:
    """A function as a question: names to match, or a function ID's (build-id, symbol).

    ``names``: the text as given and its canonical demangled form (the agent
    stores canonical names). For a function ID, ``entry_id`` is the ID of the
    function's entry (``+0x0``, how stored IDs are written: any offset inside
    a function names the same function), ``build_id`` and ``names`` (the
    symbol) match rows stored without an ID. An unresolved ID
    (``<build-id>:+0x<file offset>``) names the frame the agent keys as
    ``0x<file offset>``. A name that does not end with a parameter list also
    names every stored ``<name>(…)`` (``overloads``): advisories write
    ``foo::bar`` for what the agent stores as ``foo::bar(int)``. A generic-free
    Rust path (``rust_paths``, RustSec's form ``smallvec::SmallVec::insert_many``)
    also names every stored name whose path is that one once generics, turbofish,
    trait qualification, closures and suffixes are read away
    (:mod:`stellaops_runtime.store.rust_paths`).
    """

    text: str
    names: tuple[str, ...]
    build_id: str = ""
    entry_id: str = ""
    # Names given without a parameter list (``foo::bar``): each also names every stored
    # ``foo::bar(...)``, all its overloads; canonical C++ names always carry one.
    overloads: tuple[str, ...] = ()
    # Names given as a generic-free Rust path (``crate::Type::method``): each also names every
    # stored Rust name with that path (``<crate::Type<u8>>::method::<…>``, rust_paths.matches).
    rust_paths: tuple[str, ...] = ()
    # Names given with a parameter list, their spaces read away (:func:`spaceless`): each also names
    # every stored name that is it but for spaces (``read(std::istream &)`` is the demangler's
    # ``read(std::istream&)``); a stored name is read the same way, so ``unsigned int`` matches only
    # ``unsigned int``.
    spaceless: tuple[str, ...] = ()
    # Names given by name: each also names its GCC clones (:func:`clone_of`), code of the function
    # stored under its own name (``f.isra.0``, ``f.part.0``, ``f.cold``, C++ ``f(int) (.cold)``).
    # A function ID's symbol: its clones in that build only (``matches_clone``).
    clones: tuple[str, ...] = ()
    # Given as a mangled symbol that demangles (C++ ``_Z...``, Rust ``_R...``): native code by its
    # spelling, as a function ID is; never an interpreted function's (doubts.interpreted).
    mangled: bool = False
    # Names given as a C function with a parameter list (``crc32()``, a prototype): each also names
    # that C identifier stored bare, and its clones (:func:`c_function_of`).
    c_names: tuple[str, ...] = ()
    # Given as a mangled symbol (or a function ID's) that does not demangle here: the agent stores the
    # demangled name, which this question then cannot name (evidence/undemangled.py).
    undemangled: bool = False

    @property
    def is_function_id(self) -> bool:
        return bool(self.build_id)

    def matches_clone(self, stored: str, build_id: str) -> bool:
        """Whether a stored row (its function name and build-id) is a clone of the function this
        question names: of one of ``clones``, and for a function ID in its build."""
        if self.is_function_id and build_id != self.build_id:
            return False
        return any(clone_of(stored, n) for n in self.clones)

    def matches_name(self, stored: str) -> bool:
        """Whether a stored function name is this (non-ID) question's: equal to one of ``names``,
        one of the ``overloads`` followed by ``(``, or a Rust name of one of ``rust_paths``."""
        if stored in self.names or stored in self.c_names:
            return True
        if any(stored.startswith(f"{n}(") for n in self.overloads):
            return True
        if self.spaceless and spaceless(stored) in self.spaceless:
            return True
        base = stored.rpartition(" (.")[0]  # a C++ clone, its parameter list spaced otherwise
        if base and self.spaceless and spaceless(base) in self.spaceless and clone_of(stored, base):
            return True
        if any(clone_of(stored, n) for n in self.clones):
            return True
        return bool(self.rust_paths) and rust_paths.matches(self.rust_paths, stored)


_FALLBACK = "sha256-"  # the build-id of a file with no build-id note (docs/function-ids.md)


def _hex_build_id(bid: str) -> str | None:
    """A GNU or fallback build-id in its canonical lower case; None for anything else (a Go
    build-id, whose letters are case-sensitive, or a name)."""
    body = bid[len(_FALLBACK) :] if bid[: len(_FALLBACK)].lower() == _FALLBACK else bid
    if len(body) < 16 or not HEX_DIGITS.issuperset(body):
        return None
    return bid.lower()


def _function_id_as_typed(t: str) -> FunctionId | None:
    """A function ID in another spelling: upper-case hex in the build-id or offset, ``0X``,
    leading zeros. Such text names the same function as the canonical ID, so it must get
    the same answer; read as a plain name it would match nothing and be "not observed".

    A text whose build-id is hex (16 digits or more, or the fallback) and that does not
    read as an ID is refused: it cannot be a symbol name either.
    """
    colon = t.find(":")
    if colon <= 0 or t[colon + 1 : colon + 2] == ":":  # no build-id, or a C++ scope (``a::b``)
        return None
    bid = _hex_build_id(t[:colon])
    plus = t.lower().rfind("+0x")
    digits = t[plus + 3 :] if plus > colon else ""
    if digits and HEX_DIGITS.issuperset(digits):
        go = "/" in t[:colon] and not any(c.isspace() for c in t[:colon])  # a Go build-id, as it is
        if bid is None and not go:
            return None
        return FunctionId(bid or t[:colon], t[colon + 1 : plus], int(digits, 16))
    if bid is not None:
        raise RefError(f"malformed function ID {t[:200]!r}: expected <build-id>:<symbol>+0x<hex offset>")
    return None


def function_query(text: str) -> FunctionQuery:
    t = text.strip(BLANKS)
    if not t:
        raise RefError("empty function name")
    utf8_only(t, "function name")
    no_controls(t, "function name")
    fid = None
    if ":" in t:
        try:
            fid = parse_function_id(t)
        except ValueError:
            fid = _function_id_as_typed(t)
    if fid is not None and (bid := _hex_build_id(fid.build_id)) is not None and bid != fid.build_id:
        fid = FunctionId(bid, fid.symbol, fid.offset)  # upper-case hex: the same build-id
    if fid is not None and not any(c.isspace() for c in fid.build_id):
        if not fid.symbol:
            return FunctionQuery(text=t, names=(f"0x{fid.offset:x}",), build_id=fid.build_id)
        symbol = demangle(fid.symbol)
        names = tuple(dict.fromkeys((symbol, fid.symbol)))
        return FunctionQuery(
            text=t,
            names=names,
            build_id=fid.build_id,
            entry_id=function_entry_id(fid.build_id, symbol),
            clones=names,  # of that build: ``<build-id>:crc32+0x0`` ran as its ``crc32.part.0``
            undemangled=_not_demangled(fid.symbol, symbol),
        )
    names = tuple(dict.fromkeys((demangle(t), t)))
    c_names = tuple(dict.fromkeys(c for n in names if (c := c_function_of(n)) is not None))
    return FunctionQuery(
        text=t,
        names=names,
        mangled=names[0] != t and language_of(t) in ("cxx", "rust_legacy", "rust_v0"),
        overloads=tuple(n for n in names if not n.endswith(")")),
        rust_paths=tuple(p for n in names if (p := rust_paths.query_path(n)) is not None),
        spaceless=tuple(dict.fromkeys(spaceless(n) for n in names if "(" in n)),
        clones=names + c_names,
        c_names=c_names,
        undemangled=_not_demangled(t, names[0]),
    )


def _not_demangled(text: str, demangled: str) -> bool:
    """Whether ``text`` is mangled (C++, Rust) and its demangling (``demangled``) failed."""
    mangled = language_of(text) in ("cxx", "rust_legacy", "rust_v0")
    return mangled and demangled == strip_symbol_decorations(text)
