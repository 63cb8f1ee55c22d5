"""Keep signed witnesses in the store and find them again by image and claim.

A claim's id is ``sha256:`` + the SHA-256 of ``image \\n purl \\n function \\n
vulnerability`` (an empty line when there is no vulnerability), each in its
canonical spelling (:func:`canonical_claim`), so a policy engine computes it
from the claim alone, whichever way its SBOM spells the package. Witnesses kept
by a version that hashed the values as typed are found too (:func:`find` reads
the kept claims' ids again). Envelopes are stored as the exact bytes written
out (unique by their SHA-256), so one read back verifies.
:func:`vulnerability_id` reads a claim's vulnerability the one way ``sign``,
``list``, ``verify``, ``vex`` and the agent's claims files all read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.store.function_refs import FunctionQuery, function_query
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.refs import PurlQuery, RefError
from stellaops_runtime.store.same_image import one_content
from stellaops_runtime.store.schema import SCHEMA, runtime_witnesses


class NoWitnessTable(Exception):
    """The store was not migrated to revision 0006 (runtime_witnesses) yet."""


# ``<scheme>-<year>-<number>`` (CVE, PYSEC, RUSTSEC, GO, OSV, ...): only the scheme has letters, and
# no database tells ``cve-2024-1`` from ``CVE-2024-1``; GitHub's ``GHSA-xxxx-xxxx-xxxx`` ids are
# written with a lower-case body (its alphabet has no vowels, no look-alike digits).
_YEAR_ID = re.compile(r"([A-Za-z]+)(-[0-9]{4}-[0-9]+)")
_GHSA = re.compile(r"(?i:ghsa)((?:-[23456789cfghjmpqrvwx]{4}){3})", re.IGNORECASE)


# Each value of a claim (purl, function, vulnerability) is signed in its witness and kept in the
# store: 3 x 8,192 characters leave the witness well under ~100 KB (statement.py), where a 13 MB purl
# of a VEX input made an 18 MB witness that ``verify`` (16 MiB at most) refused.
MAX_CLAIM_CHARS = 8192


def bounded(text: str, what: str) -> str:
    """``text`` when, stripped, it is at most :data:`MAX_CLAIM_CHARS` long; :class:`RefError` else."""
    n = len(text.strip())
    if n > MAX_CLAIM_CHARS:
        raise RefError(
            f"{what} {text.strip()[:80]!r}… is {n} characters long: a claim's values are at most "
            f"{MAX_CLAIM_CHARS} (its witness stays under ~100 KB)"
        )
    return text


def claim_purl(text: str) -> PurlQuery:
    """A claim's package URL: :meth:`PurlQuery.parse` of a :func:`bounded` text."""
    return PurlQuery.parse(bounded(text, "package URL"))


def claim_function(text: str) -> FunctionQuery:
    """A claim's function: :func:`function_query` of a :func:`bounded` text."""
    return function_query(bounded(text, "function"))


def vulnerability_id(text: str | None) -> str | None:
    """A claim's vulnerability, stripped (``" CVE-1"`` is ``CVE-1``: one claim, one id), its scheme
    in the case its database writes it: ``cve-2024-1`` is ``CVE-2024-1``, ``ghsa-ABCD-…`` is
    ``GHSA-abcd-…`` (one vulnerability, so one claim and one id); any other id as typed. Empty is
    none. :class:`RefError` for text no store holds (NUL, not UTF-8)."""
    v = bounded(text or "", "vulnerability").strip()
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise RefError(f"vulnerability {v[:200]!r} is not valid UTF-8") from None
    if not v.isprintable():  # NUL: PostgreSQL's text takes none; a newline would forge a list line
        raise RefError(f"vulnerability {v[:200]!r} contains control characters")
    if m := _YEAR_ID.fullmatch(v):
        v = m[1].upper() + m[2]
    elif m := _GHSA.fullmatch(v):
        v = "GHSA" + m[1].lower()
    return v or None


def canonical_function(text: str) -> str:
    """A claim's function in the one spelling of every text ``verify --function`` reads as it: a
    name as typed (stripped); a function ID with its build-id's hex in lower case and the offset
    of the function's entry (``+0x0``: any offset inside the function names the function), an
    unresolved ID (``<build-id>:+0x<offset>``) with its offset's hex in lower case."""
    fq = function_query(text)
    if not fq.is_function_id:
        return fq.text
    if not fq.entry_id:  # unresolved: names is ("0x<offset>",)
        return f"{fq.build_id}:+{fq.names[0]}"
    return f"{fq.build_id}:{fq.names[-1]}+0x0"  # names: (demangled, as typed), or one when both


def canonical_claim(purl: str, function: str, vulnerability: str | None) -> tuple[str, str, str | None]:
    """A claim's purl, function and vulnerability as its id hashes them: the purl in
    :meth:`PurlQuery.canonical` form (``pkg:deb/debian/Zlib1g`` is ``pkg:deb/debian/zlib1g``,
    qualifiers sorted), the function in :func:`canonical_function` form and the vulnerability as
    :func:`vulnerability_id` reads it. :class:`RefError` for a value ``sign`` refuses."""
    return (
        claim_purl(purl).canonical(),
        canonical_function(bounded(function, "function")),
        vulnerability_id(vulnerability),
    )


_CLAIM_ID = re.compile(r"sha256:[0-9a-f]{64}")


def claim_ref(text: str) -> str:
    """A claim id as given to ``list --claim``: ``sha256:<64 hex digits>`` in any case, surrounding
    blanks left out. :class:`RefError` for anything else: no claim id is spelled otherwise, and
    looked up as given it would find none, an "exit 1: no witness" about a claim never asked."""
    ref = text.strip().lower()
    if not _CLAIM_ID.fullmatch(ref):
        raise RefError(f"malformed claim id {text[:200]!r}: expected sha256:<64 hex digits>")
    return ref


def typed_claim_id(image: str, purl: str, function: str, vulnerability: str | None) -> str:
    """The SHA-256 of the values joined by newlines, as they are: the id of a claim whose values
    are canonical, and the id versions before canonical claims kept their witnesses under."""
    text = "\n".join((image, purl, function, vulnerability or ""))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def claim_id(image: str, purl: str, function: str, vulnerability: str | None) -> str:
    """A claim's id: :func:`typed_claim_id` of its :func:`canonical_claim` values, so every spelling
    ``sign`` and ``verify`` read as one claim has one id. :class:`RefError` for a value ``sign``
    refuses."""
    return typed_claim_id(image, *canonical_claim(purl, function, vulnerability))


def _stored_claim_id(image: str, purl: str, function: str, vulnerability: str) -> str | None:
    """The canonical id of a kept row's claim, None when its values no longer read as one."""
    try:
        return claim_id(image, purl, function, vulnerability or None)
    except RefError:
        return None


@dataclass(frozen=True, slots=True)
class StoredWitness:
    id: int
    claim_id: str
    image_digest: str
    purl: str
    function: str
    vulnerability: str
    state: str
    key_id: str
    envelope_sha256: str
    issued_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        d["vulnerability"] = self.vulnerability or None
        d["state"] = self.state or None
        d["issued_at"] = rfc3339(self.issued_at)
        return d


def _check(conn: sa.Connection) -> None:
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    if not sa.inspect(conn).has_table(runtime_witnesses.name, schema=schema):
        raise NoWitnessTable(
            "the store has no runtime_witnesses table: let the agent migrate it (revision 0006)"
        )


def save(
    conn: sa.Connection, *, envelope: bytes, stmt: dict[str, Any], key_id: str, issued_at: dt.datetime
) -> tuple[int, bool]:
    """Store an envelope; (row id, True when new). The same envelope twice is stored once."""
    _check(conn)
    digest = "sha256:" + hashlib.sha256(envelope).hexdigest()
    c = runtime_witnesses.c
    have = conn.execute(sa.select(c.id).where(c.envelope_sha256 == digest)).scalar_one_or_none()
    if have is not None:
        return int(have), False
    p = stmt["predicate"]
    claim = p["claim"]
    image = claim["image_digest"]
    row = {
        "claim_id": _stored_claim_id(image, claim["purl"], claim["function"], claim["vulnerability"] or "")
        or typed_claim_id(image, claim["purl"], claim["function"], claim["vulnerability"]),
        "image_digest": claim["image_digest"], "purl": claim["purl"], "function": claim["function"],
        "vulnerability": claim["vulnerability"] or "", "state": p["assessment"]["reachability_state"] or "",
        "key_id": key_id, "envelope_sha256": digest, "envelope": envelope.decode(), "issued_at": issued_at,
    }  # fmt: skip
    new_id = conn.execute(runtime_witnesses.insert().values(row).returning(c.id)).scalar_one()
    conn.commit()
    return int(new_id), True


_Claim = tuple[str, str, str | None]  # a claim's canonical purl, function, vulnerability


def _kept_claims(
    conn: sa.Connection, digests: tuple[str, ...]
) -> dict[str, tuple[str, _Claim | None, frozenset[str]]]:
    """Each claim id kept under ``digests`` -> the canonical id of its claim (by the digest it was
    signed with), its canonical values (None when they no longer read as a claim) and every id that
    names it: the kept one, and the canonical id by each of ``digests`` (one image's content, so one
    claim by any of them). A version before canonical claims hashed the values as typed
    (``pkg:deb/debian/Zlib1g``, ``cve-2024-1``): its rows are read again here, so the id anyone
    computes from the claim finds them. One entry per distinct claim spelling, few per image."""
    c = runtime_witnesses.c
    rows = conn.execute(
        sa.select(c.image_digest, c.claim_id, c.purl, c.function, c.vulnerability)
        .where(c.image_digest.in_(digests))
        .distinct()
    )
    out: dict[str, tuple[str, _Claim | None, frozenset[str]]] = {}
    for r in rows:
        try:
            values = canonical_claim(r.purl, r.function, r.vulnerability or None)
        except RefError:
            out[r.claim_id] = (r.claim_id, None, frozenset({r.claim_id}))
            continue
        ids = frozenset({r.claim_id, *(typed_claim_id(d, *values) for d in digests)})
        out[r.claim_id] = (typed_claim_id(r.image_digest, *values), values, ids)
    return out


def find(conn: sa.Connection, *, image: str, claim: str | None = None) -> list[StoredWitness]:
    """Witnesses of ``image`` (of one claim id when given), newest first, each with its claim's
    canonical id. ``claim`` is a canonical id, or the id a version before canonical claims kept a
    witness under. The witnesses signed by a digest paired with ``image`` as the same content
    (store/same_image.py ``one_content``: its config digest, its other manifests) are its too, each
    once, with the digest and claim id it was signed with: a claim's id by either digest finds them."""
    _check(conn)
    c = runtime_witnesses.c
    digests = one_content(conn, image)
    kept = _kept_claims(conn, digests)
    of_image = c.image_digest == image if len(digests) == 1 else c.image_digest.in_(digests)
    stmt = sa.select(*(c[f] for f in StoredWitness.__slots__)).where(of_image)  # type: ignore[attr-defined]
    if claim is not None:
        asked = {values for _own, values, names in kept.values() if claim in names and values is not None}
        ids = sorted(k for k, (_own, values, names) in kept.items() if claim in names or values in asked)
        if not ids:
            return []
        stmt = stmt.where(c.claim_id.in_(ids))
    found = conn.execute(stmt.order_by(c.issued_at.desc(), c.id.desc()))
    return [
        dataclasses.replace(w, claim_id=kept[w.claim_id][0] if w.claim_id in kept else w.claim_id)
        for w in (StoredWitness(**r._mapping) for r in found)
    ]


def envelope(conn: sa.Connection, *, ref: str) -> bytes | None:
    """The stored envelope of a row id or an envelope digest (``sha256:…``)."""
    _check(conn)
    c = runtime_witnesses.c
    where = c.envelope_sha256 == ref if ref.startswith("sha256:") else c.id == int(ref)
    text = conn.execute(sa.select(c.envelope).where(where)).scalar_one_or_none()
    return None if text is None else str(text).encode()
