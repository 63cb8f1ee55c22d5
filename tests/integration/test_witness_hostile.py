"""``stella-runtime witness`` against hostile envelopes, statements, key files and references.

What test_witness.py does not cover: an independent DSSE implementation written here from the
spec (PAE lengths in bytes) on non-ASCII payload types and NUL bytes; every byte of a real
envelope flipped (nothing that verifies may carry changed content); a bad signature beside the
good one, or under a key id another tool computed; statements signed by the key that name two
images or an image under another name, or have no usable predicate (exit 1 naming it, never an
internal error); terminal control characters in a verdict; envelopes nested too deeply or too
large; key pairs never overwritten, never half written; key files that cannot be keys, with no
key material in any message; ``sign --out`` onto its own key; malformed ``get`` references; a
claim matching hundreds of 1 KB names (the witness stays under 100 KB); an image nobody watched
(the witness defers, never "not observed"). Exit codes follow cli/exitcodes.py: 0 verified,
1 does not verify, 2 usage.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness.statement import MAX_PREDICATE_BYTES, check_statement
from tests.witness_helpers import run_witness as run
from tests.witness_helpers import spec_pae, spec_verify

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


@pytest.fixture
def signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sqlite_at_head: Callable[[Path], str]
) -> dict[str, Any]:
    url = sqlite_at_head(tmp_path / "hot.db")
    d = HotSymbolDelta(HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), T0, 42, T0 + S, T0 + 2 * S,
                       purl=PURL, sample={"stack": [{"module": ZLIB, "symbol": "crc32"}]})  # fmt: skip
    loaded = HotSymbolDelta(
        HotSymbolKey(IMG, ZLIB, "", EvidenceKind.LOADED), T0, 1, T0 + S, T0 + S, purl=PURL
    )
    with open_store(url) as s:
        s.write([loaded, d], [ObservationWindow(IMG, "n", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")])
    priv, pub, out = tmp_path / "w.key", tmp_path / "w.pub", tmp_path / "w.json"
    assert run(capsys, "keygen", "--private", str(priv), "--public", str(pub))[0] == 0
    code, _, err = run(capsys, "sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                       "--function", "crc32", "--key", str(priv), "--out", str(out))  # fmt: skip
    assert code == 0, err
    return {"priv": priv, "pub": pub, "out": out, "tmp": tmp_path}


# -- an independent DSSE implementation, from the spec (tests/witness_helpers.py) ----------------


def test_an_independent_dsse_implementation_agrees_on_non_ascii_types_and_nul_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    body = '{"function":"f\\u0000","name":"zlib ü \u00e9\u4e2d"}\x00\xff'.encode("utf-8", "surrogatepass")
    kind = "application/vnd.ünïcødé+json"  # 14 characters, more bytes: PAE counts bytes
    assert spec_verify(dsse.sign(body, key, payload_type=kind), key.public_key()) == body
    sig = base64.b64encode(key.sign(spec_pae(kind, body))).decode()
    theirs = {"payload": base64.b64encode(body).decode(), "payloadType": kind,
              "signatures": [{"keyid": "", "sig": sig}]}  # fmt: skip
    assert dsse.verify(theirs, key.public_key(), payload_type=kind) == body


def test_no_flipped_byte_of_an_envelope_verifies_with_changed_content(signed: dict[str, Any]) -> None:
    text = signed["out"].read_bytes()
    public = keys.load_public(signed["pub"])
    original = json.loads(text)
    body = dsse.verify(original, public)
    verified = 0
    for i in range(len(text)):
        for bit in (0x01, 0x20):
            changed = bytearray(text)
            changed[i] ^= bit
            try:
                env = json.loads(bytes(changed))
                got = dsse.verify(env, public)
                check_statement(got, image=IMG)
            except (ValueError, dsse.VerificationError):
                continue
            # only an encoding of the same bytes may verify (JSON whitespace, base64's spare bits)
            verified += 1
            assert (got, env["payloadType"]) == (body, original["payloadType"]), (i, bit)
    assert verified < len(text)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"sig": 7},
        {"sig": "%%%"},
        {"sig": base64.b64encode(b"x" * 64).decode()},
        {"keyid": "", "sig": None},
    ],
)
def test_a_bad_signature_beside_the_good_one_does_not_hide_it(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str], bad: dict[str, Any]
) -> None:
    env = json.loads(signed["out"].read_text())
    good = env["signatures"][0]
    path = signed["tmp"] / "two.json"
    for sigs, want in (([{"keyid": good["keyid"], **bad}, good], 0), ([{"keyid": good["keyid"], **bad}], 1)):
        path.write_text(json.dumps({**env, "signatures": sigs}))
        code, _, err = run(capsys, "verify", str(path), "--key", str(signed["pub"]), "--image", IMG)
        assert code == want, err


def test_a_signature_by_the_key_under_another_tools_key_id_verifies(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    env = json.loads(signed["out"].read_text())
    public = keys.load_public(signed["pub"])
    sslib = SSlibKey.from_crypto(public)  # securesystemslib names the same key by its own id
    assert sslib.keyid != keys.key_id(public)
    env["signatures"][0]["keyid"] = sslib.keyid
    path = signed["tmp"] / "sslib-id.json"
    path.write_text(json.dumps(env))
    code, _, err = run(capsys, "verify", str(path), "--key", str(signed["pub"]), "--image", IMG)
    assert code == 0, err
    assert sslib.keyid in Envelope.from_dict(env).verify([sslib], 1)


def _resigned(signed: dict[str, Any], change: Any) -> Path:
    env = json.loads(signed["out"].read_text())
    stmt = json.loads(base64.b64decode(env["payload"]))
    change(stmt)
    path = signed["tmp"] / "resigned.json"
    path.write_text(json.dumps(dsse.sign(json.dumps(stmt).encode(), keys.load_private(signed["priv"]))))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["subject"].append({"name": OTHER, "digest": {"sha512": "e" * 128}}),
            "exactly one subject",
        ),
        (lambda s: s["subject"][0].__setitem__("name", OTHER), "subject name"),
        (lambda s: s["subject"][0]["digest"].__setitem__("sha256", "D" * 64), "not a sha256 digest"),
        (lambda s: s["subject"][0]["digest"].__setitem__("sha256", 7), "not a sha256 digest"),
        (lambda s: s.__setitem__("predicate", [1]), "predicate"),
        (lambda s: s["predicate"].__setitem__("claim", "crc32"), "claim"),
        (lambda s: s["predicate"]["claim"].pop("function"), "claim"),
        (lambda s: s["predicate"].pop("assessment"), "assessment"),
        (lambda s: s["predicate"]["assessment"].__setitem__("reachability_state", "Unreachable"), "state"),
    ],
)
def test_a_statement_signed_by_the_key_that_is_not_a_witness_of_one_image_fails(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str], change: Any, message: str
) -> None:
    path = _resigned(signed, change)
    code, out, err = run(capsys, "verify", str(path), "--key", str(signed["pub"]))
    assert code == 1 and message in err and "verification failed" in err and not out, (out, err)


def test_control_characters_in_a_claim_cannot_forge_a_verdict_line(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    forged = "f\nverified: \x1b[2Kx"
    path = _resigned(signed, lambda s: s["predicate"]["claim"].__setitem__("function", forged))
    code, out, _ = run(capsys, "verify", str(path), "--key", str(signed["pub"]))
    assert code == 0 and out.count("\n") == 1 and "\x1b" not in out and "f\\nverified: \\x1b[2Kx" in out, out


def test_envelopes_too_deep_too_large_or_not_text_fail_with_a_message(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, key = signed["tmp"], str(signed["pub"])
    (tmp / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    code, _, err = run(capsys, "verify", str(tmp / "deep.json"), "--key", key)
    assert code == 1 and "not JSON" in err, err
    with (tmp / "huge.json").open("wb") as f:  # sparse: past the limit without writing it all
        f.truncate(dsse.MAX_ENVELOPE_BYTES + 1)
    code, _, err = run(capsys, "verify", str(tmp / "huge.json"), "--key", key)
    assert code == 1 and "larger than" in err, err
    (tmp / "latin1.json").write_bytes(b'{"payload": "\xff"}')
    assert run(capsys, "verify", str(tmp / "latin1.json"), "--key", key)[0] == 1
    assert run(capsys, "verify", str(tmp), "--key", key)[0] == 2  # a directory: cannot read it


def test_keygen_never_overwrites_follows_or_half_writes_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def keygen(private: str, public: str) -> tuple[int, str, str]:
        return run(capsys, "keygen", "--private", str(tmp_path / private), "--public", str(tmp_path / public))

    trusted = tmp_path / "trusted.pub"
    trusted.write_text("the public key every verifier trusts\n")
    code, _, err = keygen("a.key", "trusted.pub")
    assert code == 2 and "not overwriting" in err and not (tmp_path / "a.key").exists()
    assert trusted.read_text() == "the public key every verifier trusts\n"
    code, _, err = keygen("same.key", "same.key")
    assert code == 2 and not (tmp_path / "same.key").exists(), err
    (tmp_path / "link.pub").symlink_to(tmp_path / "elsewhere")  # dangling: would create a file there
    assert keygen("b.key", "link.pub")[0] == 2
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "b.key").exists()
    code, _, err = keygen("c.key", "no/c.pub")
    assert code == 2 and not (tmp_path / "c.key").exists(), err  # no orphan private key blocks a retry
    old = os.umask(0)
    try:
        assert keygen("c.key", "c.pub")[0] == 0
    finally:
        os.umask(old)
    assert (tmp_path / "c.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c.pub").stat().st_mode & 0o777 == 0o644  # read by all, written by no one else


def test_key_files_that_cannot_be_witness_keys_are_usage_errors_without_key_material(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = signed["tmp"]
    ed = Ed25519PrivateKey.generate()
    files = {
        "encrypted": ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw")),
        "p256": ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "truncated": ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())[:-40],
        "huge": b"-----BEGIN PRIVATE KEY-----\n" + b"A" * (keys.MAX_KEY_FILE_BYTES + 1),
    }  # fmt: skip
    for name, pem in files.items():
        (tmp / name).write_bytes(pem)
        body = [line.decode() for line in pem.splitlines()[1:-1] if len(line) > 16]
        for action in (["verify", str(signed["out"]), "--key"], ["sign", "--image", IMG, "--purl",
                       "pkg:deb/debian/zlib1g", "--function", "crc32", "--key"]):  # fmt: skip
            code, out, err = run(capsys, *action, str(tmp / name))
            assert code == 2 and str(tmp / name) in err and not out, (name, err)
            assert not any(line[:16] in err for line in body), (name, err)
    code, _, err = run(capsys, "verify", str(signed["out"]), "--key", str(tmp / "huge"))
    assert "larger than" in err


@pytest.mark.parametrize("ref", ["\u00b2", "9" * 30, "sha256:zz", "-1", "sha256:" + "G" * 64])
def test_get_refuses_malformed_references(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str], ref: str
) -> None:
    code, _, err = run(capsys, "get", ref, "--store", f"sqlite:///{signed['tmp']}/hot.db")
    assert code == 2 and "expected a row id or sha256:" in err, err


def test_sign_never_writes_over_its_key_and_names_an_unwritable_out(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, pem = signed["tmp"], signed["priv"].read_bytes()
    (tmp / "secret").mkdir()
    (tmp / "secret" / "..data").symlink_to(signed["priv"])  # as a mounted Kubernetes Secret
    sign = ["sign", "--store", f"sqlite:///{tmp}/hot.db", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
            "--function", "crc32", "--key", str(tmp / "secret" / "..data")]  # fmt: skip
    for out in (signed["priv"], tmp / "secret" / "..data"):
        code, _, err = run(capsys, *sign, "--out", str(out))
        assert code == 2 and "not overwriting a key" in err, err
    assert signed["priv"].read_bytes() == pem
    code, _, err = run(capsys, *sign, "--out", str(tmp / "no" / "w.json"))
    assert code == 2 and "cannot write" in err, err
    assert run(capsys, *sign, "--out", str(tmp / "ok.json"))[0] == 0  # a key through a symlink signs
    assert run(capsys, "verify", str(tmp / "ok.json"), "--key", str(signed["pub"]))[0] == 0


def test_a_claim_matching_hundreds_of_long_names_still_makes_a_witness_under_100_kb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ``crc32`` claims every ``crc32(...)`` overload: C++ template instantiations run to 1 KB each
    url, n = f"sqlite:///{tmp_path}/long.db", 250
    name = "crc32(" + "std::vector<" * 80 + "int" + ">" * 80 + ", {})"
    rows = [HotSymbolDelta(HotSymbolKey(IMG, ZLIB, name.format(i), EvidenceKind.INVOKED), T0, 1000 - i,
                           T0 + S, T0 + 2 * S, purl=PURL, function_id=f"{'ab' * 20}:{name.format(i)}+0x0")
            for i in range(n)]  # fmt: skip
    loaded = HotSymbolDelta(
        HotSymbolKey(IMG, ZLIB, "", EvidenceKind.LOADED), T0, 1, T0 + S, T0 + S, purl=PURL
    )
    with open_store(url) as s:
        s.write([loaded, *rows], [ObservationWindow(IMG, "n", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")])
    priv, pub, out = tmp_path / "k", tmp_path / "k.pub", tmp_path / "w.json"
    assert run(capsys, "keygen", "--private", str(priv), "--public", str(pub))[0] == 0
    code, _, err = run(capsys, "sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                       "--function", "crc32", "--key", str(priv), "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert out.stat().st_size < 100_000
    stmt = check_statement(dsse.verify(json.loads(out.read_bytes()), keys.load_public(pub)), image=IMG)
    o = stmt["predicate"]["observation"]
    assert len(json.dumps(stmt["predicate"], separators=(",", ":"))) <= MAX_PREDICATE_BYTES
    assert o["functions"] and len(o["functions"]) + o["functions_omitted"] == n
    assert [f["invocation_count"] for f in o["functions"]] == list(
        range(1000, 1000 - len(o["functions"]), -1)
    )
    assert o["invocation_count"] == sum(1000 - i for i in range(n))  # the total counts every row


def test_a_witness_of_an_image_nobody_watched_defers_and_never_says_not_observed(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # OTHER: never watched; PASSIVE: watched only at a posture that cannot see function calls
    passive = "sha256:" + "a" * 64
    url = f"sqlite:///{signed['tmp']}/hot.db"
    loaded = HotSymbolDelta(HotSymbolKey(passive, ZLIB, "", EvidenceKind.LOADED), T0, 1, T0, T0, purl=PURL)
    with open_store(url) as s:
        s.write([loaded], [ObservationWindow(passive, "n", T0, 50, Posture.PASSIVE, 60, "tetragon")])
    for image in (OTHER, passive):
        out = signed["tmp"] / f"{image[7:15]}.json"
        sign = ["sign", "--store", url, "--image", image, "--purl", "pkg:deb/debian/zlib1g"]
        code, _, err = run(
            capsys, *sign, "--function", "crc32", "--key", str(signed["priv"]), "--out", str(out)
        )
        assert code == 0, err
        code, verdict, err = run(capsys, "verify", str(out), "--key", str(signed["pub"]), "--image", image)
        assert code == 0 and "defer to static analysis" in verdict, (verdict, err)
        p = json.loads(base64.b64decode(json.loads(out.read_text())["payload"]))["predicate"]
        a, o = p["assessment"], p["observation"]
        assert (a["reachability_state"], a["confidence"], a["defer_to_static_analysis"]) == (None, None, True)
        assert (o["watched_days"], o["days_without_calls"], o["functions"]) == (0, 0, [])


def test_an_envelope_of_more_signatures_than_a_witness_has_is_refused_unchecked(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every signature was tried: a 15 MB envelope of 150,000 bad ones cost 150,000 Ed25519
    checks (30 s of CPU here) before its answer. At most MAX_SIGNATURES are; more is exit 1."""
    env = json.loads(signed["out"].read_text())
    good, bad = env["signatures"][0], {"keyid": "", "sig": base64.b64encode(b"x" * 64).decode()}
    path = signed["tmp"] / "many.json"
    for n, want in ((dsse.MAX_SIGNATURES, 0), (dsse.MAX_SIGNATURES + 1, 1)):
        path.write_text(json.dumps({**env, "signatures": [bad] * (n - 1) + [good]}))
        code, _, err = run(capsys, "verify", str(path), "--key", str(signed["pub"]), "--image", IMG)
        assert code == want, err
    assert f"more than {dsse.MAX_SIGNATURES}" in err, err
