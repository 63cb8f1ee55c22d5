"""Keep signed witnesses in the store and find them again by image and claim.

A claim's id is ``sha256:`` + the SHA-256 of ``image \\n purl \\n function \\n
vulnerability`` (an empty line when there is no vulnerability), so a policy
engine computes it from the claim alone. Envelopes are stored as the exact
bytes written out (unique by their SHA-256), so one read back verifies.
:func:`vulnerability_id` reads a claim's vulnerability the one way ``sign``,
``list``, ``verify`` and the agent's claims files all read it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.refs import RefError
from stellaops_runtime.store.schema import SCHEMA, runtime_witnesses


class NoWitnessTable(Exception):
    """The store was not migrated to revision 0006 (runtime_witnesses) yet."""


def vulnerability_id(text: str | None) -> str | None:
    """A claim's vulnerability as typed, stripped (``" CVE-1"`` is ``CVE-1``: one claim, one id);
    empty is none. :class:`RefError` for text no store holds (NUL, not UTF-8)."""
    v = (text or "").strip()
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise RefError(f"vulnerability {v[:200]!r} is not valid UTF-8") from None
    if not v.isprintable():  # NUL: PostgreSQL's text takes none; a newline would forge a list line
        raise RefError(f"vulnerability {v[:200]!r} contains control characters")
    return v or None


_CLAIM_ID = re.compile(r"sha256:[0-9a-f]{64}")


def claim_ref(text: str) -> str:
    """A claim id as given to ``list --claim``: ``sha256:<64 hex digits>`` in any case, surrounding
    blanks left out. :class:`RefError` for anything else: no claim id is spelled otherwise, and
    looked up as given it would find none, an "exit 1: no witness" about a claim never asked."""
    ref = text.strip().lower()
    if not _CLAIM_ID.fullmatch(ref):
        raise RefError(f"malformed claim id {text[:200]!r}: expected sha256:<64 hex digits>")
    return ref


def claim_id(image: str, purl: str, function: str, vulnerability: str | None) -> str:
    text = "\n".join((image, purl, function, vulnerability or ""))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


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
    row = {
        "claim_id": claim_id(claim["image_digest"], claim["purl"], claim["function"], claim["vulnerability"]),
        "image_digest": claim["image_digest"], "purl": claim["purl"], "function": claim["function"],
        "vulnerability": claim["vulnerability"] or "", "state": p["assessment"]["reachability_state"] or "",
        "key_id": key_id, "envelope_sha256": digest, "envelope": envelope.decode(), "issued_at": issued_at,
    }  # fmt: skip
    new_id = conn.execute(runtime_witnesses.insert().values(row).returning(c.id)).scalar_one()
    conn.commit()
    return int(new_id), True


def find(conn: sa.Connection, *, image: str, claim: str | None = None) -> list[StoredWitness]:
    """Witnesses of ``image`` (of one claim id when given), newest first."""
    _check(conn)
    c = runtime_witnesses.c
    stmt = sa.select(*(c[f] for f in StoredWitness.__slots__)).where(c.image_digest == image)  # type: ignore[attr-defined]
    if claim is not None:
        stmt = stmt.where(c.claim_id == claim)
    return [StoredWitness(**r._mapping) for r in conn.execute(stmt.order_by(c.issued_at.desc(), c.id.desc()))]


def envelope(conn: sa.Connection, *, ref: str) -> bytes | None:
    """The stored envelope of a row id or an envelope digest (``sha256:…``)."""
    _check(conn)
    c = runtime_witnesses.c
    where = c.envelope_sha256 == ref if ref.startswith("sha256:") else c.id == int(ref)
    text = conn.execute(sa.select(c.envelope).where(where)).scalar_one_or_none()
    return None if text is None else str(text).encode()
