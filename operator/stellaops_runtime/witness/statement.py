"""The runtime witness: an in-toto Statement v1 whose predicate says what ran, signed in DSSE.

- ``subject``: the image, ``{"name": "sha256:<hex>", "digest": {"sha256": "<hex>"}}``.
- ``predicateType``: :data:`PREDICATE_TYPE`; its JSON schema is
  ``docs/schemas/runtime-witness-v1.schema.json``.
- ``predicate``: the claim (image, purl, function, vulnerability, each in
  the canonical spelling its claim id hashes), the
  assessment (reachability state, confidence, RTS), the observation (each
  function row with counts, first and last seen, node, evidence kind and
  function ID; the observation window, coverage and gaps; watched days, and which: their ranges),
  the producer (name, version, and the sources of its windows: :func:`producer_source`) and the
  policy hash when given.
  Stacks are referenced by SHA-256 from each row. The stack itself is
  included only while the predicate stays under :data:`MAX_PREDICATE_BYTES`,
  and past it rows too are left out, the least called first (counted in
  ``functions_omitted``; the totals still count them), and gaps and the
  coverage's node names beyond their share of the room (counted in
  ``gaps_omitted`` and ``nodes_omitted``), so a witness fits what public
  transparency logs accept (~100 KB) whatever the names' length or the
  number of nodes.

:func:`check_statement` is the verifier's side: the payload as UTF-8 JSON
(payload_text.py :func:`payload_json`: not UTF-16 or UTF-32, no byte order
mark, no key twice in an object, no ``NaN``, no number past a double's range,
no lone surrogate, so no reader of the same bytes reads another statement), the statement type, the
predicate type, exactly one subject named by its own sha256 digest (and no
other digest), a claim and an assessment it can report (a state the runtime
states: never "unreachable"), and that the subject is the image the claim
names (and the one the verifier expects). Asked, it also checks that the
claim is the one the verifier asks about (:func:`claim_mismatch`): the package,
function and vulnerability read by the parsers ``witness sign`` reads them
with, so a witness of another function of the same image never passes for it;
and that it was issued no earlier than the verifier accepts (:func:`issued_before`),
so an older witness of the claim cannot pass for the current one, nor later than the
verifier's clock (:func:`issued_after`: one dated in the future has no age).
Anything else fails with a message, never a crash: the key that signed it may
sign other statements too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from typing import Any

from stellaops_runtime import __version__
from stellaops_runtime.evidence.store_facts import Observation
from stellaops_runtime.store.function_refs import FunctionQuery, function_query
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.refs import PurlQuery, RefError, image_key, parse_rfc3339
from stellaops_runtime.witness.dsse import VerificationError
from stellaops_runtime.witness.payload_text import payload_json
from stellaops_runtime.witness.predicate_room import canonical as _canonical
from stellaops_runtime.witness.predicate_room import day_ranges, share_room
from stellaops_runtime.witness.store import canonical_claim, vulnerability_id

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://stellaops.io/attestations/runtime-witness/v1"
MAX_PREDICATE_BYTES = 64 * 1024
MAX_FUNCTION_ROWS = 200
# how far a witness's issued_at may be later than the verifier's clock (two machines' clocks differ)
FUTURE_SLACK = dt.timedelta(minutes=5)
# A window's stored source as the predicate's producer.source names it (docs/schemas/runtime-witness-v1).
_SOURCE_NAMES = {
    "tetragon": "tetragon",
    "tetragon-grpc": "tetragon",
    "tetragon-export": "tetragon",
    "bcc": "native",
}
MAX_REASON_CHARS = 4096  # the assessment's reason; past it a marker says how much was left out


def subject_image(text: str) -> str:
    """An image reference as a witness subject: :func:`image_key`, and a sha256 digest (a host's
    or a container's key, or a sha512 digest, names nothing a witness can be of)."""
    image = image_key(text)
    if not image.startswith("sha256:"):
        raise RefError(f"a witness is of an image digest (sha256:<64 hex digits>), not {image[:200]!r}")
    return image


def stack_digest(stack: list[Any]) -> str:
    return "sha256:" + hashlib.sha256(_canonical(stack)).hexdigest()


def statement(
    obs: Observation,
    evidence_doc: dict[str, Any],
    *,
    image: str,
    purl: str,
    function: str,
    vulnerability: str | None = None,
    policy_hash: str | None = None,
) -> dict[str, Any]:
    """The in-toto Statement for one claim, from what the store recorded and its Evidence document.

    The claim is signed in its canonical spelling (witness/store.py :func:`canonical_claim`, the
    values its id hashes): two witnesses of one claim sign the same claim text, whichever way
    ``sign``, a claims file or a VEX input spelled it, and a reader of the payload alone (any DSSE
    verifier) sees the package as the purl spec writes it. :class:`RefError` for a value ``sign``
    refuses (every caller has read the values with the same parsers already)."""
    algo, _, hexdigest = image.partition(":")
    if algo != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"a witness subject needs a sha256 image digest, got {image!r}")
    purl, function, vulnerability = canonical_claim(purl, function, vulnerability)
    stacks: dict[str, list[Any]] = {}
    rows = []
    for r in obs.rows[:MAX_FUNCTION_ROWS]:
        stack = (r.sample or {}).get("stack")
        digest = stack_digest(stack) if isinstance(stack, list) and stack else None
        if digest is not None:
            stacks[digest] = stack  # type: ignore[assignment]
        rows.append({
            "function_name": r.function_name, "function_id": r.function_id, "module": r.module,
            "purl": r.purl, "build_id": r.build_id, "evidence_kind": r.evidence_kind,
            "invocation_count": r.invocation_count, "first_seen": rfc3339(r.first_seen),
            "last_seen": rfc3339(r.last_seen), "node": r.node_name, "stack_digest": digest,
        })  # fmt: skip
    data = evidence_doc["data"]
    predicate: dict[str, Any] = {
        "claim": {"image_digest": image, "purl": purl, "function": function, "vulnerability": vulnerability},
        "assessment": {
            "reachability_state": evidence_doc["reachability_state"],
            "confidence": evidence_doc["confidence"],
            "defer_to_static_analysis": evidence_doc["defer_to_static_analysis"],
            "rts": evidence_doc["rts"],
            "reason": _bounded(evidence_doc["reason"]),
        },
        "observation": {
            "functions": rows,
            "functions_omitted": max(0, len(obs.rows) - MAX_FUNCTION_ROWS),
            "invocation_count": data["invocation_count"],
            "max_calls_in_a_day": data["max_calls_in_a_day"],
            "observation_window": data["observation_window"],
            "coverage": data["coverage"],
            "gaps": data["gaps"],
            "gaps_omitted": 0,
            "nodes_omitted": 0,
            "watched_days": data["watched_days"],
            # which days, so a VEX window can be checked from what was signed (predicate_room.py)
            "watched_day_ranges": day_ranges(obs.watched),
            "watched_day_ranges_omitted": 0,
            "days_without_calls": data["days_without_calls"],
        },
        "stacks": stacks,
        "producer": {"name": "stellaops-runtime", "version": __version__, "source": producer_source(obs)},
        "policy_hash": policy_hash,
        "issued_at": evidence_doc["timestamp"],
    }
    if len(_canonical(predicate)) > MAX_PREDICATE_BYTES:
        predicate["stacks"] = {}  # the digests stay on each row
    if len(_canonical(predicate)) > MAX_PREDICATE_BYTES:
        share_room(predicate, rows, len(obs.rows), MAX_PREDICATE_BYTES)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": image, "digest": {"sha256": hexdigest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def producer_source(obs: Observation) -> str:
    """The sources of the windows a witness rests on, in the schema's names (``bcc`` is
    ``native``), sorted and comma-joined; ``unknown`` when no window names one. It was
    "tetragon" always, also under a signature of what the BCC fallback alone observed."""
    stored = obs.coverage.sources if obs.coverage is not None else ()
    named = sorted({_SOURCE_NAMES[s] for s in stored if s in _SOURCE_NAMES})
    return ",".join(named) or "unknown"


def _bounded(reason: Any) -> Any:
    """The reason, at most MAX_REASON_CHARS (evidence/doubts.py bounds its lists of files already;
    this bounds whatever else makes it long), the cut said in the text itself."""
    if not isinstance(reason, str) or len(reason) <= MAX_REASON_CHARS:
        return reason
    left = len(reason) - MAX_REASON_CHARS
    return f"{reason[:MAX_REASON_CHARS]}… [{left} more characters left out]"


def encode(stmt: dict[str, Any]) -> bytes:
    """The bytes that get signed (canonical JSON: sorted keys, no spaces)."""
    return _canonical(stmt)


_SHA256 = re.compile(r"[0-9a-f]{64}")
# what the runtime says (evidence/reachability.py), None: defer to static analysis; never "unreachable"
STATES = (None, "DynamicReachable", "LiveExploitPath", "PotentiallyReachable")


def _subject(stmt: dict[str, Any]) -> tuple[str, Any]:
    """The one image a witness is about (exactly one subject, a sha256 digest alone) and its name."""
    subjects = stmt.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise VerificationError("a runtime witness has exactly one subject with a sha256 digest")
    digest = subjects[0].get("digest")
    hexdigest = digest.get("sha256") if isinstance(digest, dict) and len(digest) == 1 else None
    if not isinstance(hexdigest, str) or not _SHA256.fullmatch(hexdigest):
        raise VerificationError(f"the subject's digest {digest!r} is not a sha256 digest alone")
    return f"sha256:{hexdigest}", subjects[0].get("name")


def _predicate(stmt: dict[str, Any]) -> dict[str, Any]:
    """The claim and the assessment a verifier reports, checked for type (not the whole schema)."""
    predicate = stmt.get("predicate")
    if not isinstance(predicate, dict):
        raise VerificationError("the predicate is not a JSON object")
    claim = predicate.get("claim")
    if not (
        isinstance(claim, dict)
        and all(isinstance(claim.get(k), str) for k in ("image_digest", "purl", "function"))
        and isinstance(claim.get("vulnerability"), str | None)
    ):
        raise VerificationError("the predicate's claim needs image_digest, purl and function strings")
    a = predicate.get("assessment")
    if not isinstance(a, dict) or "reachability_state" not in a:
        raise VerificationError("the predicate has no assessment with a reachability_state")
    if a["reachability_state"] not in STATES:
        raise VerificationError(f"reachability state {a['reachability_state']!r} is not one a witness states")
    return claim


def _same_purl(asked: PurlQuery, signed: str) -> bool:
    """Whether the signed purl is the question ``asked`` as ``sign`` reads both: each matches the
    other (the same package after the spec's normalisation, the same version or none, the same
    qualifiers and subpath). A version on one side only is another question."""
    try:
        theirs = PurlQuery.parse(signed)
    except RefError:
        return False
    return asked.matches(theirs.text) and theirs.matches(asked.text)


def _same_function(asked: FunctionQuery, signed: str) -> bool:
    """Whether the signed function is the question ``asked`` as ``sign`` reads both (a function
    ID in any case of its hex digits, or at any offset in the same function, is one question)."""
    try:
        theirs = function_query(signed)
    except RefError:
        return False
    return dataclasses.replace(theirs, text="") == dataclasses.replace(asked, text="")


def _vulnerability(signed: str | None) -> str | None:
    """The signed vulnerability as ``sign`` reads it (a witness of ``cve-2024-1`` signed before ids
    were normalised names ``CVE-2024-1``); text ``sign`` would refuse, as it is."""
    try:
        return vulnerability_id(signed)
    except RefError:
        return signed


def claim_mismatch(
    claim: dict[str, Any],
    *,
    purl: PurlQuery | None = None,
    function: FunctionQuery | None = None,
    vulnerability: str | None = None,
) -> str | None:
    """What differs between a witness's claim and the one asked (only what is asked), or None."""
    if purl is not None and not _same_purl(purl, claim["purl"]):
        return f"the claim's package {claim['purl']!r} is not the expected package {purl.text!r}"
    if function is not None and not _same_function(function, claim["function"]):
        return f"the claim's function {claim['function']!r} is not the expected function {function.text!r}"
    if vulnerability is not None and _vulnerability(claim.get("vulnerability")) != vulnerability_id(
        vulnerability
    ):
        have = repr(claim["vulnerability"]) if claim.get("vulnerability") else "no vulnerability"
        return f"the claim names {have}, not the expected vulnerability {vulnerability!r}"
    return None


def issued_before(stmt: dict[str, Any], not_before: dt.datetime) -> str | None:
    """Why a witness issued before ``not_before`` (or at no readable time) is refused, or None.

    A witness states what the store held when it was issued. An older witness of the same claim,
    signed before the function was first called, still verifies: whoever hands the verifier a
    witness picks which. A verifier that names the oldest time it accepts gets no stale answer,
    nor one dated later than its clock (:func:`issued_after`), which would pass any such time."""
    issued = stmt["predicate"].get("issued_at")
    at = _issued_at(stmt)
    if at is None:
        return f"issued_at {issued!r} is not an RFC 3339 time: its age cannot be told"
    if at < not_before:
        return (
            f"issued at {rfc3339(at)}, before {rfc3339(not_before)} (--not-before): an older "
            "witness of the claim, a newer one may say otherwise"
        )
    return issued_after(stmt, dt.datetime.now(dt.UTC))


def _issued_at(stmt: dict[str, Any]) -> dt.datetime | None:
    issued = stmt["predicate"].get("issued_at")
    try:
        return parse_rfc3339(issued) if isinstance(issued, str) else None
    except RefError:
        return None


def issued_after(stmt: dict[str, Any], now: dt.datetime) -> str | None:
    """Why a witness issued later than ``now`` (by more than FUTURE_SLACK) has no age, or None.

    Versions before issued.py dated a witness by its signer's clock: a node days ahead issued
    witnesses dated days on, which pass any ``--not-before`` and read as the newest of their claim."""
    at = _issued_at(stmt)
    if at is None or at <= now + FUTURE_SLACK:
        return None
    return (
        f"issued at {rfc3339(at)}, later than this machine's clock ({rfc3339(now)}): signed on a clock "
        "running ahead, its age cannot be told (a witness of the claim issued after it may bear an "
        "earlier date)"
    )


def check_statement(
    body: bytes,
    *,
    image: str | None = None,
    purl: PurlQuery | None = None,
    function: FunctionQuery | None = None,
    vulnerability: str | None = None,
    not_before: dt.datetime | None = None,
) -> dict[str, Any]:
    """The statement a verified payload holds, of the claim asked when ``image``, ``purl``,
    ``function`` or ``vulnerability`` is given, issued at ``not_before`` or later when given;
    raises VerificationError naming what is wrong."""
    stmt = payload_json(body)
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        raise VerificationError(f"the payload is not an in-toto Statement v1 ({STATEMENT_TYPE})")
    if stmt.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(
            f"predicate type is {stmt.get('predicateType')!r}, expected {PREDICATE_TYPE!r}"
        )
    subject, name = _subject(stmt)
    claim = _predicate(stmt)
    if claim["image_digest"] != subject:
        raise VerificationError(f"subject {subject} is not the claim's image {claim['image_digest']}")
    if name != subject:  # a reader of the name alone would take it for another image
        raise VerificationError(f"subject name {name!r} is not its digest {subject}")
    if image is not None and subject != image:
        raise VerificationError(f"subject {subject} is not the expected image {image}")
    wrong = claim_mismatch(claim, purl=purl, function=function, vulnerability=vulnerability)
    if wrong is None and not_before is not None:
        wrong = issued_before(stmt, not_before)
    if wrong is not None:
        raise VerificationError(wrong)
    return stmt
