"""DSSE envelopes (Dead Simple Signing Envelope, v1): sign and verify.

The signature is over the pre-authentication encoding
``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (lengths as ASCII
decimal byte counts), never over the JSON of the envelope, so the payload
type is signed too. The envelope is ``{"payload": base64, "payloadType",
"signatures": [{"keyid", "sig": base64}]}``.

:func:`verify` names what failed: not an envelope, a payload type other than
the one expected, no signature by the key, or a signature that does not
verify. Every signature is tried, those naming the key (or no key) first:
a bad one beside the good one (another signer's, a damaged copy) does not
hide it, and neither does a ``keyid`` another tool computes its own way
(it is not signed; securesystemslib's, say). An envelope of more than
:data:`MAX_SIGNATURES` is refused before any is checked: each is an Ed25519
check, and a 16 MiB file of bad ones took half a minute to answer.
:func:`read_envelope` reads at most :data:`MAX_ENVELOPE_BYTES` of a regular
file, so a huge file is an answer, not a machine out of memory, and a FIFO
or a device (``/dev/zero``) is an unreadable file, not a wait for ever. An
independent implementation (securesystemslib) verifies our envelopes in the
tests.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stellaops_runtime.regular_file import read_regular
from stellaops_runtime.witness.keys import key_id

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
# A witness stays well under 100 KB (statement.py); 16 MiB leaves room for any we sign.
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
# A witness has one signature; each is an Ed25519 check, and 16 MiB holds 150,000 of them (30 s of CPU).
MAX_SIGNATURES = 16
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class VerificationError(Exception):
    """An envelope that does not verify; the message names what failed."""


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def sign(
    body: bytes, private: Ed25519PrivateKey, *, payload_type: str = IN_TOTO_PAYLOAD_TYPE
) -> dict[str, Any]:
    sig = private.sign(pae(payload_type, body))
    return {
        "payload": base64.b64encode(body).decode(),
        "payloadType": payload_type,
        "signatures": [{"keyid": key_id(private.public_key()), "sig": base64.b64encode(sig).decode()}],
    }


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    if _URLSAFE.fullmatch(value):  # DSSE allows URL-safe base64 too
        try:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            pass
    raise VerificationError(f"{what} is not valid base64")


def read_envelope(path: str | Path) -> Any:
    """The JSON of an envelope file, read to at most MAX_ENVELOPE_BYTES; raises VerificationError
    for content that is no envelope (too large, not JSON, nested too deeply) and OSError when the
    file cannot be read."""
    data = read_regular(path, MAX_ENVELOPE_BYTES)  # a FIFO or device: OSError, never a wait
    if len(data) > MAX_ENVELOPE_BYTES:
        raise VerificationError(f"larger than {MAX_ENVELOPE_BYTES} bytes: not a witness (a DSSE envelope)")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise VerificationError("not JSON (a witness is a DSSE envelope)") from None


def verify(envelope: Any, public: Ed25519PublicKey, *, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> bytes:
    """The payload of an envelope signed by ``public``; raises VerificationError naming the failure."""
    if not isinstance(envelope, dict) or not {"payload", "payloadType", "signatures"} <= envelope.keys():
        raise VerificationError("not a DSSE envelope (payload, payloadType and signatures are required)")
    if envelope["payloadType"] != payload_type:
        raise VerificationError(f"payload type is {envelope['payloadType']!r}, expected {payload_type!r}")
    body = _b64(envelope["payload"], "payload")
    sigs = envelope["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise VerificationError("the envelope has no signatures")
    if len(sigs) > MAX_SIGNATURES:  # refused unchecked: a bounded answer, not minutes of CPU
        raise VerificationError(f"the envelope has {len(sigs)} signatures, more than {MAX_SIGNATURES}")
    kid = key_id(public)
    entries = [s for s in sigs if isinstance(s, dict)]
    # keyid is an unsigned hint (DSSE): the ones naming this key (or none) first, then any other,
    # as another tool names the same key its own way (securesystemslib, cosign)
    entries.sort(key=lambda s: s.get("keyid") not in (kid, "", None))
    message = pae(envelope["payloadType"], body)
    for s in entries:
        try:
            public.verify(_b64(s.get("sig"), "signature"), message)
            return body
        except (InvalidSignature, VerificationError):  # not this one: try the others
            continue
    if not any(s.get("keyid") in (kid, "", None) for s in entries):
        by = ", ".join(str(s.get("keyid"))[:16] for s in entries)
        raise VerificationError(f"no signature by key {kid[:16]}… (signed by: {by})")
    raise VerificationError(
        f"the signature does not verify with key {kid[:16]}…: the payload or the signature was changed"
    )
