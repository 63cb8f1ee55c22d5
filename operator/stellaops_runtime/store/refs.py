"""What a user types to name an image, a package or a function, turned into what the store holds.

Pure parsing, no I/O: :func:`image_key` maps the ways people write an image
(``registry/repo@sha256:…``, ``repo:tag@sha256:…``, ``sha256:…``, bare hex)
to the key the agent files events under (``sha256:<lower-case hex>``, see
``RuntimeCallEvent.image_key`` and ``adapter.common.image_digest``);
:class:`PurlQuery` matches package URLs as package URLs (packageurl-python);
:func:`function_query` reads a symbol name (mangled or canonical) or a
function ID. Each raises :class:`RefError` with a message meant for the user.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import unicodedata
from dataclasses import dataclass

from packageurl import PackageURL

from stellaops_runtime.canonical.demangle import demangle, language_of
from stellaops_runtime.canonical.function_id import FunctionId, function_entry_id, parse_function_id
from stellaops_runtime.store import rust_paths
from stellaops_runtime.store.name_spellings import c_function_of, clone_of, spaceless


class RefError(ValueError):
    """A reference the user gave cannot be read; the message says why."""


# -- images -------------------------------------------------------------------

DIGEST_HEX_LENGTH = {"sha256": 64, "sha512": 128}
# Keys the agent files non-image events under (RuntimeCallEvent.image_key).
NON_IMAGE_PREFIXES = ("host:", "container:")
_HEX = frozenset(string.hexdigits)


def _digest(text: str, *, given: str) -> str:
    algo, sep, hexpart = text.partition(":")
    algo = algo.lower()
    if not sep:
        raise RefError(f"malformed image digest {given!r}: expected sha256:<64 hex digits>")
    want = DIGEST_HEX_LENGTH.get(algo)
    if want is None:
        raise RefError(f"malformed image digest {given!r}: unknown algorithm {algo!r} (expected sha256)")
    if not hexpart:
        raise RefError(f"malformed image digest {given!r}: the {algo} digest is empty")
    if not _HEX.issuperset(hexpart):
        raise RefError(f"malformed image digest {given!r}: {algo} digest must be hexadecimal")
    if len(hexpart) != want:
        raise RefError(
            f"malformed image digest {given!r}: {algo} needs {want} hex digits, got {len(hexpart)}"
        )
    return f"{algo}:{hexpart.lower()}"


def image_key(text: str) -> str:
    """The store's key for an image reference; :class:`RefError` for anything malformed.

    ``registry[:port]/repo[:tag]@sha256:<hex>``, ``sha256:<hex>`` and a bare
    64-hex digest all give ``sha256:<lower-case hex>``, which is how the agent
    stores the digest Tetragon reports. ``host:<node>`` and ``container:<id>``
    (the agent's keys for host processes and containers without a digest) are
    kept as they are. A name or tag without a digest is an error: a tag moves,
    a digest names one image.
    """
    ref = text.strip(BLANKS)
    if not ref:
        raise RefError("empty image reference: give a digest, e.g. sha256:<64 hex digits>")
    no_controls(ref, "image reference")
    if ref.startswith(NON_IMAGE_PREFIXES) and ref.partition(":")[2] and not any(c in ref for c in "@/ "):
        return ref
    if any(c.isspace() for c in ref):
        raise RefError(f"malformed image reference {text!r}: contains whitespace")
    _name, at, digest = ref.rpartition("@")
    if at:
        return _digest(digest, given=text)
    head, colon, tail = ref.partition(":")
    if colon:
        if head.lower() in DIGEST_HEX_LENGTH:
            return _digest(ref, given=text)
        if "/" not in head and len(tail) >= 32 and _HEX.issuperset(tail):
            return _digest(ref, given=text)  # e.g. md5:<hex>: "unknown algorithm"
    elif _HEX.issuperset(ref):
        if len(ref) == DIGEST_HEX_LENGTH["sha256"]:
            return f"sha256:{ref.lower()}"
        raise RefError(
            f"malformed image digest {text!r}: a bare digest needs 64 hex digits (sha256), got {len(ref)}"
        )
    raise RefError(
        f"image reference {text!r} has no digest: give repo@sha256:<hex> or the digest "
        "(a tag names whatever the image is today, not the image that ran)"
    )


# -- package URLs ---------------------------------------------------------------

# The purl spec makes these types' namespace and name case-insensitive
# (lower-cased); packageurl-python does it for most, not for deb.
_LOWER_NAME_TYPES = frozenset({"deb"})


# Names their registries treat as one whatever the separators: PyPI compares names as PEP 503 does
# (runs of ``-``, ``_`` and ``.`` are one ``-``, case ignored: ``zope.interface`` is
# ``zope-interface``), crates.io treats ``-`` and ``_`` as one (``serde_json`` is ``serde-json``).
# packageurl-python only turns PyPI's ``_`` into ``-``: a question spelled the other way would find
# the package "never seen loaded".
_SEPARATORS = {"pypi": re.compile(r"[-_.]+"), "cargo": re.compile(r"[-_]+")}


def _normalized(p: PackageURL) -> tuple[str, str, str]:
    ns, name = p.namespace or "", p.name
    if p.type in _LOWER_NAME_TYPES:
        ns, name = ns.lower(), name.lower()
    if (sep := _SEPARATORS.get(p.type)) is not None:
        name = sep.sub("-", name.lower())
    return p.type, ns, name


# How version ranges start (npm ``^1.2``/``~1.2``/``>=1``, Maven ``[1.0,2.0)``, ``vers:``): no
# version of any ecosystem the agent attributes starts so (a deb version starts with a digit).
_RANGE_STARTS = ("<", ">", "=", "!", "^", "~", "*", "[", "(", "vers:")
_WILD = frozenset({"x", "X", "*"})  # npm's x-ranges: 4.x, 4.2.*


@dataclass(frozen=True, slots=True)
class PurlQuery:
    """A package URL as a question: which stored purls belong to this package (and version)?

    Type, namespace and name must be equal after the spec's normalisation.
    Without a version every version matches; with one, that version whatever
    the stored qualifiers. Qualifiers in the question must be present with the
    same value in the stored purl (others may be there too); so must a subpath.
    """

    text: str
    purl: PackageURL

    @classmethod
    def parse(cls, text: str) -> PurlQuery:
        t = text.strip(BLANKS)
        if not t:
            raise RefError("empty package URL")
        _utf8(t, "package URL")
        no_controls(t, "package URL")
        try:
            p = PackageURL.from_string(t)
        except ValueError as e:
            raise RefError(f"malformed package URL {text!r}: {e}") from None
        quals = p.qualifiers if isinstance(p.qualifiers, dict) else {}
        for part in (p.type, p.namespace, p.name, p.version, p.subpath, *quals, *quals.values()):
            if part:  # percent-decoded: %00 and %1b are a NUL and an escape no stored purl holds
                no_controls(part, f"package URL {_shown(t)}: the part")
        v = p.version or ""
        if v.startswith(_RANGE_STARTS) or any(m in v for m in ("||", ",", " ")) or _WILD & set(v.split(".")):
            # matched as a version it matches nothing: a "not observed" about a package that ran
            raise RefError(
                f"package URL {text!r}: version {v!r} is a range, not a version "
                "(give one version, or none to match every version)"
            )
        return cls(text=t, purl=p)

    def matches(self, stored: str) -> bool:
        """Whether the stored purl text is this package (a stored purl that does not parse never is)."""
        if not stored:
            return False
        try:
            s = PackageURL.from_string(stored)
        except ValueError:
            return False
        q = self.purl
        if _normalized(q) != _normalized(s):
            return False
        if q.version and q.version != s.version:
            return False
        have = s.qualifiers if isinstance(s.qualifiers, dict) else {}
        want = q.qualifiers if isinstance(q.qualifiers, dict) else {}
        if any(have.get(k) != v for k, v in want.items()):
            return False
        return not q.subpath or q.subpath == s.subpath

    def canonical(self) -> str:
        """The one spelling of this package URL among all that :meth:`matches` reads as one
        question both ways: packageurl-python's canonical form (type and namespace rules per type,
        qualifiers sorted, percent-encoded) of the name normalised as above (a deb name lower-cased,
        PyPI's and crates.io's separators as ``-``). A claim's id is computed from it, so
        ``pkg:deb/debian/Zlib1g`` and ``pkg:deb/debian/zlib1g`` are one claim, as ``verify`` reads them."""
        p = self.purl
        kind, ns, name = _normalized(p)
        quals = p.qualifiers if isinstance(p.qualifiers, dict) else None
        return PackageURL(kind, ns or None, name, p.version, quals or None, p.subpath).to_string()


# -- functions ------------------------------------------------------------------


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
    clones: tuple[str, ...] = ()
    # Given as a mangled symbol that demangles (C++ ``_Z...``, Rust ``_R...``): native code by its
    # spelling, as a function ID is; never an interpreted function's (doubts.interpreted).
    mangled: bool = False
    # Names given as a C function with a parameter list (``crc32()``, a prototype): each also names
    # that C identifier stored bare, and its clones (:func:`c_function_of`).
    c_names: tuple[str, ...] = ()

    @property
    def is_function_id(self) -> bool:
        return bool(self.build_id)

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
    if len(body) < 16 or not _HEX.issuperset(body):
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
    if digits and _HEX.issuperset(digits):
        go = "/" in t[:colon] and not any(c.isspace() for c in t[:colon])  # a Go build-id, as it is
        if bid is None and not go:
            return None
        return FunctionId(bid or t[:colon], t[colon + 1 : plus], int(digits, 16))
    if bid is not None:
        raise RefError(f"malformed function ID {t[:200]!r}: expected <build-id>:<symbol>+0x<hex offset>")
    return None


def _utf8(text: str, what: str) -> None:
    """Text no store can hold: lone surrogates (argv that was not UTF-8, JSON's ``\\udcff``) make
    the database driver raise (a traceback, exit 1, read as "not observed"), and PostgreSQL's
    text takes no NUL (a failed query where SQLite answers)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode()[:200]
        raise RefError(f"{what} '{shown}' is not valid UTF-8") from None
    if "\x00" in text:
        raise RefError(f"{what} {text[:200]!r} contains a NUL byte")


# Characters no stored name, purl or key holds, and that a terminal does not show as themselves:
# C0 and C1 controls and DEL (Cc), format characters (Cf: bidi overrides, zero-width marks), line
# and paragraph separators. A question holding one matches nothing, and its answer would read as
# "not observed" of the name it looks like: ``crc32\x01`` prints as ``crc32``.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _shown(text: str) -> str:
    """``text`` (its first 200 characters) with what a terminal does not show escaped, quoted."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:200])
    return f"'{shown}'"


def no_controls(text: str, what: str) -> None:
    """:class:`RefError` when ``text`` holds a control, format or line-separator character."""
    for c in text:
        if unicodedata.category(c) in _INVISIBLE:
            raise RefError(
                f"{what} {_shown(text)} contains a control character (U+{ord(c):04X}): "
                "no stored name holds one"
            )


# The blanks taken from around a question: spaces (every Zs, a no-break space too), tabs, line breaks.
# Not str.strip()'s whitespace: that also takes NEL, U+2028/U+2029 and U+001C..U+001F at an end,
# which no_controls refuses inside a name (docs/evidence.md).
BLANKS = " \t\n\r\f\v\u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"


def plain_text(text: str, what: str) -> str:
    """``text`` when a store can hold it and a terminal shows it (valid UTF-8, no NUL, no control
    character), else :class:`RefError`: for text matched as it is (``query functions --prefix``)."""
    _utf8(text, what)
    no_controls(text, what)
    return text


def function_query(text: str) -> FunctionQuery:
    t = text.strip(BLANKS)
    if not t:
        raise RefError("empty function name")
    _utf8(t, "function name")
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
        return FunctionQuery(
            text=t,
            names=tuple(dict.fromkeys((symbol, fid.symbol))),
            build_id=fid.build_id,
            entry_id=function_entry_id(fid.build_id, symbol),
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
    )


# -- time -----------------------------------------------------------------------


def parse_rfc3339(text: str) -> dt.datetime:
    """An RFC 3339 timestamp (``2026-12-01T00:00:00Z``, ``...+02:00``) as aware UTC."""
    t = text.strip()
    try:
        value = dt.datetime.fromisoformat(t[:-1] + "+00:00" if t[-1:] in ("Z", "z") else t)
    except ValueError:
        raise RefError(f"not an RFC 3339 timestamp: {text!r} (e.g. 2026-12-01T00:00:00Z)") from None
    if value.tzinfo is None:
        raise RefError(f"timestamp {text!r} has no UTC offset (add Z or +HH:MM)")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise RefError(f"timestamp {text!r} is out of range in UTC (years 1 to 9999)") from None
