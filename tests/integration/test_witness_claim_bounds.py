"""A claim's values are at most MAX_CLAIM_CHARS long: every witness stays one ``verify`` reads.

``vex`` took a package URL of 13 MB from its input (and a claims file or ``sign`` any length
their readers allow) and signed it into the witness: an 18 MB envelope, which ``witness verify``
(16 MiB at most) refused as "not a witness", and far over the ~100 KB docs/witnesses.md promises.
Each value (purl, function, vulnerability) is now at most 8,192 characters, a longer one a usage
error naming the bound (exit 2), the claims file's error at the agent's start; at the bound the
witness stays under 100 KB and verifies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellaops_runtime.witness import bridge
from tests.integration.test_vex import IMG, store
from tests.witness_helpers import run_main as cli

MAX_CLAIM_CHARS = 8192  # docs/witnesses.md
LONG = "pkg:deb/debian/" + "a" * (13 * 1024 * 1024)


@pytest.fixture
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    url = store(tmp_path, range(40))
    key, pub = str(tmp_path / "w.key"), str(tmp_path / "w.pub")
    assert cli(capsys, "witness", "keygen", "--private", key, "--public", pub)[0] == 0
    return {"url": url, "key": key, "pub": pub, "tmp": str(tmp_path)}


def vex(
    capsys: pytest.CaptureFixture[str], world: dict[str, str], purl: str, fn: str
) -> tuple[int, str, str]:
    vulns = Path(world["tmp"]) / "vulns.json"
    vulns.write_text(
        json.dumps({"vulnerabilities": [{"id": "CVE-1", "affected": [{"purl": purl, "functions": [fn]}]}]})
    )
    return cli(capsys, "vex", "--store", world["url"], "--image", IMG, "--vulns", str(vulns),
               "--key", world["key"], "--witness-dir", str(Path(world["tmp"]) / "w"))  # fmt: skip


def test_vex_refuses_a_claim_value_over_the_bound(
    world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = vex(capsys, world, LONG, "crc32")
    assert code == 2 and f"at most {MAX_CLAIM_CHARS}" in err, err[:500]
    assert len(err) < 1000  # the message quotes the value's start, not 13 MB of it
    assert not list((Path(world["tmp"]) / "w").glob("*.witness.json"))
    code, _, err = vex(capsys, world, "pkg:deb/debian/zlib1g", "f" * (MAX_CLAIM_CHARS + 1))
    assert code == 2 and f"at most {MAX_CLAIM_CHARS}" in err, err[:500]


def test_at_the_bound_the_witness_is_under_100_kb_and_verifies(
    world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    purl = "pkg:deb/debian/" + "z" * (MAX_CLAIM_CHARS - len("pkg:deb/debian/"))
    out = str(Path(world["tmp"]) / "at.json")
    code, _, err = cli(capsys, "witness", "sign", "--store", world["url"], "--image", IMG, "--purl", purl,
                       "--function", "f" * MAX_CLAIM_CHARS, "--vuln", "V" * MAX_CLAIM_CHARS,
                       "--key", world["key"], "--out", out)  # fmt: skip
    assert code == 0, err
    assert Path(out).stat().st_size < 100_000
    code, _, err = cli(capsys, "witness", "verify", out, "--key", world["pub"], "--purl", purl)
    assert code == 0, err


@pytest.mark.parametrize("action", ["sign", "list", "verify"])
def test_witness_options_over_the_bound_are_usage_errors(
    world: dict[str, str], capsys: pytest.CaptureFixture[str], action: str
) -> None:
    long_purl = "pkg:deb/debian/" + "a" * MAX_CLAIM_CHARS
    args = {"sign": ["--store", world["url"], "--image", IMG, "--key", world["key"]],
            "list": ["--store", world["url"], "--image", IMG],
            "verify": [str(Path(world["tmp"]) / "none.json"), "--key", world["pub"]]}[action]  # fmt: skip
    code, _, err = cli(capsys, "witness", action, *args, "--purl", long_purl, "--function", "crc32")
    assert code == 2 and f"at most {MAX_CLAIM_CHARS}" in err, err


def test_a_claims_file_with_a_value_over_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    path.write_text(json.dumps([{"image": IMG, "purl": "pkg:deb/debian/zlib1g", "function": "crc32",
                                 "vulnerability": "CVE-" + "1" * MAX_CLAIM_CHARS}]))  # fmt: skip
    with pytest.raises(bridge.ClaimsError, match=f"at most {MAX_CLAIM_CHARS}"):
        bridge.load_claims(path)


def test_a_policy_hash_over_the_bound_is_a_usage_error(
    world: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--policy-hash`` is signed into the predicate too, and nothing cut it: one of 100,000
    characters (an argument may hold 128 KiB) made a witness over the ~100 KB bound."""
    out = Path(world["tmp"]) / "p.json"
    code, _, err = cli(capsys, "witness", "sign", "--store", world["url"], "--image", IMG,
                       "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32",
                       "--policy-hash", "h" * 100_000, "--key", world["key"], "--out", str(out))  # fmt: skip
    assert code == 2 and f"at most {MAX_CLAIM_CHARS}" in err and len(err) < 1000, err[:500]
    assert not out.exists()
