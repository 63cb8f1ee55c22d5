"""What a user types to name an image, a package or a function, turned into what the store holds.

Pure parsing, no I/O: :func:`image_key` maps the ways people write an image
(``registry/repo@sha256:…``, ``repo:tag@sha256:…``, ``sha256:…``, bare hex)
to the key the agent files events under (``sha256:<lower-case hex>``, see
``RuntimeCallEvent.image_key`` and ``adapter.common.image_digest``);
:class:`PurlQuery` matches package URLs as package URLs (packageurl-python);
:func:`~stellaops_runtime.store.function_refs.function_query` reads a symbol name (mangled or
canonical) or a function ID (split to :mod:`stellaops_runtime.store.function_refs`). Each raises
:class:`RefError` with a message meant for the user.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from packageurl import PackageURL

from stellaops_runtime.attribution.purls import purl_text


class RefError(ValueError):
    """A reference the user gave cannot be read; the message says why."""


# -- images -------------------------------------------------------------------

DIGEST_HEX_LENGTH = {"sha256": 64, "sha512": 128}
# Keys the agent files non-image events under (RuntimeCallEvent.image_key).
NON_IMAGE_PREFIXES = ("host:", "container:")
HEX_DIGITS = frozenset(string.hexdigits)


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
    if not HEX_DIGITS.issuperset(hexpart):
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
        if "/" not in head and len(tail) >= 32 and HEX_DIGITS.issuperset(tail):
            return _digest(ref, given=text)  # e.g. md5:<hex>: "unknown algorithm"
    elif HEX_DIGITS.issuperset(ref):
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


def _path(p: PackageURL) -> tuple[str, str]:
    """Type and ``namespace/name`` after :func:`_normalized`: what :meth:`PurlQuery.matches`
    compares. A name holding ``/`` (``pkg:npm/a%2Fb``) was stored by earlier versions as
    ``pkg:npm/a/b`` (attribution/purls.py ``purl_text``), which reads back as name ``b`` of
    namespace ``a``: compared by namespace and name apart, a question by one spelling missed the
    rows of the other, and a function that ran was "not observed"."""
    kind, ns, name = _normalized(p)
    return kind, f"{ns}/{name}" if ns else name


def _slashes(text: str) -> str:
    """``text`` with each ``%2F`` (either case) read as the ``/`` it encodes."""
    return text.replace("%2F", "/").replace("%2f", "/")


def prefix_test(prefix: str) -> Callable[[str], bool]:
    """Whether a stored purl text starts with ``prefix`` (``query functions --prefix``): as written,
    or with each ``%2F`` read as ``/`` on both sides. A name holding ``/`` is stored ``a%2Fb`` since
    d94a72f and ``a/b`` by earlier versions, and a row keeps the purl it was first written with: a
    store upgraded in place holds one package under both, its file's ``loaded`` row under one and a
    function that ran under the other. Compared as raw text, that function was left out and the
    answer read "not observed" (tests/integration/test_purl_prefix_spellings.py). The prefix (up to
    an argument's 128 KiB) is read here once, not once per stored purl."""
    slashed = _slashes(prefix)

    def test(stored: str) -> bool:
        return stored.startswith(prefix) or _slashes(stored).startswith(slashed)

    return test


def purl_prefixed(stored: str, prefix: str) -> bool:
    """:func:`prefix_test` of one stored purl."""
    return prefix_test(prefix)(stored)


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
    # :func:`_path` of ``purl``, read once: a question's name may be 128 KiB, and a PyPI name
    # normalised again for each stored purl ``matches`` is given took 90 s over 10,000 of them
    asked: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "asked", _path(self.purl))

    @classmethod
    def parse(cls, text: str) -> PurlQuery:
        t = text.strip(BLANKS)
        if not t:
            raise RefError("empty package URL")
        utf8_only(t, "package URL")
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
        if self.asked != _path(s):  # a name's ``/`` either spelled: rows of earlier versions
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
        PyPI's and crates.io's separators as ``-``), a name's ``/`` as ``%2F``. A claim's id is
        computed from it, so ``pkg:deb/debian/Zlib1g`` and ``pkg:deb/debian/zlib1g`` are one claim, as
        ``verify`` reads them. The one exception: ``pkg:npm/a%2Fb`` and ``pkg:npm/a/b`` (how earlier
        versions wrote it) match each other but keep two spellings, as the second may be the package
        ``b`` of namespace ``a``."""
        p = self.purl
        kind, ns, name = _normalized(p)
        quals = p.qualifiers if isinstance(p.qualifiers, dict) else None
        return purl_text(PackageURL(kind, ns or None, name, p.version, quals or None, p.subpath))


# -- text a user typed ---------------------------------------------------------


def utf8_only(text: str, what: str) -> None:
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
    utf8_only(text, what)
    no_controls(text, what)
    return text


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
