"""Names, label values, owner references and canonical serialization of rendered objects.

Rendered names must be deterministic (the same custom resource always owns
objects of the same names, so a restarted operator finds them again) and
valid for their kind (a Service name is a 63-character DNS label; a label
value is at most 63 characters). Long inputs are shortened with a hash
suffix so two long names never collide. ``canonical_json`` is the one
serialization used for hashes and ConfigMap payloads, so an unchanged input
renders byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts.crds import MANAGED_BY

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 kept: the same input gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def dns_label(*parts: str, max_len: int = 63) -> str:
    """``parts`` joined by ``-`` as an RFC 1123 label; anything changed or too long gets a hash suffix.

    The suffix (of the original text) keeps ``a.b`` and ``a-b`` apart once the dot became a dash.
    """
    raw = "-".join(parts)
    text = _NOT_DNS.sub("-", raw.lower()).strip("-")
    if text == raw and len(text) <= max_len:
        return text
    suffix = _digest(raw)
    head = text[: max_len - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}" if head else suffix


def dns_subdomain(*parts: str, max_len: int = 253) -> str:
    """``parts`` joined by ``-`` as an RFC 1123 subdomain (dots kept), hashed down to ``max_len``."""
    raw = "-".join(parts)
    if len(raw) <= max_len:
        return raw
    suffix = _digest(raw)
    return f"{raw[: max_len - len(suffix) - 1].rstrip('-.')}-{suffix}"


def label_value(text: str) -> str:
    """A valid label value for ``text`` (itself when valid; otherwise cleaned and hashed to 63 chars)."""
    if len(text) <= 63 and re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", text):
        return text
    clean = _NOT_LABEL_VALUE.sub("-", text).strip("-_.")
    suffix = _digest(text)
    head = clean[: 63 - len(suffix) - 1].rstrip("-_.")
    return f"{head}-{suffix}" if head else suffix


def owner_reference(*, api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """A controller owner reference (garbage collection deletes the child with its owner)."""
    if not uid:
        raise ValueError(f"an owner reference to {kind}/{name} needs the owner's uid")
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_reference_of(owner: Mapping[str, Any]) -> dict[str, Any]:
    """The owner reference to a whole Kubernetes object, or an owner reference given as it is."""
    if "metadata" in owner:
        meta = owner["metadata"]
        return owner_reference(
            api_version=str(owner["apiVersion"]),
            kind=str(owner["kind"]),
            name=str(meta["name"]),
            uid=str(meta.get("uid") or ""),
        )
    return owner_reference(
        api_version=str(owner["apiVersion"]),
        kind=str(owner["kind"]),
        name=str(owner["name"]),
        uid=str(owner.get("uid") or ""),
    )


def managed_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``managed-by`` label plus ``extra`` (values made valid label values), sorted by key."""
    labels = {MANAGED_BY[0]: MANAGED_BY[1]}
    for key, value in (extra or {}).items():
        labels[key] = label_value(value)
    return dict(sorted(labels.items()))
