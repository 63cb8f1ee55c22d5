"""Calls stored under a name that did not demangle, and questions whose name does not: no "no".

The agent stores a function under its canonical demangled name (canonical/demangle.py). A name that
looks mangled (C++ ``_Z...``, Rust ``_R...`` and legacy ``_ZN...17h<hash>E``) and does not demangle
is stored as it came, and only the agent's ``demangle_failures`` metric tells: a name cut at the
symbol table's length limit, a construct no demangler reads, a hostile name, or an agent whose
demangler bindings did not load with no c++filt to fall back on. A question by the canonical name
matches no such row, yet the function asked about may be that row's. So while the image has such a
row in the period (of the package's files and of files of no package, when a package is asked
about; of the build, for a function ID; with its calls in the period, or its history there removed
by retention) that may be the function, ``query observed`` answers
unknown, ``evidence`` keeps the neutral RTS and ``vex`` says under_investigation, naming the rows
(evidence/doubts.py):

- a stored name that demangles here (where the question is asked, the demangler reads what the
  agent's could not) is the function asked about when its demangled name is the question's;
- one that does not demangle here either may be it, unless it lacks the function's own name (the
  last identifier of its path: ``insert_many`` of ``smallvec::SmallVec::insert_many``, ``foo`` of
  ``ns::foo(int)``) as both manglings spell an identifier, its length then its characters
  (``11insert_many``; Rust v0 may put ``_`` between). What cannot be told (an operator, letters
  beyond ASCII, a std name C++ abbreviates, a name cut at the symbol table's limit) may be it.
  The database reads only the rows that spell it (or are long enough to be cut), after looking
  them up in the (image_digest, function_name) index: an image with none reads no row.

And the question's own side: a name asked about that looks mangled but does not demangle here
(:attr:`FunctionQuery.undemangled`: the bindings and c++filt missing, or not a valid mangling)
cannot name the demangled name the agent stores; with no row of it as given, unknown.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import sqlalchemy as sa

from stellaops_runtime.canonical.demangle import demangle, language_of
from stellaops_runtime.canonical.symtab import MAX_NAME_BYTES
from stellaops_runtime.evidence.doubt import Doubt, listed
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.queries import FACT_EVIDENCE, FILE_EVIDENCE, SymbolRow
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbols
from stellaops_runtime.store.unnamed import history_incomplete

UNDEMANGLED = "undemangled"
MANGLED = ("cxx", "rust_legacy", "rust_v0")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[<>()\[\]{}.]")
_OPEN, _CLOSE = "<([{", ">)]}"
# std names a C++ mangling writes as abbreviations (Sa, Sb, Ss, Si, So, Sd), never spelled out
_ABBREVIATED = frozenset(
    {"allocator", "basic_string", "string", "basic_istream", "istream", "basic_ostream", "ostream"}
    | {"basic_iostream", "iostream"}
)


# Words a return type's parentheses follow (``decltype (a+b) ns::add<int>(int)``): no parameter list
_TYPE_OPERATORS = frozenset({"decltype", "typeof", "__typeof__", "sizeof", "alignof", "noexcept", "throw"})


def own_name(name: str) -> str | None:
    """The function's own identifier in a demangled (or plain) name: the last one outside brackets
    before its parameter list or a clone suffix; None when it cannot be told (an operator, letters
    beyond ASCII, no identifier); of a function returning a function pointer, the one in its
    declarator (c++filt writes a template's as ``void (*ns::get<int>())(int)``: ``get``), past a
    ``decltype (...)`` return type."""
    if "operator" in name or not name.isascii():
        return None
    depth, last = 0, None
    for m in _TOKEN.finditer(name):
        tok = m.group()
        if tok in _OPEN:
            if tok == "(" and depth == 0 and last is not None and last not in _TYPE_OPERATORS:
                if name[m.end() : m.end() + 1] in ("*", "&"):  # after a return type: the declarator
                    return own_name(name[m.end() + 1 :])
                break  # the parameter list
            depth += 1
        elif tok in _CLOSE:
            depth = max(0, depth - 1)
        elif tok == ".":
            if depth == 0 and last is not None:
                break  # a clone suffix (``f.cold``, Rust ``a::b.cold``)
        elif depth == 0:
            last = tok
    return last


def own_names(function: FunctionQuery) -> frozenset[str] | None:
    """The own identifiers of the names ``function`` asks about (:func:`own_name`); None when one
    cannot be told, or is one a C++ mangling may abbreviate (``std::allocator`` is ``Sa``)."""
    asked = [
        n for n in (*function.names, *function.rust_paths, *function.c_names) if language_of(n) not in MANGLED
    ]
    owns = {own_name(n) for n in asked}
    if not owns or None in owns or owns & _ABBREVIATED:
        return None
    return frozenset(i for i in owns if i is not None)


def _spellings(ident: str) -> tuple[str, str]:
    return f"{len(ident)}{ident}", f"{len(ident)}_{ident}"  # Itanium and Rust; Rust v0 with a "_"


def may_be(stored: str, function: FunctionQuery, owns: frozenset[str] | None) -> tuple[bool, str]:
    """Whether the stored still-mangled name ``stored`` may be the function asked about (whose own
    identifiers are ``owns``: :func:`own_names`), and what it reads as here (itself when it does
    not demangle here either). A reading that is still mangled (the decorations' rules took off a
    suffix one pass of them left) or of a name holding a NUL (the demangler reads up to it) is none."""
    here = demangle(stored)
    if here != stored and "\0" not in stored and not still_mangled(here):  # the function, or another
        if function.is_function_id:
            return here in function.names or function.matches_clone(here, function.build_id), here
        return function.matches_name(here), here
    here = stored
    if owns is None or len(stored.encode("utf-8", "surrogatepass")) >= MAX_NAME_BYTES:
        return True, here  # or cut at the symbol table's limit: its identifier may be past the cut
    return any(s in stored for i in owns for s in _spellings(i)), here


def still_mangled(name: str) -> bool:
    """Whether a stored name is one the agent could not demangle (a canonical name never starts
    so: :data:`MANGLED`)."""
    return name[:2] in ("_Z", "_R") or name[:3] in ("__Z", "__R")


_HEADS = ("_Z", "_R", "__Z", "__R")


def _spelling_any(
    conn: sa.Connection, name: sa.ColumnElement[str], owns: frozenset[str]
) -> sa.ColumnElement[bool]:
    """``name`` spells one of ``owns`` (:func:`_spellings`) or is long enough to be cut, as
    :func:`may_be` reads it: instr/strpos, not LIKE, which on SQLite stops at a NUL (a name after
    it was ruled out), and its length in bytes (SQLite's ``length`` also stops there)."""
    find = sa.func.strpos if conn.dialect.name == "postgresql" else sa.func.instr
    size = (
        sa.func.octet_length(name)
        if conn.dialect.name == "postgresql"
        else sa.func.length(sa.cast(name, sa.LargeBinary))
    )
    return sa.or_(*(find(name, s) > 0 for i in owns for s in _spellings(i)), size >= MAX_NAME_BYTES)


def _heads(conn: sa.Connection, scope: list[sa.ColumnElement[bool]]) -> sa.ColumnElement[bool] | None:
    """The rows' names start as a still-mangled name does (:data:`_HEADS`), as a condition the index
    on (image_digest, function_name) bounds, for the heads some row of ``scope`` has; None when none
    has. SQLite: a range per head (its BINARY collation is byte order; an OR of them is not read
    as ranges), each looked up first. PostgreSQL: a LIKE per head, one count of all four (a BitmapOr
    of four ranges of the index where the database's collation is C; a linguistic one orders ``_``
    apart, and the image's rows are then read once, as before this look-up)."""
    fn = hot_symbols.c.function_name
    if conn.dialect.name != "postgresql":
        found = []
        for h in _HEADS:
            head = sa.and_(fn >= h, fn < h[:-1] + chr(ord(h[-1]) + 1))
            if conn.execute(sa.select(sa.literal(1)).where(*scope, head).limit(1)).first() is not None:
                found.append(head)
        return sa.or_(*found) if found else None
    heads = sa.or_(*(fn.like(h.replace("_", "/_") + "%", escape="/") for h in _HEADS))
    # counted, not LIMIT 1: a first row expected soon (its guess for LIKE '%3foo%') made it scan the
    # table in the order of its pages, 60 ms over 20,000 still-mangled rows none of which matched
    return heads if conn.execute(sa.select(sa.func.count()).where(*scope, heads)).scalar() else None


def _go(name: str) -> bool:
    """A Go name (never mangled): what language_of reads as one (a dot that is no clone suffix) and
    holds no C++ or Rust path nor a blank (``ns::foo(int) (.cold)``, ``ns::f<1.5>()`` hold dots)."""
    return language_of(name) == "go" and "::" not in name and " " not in name


def stored_may_be(function: FunctionQuery) -> Callable[[str], bool] | None:
    """Whether a stored still-mangled name may be ``function`` (:func:`may_be`); None when none
    can be: a Go name is never mangled, and an unplaced offset ID (``<build-id>:+0x<offset>``)
    names no function (offset_unplaced's). For the rows the store refused, too (a name too long
    for PostgreSQL's key index, every one cut at the symbol table's limit: refused_rows.py)."""
    if function.is_function_id and not function.entry_id:
        return None
    if not function.is_function_id and all(_go(n) for n in function.names):
        return None
    owns = own_names(function)
    return lambda name: still_mangled(name) and may_be(name, function, owns)[0]


def undemangled(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery,
    purl: PurlQuery | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Doubt | None:
    """The doubt on a "no" about ``function``: its own name did not demangle, or calls in ``image``
    (of ``purl``'s package) in the period ran under still-mangled names that may be it."""
    if function.undemangled:
        why = (
            f"the name asked about, {function.text[:300]!r}, looks mangled but does not demangle here "
            "(no demangler bindings nor c++filt, or not a valid mangling), while the agent stores "
            "demangled names: ask by the demangled name"
        )
        return Doubt(UNDEMANGLED, why, ())
    if stored_may_be(function) is None:
        return None  # a Go name, or an offset ID: named functions of the build are offset_unplaced's
    c = hot_symbols.c
    scope = [of_image(conn, c.image_digest, image)]
    owns = own_names(function)
    if owns is not None:  # a name that may be the function spells one (or is long enough to be cut)
        scope.append(_spelling_any(conn, c.function_name, owns))
    # The common case, no such name in the image: look-ups in (image_digest, function_name) before
    # any row is read (the image's 120,000 rows scanned cost 40-55 ms): :func:`_heads`
    heads = _heads(conn, scope)
    if heads is None:
        return None
    where = [*scope, heads, c.evidence_kind.not_in((*FILE_EVIDENCE, *FACT_EVIDENCE)), c.invocation_count > 0]
    if purl is not None:
        found = queries.matching_purls(conn, image=image, purl=purl)
        if not found:
            return None  # package_not_seen's
        where.append(c.purl.in_([*found, ""]))  # files of no package may be the package's
    if function.is_function_id:
        where.append(c.build_id == function.build_id)
    rows = queries.rows_where(conn, *where, since=since, until=until)
    if since is not None or until is not None:  # and those whose history retention removed
        had = {(r.module, r.function_name, r.evidence_kind) for r in rows}
        whole = queries.rows_where(conn, *where)
        lost = history_incomplete(conn, whole, since=since, until=until)
        rows += [r for r in lost if (r.module, r.function_name, r.evidence_kind) not in had]
    maybe: list[tuple[SymbolRow, str]] = []
    for r in rows:
        if r.invocation_count <= 0 or r.function_name in function.names:
            continue
        ok, here = may_be(r.function_name, function, owns)
        if ok:
            maybe.append((r, here))
    if not maybe:
        return None
    maybe.sort(key=lambda x: (-x[0].invocation_count, x[0].function_name))
    named = {
        f"{r.function_name} in {r.module}" + (f" (here: {h})" if h != r.function_name else "")
        for r, h in maybe
    }
    why = (
        "functions ran under names that did not demangle when stored (the agent's demangle_failures) "
        f"and may be the function asked about: {listed(named, 'names', '; ')}"
    )
    return Doubt(UNDEMANGLED, why, tuple(r for r, _ in maybe))
