"""A claim has one id whatever its spelling; ``verify --vuln`` reads a vulnerability id as ``sign``.

``verify --purl pkg:deb/debian/Zlib1g`` accepted a witness of ``zlib1g``, but ``list`` with
another spelling of the package, a function ID in another case of its hex digits or at another
offset in the function, or ``cve-…`` for ``CVE-…``, found nothing (exit 1, "no witness"), and a
policy engine computing the claim id from its SBOM's purl (qualifiers in another order) got no
witness either. The id now hashes each value in its canonical spelling (docs/witnesses.md), and
witnesses kept by the version that hashed the values as typed are found by both ids: the store
here holds a row exactly as that version wrote it (its claim as typed, its id their hash).
``verify --vuln cve-2022-37434`` refused the witness of ``CVE-2022-37434``: one vulnerability.
A witness signed its claim as typed (``Zlib1g``): it now signs the canonical claim, and the
witnesses signed as typed before still verify.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.schema import datetime_to_ns, runtime_witnesses
from stellaops_runtime.witness import dsse, keys
from tests.cli_run import cli_in_process
from tests.witness_helpers import sslib_verifies
from tests.witness_helpers import witness_in_process as cli

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "e" * 64
BID = "ab" * 20
STORED_PURL = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12"


def typed_id(*values: str) -> str:
    """The id as the version before canonical claims computed it: the values as typed."""
    return "sha256:" + hashlib.sha256("\n".join(values).encode()).hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("spelling")
    url = f"sqlite:///{tmp}/hot.db"
    row = HotSymbolDelta(HotSymbolKey(IMG, "/usr/lib/libz.so.1", "crc32", EvidenceKind.INVOKED), T0, 7,
                         T0 + 1, T0 + 2, purl=STORED_PURL, function_id=f"{BID}:crc32+0x0")  # fmt: skip
    with open_store(url) as s:
        s.write([row], [ObservationWindow(IMG, "n", T0, 14, Posture.EBPF_DEEP, 60, "tetragon")])
    files = {"url": url, "key": str(tmp / "k"), "pub": str(tmp / "k.pub"), "dir": str(tmp)}
    assert cli("keygen", "--private", files["key"], "--public", files["pub"]).returncode == 0
    return files


def sign(store: dict[str, str], out: str, *claim: str) -> None:
    r = cli("sign", "--store", store["url"], "--image", IMG, *claim, "--key", store["key"], "--save",
            "--out", str(Path(store["dir"]) / out))  # fmt: skip
    assert r.returncode == 0, r.stderr


def listed(store: dict[str, str], *claim: str) -> tuple[int, Any]:
    r = cli("list", "--store", store["url"], "--image", IMG, *claim, "--json")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout) if r.stdout else None


CANONICAL = ("pkg:deb/debian/zlib1g?arch=amd64&distro=debian-12", f"{BID}:crc32+0x0", "CVE-2022-37434")
SPELLINGS = [  # each is the claim CANONICAL, as verify reads it
    ("pkg:deb/debian/zlib1g?arch=amd64&distro=debian-12", f"{BID}:crc32+0x0", "CVE-2022-37434"),
    ("pkg:deb/debian/Zlib1g?distro=debian-12&arch=amd64", f"{BID.upper()}:crc32+0x0", "cve-2022-37434"),
    (" pkg:deb/debian/ZLIB1G?Distro=debian-12&ARCH=amd64 ", f"{BID}:crc32+0X10", " Cve-2022-37434"),
]


def test_every_spelling_of_one_claim_finds_its_witness_and_the_ids_agree(store: dict[str, str]) -> None:
    sign(store, "w.json", "--purl", SPELLINGS[1][0], "--function", SPELLINGS[1][1], "--vuln", SPELLINGS[1][2])
    cid = typed_id(IMG, *CANONICAL)  # the docs' formula, of the canonical values
    for purl, fn, vuln in SPELLINGS:
        r = cli("verify", str(Path(store["dir"]) / "w.json"), "--key", store["pub"], "--purl", purl,
                "--function", fn, "--vuln", vuln)  # fmt: skip
        assert r.returncode == 0, (purl, fn, vuln, r.stderr)
        code, doc = listed(store, "--purl", purl, "--function", fn, "--vuln", vuln)
        assert code == 0, (purl, fn, vuln)
        assert doc["claim_id"] == cid and [w["claim_id"] for w in doc["witnesses"]] == [cid]
    code, doc = listed(store, "--claim", cid)
    assert code == 0 and len(doc["witnesses"]) == 1
    # what is another claim stays another claim: a version, another function, another CVE
    for other in (
        ["--purl", "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12", "--function",
         CANONICAL[1], "--vuln", CANONICAL[2]],
        ["--purl", CANONICAL[0], "--function", f"{BID}:inflate+0x0", "--vuln", CANONICAL[2]],
        ["--purl", CANONICAL[0], "--function", CANONICAL[1], "--vuln", "CVE-2022-37435"],
        ["--purl", CANONICAL[0], "--function", CANONICAL[1]],
    ):  # fmt: skip
        assert listed(store, *other)[0] == 1, other


def test_a_witness_kept_by_the_version_that_hashed_claims_as_typed_is_found(store: dict[str, str]) -> None:
    """A row written as the old code wrote it: the claim as typed (``Zlib1g``, upper-case hex,
    ``cve-…``, qualifiers in their order), ``claim_id`` the hash of those values, the envelope
    signing them (signed here with the key, as the old ``sign --save`` did)."""
    typed = (
        "pkg:deb/debian/Zlib1g?distro=debian-12&arch=amd64",
        f"{BID.upper()}:crc32+0x0",
        "cve-2022-37434",
    )
    old_id = typed_id(IMG, *typed)
    sign(store, "base.json", "--purl", CANONICAL[0], "--function", CANONICAL[1], "--vuln", CANONICAL[2])
    base = json.loads((Path(store["dir"]) / "base.json").read_text())
    stmt = json.loads(base64.b64decode(base["payload"]))
    stmt["predicate"]["claim"].update(purl=typed[0], function=typed[1], vulnerability=typed[2])
    stmt["predicate"]["issued_at"] = "2026-06-01T00:00:00Z"
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    envelope = (json.dumps(dsse.sign(payload, keys.load_private(store["key"])), indent=2) + "\n").encode()
    digest = "sha256:" + hashlib.sha256(envelope).hexdigest()
    old_file = Path(store["dir"]) / "old.json"
    old_file.write_bytes(envelope)
    engine = create_store_engine(store["url"])
    with engine.begin() as conn:
        conn.execute(runtime_witnesses.insert().values(
            claim_id=old_id, image_digest=IMG, purl=typed[0], function=typed[1], vulnerability=typed[2],
            state="DynamicReachable", key_id="old", envelope_sha256=digest,
            envelope=envelope.decode(), issued_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)))  # fmt: skip
    engine.dispose()
    cid = typed_id(IMG, *CANONICAL)
    for ask in (["--claim", cid], ["--claim", old_id],
                ["--purl", CANONICAL[0], "--function", CANONICAL[1], "--vuln", CANONICAL[2]],
                ["--purl", typed[0], "--function", typed[1], "--vuln", typed[2]]):  # fmt: skip
        code, doc = listed(store, *ask)
        assert code == 0, ask
        found = {w["purl"]: w for w in doc["witnesses"]}
        assert typed[0] in found and CANONICAL[0] in found, (ask, list(found))
        assert {w["claim_id"] for w in doc["witnesses"]} == {cid}, ask
    # the old witness says cve-…: verify --vuln CVE-… is its vulnerability
    r = cli("verify", str(old_file), "--key", store["pub"], "--vuln", "CVE-2022-37434", "--purl",
            "pkg:deb/debian/zlib1g?arch=amd64&distro=debian-12")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = cli("verify", str(old_file), "--key", store["pub"], "--vuln", "CVE-2022-37435")
    assert r.returncode == 1 and "not the expected vulnerability" in r.stderr


def test_the_stored_id_of_a_new_witness_is_the_canonical_one(store: dict[str, str]) -> None:
    sign(
        store, "w3.json", "--purl", SPELLINGS[2][0], "--function", SPELLINGS[2][1], "--vuln", SPELLINGS[2][2]
    )
    engine = create_store_engine(store["url"])
    with engine.connect() as conn:
        ids = conn.execute(
            sa.select(runtime_witnesses.c.claim_id).where(runtime_witnesses.c.key_id != "old")
        ).scalars()
        assert set(ids) == {typed_id(IMG, *CANONICAL)}
    engine.dispose()


def test_two_spellings_of_one_claim_sign_one_canonical_claim(store: dict[str, str]) -> None:
    """The signed claim is the canonical one: a reader of the payload alone (securesystemslib's
    DSSE, no stella-runtime) sees ``pkg:deb/debian/zlib1g``, not ``Zlib1g`` as typed, and two
    witnesses of one claim differ in no byte of their claim. Before, each signed its spelling."""
    sign(store, "a.json", "--purl", SPELLINGS[1][0], "--function", SPELLINGS[1][1], "--vuln", SPELLINGS[1][2])
    sign(store, "b.json", "--purl", SPELLINGS[2][0], "--function", SPELLINGS[2][1], "--vuln", SPELLINGS[2][2])
    public = keys.load_public(store["pub"])
    claims = []
    for name in ("a.json", "b.json"):
        env = json.loads((Path(store["dir"]) / name).read_text())
        assert sslib_verifies(env, public)  # not our verifier
        claims.append(json.loads(base64.b64decode(env["payload"]))["predicate"]["claim"])
    want = dict(zip(("purl", "function", "vulnerability"), CANONICAL, strict=True), image_digest=IMG)
    assert claims == [want, want]
    r = cli("verify", str(Path(store["dir"]) / "a.json"), "--key", store["pub"])
    assert r.returncode == 0 and f"verified: {CANONICAL[1]} of {CANONICAL[0]} in {IMG}" in r.stdout, r


def test_vex_signs_its_witnesses_claims_canonical_too(store: dict[str, str]) -> None:
    vulns = Path(store["dir"]) / "vulns.json"
    vulns.write_text(json.dumps({"vulnerabilities": [{"id": "cve-2022-37434", "affected": [
        {"purl": SPELLINGS[1][0], "functions": [SPELLINGS[1][1]]}]}]}))  # fmt: skip
    wdir = Path(store["dir"]) / "vex-w"
    r = cli_in_process("vex", "--store", store["url"], "--image", IMG, "--vulns", str(vulns), "--key",
                       store["key"], "--witness-dir", str(wdir))  # fmt: skip
    assert r.returncode == 0, r.stderr
    [witness] = wdir.glob("*.witness.json")
    claim = json.loads(base64.b64decode(json.loads(witness.read_text())["payload"]))["predicate"]["claim"]
    assert (claim["purl"], claim["function"], claim["vulnerability"]) == CANONICAL
