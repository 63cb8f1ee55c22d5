"""A witness's payload read as the one text every reader of it reads: strict UTF-8 JSON.

DSSE signs bytes; what they say is the in-toto Statement read from them, and two readers of the
same signed bytes must read the same statement. Python's ``json.loads(bytes)`` reads more than
that: it decodes UTF-16 and UTF-32 and skips a UTF-8 byte order mark (a Go in-toto verifier,
``json.Unmarshal``, refuses them), keeps the last of a repeated key (other readers the first),
reads ``NaN`` and ``Infinity``, reads a number past a double's range (``1e400``) as infinity (Go
refuses it, and ``verify --json`` printed ``Infinity``, which is not JSON), and keeps a lone
surrogate written as an escape (``"\\ud800"``, where Go reads U+FFFD). :func:`payload_json`
refuses each with a VerificationError naming it. It was part of statement.py, which it would
have grown past the module size.
"""

from __future__ import annotations

import json
import math
from typing import Any

from stellaops_runtime.witness.dsse import VerificationError


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:  # Python keeps the last, other readers the first: two readings of one witness
            raise VerificationError(f"the payload repeats the key {k[:200]!r} in one object")
        seen[k] = v
    return seen


def _no_constant(name: str) -> Any:
    raise VerificationError(f"the payload holds {name}, which is not JSON")


def _out_of_range(text: str) -> VerificationError:
    return VerificationError(
        f"the payload holds a number out of range ({text[:40]}): no double holds it, readers differ"
    )


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: inf here, an error in Go's json.Unmarshal
        raise _out_of_range(text)
    return value


def _int(text: str) -> int:
    value = int(text)  # past Python's digit limit: ValueError, "not JSON"
    try:
        float(value)
    except OverflowError:
        raise _out_of_range(text) from None
    return value


def _lone_surrogate(doc: Any) -> str | None:
    """The first lone surrogate in the keys and strings of ``doc`` (``\\udXXX``), or None; without
    recursion (the document may be as deep as ``json.loads`` reads)."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            texts: Any = item.keys()
        elif isinstance(item, list):
            stack.extend(item)
            continue
        elif isinstance(item, str):
            texts = (item,)
        else:
            continue
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                return f"\\u{ord(text[e.start]):04x}"
    return None


def payload_json(body: bytes) -> Any:
    """The JSON of a payload read as every reader of it reads it, or VerificationError: UTF-8 with
    no byte order mark (``json.loads(bytes)`` would also decode UTF-16 and UTF-32, which a Go
    in-toto verifier refuses), each key once per object, no ``NaN`` or ``Infinity``, no number past
    a double's range, no lone surrogate (as bytes or as an escape)."""
    if body.startswith(b"\xef\xbb\xbf"):
        raise VerificationError("the payload starts with a byte order mark: a Statement is UTF-8 JSON")
    try:
        text = body.decode("utf-8")  # strict: no UTF-16/32, no lone surrogate written as bytes
    except UnicodeDecodeError as e:
        raise VerificationError(
            f"the payload is not UTF-8 (byte {e.start}): a Statement is UTF-8 JSON"
        ) from None
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_float=_finite,
            parse_int=_int,
        )
    except (ValueError, RecursionError):
        raise VerificationError("the payload is not JSON in UTF-8 (an in-toto Statement)") from None
    lone = _lone_surrogate(doc)
    if lone is not None:  # "\ud800": kept here, read as U+FFFD by Go's encoding/json
        raise VerificationError(f"the payload holds a lone surrogate ({lone}), which is not Unicode text")
    return doc
