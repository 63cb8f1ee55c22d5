"""Runtime witnesses through the CLI: keygen, sign from a real store, verify, and tampering.

Envelopes are verified by our ``witness verify`` and independently by
securesystemslib's DSSE implementation; the predicate is validated against
docs/schemas/runtime-witness-v1.schema.json. Each tampering case (payload,
signature, payload type, subject, key) fails with a message naming it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError

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
from stellaops_runtime.witness.statement import MAX_PREDICATE_BYTES, PREDICATE_TYPE
from tests.witness_helpers import sslib_key, sslib_verifies
from tests.witness_helpers import statement as payload
from tests.witness_helpers import witness_in_process as cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "runtime-witness-v1.schema.json").read_text())
S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def delta(
    fn: str, count: int, *, stack: list[Any] | None = None, kind: EvidenceKind = EvidenceKind.INVOKED
) -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, ZLIB, fn, kind), window_start_ns=T0, invocation_count=count,
        first_seen_ns=T0 + S, last_seen_ns=T0 + 2 * S, purl=PURL,
        function_id=f"{'ab' * 20}:{fn}+0x0" if fn else "", node_name="node-1",
        sample={"stack": stack} if stack else {},
    )  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path, sqlite_at_head: Callable[[Path], str]) -> dict[str, Any]:
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:
        s.write(
            [
                delta("", 1, kind=EvidenceKind.LOADED),
                delta("crc32", 42, stack=[{"module": ZLIB, "symbol": "crc32"}]),
            ],
            [ObservationWindow(IMG, "node-1", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")],
        )
    priv, pub = tmp_path / "witness.key", tmp_path / "witness.pub"
    r = cli("keygen", "--private", str(priv), "--public", str(pub))
    assert r.returncode == 0, r.stderr
    assert oct(priv.stat().st_mode & 0o777) == "0o600"
    out = tmp_path / "crc32.witness.json"
    r = cli("sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32",
            "--vuln", "CVE-2022-37434", "--key", str(priv), "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    return {"url": url, "priv": priv, "pub": pub, "out": out, "tmp": tmp_path}


def test_a_witness_verifies_with_our_cli_and_an_independent_dsse_implementation(
    setup: dict[str, Any],
) -> None:
    r = cli("verify", str(setup["out"]), "--key", str(setup["pub"]), "--image", IMG, real=True)
    assert r.returncode == 0, r.stderr
    assert "verified: crc32 of pkg:deb/debian/zlib1g in " + IMG + ": DynamicReachable" in r.stdout
    assert sslib_verifies(json.loads(setup["out"].read_text()), keys.load_public(setup["pub"]))
    stmt = payload(setup["out"])
    assert stmt["_type"] == "https://in-toto.io/Statement/v1" and stmt["predicateType"] == PREDICATE_TYPE
    assert stmt["subject"] == [{"name": IMG, "digest": {"sha256": "d" * 64}}]
    jsonschema.validate(stmt["predicate"], SCHEMA)
    p = stmt["predicate"]
    assert p["claim"] == {"image_digest": IMG, "purl": "pkg:deb/debian/zlib1g", "function": "crc32",
                          "vulnerability": "CVE-2022-37434"}  # fmt: skip
    assert (p["assessment"]["reachability_state"], p["assessment"]["confidence"]) == ("DynamicReachable", 0.9)
    [row] = p["observation"]["functions"]
    assert (row["function_id"], row["invocation_count"], row["node"]) == (
        f"{'ab' * 20}:crc32+0x0",
        42,
        "node-1",
    )
    assert p["stacks"][row["stack_digest"]] == [{"module": ZLIB, "symbol": "crc32"}]
    assert p["observation"]["observation_window"] == "2026-06-01T00:00:00Z/2026-06-01T00:01:00Z"


def _tampered(setup: dict[str, Any], name: str, change: Any) -> Path:
    env = json.loads(setup["out"].read_text())
    change(env)
    path = setup["tmp"] / f"{name}.json"
    path.write_text(json.dumps(env))
    return path


def _flip_payload(env: dict[str, Any]) -> None:
    body = bytearray(base64.b64decode(env["payload"]))
    body[body.index(b"42")] = ord("9")  # 42 calls become 92
    env["payload"] = base64.b64encode(bytes(body)).decode()


def _flip_signature(env: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[0] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("payload", _flip_payload, "the payload or the signature was changed"),
        ("signature", _flip_signature, "the payload or the signature was changed"),
        ("payload-type", lambda e: e.__setitem__("payloadType", "application/json"), "payload type is"),
        ("no-signatures", lambda e: e.__setitem__("signatures", []), "no signatures"),
        ("not-an-envelope", lambda e: e.pop("payload"), "not a DSSE envelope"),
        ("bad-base64", lambda e: e.__setitem__("payload", "%%%"), "not valid base64"),
    ],
)
def test_every_tampered_byte_fails_naming_what(
    setup: dict[str, Any], name: str, change: Any, message: str
) -> None:
    path = _tampered(setup, name, change)
    r = cli("verify", str(path), "--key", str(setup["pub"]))
    assert r.returncode == 1 and message in r.stderr, r.stderr
    if name in ("payload", "signature"):  # the independent implementation agrees
        env = Envelope.from_dict(json.loads(path.read_text()))
        with pytest.raises(SslibVerificationError):
            env.verify([sslib_key(keys.load_public(setup["pub"]))], 1)


def test_a_subject_that_is_not_the_claim_or_the_expected_image_fails(setup: dict[str, Any]) -> None:
    stmt = payload(setup["out"])
    stmt["subject"][0]["digest"]["sha256"] = (
        "e" * 64
    )  # re-signed by the key holder, but not the claim's image
    env = dsse.sign(json.dumps(stmt).encode(), keys.load_private(setup["priv"]))
    path = setup["tmp"] / "subject.json"
    path.write_text(json.dumps(env))
    r = cli("verify", str(path), "--key", str(setup["pub"]))
    assert r.returncode == 1 and "is not the claim's image" in r.stderr
    r = cli("verify", str(setup["out"]), "--key", str(setup["pub"]), "--image", OTHER)
    assert r.returncode == 1 and "is not the expected image" in r.stderr


def test_another_key_fails_and_keys_are_never_overwritten(setup: dict[str, Any]) -> None:
    other_priv, other_pub = setup["tmp"] / "other.key", setup["tmp"] / "other.pub"
    assert cli("keygen", "--private", str(other_priv), "--public", str(other_pub)).returncode == 0
    r = cli("verify", str(setup["out"]), "--key", str(other_pub))
    assert r.returncode == 1 and "no signature by key" in r.stderr
    r = cli("keygen", "--private", str(setup["priv"]), "--public", str(other_pub))
    assert r.returncode == 2 and "not overwriting" in r.stderr


def test_a_witness_with_large_stacks_stays_small_and_keeps_their_digests(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    big = [{"module": ZLIB, "symbol": f"frame_{i}_" + "x" * 200} for i in range(127)]
    with open_store(url) as s:
        s.write(
            [delta("", 1, kind=EvidenceKind.LOADED)]
            + [delta("crc32", 5, stack=[*big, {"symbol": str(i)}], kind=k) for i, k in
               enumerate([EvidenceKind.INVOKED, EvidenceKind.ON_STACK])]
            + [delta(f"inflate_{i}", 1, stack=[*big, {"symbol": str(i)}]) for i in range(3)],
            [ObservationWindow(IMG, "node-1", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")],
        )  # fmt: skip
    priv, pub = tmp_path / "k", tmp_path / "k.pub"
    assert cli("keygen", "--private", str(priv), "--public", str(pub)).returncode == 0
    out = tmp_path / "w.json"
    r = cli("sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32",
            "--key", str(priv), "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size < 100_000
    p = payload(out)["predicate"]
    assert len(json.dumps(p)) <= MAX_PREDICATE_BYTES * 1.1
    assert all(f["stack_digest"] for f in p["observation"]["functions"])
    jsonschema.validate(p, SCHEMA)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_at_head: Callable[[Path], str]) -> str:
    if request.param == "sqlite":
        return sqlite_at_head(tmp_path / "kept.db")
    return str(request.getfixturevalue("pg_url"))


def test_witnesses_kept_in_the_store_are_found_by_claim_and_verify_as_read_back(
    any_url: str, tmp_path: Path
) -> None:
    from stellaops_runtime.witness.store import claim_id

    with open_store(any_url) as s:
        s.write([delta("", 1, kind=EvidenceKind.LOADED), delta("crc32", 42)],
                [ObservationWindow(IMG, "node-1", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")])  # fmt: skip
    priv, pub = tmp_path / "k", tmp_path / "k.pub"
    assert cli("keygen", "--private", str(priv), "--public", str(pub)).returncode == 0
    for vuln in ("CVE-2022-37434", "CVE-2018-25032"):
        out = str(tmp_path / f"{vuln}.json")
        # the first --save, and the get below, as real subprocesses: on PostgreSQL no other test asks
        # them of a new interpreter
        r = cli("sign", "--store", any_url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function",
                "crc32", "--vuln", vuln, "--key", str(priv), "--save", "--out", out,
                real=vuln == "CVE-2022-37434")  # fmt: skip
        assert r.returncode == 0 and "stored as" in r.stderr, r.stderr
    r = cli("list", "--store", any_url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
            "--function", "crc32", "--vuln", "CVE-2022-37434", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    [w] = listed["witnesses"]
    assert listed["claim_id"] == claim_id(IMG, "pkg:deb/debian/zlib1g", "crc32", "CVE-2022-37434")
    assert (w["state"], w["vulnerability"]) == ("DynamicReachable", "CVE-2022-37434")
    written = (tmp_path / "CVE-2022-37434.json").read_bytes()
    assert w["envelope_sha256"] == dsse_digest(written)
    back = tmp_path / "back.json"
    assert cli("get", w["envelope_sha256"], "--store", any_url, "--out", str(back), real=True).returncode == 0
    assert back.read_bytes() == written
    assert cli("verify", str(back), "--key", str(pub), "--image", IMG).returncode == 0
    r = cli("list", "--store", any_url, "--image", IMG, "--json")
    assert len(json.loads(r.stdout)["witnesses"]) == 2
    assert cli("list", "--store", any_url, "--image", OTHER).returncode == 1  # none for that image
    assert cli("get", "999999", "--store", any_url).returncode == 1


def dsse_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()
