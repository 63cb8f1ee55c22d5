"""``witness verify`` reads a witness's payload as the one text every reader of it reads: UTF-8 JSON.

DSSE signs bytes; the in-toto Statement in them is JSON in UTF-8 (RFC 8259 8.1 for JSON exchanged
between systems). Python's ``json.loads(bytes)`` also decodes UTF-16 and UTF-32 (and skips a UTF-8
byte order mark), and keeps the last of a repeated key, and reads ``NaN``: a payload signed in
such a form verified here while a Go in-toto verifier (``json.Unmarshal``) refuses it, or another
parser reads another value of a repeated key. The DSSE layer is not in question (the independent
verifier written from the spec accepts each signature: ``spec_verify``); what the payload says is.
Each case is exit 1 naming what is wrong; the canonical UTF-8 payload ``sign`` writes verifies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness.statement import PREDICATE_TYPE, STATEMENT_TYPE, encode
from tests.witness_helpers import key_pair, run_witness, spec_verify

IMG = "sha256:" + "d" * 64


def _statement() -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": IMG, "digest": {"sha256": "d" * 64}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "claim": {
                "image_digest": IMG,
                "purl": "pkg:deb/debian/zlib1g",
                "function": "crc32",
                "vulnerability": None,
            },
            "assessment": {"reachability_state": "DynamicReachable", "confidence": 0.9},
            "issued_at": "2026-06-01T00:00:00Z",
        },
    }


def _signed(tmp_path: Path, body: bytes, private: Ed25519PrivateKey) -> Path:
    env = dsse.sign(body, private)
    assert spec_verify(env, private.public_key()) == body  # DSSE itself: the bytes are signed
    path = tmp_path / "w.json"
    path.write_text(json.dumps(env))
    return path


def _text() -> str:
    return json.dumps(_statement(), sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_text().encode("utf-16"), "not UTF-8"),
        (_text().encode("utf-16-le"), "not JSON in UTF-8"),  # ASCII in UTF-16 is NUL-laden UTF-8
        (_text().encode("utf-32"), "not UTF-8"),
        (b"\xef\xbb\xbf" + _text().encode(), "byte order mark"),
        # a lone surrogate written as UTF-8 bytes (CESU-8): no Unicode text has it
        (
            _text()
            .replace('"crc32"', '"crc32\\ud800"')
            .replace("\\ud800", "\ud800")
            .encode("utf-8", "surrogatepass"),
            "not UTF-8",
        ),
        # the same key twice: Python reads the last, other parsers the first (or refuse it)
        (
            _text().replace('"function":"crc32"', '"function":"inflate","function":"crc32"').encode(),
            "'function'",
        ),
        (_text().replace('"confidence":0.9', '"confidence":NaN').encode(), "NaN"),
        # a number past a double's range: Python reads inf (and --json printed Infinity, not JSON),
        # Go's json.Unmarshal refuses it
        (_text().replace('"confidence":0.9', '"confidence":1e400').encode(), "out of range"),
        (_text().replace('"confidence":0.9', '"confidence":-1E+999').encode(), "out of range"),
        (_text().replace('"confidence":0.9', '"confidence":1' + "0" * 400).encode(), "out of range"),
        # a lone surrogate written as a JSON escape: Python keeps it, Go reads U+FFFD in its place
        (_text().replace('"crc32"', '"crc32\\ud800"').encode(), "lone surrogate"),
        (_text().replace('"function"', '"function\\udc00"', 1).encode(), "lone surrogate"),
        (_text().replace('"crc32"', '"crc32\\udc00\\ud800"').encode(), "lone surrogate"),
    ],
    ids=[
        "utf-16",
        "utf-16-le",
        "utf-32",
        "bom",
        "lone-surrogate",
        "repeated-key",
        "nan",
        "1e400",
        "-1e999",
        "10**400",
        "escaped-surrogate",
        "escaped-surrogate-key",
        "escaped-surrogates-reversed",
    ],
)
def test_a_payload_that_is_not_plain_utf8_json_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: bytes, message: str
) -> None:
    priv, pub = key_pair(tmp_path)
    path = _signed(tmp_path, body, keys.load_private(priv))
    code, out, err = run_witness(capsys, "verify", str(path), "--key", str(pub))
    assert code == 1 and not out and "verification failed" in err and message in err, (code, out, err)


def test_the_canonical_utf8_payload_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    priv, pub = key_pair(tmp_path)
    stmt = _statement()
    stmt["predicate"]["claim"]["function"] = "zlib ü 中 crc32 😀"  # non-ASCII, as sign writes it (UTF-8)
    path = _signed(tmp_path, encode(stmt), keys.load_private(priv))
    code, out, err = run_witness(capsys, "verify", str(path), "--key", str(pub))
    assert code == 0 and "verified: zlib ü 中 crc32 😀" in out, (out, err)
    # the same text written with escapes, a surrogate pair among them, reads the same everywhere
    escaped = json.dumps(stmt, sort_keys=True, ensure_ascii=True).encode()
    assert b"\\ud83d\\ude00" in escaped
    path = _signed(tmp_path, escaped, keys.load_private(priv))
    code, out, err = run_witness(capsys, "verify", str(path), "--key", str(pub), "--json")
    assert code == 0 and json.loads(out)["predicate"]["claim"]["function"] == "zlib ü 中 crc32 😀", err
