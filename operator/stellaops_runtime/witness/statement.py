"""The runtime witness: an in-toto Statement v1 whose predicate says what ran, signed in DSSE.

- ``subject``: the image, ``{"name": "sha256:<hex>", "digest": {"sha256": "<hex>"}}``.
- ``predicateType``: :data:`PREDICATE_TYPE`; its JSON schema is
  ``docs/schemas/runtime-witness-v1.schema.json``.
- ``predicate``: the claim (image, purl, function, vulnerability), the
  assessment (reachability state, confidence, RTS), the observation (each
  function row with counts, first and last seen, node, evidence kind and
  function ID; the observation window, coverage and gaps; watched days),
  the producer (name, version, source) and the policy hash when given.
  Stacks are referenced by SHA-256 from each row. The stack itself is
  included only while the predicate stays under :data:`MAX_PREDICATE_BYTES`,
  so a witness fits what public transparency logs accept (~100 KB).

:func:`check_statement` is the verifier's side: the statement type, the
predicate type and that the subject is the image the claim names (and the
one the verifier expects).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from stellaops_runtime import __version__
from stellaops_runtime.evidence.store_facts import Observation
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.witness.dsse import VerificationError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://stellaops.io/attestations/runtime-witness/v1"
MAX_PREDICATE_BYTES = 64 * 1024
MAX_FUNCTION_ROWS = 200


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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
    source: str = "tetragon",
) -> dict[str, Any]:
    """The in-toto Statement for one claim, from what the store recorded and its Evidence document."""
    algo, _, hexdigest = image.partition(":")
    if algo != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"a witness subject needs a sha256 image digest, got {image!r}")
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
            "reason": evidence_doc["reason"],
        },
        "observation": {
            "functions": rows,
            "functions_omitted": max(0, len(obs.rows) - MAX_FUNCTION_ROWS),
            "invocation_count": data["invocation_count"],
            "max_calls_in_a_day": data["max_calls_in_a_day"],
            "observation_window": data["observation_window"],
            "coverage": data["coverage"],
            "gaps": data["gaps"],
            "watched_days": data["watched_days"],
            "days_without_calls": data["days_without_calls"],
        },
        "stacks": stacks,
        "producer": {"name": "stellaops-runtime", "version": __version__, "source": source},
        "policy_hash": policy_hash,
        "issued_at": evidence_doc["timestamp"],
    }
    if len(_canonical(predicate)) > MAX_PREDICATE_BYTES:
        predicate["stacks"] = {}  # the digests stay on each row
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": image, "digest": {"sha256": hexdigest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def encode(stmt: dict[str, Any]) -> bytes:
    """The bytes that get signed (canonical JSON: sorted keys, no spaces)."""
    return _canonical(stmt)


def check_statement(body: bytes, *, image: str | None = None) -> dict[str, Any]:
    """The statement a verified payload holds; raises VerificationError naming what is wrong."""
    try:
        stmt = json.loads(body)
    except ValueError:
        raise VerificationError("the payload is not JSON") from None
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        raise VerificationError(f"the payload is not an in-toto Statement v1 ({STATEMENT_TYPE})")
    if stmt.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(
            f"predicate type is {stmt.get('predicateType')!r}, expected {PREDICATE_TYPE!r}"
        )
    subjects = stmt.get("subject")
    digests = [
        f"sha256:{s['digest']['sha256']}"
        for s in subjects or []
        if isinstance(s, dict) and isinstance(s.get("digest"), dict) and "sha256" in s["digest"]
    ]
    if len(digests) != 1:
        raise VerificationError("a runtime witness has exactly one subject with a sha256 digest")
    claim = (stmt.get("predicate") or {}).get("claim") or {}
    if claim.get("image_digest") != digests[0]:
        raise VerificationError(f"subject {digests[0]} is not the claim's image {claim.get('image_digest')}")
    if image is not None and digests[0] != image:
        raise VerificationError(f"subject {digests[0]} is not the expected image {image}")
    return stmt
