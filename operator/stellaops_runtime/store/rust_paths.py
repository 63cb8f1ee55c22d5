"""Rust function paths without generics, as RustSec advisories write them, matched to stored names.

RustSec (OSV ``ecosystem_specific.affects.functions``) names a function by its
path from the crate root with no generic arguments: ``smallvec::SmallVec::insert_many``.
The agent stores the name rustc-demangle prints (docs/function-ids.md):
legacy ``smallvec::SmallVec<A>::insert_many``, v0
``<smallvec::SmallVec<u8>>::insert_many::<Map<…>>``, trait impls
``<smallvec::SmallVec<A> as core::ops::drop::Drop>::drop``, with closures
(``::{{closure}}``, ``::{closure#0}``), shims and ``.cold``-style suffixes. An
exact comparison of the two never matches, and a vex answer would be
not_affected for a function that ran.

:func:`generic_free_paths` reads one stored name and gives the generic-free
paths it answers to; a question matches when its path is one of them,
compared exactly (so ``SmallVec::insert`` never matches ``insert_many``, nor
``Other::insert_many`` ``SmallVec::insert_many``). The rules, applied to the
stored name only:

1. A suffix (``.cold``, ``.warm``, ``.5586``) is dropped: Rust identifiers
   have no ``.`` outside brackets.
2. Generic arguments are dropped: ``SmallVec<A>`` → ``SmallVec``, and each
   turbofish segment ``::<…>``.
3. Trailing compiler-made segments in braces are dropped (``{{closure}}``,
   ``{closure#0}``, ``{async_fn_env#0}``, ``{shim:vtable#0}``, and an
   identifier's own ``{{vtable.shim}}``): a closure's body is code written
   in the function, and an ``async fn``'s body runs only there. A brace
   segment anywhere else leaves the name unmatched.
4. A leading qualification ``<T>`` gives ``T``'s path; ``<T as Trait>`` gives
   both ``T``'s path and ``Trait``'s: v0 prints a trait's provided (default)
   method run for ``T`` as ``<T as Trait>::m``, exactly as it prints ``T``'s own
   override, so ``Trait::m`` must match both (legacy prints the provided method
   as ``Trait::m``). ``dyn Trait`` gives the trait's path (``impl dyn Trait``'s
   methods). A ``T`` that is not a path (``[T]``, ``&T``, a tuple) gives only
   the trait's path; ``<[T]>::len`` gives none.

A question whose last segment is UpperCamelCase names a type or trait
(RustSec lists "types and/or functions containing vulnerable code"): it
matches every stored function whose path is under it.

Identifiers are compared as rustc stores them: a question's raw identifier
``r#try`` is ``try``. Anything that does not read this way (C++ names with
parameter lists, Go names, legacy ``<impl [T]>`` segments, unbalanced
brackets) gives no path. Pure; no I/O.
"""

from __future__ import annotations

import functools
import re

_IDENT = r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"{_IDENT}(?:::{_IDENT})+")
_BRACKET = re.compile(r"->|[<>(){}\[\]]")
_OPEN = {"<": ">", "(": ")", "[": "]", "{": "}"}
# A top-level bracket group, in a skeleton, is one character: generic arguments, braces
# (closures, shims), anything else (parameters, arrays: never part of a Rust path), ``<impl …>``.
_GENERIC, _BRACE, _OTHER, _IMPL = "\x01", "\x02", "\x03", "\x04"
# A path segment of a skeleton: an identifier with its generic arguments and shim braces.
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)[\x01\x02]*")


def query_path(text: str) -> str | None:
    """The generic-free Rust path ``text`` names (``crate::f``, two segments or more, raw
    identifiers without their ``r#``), or None when it is not one."""
    return text.replace("r#", "") if _PATH.fullmatch(text) else None


def names_type(path: str) -> bool:
    """Whether a generic-free path names a type or trait, not a function: its last segment is
    UpperCamelCase (rustc's ``non_camel_case_types``/``non_snake_case`` lints keep types and
    functions apart). RustSec lists "types and/or functions containing vulnerable code"."""
    return path.rpartition("::")[2][:1].isupper()


def matches(paths: tuple[str, ...], stored: str) -> bool:
    """Whether a stored name is one of the generic-free ``paths`` asked (from :func:`query_path`):
    its own path equal to one, or under one that names a type (every method of the type)."""
    return Asked.of(paths).matches(stored)


class Asked:
    """Generic-free paths asked together, ready to test many stored names (the witness bridge
    tests every drained row). Every segment but the first of a path is written
    ``::<segment>`` in a name it matches, so a substring test turns nearly every other name
    away before any parsing."""

    __slots__ = ("_paths", "_types", "may_match")

    def __init__(self, paths: tuple[str, ...]) -> None:
        self._paths = frozenset(paths)
        self._types = tuple(f"{q}::" for q in paths if names_type(q))
        needles = sorted({f"::{q.rpartition('::')[2]}" for q in paths})
        # One C-level scan of the name for every needle at once (a regex of literals).
        self.may_match = re.compile("|".join(map(re.escape, needles)) or "(?!)").search

    @classmethod
    @functools.lru_cache(maxsize=256)
    def of(cls, paths: tuple[str, ...]) -> Asked:
        return cls(paths)

    def matches(self, stored: str) -> bool:
        if self.may_match(stored) is None:
            return False
        have = generic_free_paths(stored)
        if not self._paths.isdisjoint(have):
            return True
        return bool(self._types) and any(p.startswith(self._types) for p in have)


def _skeleton(text: str) -> tuple[str, list[str]] | None:
    """``text`` with each top-level bracket group replaced by one marker character, and the
    groups' inner texts in order; None when the brackets do not balance. ``->`` (a ``fn(…) -> T``
    type's arrow) is no bracket."""
    out: list[str] = []
    groups: list[str] = []
    stack: list[str] = []
    start = last = 0
    for m in _BRACKET.finditer(text):
        tok = m.group()
        if tok == "->":
            continue
        if tok in _OPEN:
            if not stack:
                out.append(text[last : m.start()])
                start = m.start()
            stack.append(_OPEN[tok])
        elif not stack or stack.pop() != tok:
            return None
        elif not stack:
            inner = text[start + 1 : m.start()]
            opened = text[start]
            if opened == "<":
                out.append(_IMPL if inner.startswith("impl ") else _GENERIC)
            else:
                out.append(_BRACE if opened == "{" else _OTHER)
            groups.append(inner)
            last = m.end()
    if stack:
        return None
    out.append(text[last:])
    return "".join(out), groups


def _path_of(skeleton: str) -> str | None:
    """The generic-free path of a type or trait's skeleton (``a::B\x01``; ``dyn a::B`` is the
    trait's), None for other types (slices, references, tuples, ``dyn A + B``)."""
    parts = skeleton.strip().removeprefix("dyn ").split("::")
    idents = [_SEGMENT.fullmatch(p) for p in parts]
    if not all(idents):
        return None
    return "::".join(m.group(1) for m in idents if m is not None)


@functools.lru_cache(maxsize=8192)
def generic_free_paths(stored: str) -> frozenset[str]:
    """The generic-free paths a stored (canonical) Rust name answers to; empty for other names."""
    sk = _skeleton(stored)
    if sk is None:
        return frozenset()
    skeleton, groups = sk
    skeleton = skeleton.partition(".")[0]  # rule 1: .cold, .warm, .<n>
    segments = skeleton.split("::")
    if len(segments) < 2 or _IMPL in skeleton or _OTHER in skeleton:
        return frozenset()
    heads: list[str] = []
    rest = segments
    if segments[0] == _GENERIC:  # rule 4: <T> or <T as Trait>
        inner = _skeleton(groups[0])
        if inner is None:
            return frozenset()
        parts = inner[0].split(" as ")
        if len(parts) > 2:
            return frozenset()
        heads = [h for h in (_path_of(p) for p in parts) if h is not None]
        rest = segments[1:]
    rest = [s for s in rest if s != _GENERIC]  # rule 2: turbofish ::<…>
    while rest and rest[-1] == _BRACE:  # rule 3: closures, shims
        rest.pop()
    idents = [_SEGMENT.fullmatch(s) for s in rest]
    if not all(idents):
        return frozenset()
    tail = [m.group(1) for m in idents if m is not None]
    if segments[0] == _GENERIC:
        return frozenset("::".join([h, *tail]) for h in heads) if tail else frozenset()
    return frozenset(["::".join(tail)]) if len(tail) >= 2 else frozenset()
